"""Egress policy through kube-proxy's Services, with real packets: judged against the backend
kube-proxy actually chose (on its target port), never against the ClusterIP; hairpins,
DNS through the DNS Service, and Services with endpoints outside the cluster."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from enforcer.analysis.matrix import reachability
from enforcer.commands.lab import check_documents, probe_ports
from enforcer.lab import dns, lab
from enforcer.lab import services as svcs
from enforcer.lab.probe import _capture_socket, answered_by
from enforcer.netnsutil import run_in_netns
from tests.lab import service_checks, upstream
from tests.lab.service_manifests import (
    cluster_ip,
    node_port_to_c,
    udp_service_to,
    web_cluster,
    web_pods,
)

pytestmark = pytest.mark.kernel

# Cases where egress decides (and a few ingress ones, whose diagonal is the hairpin).
CASES = {
    "default-deny-ingress",
    "default-deny-all",
    "egress-to-namespace-with-port",
    "egress-deny-namespace",
    "named-port-egress",
    "egress-ipblock-pod-ip",
    "ingress-and-egress",
    "pod-and-namespace-selector",
}
BRIDGED_CASES = {"default-deny-all", "egress-to-namespace-with-port", "named-port-egress"}


@pytest.mark.parametrize("topology", ["routed", "bridged"])
def test_upstream_cases_through_services_equal_pod_probes(
    lab_factory, write_manifests, topology: str
) -> None:
    state = lab_factory(
        [write_manifests(upstream.cluster())], topology=topology, nodes=2, services="per-pod"
    )
    ips = {k: p["ips"][0] for k, p in state.pods.items()}
    problems: list[str] = []
    for name, policies in sorted(upstream.cases(ips).items()):
        if name not in (CASES if topology == "routed" else BRIDGED_CASES):
            continue
        path = write_manifests(policies)
        lab.apply(state, [path])
        through = probe_ports(state, upstream.PROBED, 4, 0.5, via="service")
        problems += [f"{name}: {p}" for p in check_documents(state, through, 4)]
        for doc in through:
            port, proto = doc["port"], doc["protocol"]
            # What probing the pods directly gives: the model's pod matrix, which
            # test_lab_upstream holds the kernel to (probing the pods here too cost CI 20 s).
            direct = reachability(lab.model_state(state), port, proto, 4,
                                  pods=list(doc["matrix"]))
            if doc["matrix"] != direct:
                problems.append(f"{name}: {port}/{proto} through Services != pod probes")
        denied = sum(not ok for d in through for row in d["matrix"].values() for ok in row.values())
        assert denied > 0, f"{name}: nothing denied"
        lab.delete(state, [path])
    assert problems == []
    # The command line agrees (exit 0: kernel and model agree through every Service). In a
    # subprocess: the CLI configures logging for the process it runs in.
    lab.apply(state, [write_manifests(upstream.cases(ips)["egress-to-namespace-with-port"])])
    argv = ["lab", "probe", "--name", state.name, "--via", "service", "--check", "--port", "81"]
    done = subprocess.run(
        [sys.executable, "-m", "enforcer.cli", *argv], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "agree" in done.stderr


@pytest.mark.parametrize("topology", ["routed", "bridged"])
def test_egress_to_one_backend_reaches_it_and_never_the_other(
    lab_factory, write_manifests, topology: str
) -> None:
    state = lab_factory([write_manifests(web_cluster())], topology=topology, nodes=2)
    service_checks.egress_to_one_backend(state, write_manifests)


def _deny_egress_but_dns(with_dns: bool) -> dict[str, Any]:
    rules = []
    if with_dns:
        rules.append(
            {
                "to": [
                    {
                        "namespaceSelector": upstream.sel(
                            **{"kubernetes.io/metadata.name": svcs.DNS_NAMESPACE}
                        ),
                        "podSelector": upstream.sel(**{"k8s-app": "kube-dns"}),
                    }
                ],
                "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
            }
        )
    return upstream.policy(
        "egress", "x", {"podSelector": {}, "policyTypes": ["Egress"], "egress": rules}
    )


def test_dns_through_the_dns_service_needs_an_egress_rule(lab_factory, write_manifests) -> None:
    state = lab_factory(
        [write_manifests(upstream.cluster())], nodes=2, services="per-pod", dns=True
    )
    netns = state.pods["x/a"]["netns"]
    name = "s-b.y.svc.cluster.local"
    want = [cluster_ip(state, "y/s-b")]
    assert dns.resolve(netns, svcs.DNS_V4, name) == want
    lab.apply(state, [write_manifests([_deny_egress_but_dns(False)])])
    assert dns.resolve(netns, svcs.DNS_V4, name, timeout=0.5) is None
    lab.apply(state, [write_manifests([_deny_egress_but_dns(True)])])
    assert dns.resolve(netns, svcs.DNS_V4, name) == want
    # The rule allows DNS, not the Services DNS names: y/s-b itself stays denied.
    assert answered_by(netns, want[0], 80, timeout=0.5) is None


@pytest.mark.parametrize("topology", ["routed", "bridged"])
def test_hairpin_a_pod_reaches_itself_through_its_service(
    lab_factory, write_manifests, topology: str
) -> None:
    state = lab_factory(
        [write_manifests(upstream.cluster())], topology=topology, nodes=2, services="per-pod"
    )
    service_checks.hairpin(state, write_manifests, "a", allowed="b", denied="c")
    # A node address is no pass of its own: x/a's ingress still isolates it from the node's
    # masqueraded traffic of other pods (x/c above) and from outside (test_lab_services).


@pytest.mark.parametrize("masquerade", [False, True], ids=["plain", "cni-masquerade"])
def test_service_with_an_external_endpoint_is_judged_on_the_endpoint(
    lab_factory, write_manifests, masquerade: bool
) -> None:
    # With flannel-style masquerade the packet leaves the node with the node's address: the
    # uplink hook still finds its pod (by a fingerprint NAT does not change).
    state = lab_factory([write_manifests(web_cluster())], nodes=2, cni_masquerade=masquerade)
    service_checks.external_endpoint_judged_on_the_endpoint(state, write_manifests)


@pytest.mark.parametrize("backend", ["b", "c"])  # on the client's node, and on the other
def test_revoking_egress_cuts_a_flow_through_a_service_at_its_next_packet(
    lab_factory, write_manifests, backend: str
) -> None:
    objects = [
        *web_pods(),
        udp_service_to(backend),
    ]
    state = lab_factory([write_manifests(objects)], nodes=2)
    service_checks.revoking_egress_cuts_a_flow(state, write_manifests, "x/one")


def _spoofed_udp_arrives(state: lab.LabState, sender: str, spoofed: str, vip: Any) -> bool:
    """Send UDP to vip:53 from `sender`'s namespace with `spoofed`'s source address; see
    whether it reaches x/c (port 80 after DNAT)."""
    from scapy.layers.inet import IP, UDP

    src_ip = state.pods[spoofed]["ips"][0]
    cap = run_in_netns(state.pods["x/c"]["netns"], lambda: _capture_socket("eth0"))
    try:
        frame = bytes(IP(src=src_ip, dst=str(vip)) / UDP(sport=40999, dport=53) / b"spoof")

        def send() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
                s.sendto(frame, (str(vip), 0))

        # Sent up to three times (0.5 s apart): a loaded machine can hold a first packet.
        deadline = time.monotonic() + 2.0
        next_send = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_send:
                run_in_netns(state.pods[sender]["netns"], send)
                next_send = time.monotonic() + 0.5
            try:
                data = cap.recv(65535)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            if (
                data[12:14] == b"\x08\x00"
                and data[23] == 17
                and data[26:30] == socket.inet_aton(src_ip)
            ):
                if data[36:38] == (80).to_bytes(2, "big"):
                    return True
        return False
    finally:
        cap.close()


def test_a_spoofed_source_address_does_not_borrow_another_pods_egress(
    lab_factory, write_manifests
) -> None:
    objects = [
        *web_pods(),
        udp_service_to("c"),
    ]
    state = lab_factory([write_manifests(objects)], nodes=2)
    vip = cluster_ip(state, "x/one")
    # Control: from its own address a pod's packet gets through (the capture can see it).
    assert _spoofed_udp_arrives(state, "x/client", "x/client", vip)
    # Wearing another pod's address it does not, policy or not: a pod speaks only from its
    # own addresses (bpf/lib/source.h).
    assert not _spoofed_udp_arrives(state, "x/client", "x/b", vip)
    deny = upstream.policy(
        "deny", "x", {"podSelector": upstream.sel(app="client"), "policyTypes": ["Egress"]}
    )
    lab.apply(state, [write_manifests([deny])])
    # x/client may send nothing; x/b (unrestricted) may. Wearing x/b's address, x/client's
    # packet still does not get to be judged by x/b's egress after the DNAT.
    assert not _spoofed_udp_arrives(state, "x/client", "x/b", vip)
    assert _spoofed_udp_arrives(state, "x/b", "x/b", vip)


def test_ipv6_services_follow_the_model(lab_factory, write_manifests) -> None:
    state = lab_factory(
        [write_manifests(upstream.cluster())], nodes=2, services="per-pod", ipv6=True
    )
    ips = {k: p["ips"][0] for k, p in state.pods.items()}
    policy = upstream.cases(ips)["egress-to-namespace-with-port"]
    service_checks.ipv6_follows_model(state, write_manifests, *policy)


def test_a_pod_connecting_to_a_node_port_is_judged_on_the_node_address(
    lab_factory, write_manifests
) -> None:
    objects = [
        *web_pods(),
        node_port_to_c("web", 8080, 30080),
    ]
    state = lab_factory([write_manifests(objects)], nodes=2)
    service_checks.pod_to_node_port_judged_on_the_node_address(state, write_manifests, 30080)
