"""Objects as the API returns them, and a KubernetesSource tuned for fast tests."""

from __future__ import annotations

from typing import Any

from enforcer.sources.kubernetes import KubernetesSource
from tests.fakeapi import FakeKubeAPI

# Fast retries so outage tests take a fraction of a second, not the production 0.2-30 s.
FAST = {"backoff_base": 0.05, "backoff_max": 0.3, "watch_timeout": 30.0, "connect_timeout": 2.0}


def k8s_source(api: FakeKubeAPI, **kwargs: Any) -> KubernetesSource:
    return KubernetesSource.for_host(api.url, **{**FAST, **kwargs})


def pod(
    name: str,
    ns: str = "default",
    labels: dict[str, str] | None = None,
    ip: str | None = None,
    node: str = "node-a",
    uid: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels or {}}
    if uid:
        meta["uid"] = uid
    status: dict[str, Any] = {"phase": "Running"}
    if ip:
        status |= {"podIP": ip, "podIPs": [{"ip": ip}]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "app",
                    "image": "agnhost",
                    "ports": [{"name": "http", "containerPort": 80}],
                }
            ],
        },
        "status": status,
    }


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels or {}},
    }


def policy(name: str, ns: str = "default", spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec if spec is not None else {"podSelector": {}, "policyTypes": ["Ingress"]},
    }


def node(name: str, ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }
