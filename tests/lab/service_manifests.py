"""Service manifests the lab's Service tests share: a Service, a Service whose endpoint lives
outside the cluster, a small web cluster across two nodes, and a Service's ClusterIP."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address
from typing import Any

from enforcer.lab import lab
from tests.lab import upstream


def service(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }


def external_service(ip: IPv4Address, port: int) -> list[dict[str, Any]]:
    """x/ext: Service port 443 (named api) to `ip`:`port`, through a hand-written
    EndpointSlice (no selector)."""
    return [
        service("x", "ext", ports=[{"name": "api", "port": 443, "targetPort": port}]),
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "namespace": "x",
                "name": "ext-1",
                "labels": {"kubernetes.io/service-name": "ext"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [str(ip)]}],
            "ports": [{"name": "api", "port": port}],
        },
    ]


def cluster_ip(state: lab.LabState, key: str) -> Any:
    return ip_address(state.cluster_ips[key][0])


def web_cluster() -> list[dict[str, Any]]:
    """x/client on node1, web backends x/b on node1 and x/c on node2."""

    def pod(name: str, node: str, labels: dict[str, str]) -> dict[str, Any]:
        p = upstream.pod("x", name, labels)
        p["spec"]["nodeName"] = node
        return p

    return [
        upstream.namespace("x"),
        pod("client", "node1", {"app": "client"}),
        pod("b", "node1", {"app": "web", "backend": "b"}),
        pod("c", "node2", {"app": "web", "backend": "c"}),
        service("x", "web", selector={"app": "web"}, ports=[{"port": 8080, "targetPort": 80}]),
    ]
