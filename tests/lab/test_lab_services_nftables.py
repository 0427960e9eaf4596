"""The Services tests with kube-proxy in nftables mode (`lab up --proxy-mode nftables`): the
checks the iptables-mode tests make, each in a lab of its own (test_lab_services,
test_lab_service_policy), made one after another in one lab, so that the second mode costs
one lab's set-up (CI's budget): ClusterIP load balancing, egress judged on the backend
kube-proxy chose (on the client's node and on the other), through the ClusterIP and through
an external IP (which kube-proxy masquerades: the source pod is found by its flow's first
packet), a hairpin, NodePorts from outside (Cluster and Local policy), and IPv6 through
per-pod Services against the model. The other
checks (an established flow cut, a pod to a NodePort, an endpoint outside the cluster) pass
in this mode too, but run in iptables mode only: together they would add 16 s."""

from __future__ import annotations

import subprocess
from ipaddress import ip_address

import pytest

from tests.lab import service_checks
from tests.lab.service_manifests import node_port_to_c, service, web_pods

pytestmark = pytest.mark.kernel

EXTERNAL_IP = ip_address("192.0.2.9")


def _tables(netns: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "tables"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_services_through_kube_proxy_in_nftables_mode(lab_factory, write_manifests) -> None:
    objects = [
        *web_pods(),
        service("x", "web", selector={"app": "web"}, ports=[{"port": 8080, "targetPort": 80}],
                externalIPs=[str(EXTERNAL_IP)]),
        node_port_to_c("np", 8080, 30080),
        node_port_to_c("np-local", 8081, 30081, externalTrafficPolicy="Local"),
    ]
    state = lab_factory(
        [write_manifests(objects)], nodes=2, services="per-pod", ipv6=True,
        proxy_mode="nftables",
    )  # fmt: skip
    for node in state.node_nets():
        tables = _tables(node.netns).split("\n")
        # kube-proxy's tables, and no iptables nat table: nothing else translates.
        assert "table ip kube-proxy" in tables and "table ip6 kube-proxy" in tables
        assert "table ip nat" not in tables and "table ip6 nat" not in tables
    write = write_manifests
    service_checks.shared(state)
    service_checks.cluster_ip_spreads_over_backends(state)
    service_checks.egress_to_one_backend(state, write)
    service_checks.egress_to_one_backend(state, write, address=EXTERNAL_IP)
    service_checks.hairpin(state, write, "b", allowed="client", denied="c")
    service_checks.node_port_from_outside(state, write, 30080, 30081)
    service_checks.ipv6_follows_model(state, write, service_checks.client_egress_to("c"))
