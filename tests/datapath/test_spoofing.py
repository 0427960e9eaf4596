"""A pod speaks only from its own addresses (bpf/lib/source.h): crafted packets wearing
another address are injected into a pod's namespace and looked for at the destination."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest
from scapy.all import (
    ARP,
    UDP,
    Ether,
    ICMPv6ND_NA,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    Packet,
    Raw,
    raw,
)

from enforcer.datapath.types import PROTO_UDP, DropEvent, DropReason, EndpointPolicy
from enforcer.topology import Pod
from tests.datapath.conftest import IN, OUT, Env
from tests.datapath.crafted import allow, inject, ip_layer, marker
from tests.datapath.net import Injector, addr, capture, mac_of

pytestmark = pytest.mark.kernel

OPEN = EndpointPolicy.allow_all()
REMOTE = {4: "198.51.100.7", 6: "2001:db8::7"}  # a pod on another node, say
REMOTE_IDENTITY = 90


def test_a_pod_cannot_send_from_another_pods_address(env: Env, family: int) -> None:
    """b admits a and a remote pod on UDP 53; c, whose egress is open, wears their addresses."""
    a, b, c = env.pod("a"), env.pod("b"), env.pod("c")
    env.dp.set_identities({ip_network(REMOTE[family]): REMOTE_IDENTITY})
    env.policy(a, OPEN)
    env.policy(b, EndpointPolicy(True, False, frozenset({
        allow(IN, env.ident(a), PROTO_UDP, 53, 53),
        allow(IN, REMOTE_IDENTITY, PROTO_UDP, 53, 53)})))
    env.policy(c, OPEN)
    try:
        def send(sender: Pod, src: str) -> bool:
            m = marker()
            pkt = ip_layer(src, b, family) / UDP(sport=4002, dport=53) / m
            return inject(env, sender, b, pkt, m, family=family)

        assert send(a, addr(a, family))  # the real a
        env.dp.poll_events(0, lambda _e: None)
        before = env.count(c, OUT, DropReason.SPOOFED_SOURCE)
        assert not send(c, addr(a, family))  # a local pod's address
        assert not send(c, REMOTE[family])  # a remote pod's
        assert env.count(c, OUT, DropReason.SPOOFED_SOURCE) == before + 2
        events: list[DropEvent] = []
        env.dp.poll_events(100, events.append)
        spoofed = [e for e in events if e.reason == DropReason.SPOOFED_SOURCE]
        assert {str(e.src) for e in spoofed} == {addr(a, family), str(ip_address(REMOTE[family]))}
        assert all(e.direction == OUT and e.ifindex == c.host_ifindex
                   and e.endpoint_id == env.endpoint_id(c) and str(e.dst) == addr(b, family)
                   and e.dport == 53 for e in spoofed)
        # Nothing reached b's ingress to be judged there.
        assert not [e for e in events if e.ifindex == b.host_ifindex and e.sport == 4002]
    finally:
        env.dp.set_identities({ip_network(REMOTE[family]): None})


def test_a_packet_the_parser_cannot_read_still_wears_no_other_address(env: Env,
                                                                     family: int) -> None:
    """Where everything is open, what the parser cannot read passes (nothing to judge it by);
    its source address, read from the IP header, is still checked."""
    a, b, c = env.pod("a"), env.pod("b"), env.pod("c")
    for p in (a, b, c):
        env.policy(p, OPEN)

    def truncated_udp(src: str) -> bool:
        m = marker()
        proto = {"proto": 17} if family == 4 else {"nh": 17}
        pkt = ip_layer(src, b, family)
        for k, v in proto.items():
            setattr(pkt, k, v)
        return inject(env, c, b, pkt / Raw(m), m, family=family)  # a UDP length past the end

    assert truncated_udp(addr(c, family))  # its own: unreadable, but passes where open
    before = env.count(c, OUT, DropReason.SPOOFED_SOURCE)
    assert not truncated_udp(addr(a, family))
    assert env.count(c, OUT, DropReason.SPOOFED_SOURCE) == before + 1


@pytest.mark.parametrize("env", ["bridged"], indirect=True)
def test_a_pod_cannot_answer_for_a_flow_flooded_to_it(env: Env, family: int) -> None:
    """On a bridge, a frame to an unknown MAC reaches every port. c sees a's request to b
    (sent here to the broadcast MAC) and must not be able to answer it as b."""
    a, b, c = env.pod("a"), env.pod("b"), env.pod("c")
    env.policy(a, EndpointPolicy(True, True, frozenset({allow(OUT, env.ident(b), PROTO_UDP,
                                                              53, 53)})))
    env.policy(b, OPEN)
    env.policy(c, OPEN)  # c's ingress admits a: a's request is judged allowed there too
    inj = Injector(a)
    try:
        m = marker()
        request = ip_layer(a, b, family) / UDP(sport=4010, dport=53) / m
        frame = Ether(src=inj.mac, dst="ff:ff:ff:ff:ff:ff",
                      type=0x0800 if family == 4 else 0x86DD) / request
        with capture(c) as cap:
            inj.send(raw(frame))
            assert cap.saw(m)  # flooded to c's port: c's hook saw a's request to b
    finally:
        inj.close()

    def answer(sender: Pod) -> bool:
        m = marker()
        pkt = ip_layer(b, a, family) / UDP(sport=53, dport=4010) / m
        return inject(env, sender, a, pkt, m, family=family)

    before = env.count(c, OUT, DropReason.SPOOFED_SOURCE)
    assert not answer(c)
    assert env.count(c, OUT, DropReason.SPOOFED_SOURCE) == before + 1
    assert answer(b)  # the real b's answer is a reply of a's flow


@pytest.mark.parametrize("env", ["bridged"], indirect=True)
@pytest.mark.parametrize("family", [6], ids=["ipv6"])
def test_link_local_sources_are_judged_not_dropped_as_spoofed(env: Env, family: int) -> None:
    """fe80::/10 is nobody's in policy terms (neighbour discovery and MLD use it): such a
    packet is judged by policy as before, here allowed by b's open ingress. (Bridged: the
    kernel never forwards a link-local source between interfaces.)"""
    b, c = env.pod("b"), env.pod("c")
    env.policy(b, OPEN)
    env.policy(c, OPEN)
    m = marker()
    before = env.count(c, OUT, DropReason.SPOOFED_SOURCE)
    assert inject(env, c, b, ip_layer("fe80::1234", b, family) / UDP(sport=4011, dport=53) / m,
                  m, family=family)
    assert env.count(c, OUT, DropReason.SPOOFED_SOURCE) == before


def _broadcast(env: Env, sender: Pod, receiver: Pod, l2: Packet, m: bytes) -> bool:
    """A frame from sender's eth0 to every port (marker in its padding): did receiver get it?
    In the routed topology nothing reaches another pod at layer 2, so this is False there
    whatever the verdict; the drop counters tell."""
    inj = Injector(sender)
    try:
        with capture(receiver) as cap:
            inj.send(raw(Ether(src=inj.mac, dst="ff:ff:ff:ff:ff:ff") / l2 / Raw(m)))
            return cap.saw(m)
    finally:
        inj.close()


def test_a_pod_announces_only_its_own_address_in_arp(env: Env) -> None:
    """A gratuitous ARP claiming a's address would, on a bridge, make b (and the node) send
    a's traffic to c."""
    a, b, c = env.pod("a"), env.pod("b"), env.pod("c")
    for p in (a, b, c):
        env.policy(p, OPEN)
    bridged = env.topo.mode == "bridged"

    def announce(ip: str) -> bool:
        m = marker()
        mac = mac_of(c.netns, c.ifname)
        arp = ARP(op=2, hwsrc=mac, psrc=ip, hwdst="ff:ff:ff:ff:ff:ff", pdst=ip)
        return _broadcast(env, c, b, arp, m)

    before = env.count(c, OUT, DropReason.SPOOFED_SOURCE)
    assert announce(str(c.ipv4)) == bridged  # its own: passes
    assert announce("0.0.0.0") == bridged  # an address probe names no one
    assert env.count(c, OUT, DropReason.SPOOFED_SOURCE) == before
    assert not announce(str(a.ipv4))
    assert env.count(c, OUT, DropReason.SPOOFED_SOURCE) == before + 1


