"""Tiny-cluster builders for model tests: manifests as dicts, loaded through the real parser."""

from __future__ import annotations

import itertools
from typing import Any

from enforcer.model.cluster import ClusterState
from enforcer.model.loader import parse_object
from enforcer.model.parse_services import parse_service_object

_next_ip = itertools.count(10)


def state_of(*objects: dict[str, Any]) -> ClusterState:
    """A cluster state holding these manifests (policy objects and Services), parsed."""
    state = ClusterState()
    for raw in objects:
        obj = parse_object(raw) or parse_service_object(raw)
        assert obj is not None, raw
        state.upsert(obj)
    return state


def ns(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(
    namespace: str,
    name: str,
    labels: dict[str, str] | None = None,
    ips: list[str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    host_network: bool = False,
    phase: str = "Running",
) -> dict[str, Any]:
    if ips is None:
        i = next(_next_ip)
        ips = [f"10.0.{i // 250}.{i % 250 + 1}"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {
            "hostNetwork": host_network,
            "containers": [{"name": "c", "ports": ports or []}],
        },
        "status": {"phase": phase, "podIPs": [{"ip": ip} for ip in ips]},
    }


def policy(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("podSelector", {})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def cluster(*docs: dict[str, Any]) -> ClusterState:
    state = ClusterState()
    for doc in docs:
        obj = parse_object(doc, "test")
        assert obj is not None
        state.upsert(obj)
    return state
