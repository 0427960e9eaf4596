"""The agent learns Services and EndpointSlices from the API server and judges egress through
them after kube-proxy's DNAT (rules as kube-proxy writes them, in the node namespace), in
iptables mode and then, on the same node, in nftables mode."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from enforcer.lab import kubeproxy, proxymode
from enforcer.lab import topology as topo
from enforcer.lab.probe import ProbeEndpoint, probe_pair
from tests.agent.harness import NODE, NodeHarness, eventually, policy
from tests.model.netpol_builders import state_of

pytestmark = pytest.mark.kernel

CLUSTER_IP = "198.19.128.7"


def service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "x", "name": "web"},
        "spec": {
            "clusterIP": CLUSTER_IP,
            "ports": [{"name": "http", "port": 8080, "targetPort": 80}],
        },
    }


def endpoint_slice(h: NodeHarness, backend: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": "x",
            "name": "web-1",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [h.ip(backend)]}],
        "ports": [{"name": "http", "port": 80}],
    }


def kube_proxy(h: NodeHarness, objects: list[dict[str, Any]], mode: str = "iptables") -> None:
    """What kube-proxy in `mode` would write for these objects, in the node namespace."""
    state = state_of(*h.api.objects("Pod"), *objects)
    proxymode.sync(mode, h.node.netns, state, 4, topo.POD_V4, NODE, {})


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeHarness]:
    h = NodeHarness(tmp_path)
    try:
        yield h.start()
    finally:
        h.stop()


def test_egress_through_a_service_from_the_api(node: NodeHarness) -> None:
    to_b = policy(
        "x",
        "a-to-b",
        {
            "podSelector": {"matchLabels": {"app": "a"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "b"}}}]}],
        },
    )
    node.api.create(to_b)
    src = node.endpoint("x/a")

    def through_service(backend: str) -> bool:
        p = node.pods[backend]
        dst = ProbeEndpoint(backend, p.netns, ip_address(CLUSTER_IP), via="x/web")
        return probe_pair(src, dst, 8080, "TCP", timeout=0.3)

    objects = [service(), endpoint_slice(node, "x/b")]
    kube_proxy(node, objects)
    # kube-proxy translates, but the agent does not know the Service yet: the ClusterIP is
    # just an address x/a's egress does not allow (once the policy is in force: x/a -> y/c
    # denied; x/a -> x/b allowed either way).
    node.expect("x/a", "y/c", False)
    node.expect("x/a", "x/b", True)
    assert not through_service("x/b")
    for obj in objects:
        node.api.create(obj)
    eventually(lambda: through_service("x/b"), 5.0, "x/a -> web (x/b) allowed")
    # The Service now leads to y/c, which x/a may not reach.
    moved = [service(), endpoint_slice(node, "y/c")]
    node.api.apply(moved[1])
    kube_proxy(node, moved)
    eventually(lambda: not through_service("y/c"), 5.0, "x/a -> web (y/c) denied")

    # kube-proxy in nftables mode instead: its table translates, the iptables nat table is
    # emptied (as kube-proxy's cleanup of the other mode does), and the agent judges alike.
    kubeproxy.restore(node.node.netns, 4, "*nat\nCOMMIT\n")
    for backend, allowed in (("x/b", True), ("y/c", False)):
        objects = [service(), endpoint_slice(node, backend)]
        node.api.apply(objects[1])
        kube_proxy(node, objects, "nftables")
        verdict = "allowed" if allowed else "denied"
        eventually(lambda b=backend, ok=allowed: through_service(b) == ok, 5.0,
                   f"nftables: x/a -> web ({backend}) {verdict}")  # fmt: skip
