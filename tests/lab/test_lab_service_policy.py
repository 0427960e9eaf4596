"""Egress policy through kube-proxy's Services, with real packets: judged against the backend
kube-proxy actually chose (on its target port), never against the ClusterIP; hairpins,
DNS through the DNS Service, and Services with endpoints outside the cluster."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_address
from typing import Any

import pytest

from enforcer.commands.lab import check_documents, probe_documents
from enforcer.lab import dns, lab
from enforcer.lab import services as svcs
from enforcer.lab.probe import ProbeEndpoint, _capture_socket, answered_by, probe_pair
from enforcer.netnsutil import run_in_netns
from tests.lab import upstream
from tests.lab.outside import outside_host
from tests.lab.service_manifests import (
    cluster_ip,
    external_service,
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
        for port, proto in upstream.PROBED:
            direct = probe_documents(state, port, proto, 4, 0.5)
            through = probe_documents(state, port, proto, 4, 0.5, via="service")
            problems += [f"{name}: {p}" for p in check_documents(state, through, 4)]
            if through[0]["matrix"] != direct[0]["matrix"]:
                problems.append(f"{name}: {port}/{proto} through Services != pod probes")
        denied = sum(not ok for row in through[0]["matrix"].values() for ok in row.values())
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


def _client_egress_to(backend: str) -> dict[str, Any]:
    return upstream.policy(
        "client-egress",
        "x",
        {
            "podSelector": upstream.sel(app="client"),
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"podSelector": upstream.sel(backend=backend)}], "ports": [{"port": 80}]}
            ],
        },
    )


@pytest.mark.parametrize("topology", ["routed", "bridged"])
def test_egress_to_one_backend_reaches_it_and_never_the_other(
    lab_factory, write_manifests, topology: str
) -> None:
    state = lab_factory([write_manifests(web_cluster())], topology=topology, nodes=2)
    vip = cluster_ip(state, "x/web")
    netns = state.pods["x/client"]["netns"]
    # x/b is on the client's node (judged at its veth), x/c on the other (judged at the
    # uplink): each direction of the choice is checked on its own path.
    for allowed, other in (("b", "c"), ("c", "b")):
        lab.apply(state, [write_manifests([_client_egress_to(allowed)])])
        with ThreadPoolExecutor(max_workers=40) as pool:
            seen = Counter(pool.map(lambda _: answered_by(netns, vip, 8080, 0.5), range(40)))
        assert seen[f"x/{other}"] == 0, seen
        # Random selection sends half of them to each: fewer than 8 of 40 either way happens
        # with probability 1e-5.
        assert seen[f"x/{allowed}"] >= 8 and seen[None] >= 8, seen


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
    only_from_b = upstream.policy(
        "p",
        "x",
        {
            "podSelector": upstream.sel(pod="a"),
            "ingress": [{"from": [{"podSelector": upstream.sel(pod="b")}]}],
        },
    )
    lab.apply(state, [write_manifests([only_from_b])])
    vip = cluster_ip(state, "x/s-a")
    pods = {k: state.pods[k]["netns"] for k in ("x/a", "x/b", "x/c")}
    # kube-proxy masquerades the hairpin (it arrives from a node address), yet x/a is x/a.
    assert answered_by(pods["x/a"], vip, 80) == "x/a"
    assert answered_by(pods["x/b"], vip, 80) == "x/a"
    assert answered_by(pods["x/c"], vip, 80, timeout=0.5) is None
    src = ProbeEndpoint("x/a", pods["x/a"], ip_address(state.pods["x/a"]["ips"][0]))
    dst = ProbeEndpoint("x/a", pods["x/a"], vip, via="x/s-a")
    for proto in ("UDP", "SCTP"):
        assert probe_pair(src, dst, 80, proto), proto
    # A node address is no pass of its own: x/a's ingress still isolates it from the node's
    # masqueraded traffic of other pods (x/c above) and from outside (test_lab_services).


@pytest.mark.parametrize("masquerade", [False, True], ids=["plain", "cni-masquerade"])
def test_service_with_an_external_endpoint_is_judged_on_the_endpoint(
    lab_factory, write_manifests, masquerade: bool
) -> None:
    # With flannel-style masquerade the packet leaves the node with the node's address: the
    # uplink hook still finds its pod (by a fingerprint NAT does not change).
    state = lab_factory([write_manifests(web_cluster())], nodes=2, cni_masquerade=masquerade)
    netns = state.pods["x/client"]["netns"]
    with outside_host(state, 9999) as out:
        lab.apply(state, [write_manifests(external_service(out.ip, 9999))])
        vip = cluster_ip(state, "x/ext")

        def egress(cidr: str, port: int) -> None:
            policy = upstream.policy(
                "client-egress",
                "x",
                {
                    "podSelector": upstream.sel(app="client"),
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"port": port}]}],
                },
            )
            lab.apply(state, [write_manifests([policy])])

        egress(f"{out.ip}/32", 9999)  # the endpoint, on its port: allowed
        assert answered_by(netns, vip, 443) == "outside"
        egress(f"{out.ip}/32", 443)  # the Service's port is not the endpoint's
        assert answered_by(netns, vip, 443, timeout=0.5) is None
        egress(str(svcs.SERVICE_V4), 443)  # the ClusterIP range allows nothing behind it
        assert answered_by(netns, vip, 443, timeout=0.5) is None


@pytest.mark.parametrize("backend", ["b", "c"])  # on the client's node, and on the other
def test_revoking_egress_cuts_a_flow_through_a_service_at_its_next_packet(
    lab_factory, write_manifests, backend: str
) -> None:
    objects = [
        *web_pods(),
        udp_service_to(backend),
    ]
    state = lab_factory([write_manifests(objects)], nodes=2)
    vip = cluster_ip(state, "x/one")

    def open_flow() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.5)
        s.connect((str(vip), 53))
        return s

    sock = run_in_netns(state.pods["x/client"]["netns"], open_flow)
    try:
        assert _exchange(sock, b"one")
        deny = upstream.policy(
            "deny", "x", {"podSelector": upstream.sel(app="client"), "policyTypes": ["Egress"]}
        )
        lab.apply(state, [write_manifests([deny])])
        sock.send(b"two")  # same socket, same conntrack entries: an established flow
        assert not _answered(sock, b"two", 1.0)
    finally:
        sock.close()


def _exchange(sock: socket.socket, message: bytes, attempts: int = 4) -> bool:
    """A UDP request answered (the echo server returns it), resent while unanswered: a
    loaded machine can hold a flow's first packet longer than one timeout."""
    for _ in range(attempts):
        sock.send(message)
        if _answered(sock, message, 0.5):
            return True
    return False


