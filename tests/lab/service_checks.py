"""Assertions on a running lab's Services that the Service tests share, so that they run in
both kube-proxy modes: the Services tests make each in a lab of its own (iptables mode), and
test_lab_services_nftables makes several one after another in one lab (nftables mode). In a
lab marked `shared`, each check removes what it applied, so the next starts from none; a lab
of one check is removed whole instead (no time spent undoing it)."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from enforcer.commands.lab import check_documents, probe_ports
from enforcer.lab import lab
from enforcer.lab import services as svcs
from enforcer.lab.probe import ProbeEndpoint, answered_by, probe_pair
from enforcer.netnsutil import run_in_netns
from tests.lab import upstream
from tests.lab.outside import outside_host
from tests.lab.service_manifests import cluster_ip, external_service

Write = Callable[[list[dict[str, Any]]], Path]


_SHARED: set[str] = set()  # names of labs that several checks share


def shared(state: lab.LabState) -> lab.LabState:
    """Mark the lab as shared by several checks: each removes what it applied."""
    _SHARED.add(state.name)
    return state


@contextmanager
def policies(state: lab.LabState, write: Write) -> Iterator[Callable[..., None]]:
    """apply(*policies) puts policies in force (replacing those of the same names); in a
    shared lab, all of them are deleted on exit."""
    applied: list[Path] = []

    def apply(*objs: dict[str, Any]) -> None:
        path = write(list(objs))
        lab.apply(state, [path])
        applied.append(path)

    try:
        yield apply
    finally:
        if applied and state.name in _SHARED:
            lab.delete(state, applied)


def cluster_ip_spreads_over_backends(state: lab.LabState, service: str = "x/web") -> None:
    """x/client -> `service`:8080, which goes to port 80 of x/b and x/c."""
    vip = cluster_ip(state, service)
    netns = state.pods["x/client"]["netns"]
    seen = Counter(answered_by(netns, vip, 8080, timeout=2.0) for _ in range(40))
    # 1/2 each: missing one of them in 40 tries happens with probability 2^-39.
    assert set(seen) == {"x/b", "x/c"}
    # The Service port is translated to the target port: nothing listens on 8080.
    assert answered_by(netns, ip_address(state.pods["x/b"]["ips"][0]), 8080) is None


def _ingress_from(cidr: str) -> dict[str, Any]:
    return upstream.policy(
        "from-block",
        "x",
        {
            "podSelector": upstream.sel(app="web"),
            "ingress": [{"from": [{"ipBlock": {"cidr": cidr}}]}],
        },
    )


def node_port_from_outside(
    state: lab.LabState, write: Write, node_port: int, local_node_port: int
) -> None:
    """NodePort `node_port` (Cluster policy) and `local_node_port` (Local) lead to x/c on
    node2: SNATed, judged as the node's address (never as node traffic); Local keeps the
    client's."""
    node1, node2 = state.node_nets()[:2]
    with outside_host(state, 9999) as out, policies(state, write) as apply:

        def connect(node_ip: Any, port: int) -> str | None:
            return answered_by(out.netns, node_ip, port)

        assert connect(node1.fabric_v4, node_port) == "x/c"  # no policy yet
        # Only the outside client is allowed: the SNATed connection (from node1's address,
        # forwarded, so no socket of the node's own) is denied; the Local one keeps its source.
        apply(_ingress_from(f"{out.ip}/32"))
        assert connect(node1.fabric_v4, node_port) is None
        assert connect(node2.fabric_v4, local_node_port) == "x/c"
        # Allowing node1's address admits what node1 masquerades.
        apply(_ingress_from(f"{node1.fabric_v4}/32"))
        assert connect(node1.fabric_v4, node_port) == "x/c"
        assert connect(node2.fabric_v4, local_node_port) is None


def client_egress_to(backend: str) -> dict[str, Any]:
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


def egress_to_one_backend(state: lab.LabState, write: Write, service: str = "x/web",
                          address: Any = None) -> None:
    """x/client's egress allows one of `service`'s backends: it reaches that one, never the
    other, whichever kube-proxy picks, through its ClusterIP or `address` (an external IP,
    which kube-proxy also masquerades)."""
    vip = address if address is not None else cluster_ip(state, service)
    netns = state.pods["x/client"]["netns"]
    # x/b is on the client's node (judged at its veth), x/c on the other (judged at the
    # uplink): each direction of the choice is checked on its own path.
    with policies(state, write) as apply:
        for allowed, other in (("b", "c"), ("c", "b")):
            apply(client_egress_to(allowed))
            with ThreadPoolExecutor(max_workers=40) as pool:
                seen = Counter(pool.map(lambda _: answered_by(netns, vip, 8080, 0.5), range(40)))
            assert seen[f"x/{other}"] == 0, seen
            # Random selection sends half of them to each: fewer than 8 of 40 either way
            # happens with probability 1e-5.
            assert seen[f"x/{allowed}"] >= 8 and seen[None] >= 8, seen


