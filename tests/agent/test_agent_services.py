"""What the agent writes into the Service maps: frontends (never NodePorts or headless
Services), local endpoints by address, and the frontends a local endpoint backs itself."""

from __future__ import annotations

import random
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from enforcer.agent.services import desired_maps, may_change_maps
from enforcer.model.loader import parse_object
from enforcer.model.objects import Pod
from tests.lab import upstream
from tests.model.netpol_builders import state_of


@dataclass
class Record:
    pod: str
    ifindex: int | None
    endpoint_id: int
    generation: int = 1


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
    state = state_of(
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
    state = state_of(
        _service("api", clusterIP="10.96.0.1", ports=[{"port": 443, "targetPort": 6443}]),
        host_backed,
    )
    assert desired_maps(state, []).frontends == {(ip_address("10.96.0.1"), 443, "TCP")}
    assert desired_maps(state, []).masqueraded == {(ip_address("10.96.0.1"), 443, "TCP")}
    on_this_node = desired_maps(state, [], {ip_address("192.0.2.10")})
    assert on_this_node.frontends == set()


def _slice(name: str, service: str, addresses: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": "x",
            "name": name,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [a]} for a in addresses],
        "ports": [{"port": 6443}],
    }


def test_may_change_maps_is_never_false_when_the_maps_change() -> None:
    """Random pod, namespace and policy changes against selector and slice Services: every
    change judged irrelevant leaves desired_maps as it was (the agent then skips it)."""
    rng = random.Random(4)
    state = state_of(
        _service("web", clusterIP="10.96.0.1", selector={"app": "web"}, ports=[{"port": 80}]),
        _service("api", clusterIP="10.96.0.2", ports=[{"port": 443, "targetPort": 6443}]),
        # A remote pod's address, an external one, a local pod's address.
        _slice("api-1", "api", ["10.0.1.5", "192.0.2.10", "10.0.0.2"]),
    )
    local = {"x/l0": 11, "x/l1": 12, "x/l2": 13}
    records = [Record(key, ifindex, ifindex - 10) for key, ifindex in local.items()]
    node_addresses = {ip_address("10.0.1.7")}
    names = [*(k.split("/")[1] for k in local), *(f"r{i}" for i in range(8))]
    skipped = relevant = 0
    for _ in range(600):
        name = rng.choice(names)
        ips = [f"10.0.0.{i}" for i in (1, 2, 3)] if name[0] == "l" else []
        ips += [f"10.0.1.{i}" for i in range(1, 10)]
        raw: dict[str, Any] | None = None
        what = rng.random()
        if what < 0.7:
            raw = _pod(name, rng.choice(ips), rng.choice(["web", "db", "other"]))
            if rng.random() < 0.2:
                raw["status"]["phase"] = "Succeeded"
        elif what < 0.8:
            raw = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
            raw["metadata"]["labels"] = {"team": rng.choice(["a", "b"])}
        elif what < 0.9:
            raw = {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"namespace": "x", "name": "p"},
                "spec": {"podSelector": {"matchLabels": {"app": rng.choice(["web", "db"])}}},
            }
        key = f"x/{name}"
        new = parse_object(raw) if raw is not None else None
        if new is not None and not isinstance(new, Pod):
            old: Any = None  # namespaces and policies: their old version never matters
        else:
            old = state.pods.get(key)
        before = desired_maps(state, records, node_addresses)
        if new is not None:
            state.upsert(new)
        elif old is not None:
            state.remove("Pod", "x", name)
        after = desired_maps(state, records, node_addresses)
        if may_change_maps(state, old, new, local.keys(), node_addresses):
            relevant += 1
        else:
            skipped += 1
            assert before == after, (old, new)
    # Both answers happen, and the skipped ones are not only the trivial kinds.
    assert skipped > 150 and relevant > 150


def test_external_ips_kube_proxy_masquerades_are_noted() -> None:
    """externalTrafficPolicy Cluster: kube-proxy masquerades a pod's flow to an external or
    load-balancer IP after the DNAT; the ClusterIP, and Local policy, it does not."""

    def web(policy: str) -> Any:
        return state_of(
            _pod("a", "10.0.0.1", "web"),
            _service("web", type="LoadBalancer", clusterIP="10.96.0.1",
                     externalIPs=["192.0.2.1"], externalTrafficPolicy=policy,
                     selector={"app": "web"}, ports=[{"port": 80, "targetPort": 8080}]),
        )

    assert desired_maps(web("Cluster"), []).masqueraded == {(ip_address("192.0.2.1"), 80, "TCP")}
    assert desired_maps(web("Local"), []).masqueraded == set()
