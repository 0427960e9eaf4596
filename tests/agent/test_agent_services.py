"""What the agent writes into the Service maps: frontends (never NodePorts or headless
Services), local endpoints by address, and the frontends a local endpoint backs itself."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from enforcer.agent.services import desired_maps
from enforcer.model.cluster import ClusterState
from enforcer.model.loader import parse_object
from enforcer.model.parse_services import parse_service_object
from tests.lab import upstream


@dataclass
class Record:
    pod: str
    ifindex: int | None
    endpoint_id: int
    generation: int = 1


def _state(*objects: dict[str, Any]) -> ClusterState:
    state = ClusterState()
    for raw in objects:
        obj = parse_object(raw) or parse_service_object(raw)
        assert obj is not None
        state.upsert(obj)
    return state


def _pod(name: str, ip: str, label: str) -> dict[str, Any]:
    pod = upstream.pod("x", name, {"app": label})
    pod["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 8080}]
    pod["status"] = {"phase": "Running", "podIPs": [{"ip": ip}]}
    return pod


def _service(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "x", "name": name},
        "spec": spec,
    }


def test_desired_maps_from_services_and_local_endpoints() -> None:
    state = _state(
        _pod("a", "10.0.0.1", "web"),
        _pod("b", "10.0.0.2", "web"),
        _pod("c", "10.0.0.3", "db"),
        _service(
            "web",
            type="LoadBalancer",
            clusterIP="10.96.0.1",
            externalIPs=["192.0.2.1"],
            selector={"app": "web"},
            ports=[{"port": 80, "targetPort": "http", "nodePort": 30080}],
        ),
        _service("headless", clusterIP="None", selector={"app": "db"}, ports=[{"port": 5432}]),
    )
    records = [Record("x/a", 11, 1), Record("x/c", 13, 3), Record("x/b", None, 2)]
    maps = desired_maps(state, records)
    # The NodePort is a node address, not a frontend of its own; headless is DNS only.
    assert maps.frontends == {
        (ip_address("10.96.0.1"), 80, "TCP"),
        (ip_address("192.0.2.1"), 80, "TCP"),
    }
    # x/b has no interface here: not local.
    assert maps.local_endpoints == {
        ip_address("10.0.0.1"): (1, 11),
        ip_address("10.0.0.3"): (3, 13),
    }
    # x/a backs `web` on its named port 8080, under both frontends; x/c backs nothing proxied.
    assert maps.self_backends == {
        ((ip_address("10.96.0.1"), 80, "TCP"), 1): 8080,
        ((ip_address("192.0.2.1"), 80, "TCP"), 1): 8080,
    }


def test_a_frontend_with_a_backend_on_this_node_itself_is_not_deferred() -> None:
    """kube-proxy delivers it to the node (INPUT), past every post-DNAT hook."""
    host_backed = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": "x",
            "name": "api-1",
            "labels": {"kubernetes.io/service-name": "api"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.10"]}],
        "ports": [{"port": 6443}],
    }
    state = _state(
        _service("api", clusterIP="10.96.0.1", ports=[{"port": 443, "targetPort": 6443}]),
        host_backed,
    )
    assert desired_maps(state, []).frontends == {(ip_address("10.96.0.1"), 443, "TCP")}
    assert desired_maps(state, []).outside == {(ip_address("10.96.0.1"), 443, "TCP")}
    on_this_node = desired_maps(state, [], {ip_address("192.0.2.10")})
    assert on_this_node.frontends == set()
