"""Cut API objects down to the fields policy enforcement reads, before they are kept.

A cluster-wide pod list is most of the agent's memory: a typical Pod is 5-15 kB of JSON (managed
fields, annotations, env, volumes), of which policy needs a few hundred bytes. Everything the
model parser reads must survive here (enforcer.model.parse is the reference).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from enforcer.model.objects import POLICY_MODE_ANNOTATION, QUARANTINE_ANNOTATION

_META_KEYS = ("name", "namespace", "uid", "labels", "resourceVersion", "deletionTimestamp")
_ANNOTATIONS = (POLICY_MODE_ANNOTATION, QUARANTINE_ANNOTATION)  # the only ones the model reads


def _pick(src: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(src, Mapping):
        return {}
    return {k: src[k] for k in keys if k in src and src[k] is not None}


def _metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = _pick(obj.get("metadata"), _META_KEYS)
    annotations = _pick(_pick(obj.get("metadata"), ("annotations",)).get("annotations"),
                        _ANNOTATIONS)
    if annotations:
        meta["annotations"] = annotations
    return meta


def _controller_refs(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The controller owner reference only (flows name a pod's workload by it)."""
    meta = obj.get("metadata")
    refs = meta.get("ownerReferences") if isinstance(meta, Mapping) else None
    if not isinstance(refs, list):
        return []
    return [
        _pick(r, ("kind", "name", "controller"))
        for r in refs
        if isinstance(r, Mapping) and r.get("controller")
    ][:1]


def _containers(spec: Mapping[str, Any], key: str) -> list[dict[str, Any]] | None:
    containers = spec.get(key)
    if not isinstance(containers, list):
        return None
    # Only ports matter (named ports); containers without any are dropped.
    kept = [
        _pick(c, ("name", "ports")) for c in containers if isinstance(c, Mapping) and c.get("ports")
    ]
    return kept


def _pod(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec_in = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    # The service account: selectors match it (enforcer.model.objects.SERVICE_ACCOUNT_LABEL).
    spec = _pick(spec_in, ("nodeName", "hostNetwork", "serviceAccountName", "serviceAccount"))
    for key in ("initContainers", "containers"):
        kept = _containers(spec_in, key)
        if kept:
            spec[key] = kept
    if "containers" not in spec:
        spec["containers"] = []
    metadata = _metadata(obj)
    if refs := _controller_refs(obj):
        metadata["ownerReferences"] = refs
    return {
        "apiVersion": obj.get("apiVersion", "v1"),
        "kind": "Pod",
        "metadata": metadata,
        "spec": spec,
        "status": _pick(obj.get("status"), ("phase", "podIP", "podIPs", "hostIP")),
    }


def _node(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj.get("apiVersion", "v1"),
        "kind": "Node",
        "metadata": _metadata(obj),
        "spec": _pick(obj.get("spec"), ("podCIDR", "podCIDRs")),
        "status": _pick(obj.get("status"), ("addresses",)),
    }


def _with_metadata(obj: Mapping[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": _metadata(obj),
    }
    out.update(_pick(obj, keep))
    return out


def strip_object(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `obj` with only what policy needs; unknown kinds keep metadata and spec."""
    if kind == "Pod":
        return _pod(obj)
    if kind == "Node":
        return _node(obj)
    if kind == "Namespace":
        return _with_metadata(obj, ())
    if kind == "EndpointSlice":
        return _with_metadata(obj, ("addressType", "endpoints", "ports"))
    # NetworkPolicy, StagedNetworkPolicy (the same spec), Service: the spec is what is read.
    return _with_metadata(obj, ("spec",))
