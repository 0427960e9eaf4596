"""Manifests as dicts, parsed by the real loader, for the compiler's unit tests."""

from __future__ import annotations

from typing import Any

from enforcer.model.loader import parse_object
from enforcer.model.objects import ModelObject


def obj(doc: dict[str, Any]) -> ModelObject:
    parsed = parse_object(doc, "test")
    assert parsed is not None
    return parsed


def ns(name: str, **labels: str) -> ModelObject:
    return obj(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    )


def pod(
    namespace: str,
    name: str,
    ips: list[str],
    labels: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    uid: str | None = None,
    node: str = "node-1",
    host_network: bool = False,
    phase: str = "Running",
) -> ModelObject:
    return obj(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid or f"uid-{namespace}-{name}",
                "labels": labels or {},
            },
            "spec": {
                "nodeName": node,
                "hostNetwork": host_network,
                "containers": [{"name": "c", "ports": ports or []}],
            },
            "status": {"phase": phase, "podIPs": [{"ip": ip} for ip in ips]},
        }
    )


def policy(namespace: str, name: str, **spec: Any) -> ModelObject:
    spec.setdefault("podSelector", {})
    return obj(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )
