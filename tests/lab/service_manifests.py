"""Service manifests the lab's Service tests share: a Service, a Service whose endpoint lives
outside the cluster, a small web cluster across two nodes with Services to its backends, and a
Service's ClusterIP."""

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
    """web_pods() with Service x/web (8080 to port 80 of x/b and x/c)."""
    return [
        *web_pods(),
        service("x", "web", selector={"app": "web"}, ports=[{"port": 8080, "targetPort": 80}]),
    ]


def udp_service_to(backend: str) -> dict[str, Any]:
    """x/one: UDP 53 to port 80 of x/<backend> only."""
    return service(
        "x",
        "one",
        selector={"backend": backend},
        ports=[{"port": 53, "targetPort": 80, "protocol": "UDP"}],
    )


def node_port_to_c(name: str, port: int, node_port: int, **spec: Any) -> dict[str, Any]:
    """A NodePort Service in x to port 80 of x/c (on node2)."""
    return service(
        "x",
        name,
        type="NodePort",
        selector={"backend": "c"},
        ports=[{"port": port, "targetPort": 80, "nodePort": node_port}],
        **spec,
    )


def web_pods() -> list[dict[str, Any]]:
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
    ]
