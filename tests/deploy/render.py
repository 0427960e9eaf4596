"""A tiny kustomize: renders daemonset/kustomization.yaml the way `kubectl apply -k` would.

CI has no kubectl (Debian ships none), so the tests render the features our kustomization
uses: resources in order, `namespace`, a `configMapGenerator` from files, and `images`.
Anything else in the kustomization is an error, so the renderer cannot silently drift.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DAEMONSET_DIR = REPO / "daemonset"
MONITORING_DIR = DAEMONSET_DIR / "monitoring"

SUPPORTED_KEYS = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "images"}
# Kinds without a namespace (kustomize leaves these alone).
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "CustomResourceDefinition",
}

Obj = dict[str, Any]


def load_documents(path: Path) -> list[Obj]:
    """Every non-empty YAML document in a file."""
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def _generated_configmap(spec: Obj, base: Path) -> Obj:
    options = spec.get("options", {})
    if not options.get("disableNameSuffixHash"):
        raise ValueError("the renderer supports only disableNameSuffixHash: true generators")
    data = {}
    for entry in spec.get("files", []):
        key, _, rel = entry.partition("=") if "=" in entry else (Path(entry).name, "", entry)
        data[key] = (base / rel).read_text()
    metadata: Obj = {"name": spec["name"]}
    if options.get("labels"):
        metadata["labels"] = dict(options["labels"])
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def _pod_spec(obj: Obj) -> Obj | None:
    spec = obj.get("spec", {})
    if obj["kind"] in {"DaemonSet", "Deployment", "StatefulSet", "Job", "ReplicaSet"}:
        return spec.get("template", {}).get("spec")
    if obj["kind"] == "Pod":
        return spec
    return None


def _split_image(image: str) -> tuple[str, str]:
    name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    return name, tag


def _apply_images(obj: Obj, images: list[Obj]) -> None:
    pod = _pod_spec(obj)
    if pod is None:
        return
    for container in pod.get("initContainers", []) + pod.get("containers", []):
        name, tag = _split_image(container["image"])
        for rule in images:
            if rule["name"] == name:
                new = rule.get("newName", name)
                new_tag = rule.get("newTag", tag)
                container["image"] = f"{new}:{new_tag}" if new_tag else new


def _apply_namespace(obj: Obj, namespace: str) -> None:
    if obj["kind"] in CLUSTER_SCOPED:
        if obj["kind"] in {"ClusterRoleBinding"}:
            for subject in obj.get("subjects", []):
                if subject.get("kind") == "ServiceAccount":
                    subject["namespace"] = namespace
        return
    obj.setdefault("metadata", {})["namespace"] = namespace


def render(directory: Path = DAEMONSET_DIR) -> list[Obj]:
    """The objects `kubectl apply -k directory` would send, in kustomization order."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kust) - SUPPORTED_KEYS
    if unknown:
        raise ValueError(f"kustomization uses keys the test renderer lacks: {sorted(unknown)}")
    objects: list[Obj] = []
    for resource in kust.get("resources", []):
        objects.extend(load_documents(directory / resource))
    for spec in kust.get("configMapGenerator", []):
        objects.append(_generated_configmap(spec, directory))
    for obj in objects:
        if kust.get("namespace"):
            _apply_namespace(obj, kust["namespace"])
        _apply_images(obj, kust.get("images", []))
    return objects


def find(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    """The one object of that kind (and name)."""
    hits = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    if len(hits) != 1:
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(hits)}")
    return hits[0]


def agent_pod_spec() -> Obj:
    """The rendered agent DaemonSet's pod spec."""
    spec: Obj = find(render(), "DaemonSet", "enforcer-agent")["spec"]["template"]["spec"]
    return spec


def containers(pod_spec: Obj) -> list[Obj]:
    return list(pod_spec.get("initContainers", [])) + list(pod_spec.get("containers", []))