def hairpin(state: lab.LabState, write: Write, pod: str, allowed: str, denied: str) -> None:
    """x/`pod` isolates its ingress to x/`allowed`, yet reaches itself through its per-pod
    Service (kube-proxy masquerades the hairpin: it arrives from a node address); x/`denied`
    does not get in that way."""
    with policies(state, write) as apply:
        apply(
            upstream.policy(
                "p",
                "x",
                {
                    "podSelector": upstream.sel(pod=pod),
                    "ingress": [{"from": [{"podSelector": upstream.sel(pod=allowed)}]}],
                },
            )
        )
        vip = cluster_ip(state, f"x/{svcs.per_pod_name(pod)}")
        netns = {p: state.pods[f"x/{p}"]["netns"] for p in (pod, allowed, denied)}
        assert answered_by(netns[pod], vip, 80) == f"x/{pod}"
        assert answered_by(netns[allowed], vip, 80) == f"x/{pod}"
        assert answered_by(netns[denied], vip, 80, timeout=0.5) is None
        src = ProbeEndpoint(f"x/{pod}", netns[pod], ip_address(state.pods[f"x/{pod}"]["ips"][0]))
        dst = ProbeEndpoint(f"x/{pod}", netns[pod], vip, via=f"x/{svcs.per_pod_name(pod)}")
        for proto in ("UDP", "SCTP"):
            assert probe_pair(src, dst, 80, proto), proto


def external_endpoint_judged_on_the_endpoint(state: lab.LabState, write: Write) -> None:
    """x/ext: a Service whose endpoint is a host outside the cluster; x/client's egress must
    allow that endpoint on its port, not the ClusterIP or the Service's port."""
    netns = state.pods["x/client"]["netns"]
    with outside_host(state, 9999) as out, policies(state, write) as apply:
        ext = write(external_service(out.ip, 9999))
        lab.apply(state, [ext])
        vip = cluster_ip(state, "x/ext")

        def egress(cidr: str, port: int) -> None:
            apply(
                upstream.policy(
                    "client-egress",
                    "x",
                    {
                        "podSelector": upstream.sel(app="client"),
                        "policyTypes": ["Egress"],
                        "egress": [
                            {"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"port": port}]}
                        ],
                    },
                )
            )

        try:
            egress(f"{out.ip}/32", 9999)  # the endpoint, on its port: allowed
            assert answered_by(netns, vip, 443) == "outside"
            egress(f"{out.ip}/32", 443)  # the Service's port is not the endpoint's
            assert answered_by(netns, vip, 443, timeout=0.5) is None
            egress(str(svcs.SERVICE_V4), 443)  # the ClusterIP range allows nothing behind it
            assert answered_by(netns, vip, 443, timeout=0.5) is None
        finally:
            if state.name in _SHARED:
                lab.delete(state, [ext])


def revoking_egress_cuts_a_flow(state: lab.LabState, write: Write, service: str) -> None:
    """An established UDP flow from x/client through `service` (port 53) stops at its next
    packet once x/client's egress is denied."""
    vip = cluster_ip(state, service)

    def open_flow() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.5)
        s.connect((str(vip), 53))
        return s

    sock = run_in_netns(state.pods["x/client"]["netns"], open_flow)
    try:
        with policies(state, write) as apply:
            assert _exchange(sock, b"one")
            apply(
                upstream.policy(
                    "deny",
                    "x",
                    {"podSelector": upstream.sel(app="client"), "policyTypes": ["Egress"]},
                )
            )
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


def ipv6_follows_model(state: lab.LabState, write: Write, *policy: dict[str, Any]) -> None:
    """With `policy` in force, every pod probed through its per-pod Service's IPv6 ClusterIP
    gets the model's verdict."""
    with policies(state, write) as apply:
        apply(*policy)
        docs = probe_ports(state, [(80, "TCP"), (81, "TCP"), (80, "UDP")], 6, 0.5, via="service")
        for doc in docs:
            for row in doc["matrix"].values():
                assert len(row) == len(state.pods)  # every pod through its IPv6 ClusterIP
        assert check_documents(state, docs, 6) == []


def pod_to_node_port_judged_on_the_node_address(
    state: lab.LabState, write: Write, node_port: int
) -> None:
    """x/client -> NodePort `node_port` (to x/c): kube-proxy masquerades it, so no hook after
    the DNAT could tell the pod; it is judged at its own hook, on the node address and port
    it connects to."""
    node1, node2 = state.node_nets()[:2]
    netns = state.pods["x/client"]["netns"]
    with policies(state, write) as apply:
        apply(client_egress_to("c"))
        for node in (node1, node2):
            assert answered_by(netns, node.fabric_v4, node_port, timeout=0.5) is None
        apply(
            upstream.policy(
                "client-egress",
                "x",
                {
                    "podSelector": upstream.sel(app="client"),
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [{"ipBlock": {"cidr": f"{node2.fabric_v4}/32"}}],
                            "ports": [{"port": node_port}],
                        }
                    ],
                },
            )
        )
        assert answered_by(netns, node2.fabric_v4, node_port) == "x/c"
        assert answered_by(netns, node1.fabric_v4, node_port, timeout=0.5) is None