@pytest.mark.parametrize("family", [6], ids=["ipv6"])
def test_a_pod_advertises_only_its_own_addresses_and_never_a_router(env: Env,
                                                                    family: int) -> None:
    """IPv6's ARP: a neighbour advertisement for a's address, or a router advertisement or
    redirect (a pod is no router), would steer traffic to c the same way."""
    a, b, c = env.pod("a"), env.pod("b"), env.pod("c")
    for p in (a, b, c):
        env.policy(p, OPEN)
    bridged = env.topo.mode == "bridged"
    mac = mac_of(c.netns, c.ifname)
    link_local = f"fe80::{c.host_ifindex}:1"

    def send(icmp: Packet) -> bool:
        m = marker()
        return _broadcast(env, c, b, IPv6(src=link_local, dst="ff02::1", hlim=255) / icmp, m)

    def advert(target: str) -> Packet:
        return ICMPv6ND_NA(tgt=target, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac)

    before = env.count(c, OUT, DropReason.SPOOFED_SOURCE)
    assert send(advert(str(c.ipv6))) == bridged  # its own address
    assert send(advert(link_local)) == bridged  # its link-local one
    assert send(ICMPv6ND_RS()) == bridged  # asking for routers is fine
    assert env.count(c, OUT, DropReason.SPOOFED_SOURCE) == before
    assert not send(advert(str(a.ipv6)))
    assert not send(ICMPv6ND_RA() / ICMPv6NDOptSrcLLAddr(lladdr=mac))
    assert not send(ICMPv6ND_Redirect(tgt=link_local, dst=str(a.ipv6)))
    assert env.count(c, OUT, DropReason.SPOOFED_SOURCE) == before + 3
