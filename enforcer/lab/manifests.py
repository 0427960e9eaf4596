"""The lab's objects: read raw manifests, complete pods (node, IPs, phase), write them out.

The agents read the lab's manifest folder with the directory source, exactly as they would
read any folder; the lab writes one file per object, atomically (write, then rename).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from enforcer.model import clusterpolicy
from enforcer.model.clusterpolicy import CLUSTER_POLICY_KINDS, is_cluster_policy
from enforcer.model.groups import as_core_policy, foreign_policy_group
from enforcer.model.loader import (
    MANIFEST_SUFFIXES,
    ValidationError,
    parse_object,
    parse_staged_policy,
)
from enforcer.model.loader import _documents as documents
from enforcer.model.loader import _flatten as flatten
from enforcer.model.parse_clusterpolicy import parse_cluster_object
from enforcer.model.parse_services import parse_service_object

# StagedNetworkPolicy reaches the agents (flows judged as if applied), never enforcement.
# A Node names a lab node, its labels and its pod subnet (spec.podCIDR); the lab writes every
# node's Node object itself (lab_node: its labels, its addresses), as a kubelet registers it.
# The cluster-scoped policies reach the agents, which enforce them.
LAB_KINDS = (
    "Namespace", "Node", "Pod", "NetworkPolicy", "Service", "EndpointSlice",
    "StagedNetworkPolicy", *CLUSTER_POLICY_KINDS,
)
CLUSTER_SCOPED = ("Namespace", "Node", *CLUSTER_POLICY_KINDS)
RawObject = dict[str, Any]


def object_id(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name")))


def read_raw(
    paths: Sequence[str | Path], accept_groups: Collection[str] = ()
) -> tuple[list[RawObject], list[str]]:
    """Raw objects of the kinds the lab runs, validated; and error messages for the rest.

    Another API group's NetworkPolicy is an error unless its group is in `accept_groups`;
    then it is handed on as the networking.k8s.io/v1 NetworkPolicy NAME.GROUP the model reads
    it as (enforcer.model.groups), so the agents, the digest and the lab's model agree."""
    objects: list[RawObject] = []
    errors: list[str] = []
    for raw_path in paths:
        path = Path(raw_path)
        if not path.exists():
            errors.append(f"{path}: no such file or directory")
            continue
        files = (
            sorted(f for f in path.rglob("*") if f.suffix.lower() in MANIFEST_SUFFIXES)
            if path.is_dir()
            else [path]
        )
        for file in files:
            try:
                docs = documents(file.read_text(encoding="utf-8"), str(file))
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                errors.append(f"{file}: cannot read: {reason}")
                continue
            except yaml.YAMLError as exc:
                errors.append(f"{file}: cannot parse: {yaml_problem(exc)}")
                continue
            notes: list[str] = []
            for doc in docs:
                for item in flatten(doc, str(file), notes):
                    if not isinstance(item, Mapping) or item.get("kind") not in LAB_KINDS:
                        continue
                    if item.get("kind") in CLUSTER_POLICY_KINDS and not is_cluster_policy(item):
                        errors.append(_wrong_api(str(file), item))
                        continue
                    group = foreign_policy_group(item)
                    if group is not None and group not in accept_groups:
                        errors.append(_not_read(str(file), item, group))
                        continue
                    try:
                        parse_object(item, str(file), accept_groups)
                        parse_service_object(item, str(file))
                        parse_staged_policy(item, str(file))
                        parse_cluster_object(item, str(file))  # cluster policies and Nodes
                    except ValidationError as exc:
                        errors.append(str(exc))
                        continue
                    obj = copy.deepcopy(dict(item if group is None else as_core_policy(item)))
                    if obj["kind"] not in CLUSTER_SCOPED:
                        obj.setdefault("metadata", {}).setdefault("namespace", "default")
                    objects.append(obj)
    return objects, errors


def _wrong_api(origin: str, item: Mapping[str, Any]) -> str:
    meta = item.get("metadata") if isinstance(item.get("metadata"), Mapping) else {}
    kind = str(item.get("kind"))
    return (f"{origin}: {kind} {meta.get('name')} of {item.get('apiVersion')} not read: its "
            f"API is {clusterpolicy.CLUSTER_POLICY_API[kind]}")


