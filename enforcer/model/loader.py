"""Read Namespaces, Pods, NetworkPolicies, StagedNetworkPolicies, Services, EndpointSlices,
cluster-scoped policies (ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy)
and Nodes from manifests.

Accepts YAML or JSON, multi-document files, `kind: List` and typed lists (`PodList`...), so
`kubectl get ... -o yaml` output loads as is. Invalid objects become errors (never partially
loaded); objects of other kinds are not read and are listed in `ignored` (and `notes`), and
files that hold no object at all in `empty`: a caller must never let them pass silently.
NetworkPolicies of another API group are read only from the groups a caller accepts
(enforcer.model.groups).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from enforcer.model.clusterpolicy import ClusterPolicy
from enforcer.model.groups import foreign_policy_group
from enforcer.model.nodes import Node
from enforcer.model.objects import ModelObject, NetworkPolicy
from enforcer.model.parse import ValidationError, parse_object, parse_staged_policy
from enforcer.model.parse_clusterpolicy import parse_cluster_object
from enforcer.model.parse_services import parse_service_object
from enforcer.model.services import ServiceObject

__all__ = [
    "IgnoredObject",
    "LoadResult",
    "ValidationError",
    "load_paths",
    "load_text",
    "parse_object",
]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

try:  # libyaml is much faster on big inputs; fall back to the pure-Python loader.
    _YamlLoader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _YamlLoader = yaml.SafeLoader


@dataclass(frozen=True)
class IgnoredObject:
    """An object of the input that nothing reads: where it is and what it is."""

    origin: str
    kind: str
    api_version: str
    namespace: str | None
    name: str | None

    @property
    def accept_group(self) -> str | None:
        """The group whose --accept-group would read it (another group's NetworkPolicy)."""
        return foreign_policy_group({"kind": self.kind, "apiVersion": self.api_version}) or None

    def describe(self) -> str:
        """FILE: ignored APIVERSION KIND NAMESPACE/NAME"""
        where = f"{self.namespace}/" if self.namespace else ""
        return (f"{self.origin}: ignored {self.api_version or '?'} {self.kind or '?'} "
                f"{where}{self.name or '?'}")

    def __str__(self) -> str:
        return f"{self.describe()} (not a kind we model)"

    def reason(self) -> str:
        group = self.accept_group
        if group:
            return (f"a NetworkPolicy of API group {group}, not networking.k8s.io: "
                    f"--accept-group {group} reads it as one")
        return "not a kind the model reads"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.origin, "kind": self.kind, "apiVersion": self.api_version,
                "namespace": self.namespace, "name": self.name, "reason": self.reason()}


