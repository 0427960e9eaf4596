"""Sane limits on what the API server may hand the agent; past them an object is garbage.

A real API server never sends what these refuse: etcd stores at most 1.5 MiB per object
(`--max-request-bytes`), the API server caps annotations at 256 KiB in total and a label at
317 + 63 characters, and a pod has at most two podIPs (one per family). Counts Kubernetes does
not bound itself (labels, containerPorts, policy rules) are capped far above any real object.
So a refusal means a broken or hostile server (or proxy): the object is counted
(`enforcer_source_rejected_total{kind,reason}`), its last valid version stays in force, and the
agent's memory stays bounded by these numbers rather than by what a peer chooses to send.

Only what the agent keeps (after enforcer.sources.strip) is counted: names, labels, pod ports
and addresses, policy and Service specs. Everything else is dropped before it is kept; the
byte limits bound what is read before that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MIB = 2**20
# One watch event (one JSON line): etcd's 1.5 MiB, rendered as JSON, with room to spare.
MAX_OBJECT_BYTES = 4 * MIB
# One page of a list (500 objects asked for): a bigger page is asked for again in halves,
# down to one object per page.
MAX_LIST_PAGE_BYTES = 64 * MIB
MAX_LABELS = 1024  # Kubernetes sets no count; real objects carry tens
MAX_LABEL_KEY = 253 + 1 + 63  # prefix/name, as the API server validates
MAX_LABEL_VALUE = 63
MAX_ANNOTATION_BYTES = 256 * 1024  # the API server's own total (TotalAnnotationSizeLimitB)
MAX_NAME = 253
MAX_POD_PORTS = 4096  # containerPorts over all containers; real pods have a handful
MAX_POD_IPS = 16  # the API server allows two
# JSON values in a kept spec (a NetworkPolicy's rules, peers, ports and CIDRs, a Service's,
# an EndpointSlice's, which Kubernetes caps at 1,000 endpoints): 100,000 is a policy of
# tens of thousands of CIDRs.
MAX_SPEC_VALUES = 100_000

REASONS = ("too_large", "malformed", "name", "labels", "annotations", "ports", "pod_ips", "spec")


# Kinds whose spec (and a slice's endpoints and ports) is bounded by MAX_SPEC_VALUES.
_SPEC_KINDS = frozenset({
    "NetworkPolicy", "StagedNetworkPolicy", "Service", "EndpointSlice",
    "ClusterNetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy",
})


def reject_reason(kind: str, obj: Any) -> str | None:
    """Why this (unstripped) object is garbage, or None when it is within every limit."""
    if not isinstance(obj, Mapping):
        return "malformed"
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return "malformed"
    for field in ("name", "namespace"):
        value = meta.get(field)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_NAME):
            return "name"
    if (reason := _labels(meta.get("labels"))) or (reason := _annotations(meta)):
        return reason
    if kind == "Pod":
        return _pod(obj)
    if kind in _SPEC_KINDS:
        budget = [MAX_SPEC_VALUES]
        for key in ("spec", "endpoints", "ports"):
            if not _within(obj.get(key), budget):
                return "spec"
    return None


def _labels(labels: Any) -> str | None:
    if labels is None:
        return None
    if not isinstance(labels, Mapping) or len(labels) > MAX_LABELS:
        return "labels"
    for key, value in labels.items():
        if not isinstance(key, str) or len(key) > MAX_LABEL_KEY:
            return "labels"
        if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE:
            return "labels"
    return None


def _annotations(meta: Mapping[str, Any]) -> str | None:
    annotations = meta.get("annotations")
    if annotations is None:
        return None
    if not isinstance(annotations, Mapping):
        return "annotations"
    total = 0
    for key, value in annotations.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return "annotations"
        total += len(key) + len(value)
        if total > MAX_ANNOTATION_BYTES:
            return "annotations"
    return None


def _pod(obj: Mapping[str, Any]) -> str | None:
    spec = obj.get("spec")
    if isinstance(spec, Mapping):
        ports = 0
        for key in ("containers", "initContainers"):
            containers = spec.get(key)
            if containers is None:
                continue
            if not isinstance(containers, list) or len(containers) > MAX_POD_PORTS:
                return "ports"
            for c in containers:
                p = c.get("ports") if isinstance(c, Mapping) else None
                ports += len(p) if isinstance(p, list) else 0
                if ports > MAX_POD_PORTS:
                    return "ports"
    status = obj.get("status")
    ips = status.get("podIPs") if isinstance(status, Mapping) else None
    if isinstance(ips, list) and len(ips) > MAX_POD_IPS:
        return "pod_ips"
    return None


def _within(value: Any, budget: list[int]) -> bool:
    """Count JSON values into budget[0]; False once it runs out (stops walking there)."""
    stack = [value]
    while stack:
        item = stack.pop()
        budget[0] -= 1
        if budget[0] < 0:
            return False
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def stub(kind: str, obj: Any) -> dict[str, Any]:
    """What stands for a rejected object downstream: its kind and name only (the consumer
    keeps its last valid version; a relist does not take it for deleted)."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    keep = {k: meta[k] for k in ("name", "namespace")
            if isinstance(meta.get(k), str) and len(meta[k]) <= MAX_NAME}
    return {"kind": kind, "apiVersion": obj.get("apiVersion") if isinstance(obj, Mapping)
            else None, "metadata": keep}