def _answered(sock: socket.socket, message: bytes, timeout: float) -> bool:
    """Whether the echo of `message` arrives within `timeout`. Echoes of earlier messages are
    skipped: a resent request's late answer must not count as this one's."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(16) == message:
                return True
        except TimeoutError:
            return False
    return False


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
    lab.apply(state, [write_manifests(upstream.cases(ips)["egress-to-namespace-with-port"])])
    for port, proto in ((80, "TCP"), (81, "TCP"), (80, "UDP")):
        docs = probe_documents(state, port, proto, 6, 0.5, via="service")
        assert len(docs[0]["matrix"]["x/a"]) == 9  # every pod through its IPv6 ClusterIP
        assert check_documents(state, docs, 6) == []


def test_a_pod_connecting_to_a_node_port_is_judged_on_the_node_address(
    lab_factory, write_manifests
) -> None:
    objects = [
        *web_pods(),
        node_port_to_c("web", 8080, 30080),
    ]
    state = lab_factory([write_manifests(objects)], nodes=2)
    node1, node2 = state.node_nets()
    netns = state.pods["x/client"]["netns"]
    # kube-proxy masquerades NodePort traffic, so no hook after the DNAT could tell the pod:
    # it is judged at its own hook, on the node address and port it connects to.
    lab.apply(state, [write_manifests([_client_egress_to("c")])])
    for node in (node1, node2):
        assert answered_by(netns, node.fabric_v4, 30080, timeout=0.5) is None
    by_address = upstream.policy(
        "client-egress",
        "x",
        {
            "podSelector": upstream.sel(app="client"),
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"ipBlock": {"cidr": f"{node2.fabric_v4}/32"}}], "ports": [{"port": 30080}]}
            ],
        },
    )
    lab.apply(state, [write_manifests([by_address])])
    assert answered_by(netns, node2.fabric_v4, 30080) == "x/c"
    assert answered_by(netns, node1.fabric_v4, 30080, timeout=0.5) is None
