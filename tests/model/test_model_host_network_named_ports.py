"""A named egress port never matches a hostNetwork pod: its address is its node's, shared by
every hostNetwork pod there, so it names no destination pod (as an address outside the
cluster). Found by probing hostNetwork pods in the lab (tests/lab): the kernel denied what the
model allowed."""

from __future__ import annotations

from typing import Any

from enforcer.model.cluster import ClusterState
from enforcer.model.evaluate import evaluate
from enforcer.model.loader import parse_object


def _pod(name: str, ip: str, host: bool) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": "x", "name": name, "labels": {"app": name}},
            "spec": {"nodeName": "n1", "hostNetwork": host, "containers": [
                {"name": "c", "ports": [{"name": "web", "containerPort": 80}]}]},
            "status": {"phase": "Running", "podIPs": [{"ip": ip}]}}


def _state(*egress: dict[str, Any]) -> ClusterState:
    state = ClusterState()
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"namespace": "x", "name": "web-only"},
              "spec": {"podSelector": {"matchLabels": {"app": "client"}},
                       "policyTypes": ["Egress"], "egress": list(egress)}}
    for raw in (
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
        _pod("client", "10.0.0.1", False), _pod("server", "10.0.0.2", False),
        _pod("host", "192.168.0.1", True), policy,
    ):
        obj = parse_object(raw)
        assert obj is not None
        state.upsert(obj)
    return state


def test_a_named_egress_port_resolves_on_endpoint_pods_only() -> None:
    for to in ([], [{"ipBlock": {"cidr": "0.0.0.0/0"}}]):
        state = _state({"to": to, "ports": [{"port": "web"}]})
        assert evaluate(state, "x/client", "x/server", 80, "TCP").allowed
        assert not evaluate(state, "x/client", "x/host", 80, "TCP").allowed, to
    numbered = _state({"ports": [{"port": 80}]})
    assert evaluate(numbered, "x/client", "x/host", 80, "TCP").allowed
