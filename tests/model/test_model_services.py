"""Services and EndpointSlices in the model: parsing, validation, the frontend index, backends
(from slices and from selectors), and verdicts judged against the chosen backend."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest

from enforcer.model.evaluate_service import evaluate_frontend, evaluate_service
from enforcer.model.loader import ValidationError, load_text
from enforcer.model.parse_services import parse_service_object
from enforcer.model.services import Backend, EndpointSlice, Service
from tests.model.netpol_builders import ns, pod, state_of


def service(name: str = "s", namespace: str = "x", **spec: Any) -> dict[str, Any]:
    spec.setdefault("ports", [{"port": 80}])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def endpoint_slice(
    name: str, service_name: str, addresses: list[str], ports: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "x",
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": extra.get("addressType", "IPv4"),
        "endpoints": [
            {"addresses": [a], "conditions": {"ready": a not in extra.get("unready", ())}}
            for a in addresses
        ],
        "ports": ports,
    }


def web(name: str, ip: str, port: int = 8080, **labels: str) -> dict[str, Any]:
    ports = [
        {"name": "http", "containerPort": port},
        {"name": "http", "containerPort": 53, "protocol": "UDP"},
    ]
    return pod("x", name, {"app": "web", **labels}, [ip], ports)


# --- parsing ------------------------------------------------------------------------------


def test_service_defaults_as_the_api_server() -> None:
    svc = parse_service_object(service(clusterIP="10.96.0.10", selector={"app": "web"}))
    assert isinstance(svc, Service)
    assert svc.type == "ClusterIP" and svc.external_traffic_policy == "Cluster"
    (port,) = svc.ports
    assert (port.name, port.protocol, port.port, port.target_port) == ("", "TCP", 80, 80)
    assert svc.cluster_ips == (ip_address("10.96.0.10"),)
    assert dict(svc.selector or {}) == {"app": "web"}


def test_headless_and_selectorless_services() -> None:
    svc = parse_service_object(service(clusterIP="None", ports=[]))
    assert isinstance(svc, Service) and svc.cluster_ips == () and svc.selector is None


BAD_SERVICES = [
    ({"ports": []}, "spec.ports", "required value"),
    ({"ports": [{"port": 0}]}, "spec.ports[0].port", "out of range"),
    ({"ports": [{"port": 80, "protocol": "ICMP"}]}, "spec.ports[0].protocol", "unsupported"),
    ({"ports": [{"port": 80, "targetPort": "Bad_Name"}]}, "spec.ports[0].targetPort", "IANA"),
    ({"ports": [{"port": 80, "name": "a"}, {"port": 81}]}, "spec.ports[1].name", "each needs"),
    ({"ports": [{"port": 80, "nodePort": 30080}]}, "spec.ports[0].nodePort", "may not"),
    ({"clusterIP": "10.96.0.300"}, "spec.clusterIPs[0]", "invalid IP"),
    ({"type": "Magic"}, "spec.type", "unsupported value"),
    ({"externalTrafficPolicy": "Nearest"}, "spec.externalTrafficPolicy", "unsupported value"),
]


@pytest.mark.parametrize(("spec", "field", "message"), BAD_SERVICES)
def test_invalid_services_name_the_field(spec: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_service_object(service(**spec), "f.yaml")
    assert err.value.field == field and message in err.value.message
    assert err.value.kind == "Service" and err.value.name == "s"


def test_endpoint_slice_parses_ready_ports_and_rejects_wrong_family() -> None:
    es = parse_service_object(
        endpoint_slice("s-1", "s", ["10.0.0.1", "10.0.0.2"], [{"port": 8080}], unready=["10.0.0.2"])
    )
    assert isinstance(es, EndpointSlice) and es.service_key == "x/s"
    assert [e.ready for e in es.endpoints] == [True, False]
    with pytest.raises(ValidationError) as err:
        parse_service_object(endpoint_slice("s-1", "s", ["fd00::1"], [{"port": 1}]))
    assert err.value.field == "endpoints[0].addresses[0]"


def test_loader_keeps_services_apart_and_reports_invalid_ones() -> None:
    text = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: ok, namespace: x}\n"
        "spec: {ports: [{port: 80}]}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: x}\nspec: {}\n"
    )
    result = load_text(text, "svc.yaml")
    assert [s.key for s in result.services] == ["x/ok"] and result.objects == []
    assert [e.name for e in result.errors] == ["bad"] and not result.notes


# --- index and backends ---------------------------------------------------------------------


def test_frontends_index_cluster_ip_and_node_port_to_slice_backends() -> None:
    state = state_of(
        web("b", "10.0.0.2"),
        service(
            type="NodePort",
            clusterIP="10.96.0.1",
            ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}],
        ),
        endpoint_slice(
            "s-1",
            "s",
            ["10.0.0.2", "10.0.0.3", "203.0.113.7"],
            [{"name": "http", "port": 8080}],
            unready=["10.0.0.3"],
        ),
    )
    ref = state.services.lookup(ip_address("10.96.0.1"), 80, "TCP")
    assert ref is not None and ref[0] == "x/s"
    assert state.services.lookup(None, 30080, "TCP") == ref
    assert state.services.lookup(ip_address("10.96.0.1"), 80, "UDP") is None
    backends = state.services.backends(state, *ref)
    # Unready endpoints are not chosen; an address no pod owns is a backend outside the cluster.
    assert backends == [
        Backend(None, ip_address("203.0.113.7"), 8080),
        Backend("x/b", ip_address("10.0.0.2"), 8080),
    ]
    state.remove("EndpointSlice", "x", "s-1")
    assert state.services.backends(state, *ref) == []
    state.remove("Service", "x", "s")
    assert state.services.lookup(ip_address("10.96.0.1"), 80, "TCP") is None


def test_selector_backends_resolve_named_target_port_by_name_and_protocol() -> None:
    state = state_of(
        web("b", "10.0.0.2", port=8080),
        web("c", "10.0.0.3", port=9090),
        pod("x", "other", {"app": "db"}, ["10.0.0.4"]),
        pod("y", "elsewhere", {"app": "web"}, ["10.0.1.4"]),
        service(
            clusterIP="10.96.0.2",
            selector={"app": "web"},
            ports=[
                {"name": "tcp", "port": 80, "targetPort": "http"},
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "http"},
            ],
        ),
    )
    tcp = state.services.lookup(ip_address("10.96.0.2"), 80, "TCP")
    udp = state.services.lookup(ip_address("10.96.0.2"), 53, "UDP")
    assert tcp is not None and udp is not None
    assert [(b.pod, b.port) for b in state.services.backends(state, *tcp)] == [
        ("x/b", 8080),
        ("x/c", 9090),
    ]
    assert [(b.pod, b.port) for b in state.services.backends(state, *udp)] == [
        ("x/b", 53),
        ("x/c", 53),
    ]


# --- verdicts through a Service -------------------------------------------------------------


def _egress_to_b_only() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "to-b", "namespace": "x"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "client"}},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"podSelector": {"matchLabels": {"backend": "b"}}}],
                    "ports": [{"port": 8080}],
                }
            ],
        },
    }


def test_a_service_is_judged_per_backend_on_its_target_port() -> None:
    state = state_of(
        ns("x"),
        pod("x", "client", {"app": "client"}, ["10.0.0.9"]),
        web("b", "10.0.0.2", backend="b"),
        web("c", "10.0.0.3", backend="c"),
        service(
            clusterIP="10.96.0.3", selector={"app": "web"}, ports=[{"port": 80, "targetPort": 8080}]
        ),
        _egress_to_b_only(),
    )
    verdicts = evaluate_service(state, "x/client", "x/s", 80, "TCP")
    assert {v.backend.pod: v.verdict.allowed for v in verdicts} == {"x/b": True, "x/c": False}
    # The frontend address gives the same answer; the ClusterIP itself is never a peer.
    by_ip = evaluate_frontend(state, "x/client", ip_address("10.96.0.3"), 80, "TCP")
    assert by_ip is not None and [v.verdict.allowed for v in by_ip] == [True, False]
    assert evaluate_frontend(state, "x/client", ip_address("10.96.0.3"), 8080, "TCP") is None


def test_external_endpoint_needs_an_ip_block_on_the_target_port() -> None:
    allow_block = _egress_to_b_only()
    allow_block["spec"]["egress"].append(
        {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 443}]}
    )
    objects = [
        ns("x"),
        pod("x", "client", {"app": "client"}, ["10.0.0.9"]),
        service("ext", ports=[{"port": 80, "targetPort": 443}], clusterIP="10.96.0.4"),
        endpoint_slice("ext-1", "ext", ["203.0.113.7"], [{"port": 443}]),
    ]
    denied = evaluate_service(
        state_of(*objects, _egress_to_b_only()), "x/client", "x/ext", 80, "TCP"
    )
    allowed = evaluate_service(state_of(*objects, allow_block), "x/client", "x/ext", 80, "TCP")
    assert [v.verdict.allowed for v in denied] == [False]
    assert [v.verdict.allowed for v in allowed] == [True]
    assert allowed[0].backend == Backend(None, ip_address("203.0.113.7"), 443)
