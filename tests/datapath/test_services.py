"""Egress through a DNAT (what kube-proxy does to a ClusterIP), at the datapath level, for
IPv4 and IPv6 in both topologies: the source hook defers a flow to a Service frontend, and the
backend's veth judges the source's egress against the backend and target port."""

from __future__ import annotations

import secrets
import socket
import subprocess
from collections.abc import Iterator
from ipaddress import ip_address

import pytest
from scapy.all import IP, TCP, IPv6

from enforcer.datapath.services import ServiceMaps
from enforcer.datapath.types import (
    PROTO_TCP,
    Direction,
    DropEvent,
    DropReason,
    EndpointPolicy,
    PolicyEntry,
)
from enforcer.topology import Pod
from tests.datapath.conftest import Env
from tests.datapath.crafted import allow, inject, ip_layer, marker
from tests.datapath.net import (
    TcpServer,
    addr,
    family_af,
    gateway_mac,
    reset_on_close_socket,
    tcp_echo,
)

pytestmark = pytest.mark.kernel

VIPS = {4: ("198.19.128.50", "198.19.128.51"), 6: ("2001:2:0:ff00::50", "2001:2:0:ff00::51")}


def _dnat(env: Env, family: int, vip: str, backend: Pod, port: int) -> None:
    tool = "iptables" if family == 4 else "ip6tables"
    dest = f"{addr(backend, family)}:{port}" if family == 4 else f"[{addr(backend, family)}]:{port}"
    subprocess.run(
        [
            "nsenter",
            f"--net=/run/netns/{backend.node.netns}",
            tool,
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-d",
            vip,
            "-p",
            "tcp",
            "--dport",
            "80",
            "-j",
            "DNAT",
            "--to-destination",
            dest,
        ],
        check=True,
    )


def _connect(src: Pod, family: int, vip: str) -> bool:
    return tcp_echo(src.run(lambda: socket.socket(family_af(family), socket.SOCK_STREAM)), vip,
                    80, 0.5)


def _publish(env: Env, services: ServiceMaps, family: int, vips: tuple[str, ...],
             pods: tuple[Pod, ...]) -> None:
    """Frontends `vips` (port 80, TCP) and `pods` as local endpoints, written to the maps."""
    for vip in vips:
        services.frontends.add((ip_address(vip), 80, "TCP"))
    for pod in pods:
        services.local_endpoints[ip_address(addr(pod, family))] = (env.endpoint_id(pod),
                                                                   pod.host_ifindex)
    env.dp.set_services(services)


@pytest.fixture
def services(env: Env) -> Iterator[ServiceMaps]:
    maps = ServiceMaps()
    try:
        yield maps
    finally:
        env.dp.set_services(ServiceMaps())


@pytest.mark.parametrize("family", [4, 6])
def test_egress_through_dnat_is_judged_on_the_backend(
    env: Env, services: ServiceMaps, family: int
) -> None:
    a, b, c = env.pod(), env.pod(), env.pod()
    vip_b, vip_c = VIPS[family]
    servers = [TcpServer(b, family, 8080), TcpServer(c, family, 8080)]
    try:
        _dnat(env, family, vip_b, b, 8080)
        _dnat(env, family, vip_c, c, 8080)
        out = Direction.EGRESS
        env.policy(
            a,
            EndpointPolicy(
                False, True, frozenset({PolicyEntry(out, env.ident(b), PROTO_TCP, 8080, 8080)})
            ),
        )
        env.policy(b, EndpointPolicy.allow_all())
        env.policy(c, EndpointPolicy.allow_all())
        # Without frontends the ClusterIP is just an address a's policy does not allow.
        assert not _connect(a, family, vip_b)
        _publish(env, services, family, (vip_b, vip_c), (a, b, c))
        denied_before = env.count(c, Direction.EGRESS, DropReason.POLICY_DENIED)
        assert _connect(a, family, vip_b)  # b on 8080: what a's egress allows
        assert not _connect(a, family, vip_c)  # c: denied at c's veth, after the DNAT
        # The drop is counted where it happened: at c's veth, as an egress verdict.
        # Taking b out of a's egress closes the Service to b as well.
        assert env.count(c, Direction.EGRESS, DropReason.POLICY_DENIED) > denied_before
        env.policy(a, EndpointPolicy(False, True, frozenset()))
        assert not _connect(a, family, vip_b)
    finally:
        for s in servers:
            s.close()