def _not_read(origin: str, item: Mapping[str, Any], group: str) -> str:
    meta = item.get("metadata") if isinstance(item.get("metadata"), Mapping) else {}
    ref = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
    if not group:
        return f"{origin}: NetworkPolicy {ref} of {item.get('apiVersion')} not read: its API is " \
            "networking.k8s.io/v1"
    return (f"{origin}: NetworkPolicy {ref} of {item.get('apiVersion')} not read: another API "
            f"group than networking.k8s.io (--accept-group {group} reads it as a NetworkPolicy)")


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line: where, what, and in what."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return " ".join(str(exc).split())
    mark = exc.problem_mark
    context = f" ({exc.context})" if exc.context else ""
    return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}{context}"


def implied_namespaces(objects: Iterable[RawObject]) -> list[RawObject]:
    """Namespace objects for namespaces that pods or policies use but no manifest declares."""
    declared = {object_id(o)[2] for o in objects if o["kind"] == "Namespace"}
    used = {object_id(o)[1] for o in objects if o["kind"] not in CLUSTER_SCOPED}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        for ns in sorted(used - declared)
    ]


def host_network(pod: Mapping[str, Any]) -> bool:
    """A `hostNetwork: true` pod: it runs in its node's network namespace, with its node's
    addresses (no interface of its own, no policy of its own)."""
    return bool((pod.get("spec") or {}).get("hostNetwork"))


def lab_node(
    name: str, given: Mapping[str, Any] | None, cidrs: Sequence[str], addresses: Sequence[str]
) -> RawObject:
    """A lab node's Node object as its kubelet would register it: the manifest's labels and
    annotations (if the manifests name the node) over `kubernetes.io/hostname`, its pod
    subnets, and its addresses (InternalIP: what `nodes` peers of cluster policies match)."""
    meta = (given or {}).get("metadata") or {}
    labels = {"kubernetes.io/hostname": name, **(meta.get("labels") or {})}
    node: RawObject = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"podCIDR": cidrs[0], "podCIDRs": list(cidrs)} if cidrs else {},
        "status": {"addresses": [{"type": "InternalIP", "address": a} for a in addresses]
                   + [{"type": "Hostname", "address": name}]},
    }
    if meta.get("annotations"):
        node["metadata"]["annotations"] = dict(meta["annotations"])
    return node


def pod_ports(pod: Mapping[str, Any]) -> list[tuple[int, str]]:
    ports = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            ports.append((int(p["containerPort"]), str(p.get("protocol", "TCP"))))
    return sorted(set(ports))


def node_name(pod: Mapping[str, Any]) -> str | None:
    return (pod.get("spec") or {}).get("nodeName") or None


def pod_cidrs(node: Mapping[str, Any]) -> list[str]:
    """A Node's spec.podCIDRs, or its spec.podCIDR."""
    spec = node.get("spec") or {}
    return [str(c) for c in spec.get("podCIDRs") or []] or (
        [str(spec["podCIDR"])] if spec.get("podCIDR") else []
    )


def pod_ips(pod: Mapping[str, Any]) -> list[str]:
    status = pod.get("status") or {}
    ips = [p["ip"] for p in status.get("podIPs") or [] if p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return ips


def complete_pod(pod: RawObject, node: str, ips: Sequence[str]) -> RawObject:
    """The pod as the API server would show it once running on `node` with `ips`."""
    done = copy.deepcopy(pod)
    done.setdefault("apiVersion", "v1")
    done.setdefault("spec", {})["nodeName"] = node
    status = done.setdefault("status", {})
    status["phase"] = status.get("phase", "Running")
    status["podIP"] = ips[0]
    status["podIPs"] = [{"ip": ip} for ip in ips]
    return done


def file_name(obj: Mapping[str, Any]) -> str:
    kind, ns, name = object_id(obj)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{kind}_{ns}_{name}")
    return f"{safe}.yaml"


def write_object(folder: Path, obj: Mapping[str, Any]) -> Path:
    path = folder / file_name(obj)
    tmp = folder / f".{path.name}.tmp"
    tmp.write_text(yaml.safe_dump(dict(obj), sort_keys=True))
    os.replace(tmp, path)  # the agents' directory source never sees half a file
    return path


def remove_object(folder: Path, obj: Mapping[str, Any]) -> None:
    (folder / file_name(obj)).unlink(missing_ok=True)


def read_folder(folder: Path) -> Iterator[RawObject]:
    for path in sorted(folder.glob("*.yaml")):
        loaded = yaml.safe_load(path.read_text())
        if isinstance(loaded, dict):
            yield loaded
