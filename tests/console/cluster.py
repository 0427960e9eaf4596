"""A small cluster as source events: namespaces a and b, web in a, api and db in b."""

from __future__ import annotations

from typing import Any

from enforcer.console.cluster import ClusterView
from enforcer.sources.base import EventType, SourceEvent


def pod(ns: str, name: str, ip: str, app: str, port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "labels": {"app": app}},
        "spec": {"nodeName": "node1",
                 "containers": [{"name": "c", "ports": [{"containerPort": port}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }  # fmt: skip


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def policy(
    ns: str, name: str, spec: dict[str, Any], kind: str = "NetworkPolicy"
) -> dict[str, Any]:
    api = "networking.k8s.io/v1" if kind == "NetworkPolicy" else "enforcer.dev/v1alpha1"
    return {"apiVersion": api, "kind": kind, "metadata": {"namespace": ns, "name": name},
            "spec": spec}


# api accepts only web; the staged version of it would accept nothing.
ALLOW_WEB = {"podSelector": {"matchLabels": {"app": "api"}},
             "ingress": [{"from": [{"namespaceSelector": {}, "podSelector":
                                    {"matchLabels": {"app": "web"}}}]}]}  # fmt: skip
DENY_ALL = {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"]}

OBJECTS = [
    namespace("a"), namespace("b"),
    pod("a", "web", "10.0.0.1", "web"),
    pod("b", "api", "10.0.0.2", "api"),
    pod("b", "db", "10.0.0.3", "db", port=5432),
    policy("b", "allow-web", ALLOW_WEB),
    policy("b", "allow-web", DENY_ALL, kind="StagedNetworkPolicy"),
]  # fmt: skip


def send(view: ClusterView, objects: list[dict[str, Any]], kind: EventType = EventType.ADDED,
         synced: bool = True) -> None:
    for obj in objects:
        view(SourceEvent(kind, obj["kind"], obj))
    if synced:
        view(SourceEvent(EventType.SYNCED, None, None))


def small_cluster() -> ClusterView:
    view = ClusterView()
    send(view, OBJECTS)
    return view