@dataclass
class LoadResult:
    objects: list[ModelObject] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)  # the file of each object, same order
    errors: list[ValidationError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ignored: list[IgnoredObject] = field(default_factory=list)  # also in notes, in words
    empty: list[str] = field(default_factory=list)  # files (or folders) without any object
    # Services and EndpointSlices: kept apart, since only the Service-aware consumers
    # (analyze --via service, the lab) use them.
    services: list[ServiceObject] = field(default_factory=list)
    # StagedNetworkPolicies, as the NetworkPolicies they preview: never in `objects`, so
    # nothing enforces or analyzes them unless it asks (analyze --staged, the agent's shadow).
    staged: list[NetworkPolicy] = field(default_factory=list)
    staged_origins: list[str] = field(default_factory=list)  # the file of each, same order
    # Cluster-scoped policies and Nodes (the `nodes` peers): kept apart too, so consumers of
    # `objects` see what they always did (enforcer.model.clusterpolicy: not enforced yet).
    cluster_policies: list[ClusterPolicy] = field(default_factory=list)
    cluster_origins: list[str] = field(default_factory=list)  # the file of each, same order
    nodes: list[Node] = field(default_factory=list)


def _manifest_files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and child.suffix.lower() in MANIFEST_SUFFIXES:
                yield child
    else:
        yield path


def _documents(text: str, origin: str) -> list[Any]:
    stripped = text.lstrip()
    if origin.endswith(".json") or stripped.startswith(("{", "[")):
        try:
            doc = json.loads(text)
            return doc if isinstance(doc, list) else [doc]
        except json.JSONDecodeError:
            pass  # YAML is a superset of JSON; let the YAML parser report the error
    return [d for d in yaml.load_all(text, Loader=_YamlLoader) if d is not None]


def _flatten(doc: Any, origin: str, notes: list[str]) -> Iterator[Any]:
    """Expand List and typed lists (their items may lack `kind`), and bare arrays."""
    if isinstance(doc, list):
        for item in doc:
            yield from _flatten(item, origin, notes)
        return
    if isinstance(doc, Mapping) and isinstance(doc.get("kind"), str):
        kind = doc["kind"]
        if kind.endswith("List") and isinstance(doc.get("items"), list):
            item_kind = kind[: -len("List")] or None
            for item in doc["items"]:
                if isinstance(item, Mapping) and item_kind and "kind" not in item:
                    item = {**item, "kind": item_kind, "apiVersion": doc.get("apiVersion")}
                yield from _flatten(item, origin, notes)
            return
    yield doc


def _ignored(doc: Any, origin: str) -> IgnoredObject:
    if not isinstance(doc, Mapping):
        return IgnoredObject(origin, type(doc).__name__, "", None, None)
    meta = doc.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    return IgnoredObject(origin, text(doc.get("kind")) or "", text(doc.get("apiVersion")) or "",
                         text(meta.get("namespace")), text(meta.get("name")))


def load_text(
    text: str,
    origin: str,
    result: LoadResult | None = None,
    accept_groups: Collection[str] = (),
) -> LoadResult:
    """Parse one file's content into `result` (a new one when None). accept_groups: API
    groups whose NetworkPolicies are read (enforcer.model.groups)."""
    result = result if result is not None else LoadResult()
    try:
        docs = _documents(text, origin)
    except yaml.YAMLError as exc:
        result.errors.append(ValidationError(origin, "", None, None, "", f"cannot parse: {exc}"))
        return result
    seen = 0
    for doc in docs:
        for item in _flatten(doc, origin, result.notes):
            seen += 1
            try:
                obj = parse_object(item, origin, accept_groups)
                staged = parse_staged_policy(item, origin) if obj is None else None
                svc = parse_service_object(item, origin) if obj is None and staged is None else None
                other = (
                    parse_cluster_object(item, origin)
                    if obj is None and staged is None and svc is None
                    else None
                )
            except ValidationError as exc:
                result.errors.append(exc)
                continue
            if staged is not None:
                result.staged.append(staged)
                result.staged_origins.append(origin)
            elif svc is not None:
                result.services.append(svc)
            elif isinstance(other, ClusterPolicy):
                result.cluster_policies.append(other)
                result.cluster_origins.append(origin)
            elif isinstance(other, Node):
                result.nodes.append(other)
            elif obj is None:
                ignored = _ignored(item, origin)
                result.ignored.append(ignored)
                result.notes.append(str(ignored))
            else:
                result.objects.append(obj)
                result.origins.append(origin)
    if not seen:
        result.empty.append(origin)
    return result


def load_paths(paths: Sequence[str | Path], accept_groups: Collection[str] = ()) -> LoadResult:
    """Load every manifest in the given files and folders (folders recursively)."""
    result = LoadResult()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            result.errors.append(
                ValidationError(str(path), "", None, None, "", "no such file or directory")
            )
            continue
        files = list(_manifest_files(path))
        if not files:
            result.empty.append(str(path))  # a folder without a manifest file
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                result.errors.append(
                    ValidationError(str(file), "", None, None, "", f"cannot read: {exc}")
                )
                continue
            load_text(text, str(file), result, accept_groups)
    return result