@pytest.mark.parametrize("family", [4, 6])
def test_a_syn_through_dnat_on_a_closed_flows_tuple_the_other_way_round_is_judged(
    env: Env, services: ServiceMaps, family: int
) -> None:
    """b's connection from port 8080 to a's port Y leaves conntrack entries at both veths.
    a's SYN from Y to a ClusterIP that DNATs to b:8080 has that flow's tuple the other way
    round: after the DNAT it looks like the old flow's reply at the post-DNAT check. A SYN is
    never a reply: it is judged on a's egress, which admits nothing."""
    a, b = env.pod(), env.pod()
    vip = VIPS[family][0]
    _dnat(env, family, vip, b, 8080)
    # The node's netfilter must not keep the old flow either: its entry would clash with the
    # DNATed SYN's and netfilter, not our program, would drop it.
    tool = "iptables" if family == 4 else "ip6tables"
    subprocess.run(["ip", "netns", "exec", b.node.netns, tool, "-t", "raw", "-A", "PREROUTING",
                    "-s", addr(b, family), "-p", "tcp", "--sport", "8080", "-j", "NOTRACK"],
                   check=True)
    env.policy(a, EndpointPolicy(True, True, frozenset({allow(Direction.INGRESS,
                                                              env.ident(b))})))
    env.policy(b, EndpointPolicy.allow_all())
    _publish(env, services, family, (vip,), (a, b))
    port = 40000 + secrets.randbelow(20000)

    m = marker()  # the old flow, admitted by a's ingress
    assert inject(env, b, a, ip_layer(b, a, family) / TCP(sport=8080, dport=port, flags="S")
                  / m, m, family=family)
    syn = (IP if family == 4 else IPv6)(src=addr(a, family), dst=vip) / TCP(
        sport=port, dport=80, flags="S")
    before = env.count(b, Direction.EGRESS, DropReason.POLICY_DENIED)
    m = marker()
    assert not inject(env, a, b, syn / m, m, family=family, dst_mac=gateway_mac(env.topo, a))
    # Judged at b's veth after the DNAT, as a's egress (what a's own hook deferred).
    assert env.count(b, Direction.EGRESS, DropReason.POLICY_DENIED) == before + 1


@pytest.mark.parametrize("family", [4, 6])
def test_each_connection_through_dnat_on_a_reused_tuple_is_a_new_flow(
    env: Env, services: ServiceMaps, family: int
) -> None:
    """A client that reuses its port at once (a reset leaves no TIME_WAIT) finds the entries
    of its previous connection, the post-DNAT one included, still current: each SYN is judged
    all the same at b's veth as a's egress, so each connection is reported there once."""
    a, b = env.pod(), env.pod()
    vip = VIPS[family][0]
    _dnat(env, family, vip, b, 8080)
    out = Direction.EGRESS
    env.policy(a, EndpointPolicy(False, True, frozenset({PolicyEntry(out, env.ident(b),
                                                                     PROTO_TCP, 8080, 8080)})))
    env.policy(b, EndpointPolicy.allow_all())
    _publish(env, services, family, (vip,), (a, b))
    port = 40000 + secrets.randbelow(20000)

    env.dp.set_flow_events(True)
    try:
        with TcpServer(b, family, 8080):
            env.dp.poll_events(0, lambda _e: None)
            for _ in range(3):
                assert tcp_echo(a.run(lambda: reset_on_close_socket(family, port)), vip, 80, 2.0)
            events: list[DropEvent] = []
            env.dp.poll_events(200, events.append)
    finally:
        env.dp.set_flow_events(False)
    judged = [e for e in events if e.reason is None and e.sport == port and e.direction is out]
    assert [(e.ifindex, e.dport) for e in judged] == [(b.host_ifindex, 8080)] * 3
