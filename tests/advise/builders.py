"""Small clusters as manifests (Deployments' pods as the API server returns them) and flows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from enforcer.analysis.inputs import planned_state
from enforcer.flows.record import FlowRecord
from enforcer.model.cluster import ClusterState
from enforcer.model.loader import LoadResult, load_text

HASH = "5d8f7c9b6"


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def pod(
    ns: str,
    name: str,
    labels: dict[str, str],
    ip: str,
    ports: list[dict[str, Any]] | None = None,
    owner: tuple[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1],
                                    "uid": f"uid-{owner[1]}", "controller": True}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "ports": ports or []}]},
        "status": {"phase": "Running", "podIPs": [{"ip": ip}]},
    }


def deployment(
    ns: str,
    name: str,
    labels: dict[str, str],
    ips: list[str],
    ports: list[dict[str, Any]] | None = None,
    template_hash: str = HASH,
) -> list[dict[str, Any]]:
    """One pod per address, as a Deployment's ReplicaSet makes them."""
    return [
        pod(ns, f"{name}-{template_hash}-{i}", {**labels, "pod-template-hash": template_hash},
            ip, ports, owner=("ReplicaSet", f"{name}-{template_hash}"))
        for i, ip in enumerate(ips)
    ]


def netpol(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": {"podSelector": {}, **spec}}


def loaded(docs: list[dict[str, Any]]) -> LoadResult:
    result = load_text(yaml.safe_dump_all(docs), "cluster.yaml")
    assert not result.errors, result.errors
    return result


def state_of(docs: list[dict[str, Any]]) -> ClusterState:
    return planned_state(loaded(docs))


def write_cluster(directory: Path, docs: list[dict[str, Any]]) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cluster.yaml").write_text(yaml.safe_dump_all(docs))
    return str(directory)


def flow(
    src: str,
    dst: str,
    port: int,
    protocol: str = "TCP",
    direction: str = "egress",
    verdict: str = "allowed",
    **fields: Any,
) -> FlowRecord:
    return FlowRecord(source=src, destination=dst, port=port, protocol=protocol,
                      direction=direction, verdict=verdict, **fields)


def both_sides(src: str, dst: str, port: int, protocol: str = "TCP",
               **fields: Any) -> list[FlowRecord]:
    """The flow as two agents record it: at the source's egress and the destination's ingress."""
    return [flow(src, dst, port, protocol, "egress", **fields),
            flow(src, dst, port, protocol, "ingress", **fields)]


WEB_PORTS = [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
DB_PORTS = [{"name": "postgres", "containerPort": 5432, "protocol": "TCP"}]
DNS_PORTS = [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
             {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}]


def shop() -> list[dict[str, Any]]:
    """shop/web (2 pods) -> shop/api (2 pods) -> data/db (1 pod); kube-system/coredns."""
    return [
        namespace("shop"), namespace("data"), namespace("kube-system"),
        *deployment("shop", "web", {"app": "web"}, ["10.0.1.1", "10.0.1.2"], WEB_PORTS),
        *deployment("shop", "api", {"app": "api"}, ["10.0.2.1", "10.0.2.2"], WEB_PORTS),
        *deployment("data", "db", {"app": "db"}, ["10.0.3.1"], DB_PORTS),
        *deployment("kube-system", "coredns", {"k8s-app": "kube-dns"}, ["10.0.0.10"],
                    DNS_PORTS),
    ]


WEB = [f"shop/web-{HASH}-0", f"shop/web-{HASH}-1"]
API = [f"shop/api-{HASH}-0", f"shop/api-{HASH}-1"]
DB = f"data/db-{HASH}-0"
DNS = f"kube-system/coredns-{HASH}-0"
