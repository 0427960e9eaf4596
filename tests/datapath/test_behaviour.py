"""Stateful behaviour with real traffic: ICMP under asymmetric policy, related ICMP errors,
IP reuse, host-originated traffic, revocation, atomic swaps, coexistence, map-full."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_network

import pytest
from scapy.all import ICMP, TCP, ICMPv6EchoReply, ICMPv6EchoRequest

from enforcer.datapath import MapFullError, tc
from enforcer.datapath.types import (
    IDENTITY_ANY,
    PROTO_TCP,
    PROTO_UDP,
    Direction,
    DropEvent,
    DropReason,
    EndpointPolicy,
)
from enforcer.netnsutil import run_in_netns
from enforcer.topology import Pod
from tests.datapath.conftest import IN, OUT, Env
from tests.datapath.crafted import allow, inject, ip_layer, marker
from tests.datapath.net import (
    TcpServer,
    UdpServer,
    addr,
    established_tcp,
    family_af,
    is_cut,
    on_one_cpu,
    tcp_connect,
    tcp_echo,
    udp_roundtrip,
)

pytestmark = pytest.mark.kernel

DENY_ALL = EndpointPolicy(True, True)


def ping(src_netns: str, dst: str) -> bool:
    res = subprocess.run(["ip", "netns", "exec", src_netns, "ping", "-c1", "-W1", dst],
                         capture_output=True)
    return res.returncode == 0


def test_icmp_echo_under_an_asymmetric_policy(env: Env, family: int) -> None:
    a, b = env.pod("a"), env.pod("b")
    env.policy(a, EndpointPolicy(True, True, frozenset({allow(OUT, env.ident(b))})))
    env.policy(b, EndpointPolicy(True, True, frozenset({allow(IN, env.ident(a))})))
    assert ping(a.netns, addr(b, family))  # a -> b allowed, the reply passes
    assert not ping(b.netns, addr(a, family))  # b -> a is not
    # Crafted: a's echo id 0x4321 is in conntrack; b may answer it, not reuse it to ask.
    req = ICMP(type=8, id=0x4321) if family == 4 else ICMPv6EchoRequest(id=0x4321)
    rep = ICMP(type=0, id=0x4321) if family == 4 else ICMPv6EchoReply(id=0x4321)
    m0, m1, m2 = marker(), marker(), marker()
    assert inject(env, a, b, ip_layer(a, b, family) / req / m0, m0, family=family)
    assert not inject(env, b, a, ip_layer(b, a, family) / req / m1, m1, family=family)
    assert inject(env, b, a, ip_layer(b, a, family) / rep / m2, m2, family=family)


def test_related_icmp_error_reaches_an_isolated_sender(env: Env, family: int) -> None:
    a, b = env.pod("a"), env.pod("b")
    env.policy(a, EndpointPolicy(True, True, frozenset({allow(OUT, env.ident(b), PROTO_UDP,
                                                              53, 53)})))
    env.policy(b, EndpointPolicy(True, True, frozenset({allow(IN, env.ident(a), PROTO_UDP,
                                                              53, 53)})))
    s = a.run(lambda: socket.socket(family_af(family), socket.SOCK_DGRAM))
    s.settimeout(1.0)
    try:
        s.connect((addr(b, family), 53))  # nothing listens: b answers port unreachable
        s.send(b"hello")
        with pytest.raises(ConnectionRefusedError):
            s.recv(10)
    finally:
        s.close()


@contextmanager
def a_connected_to_b(env: Env, family: int) -> Iterator[tuple[Pod, Pod, int]]:
    """Pods a and b, a's egress allowing only TCP to b:80, b open; a connected to b:80.
    Yields (a, b, the connection's source port)."""
    a, b = env.pod("a"), env.pod("b")
    env.policy(a, EndpointPolicy(True, True, frozenset({allow(OUT, env.ident(b), PROTO_TCP,
                                                              80, 80)})))
    env.policy(b, EndpointPolicy.allow_all())
    server = TcpServer(b, family, 80)
    client = a.run(lambda: socket.socket(family_af(family), socket.SOCK_STREAM))
    try:
        client.connect((addr(b, family), 80))
        yield a, b, client.getsockname()[1]
    finally:
        client.close()
        server.close()


def test_reused_ip_loses_its_flows_when_conntrack_is_flushed(env: Env, family: int) -> None:
    with a_connected_to_b(env, family) as (a, b, sport):
        c = env.pod("c")
        env.policy(c, EndpointPolicy.allow_all())
        # b's IP now belongs to another pod (c stands in for it, with c's identity and, as the
        # agent writes it for a new owner, c's interface behind the address).
        ident = env.ident(c)
        net = ip_network(addr(b, family))
        env.dp.set_identities({net: ident})
        env.dp.add_local_endpoints({net.network_address: (env.endpoint_id(c), c.host_ifindex)})

        def reply_like(mark: bytes) -> bool:
            pkt = ip_layer(addr(b, family), a, family) / TCP(sport=80, dport=sport,
                                                              flags="A") / mark
            return inject(env, c, a, pkt, mark, family=family)

        assert reply_like(marker())  # the old owner's conntrack entry still matches
        assert env.dp.flush_conntrack(net.network_address) > 0
        before = env.count(a, IN, DropReason.POLICY_DENIED)
        assert not reply_like(marker())
        assert env.count(a, IN, DropReason.POLICY_DENIED) > before


def test_a_conntrack_flush_cuts_a_flow_the_kernel_remembers(env: Env, family: int) -> None:
    """The agent flushes an address's conntrack entries when its owner changes. The flow's next
    packet is judged again even after its last packets passed on the per-CPU flow memory (it
    trusts a flow only while the policy epoch lasts, and a flush bumps it): b's reply-like
    packet, which passed three times, is dropped by a's ingress (it admits no one)."""
    with a_connected_to_b(env, family) as (a, b, sport):

        def reply_like(mark: bytes) -> bool:
            pkt = ip_layer(b, a, family) / TCP(sport=80, dport=sport, flags="A") / mark
            return inject(env, b, a, pkt, mark, family=family)

        with on_one_cpu():
            for _ in range(3):
                assert reply_like(marker())  # a reply of a's flow: passes, and is remembered
            assert env.dp.flush_conntrack(ip_network(addr(b, family)).network_address) > 0
            before = env.count(a, IN, DropReason.POLICY_DENIED)
            assert not reply_like(marker())
        assert env.count(a, IN, DropReason.POLICY_DENIED) > before


def test_a_syn_reusing_a_closed_flows_tuple_the_other_way_round_is_judged(env: Env,
                                                                         family: int) -> None:
    """A closed flow's entry stays until evicted, and the other orientation of its tuple is
    its reply. A SYN is never a reply: b, whose egress is open, cannot open a connection to
    a (whose ingress admits no one) on the tuple of a's finished connection to b."""
    a, b = env.pod("a"), env.pod("b")
    env.policy(a, EndpointPolicy(True, True, frozenset({allow(OUT, env.ident(b), PROTO_TCP,
                                                              80, 80)})))
    env.policy(b, EndpointPolicy.allow_all())
    server = TcpServer(b, family, 80)
    try:
        client = a.run(lambda: socket.socket(family_af(family), socket.SOCK_STREAM))
        client.connect((addr(b, family), 80))
        sport = client.getsockname()[1]
        client.close()
    finally:
        server.close()

    def from_b(flags: str) -> bool:
        m = marker()
        return inject(env, b, a, ip_layer(b, a, family) / TCP(sport=80, dport=sport,
                                                               flags=flags) / m, m,
                      family=family)

    assert from_b("A")  # still the finished flow's reply: its entry is there
    env.dp.poll_events(0, lambda _e: None)
    assert not from_b("S")
    events: list[DropEvent] = []
    env.dp.poll_events(100, events.append)
    assert [(e.direction, e.reason) for e in events
            if e.ifindex == a.host_ifindex and (e.sport, e.dport) == (80, sport)] == [
        (IN, DropReason.POLICY_DENIED)]  # judged by a's ingress, as a new connection


def test_host_originated_traffic_passes_spoofed_node_ip_does_not(env: Env, family: int) -> None:
    b, c = env.pod("b"), env.pod("c")
    env.policy(b, DENY_ALL)
    env.policy(c, EndpointPolicy.allow_all())
    server = TcpServer(b, family, 8080)
    try:
        def from_node() -> bool:
            return tcp_echo(socket.socket(family_af(family), socket.SOCK_STREAM),
                            addr(b, family), 8080, 1.0)

        assert run_in_netns(b.node.netns, from_node)  # kubelet-style probe
        node_ip = str(b.node.ipv4 if family == 4 else b.node.ipv6)
        before = env.count(b, IN, DropReason.POLICY_DENIED)
        if env.topo.mode == "routed":
            # Forwarded traffic SNATed to the node IP (NodePort-style masquerade): it carries
            # the node's address but was not originated by the node.
            tables = "iptables" if family == 4 else "ip6tables"
            subprocess.run(["ip", "netns", "exec", b.node.netns, tables, "-t", "nat", "-A",
                            "POSTROUTING", "-s", addr(c, family), "-d", addr(b, family),
                            "-j", "SNAT", "--to-source", node_ip], check=True)
            assert not tcp_connect(c, b, family, 8080, timeout=0.5)
            assert env.count(b, IN, DropReason.POLICY_DENIED) > before
        else:
            # A pod wearing the node's address: stopped at its own hook, as any other
            # address not its own (tests/datapath/test_spoofing.py).
            m = marker()
            spoofed = ip_layer(node_ip, b, family) / TCP(sport=5555, dport=8080, flags="S") / m
            before = env.count(c, OUT, DropReason.SPOOFED_SOURCE)
            assert not inject(env, c, b, spoofed, m, family=family)
            assert env.count(c, OUT, DropReason.SPOOFED_SOURCE) == before + 1
    finally:
        server.close()


def test_revocation_cuts_an_established_flow_at_its_next_packet(env: Env, family: int) -> None:
    a, b = env.pod("a"), env.pod("b")
    env.policy(a, EndpointPolicy.allow_all())
    allowing = EndpointPolicy(True, False, frozenset({allow(IN, env.ident(a), PROTO_TCP, 80,
                                                            80)}))
    env.policy(b, allowing)
    with established_tcp(a, b, family, 80) as client:
        before = env.count(b, IN, DropReason.POLICY_DENIED)
        env.policy(b, EndpointPolicy(True, False))
        assert is_cut(client)
        assert env.count(b, IN, DropReason.POLICY_DENIED) > before


def _all_drops(env: Env, *pods: Pod) -> int:
    return sum(env.count(p, d, r) for p in pods for d in Direction for r in DropReason)


def _drops_matching_events(env: Env, pods: tuple[Pod, ...], events: list[DropEvent]) -> int:
    """The pods' drop count, read between two drains of the event ring with nothing new in
    the second: the events collected so far are then those of exactly the drops counted (a
    drop between one drain and the read, e.g. a bridge's MLD, would otherwise skew one side)."""
    env.dp.poll_events(0, events.append)
    for _ in range(50):  # drops do not stream here: a handful of stray MLD reports at most
        count = _all_drops(env, *pods)
        late: list[DropEvent] = []
        env.dp.poll_events(50, late.append)
        if not late:
            return count
        events.extend(late)
    raise AssertionError(f"drops kept coming: {events[-5:]}")


def test_policy_swaps_between_allowing_generations_drop_nothing(env: Env) -> None:
    a, b = env.pod("a"), env.pod("b")
    env.policy(a, EndpointPolicy.allow_all())
    base = {allow(IN, env.ident(a), PROTO_UDP, 53, 53), allow(IN, env.ident(a), PROTO_TCP, 80, 80)}
    # Egress stays open so that b's own chatter (MLD and the like) is not dropped: any
    # drop counted below is a probe packet or one of its replies.
    gens = [EndpointPolicy(True, False, frozenset(base)),
            EndpointPolicy(True, False, frozenset(base | {allow(IN, 7, PROTO_TCP, 1000, 2000)}))]
    env.policy(b, gens[0])
    udp, tcp = UdpServer(b, 4, 53), TcpServer(b, 4, 80)
    stop = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        while not stop.is_set():
            env.policy(b, gens[swaps % 2])
            swaps += 1

    # Warm up first (neighbour entries): a fresh bridge can hold a first packet ~1 s, which
    # would look like a drop to the probes below and is not what this test is about.
    assert udp_roundtrip(a, b, 4, 53, timeout=3.0) and tcp_connect(a, b, 4, 80, timeout=3.0)
    drops_before = _drops_matching_events(env, (a, b), [])
    t = threading.Thread(target=swapper)
    t.start()
    failures, probes = 0, 0
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            failures += not udp_roundtrip(a, b, 4, 53, timeout=2.0)
            # Below the SYN retransmission time: a dropped SYN cannot hide behind a retry.
            failures += not tcp_connect(a, b, 4, 80, timeout=0.9)
            probes += 2
    finally:
        stop.set()
        t.join()
        udp.close()
        tcp.close()
    assert swaps > 100 and probes > 100
    assert failures == 0
    # Not one probe packet (or retransmission, or reply) was dropped. Other traffic may be:
    # on a bridge, other ports' multicast (MLD) floods to b and is denied there.
    events: list[DropEvent] = []
    drops_after = _drops_matching_events(env, (a, b), events)
    probe_drops = [e for e in events if e.reason is not None and
                   {e.src, e.dst} == {a.ipv4, b.ipv4}]
    assert not probe_drops
    assert drops_after - drops_before == len(
        [e for e in events if e.reason is not None and e.ifindex in (a.host_ifindex,
                                                                      b.host_ifindex)])


CNI_STANDIN = b"""
BPF_HASH(seen, u16, u64, 64);  /* IPv4 UDP packets by destination port */
int cni_standin(struct __sk_buff *skb) {
    u8 h[38];
    if (bpf_skb_load_bytes(skb, 0, h, sizeof(h)) < 0)
        return TC_ACT_OK;
    if (h[12] != 0x08 || h[13] != 0x00 || h[23] != 17 || (h[14] & 0x0f) != 5)
        return TC_ACT_OK;
    u16 port = ((u16)h[36] << 8) | h[37];
    u64 one = 1, *n = seen.lookup(&port);
    if (n)
        __sync_fetch_and_add(n, 1);
    else
        seen.update(&port, &one);
    return TC_ACT_OK;
}
"""


def test_a_later_filter_still_runs_for_allowed_packets(env: Env) -> None:
    from bcc import BPF  # the session fixture already configured kernel headers

    a, b = env.pod("a"), env.pod("b")
    env.policy(a, EndpointPolicy.allow_all())
    env.policy(b, EndpointPolicy(True, False, frozenset({allow(IN, env.ident(a), PROTO_UDP, 53,
                                                              53)})))
    standin = BPF(text=b"#include <uapi/linux/pkt_cls.h>\n" + CNI_STANDIN)
    fn = standin.load_func(b"cni_standin", BPF.SCHED_CLS)
    # The CNI's filter runs after ours (a larger prio number) on the to-pod hook.
    tc.attach(b.host_ifindex, (fn.fd, "cni_standin"), (fn.fd, "cni_standin"), prio=100,
              handle=7, netns=b.node.netns)

    def seen(port: int) -> int:
        table = standin[b"seen"]
        value = table.get(table.Key(port))
        return int(value.value) if value is not None else 0

    udp = UdpServer(b, 4, 53)
    try:
        assert udp_roundtrip(a, b, 4, 53)
        assert seen(53) == 1  # the CNI stand-in saw the allowed packet
        assert not udp_roundtrip(a, b, 4, 54, timeout=0.3)
        assert seen(54) == 0  # the denied one was dropped before it
    finally:
        udp.close()
        standin.cleanup()


def test_a_generation_that_does_not_fit_keeps_the_previous_one(env: Env) -> None:
    a, b = env.pod("a"), env.pod("b")
    env.policy(a, EndpointPolicy.allow_all())
    small = EndpointPolicy(True, False, frozenset({allow(IN, env.ident(a), PROTO_UDP, 53, 53)}))
    gen = env.policy(b, small)
    huge = EndpointPolicy(True, False, frozenset(
        allow(IN, 5000 + i, PROTO_TCP, 80, 80) for i in range(env.dp.config.max_policy_entries)
    ) | {allow(IN, env.ident(a), PROTO_UDP, 54, 54)})
    full_before = env.dp.map_full_total
    with pytest.raises(MapFullError):
        env.policy(b, huge)
    assert env.dp.map_full_total == full_before + 1
    state = env.dp.endpoints()[b.host_ifindex]
    assert state.generation == gen and state.policy == small
    with UdpServer(b, 4, 53), UdpServer(b, 4, 54):
        assert udp_roundtrip(a, b, 4, 53)
        assert not udp_roundtrip(a, b, 4, 54, timeout=0.3)


def test_tables_swapped_together_each_take_effect_or_keep_their_previous_one(
        env: Env) -> None:
    """set_endpoints swaps several tables with one batch write: each one that fits is in force
    at once; one that does not fit keeps its previous generation, the others still change."""
    a, b, c = env.pod("a"), env.pod("b"), env.pod("c")
    env.policy(a, EndpointPolicy.allow_all())
    udp53 = EndpointPolicy(True, False, frozenset({allow(IN, env.ident(a), PROTO_UDP, 53, 53)}))
    udp54 = EndpointPolicy(True, False, frozenset({allow(IN, env.ident(a), PROTO_UDP, 54, 54)}))
    gen_c = env.policy(c, udp53)
    huge = EndpointPolicy(True, False, frozenset(
        allow(IN, 5000 + i, PROTO_TCP, 80, 80) for i in range(env.dp.config.max_policy_entries)
    ) | {allow(IN, env.ident(a), PROTO_UDP, 54, 54)})
    results = env.dp.set_endpoints([(b.host_ifindex, env.endpoint_id(b), udp54),
                                    (c.host_ifindex, env.endpoint_id(c), huge)])
    assert isinstance(results[c.host_ifindex], MapFullError)
    gen_b = results[b.host_ifindex]
    assert isinstance(gen_b, int) and gen_b > gen_c
    held = env.dp.endpoints()
    assert held[b.host_ifindex].policy == udp54 and held[b.host_ifindex].generation == gen_b
    assert held[c.host_ifindex].policy == udp53 and held[c.host_ifindex].generation == gen_c
    with UdpServer(b, 4, 54), UdpServer(c, 4, 53), UdpServer(c, 4, 54):
        assert udp_roundtrip(a, b, 4, 54)
        assert udp_roundtrip(a, c, 4, 53)
        assert not udp_roundtrip(a, c, 4, 54, timeout=0.3)


def test_icmp_a_pod_sends_grants_its_peer_nothing(env: Env, family: int) -> None:
    """Errors and echo replies are not tracked as flows: answering them back must not work."""
    a, b = env.pod("a"), env.pod("b")
    env.policy(a, EndpointPolicy.allow_all())
    env.policy(b, EndpointPolicy(True, False))  # b may send anything, receive nothing new
    if family == 4:
        error, echo_reply = ICMP(type=3, code=1), ICMP(type=0, id=0x5151)
        answer, echo_request = ICMP(type=3, code=1), ICMP(type=8, id=0x5151)
    else:
        from scapy.all import ICMPv6DestUnreach

        error, echo_reply = ICMPv6DestUnreach(), ICMPv6EchoReply(id=0x5151)
        answer, echo_request = ICMPv6DestUnreach(), ICMPv6EchoRequest(id=0x5151)
    for sent, back in ((error, answer), (echo_reply, echo_request)):
        m1, m2 = marker(), marker()
        assert inject(env, b, a, ip_layer(b, a, family) / sent / m1, m1, family=family)
        assert not inject(env, a, b, ip_layer(a, b, family) / back / m2, m2, family=family)


def test_a_peer_changing_identity_loses_its_established_flows(env: Env, family: int) -> None:
    """A label change gives the peer another identity: flows its old one was allowed stop at
    their next packet, with no change to the endpoint's own policy."""
    a, b = env.pod("a"), env.pod("b")
    env.policy(a, EndpointPolicy.allow_all())
    env.policy(b, EndpointPolicy(True, False, frozenset({allow(IN, env.ident(a), PROTO_TCP, 80,
                                                              80)})))
    with established_tcp(a, b, family, 80) as client:
        env.dp.set_identities({ip_network(addr(a, family)): 4242})
        assert is_cut(client)


def test_an_open_direction_follows_its_generation(env: Env) -> None:
    """An endpoint whose ingress allows everything skips the lookups (EP_F_OPEN); the next
    generation that isolates it judges the very next new connection, and opening it again
    lets it through without a rule."""
    a, b = env.pod("a"), env.pod("b")
    env.policy(a, EndpointPolicy.allow_all())
    srv = TcpServer(b, 4, 7010)
    try:
        env.policy(b, EndpointPolicy(False, True))  # ingress open, egress isolated
        assert tcp_connect(a, b, 4, 7010)
        env.policy(b, EndpointPolicy(True, True, frozenset({allow(OUT, env.ident(a))})))
        assert not tcp_connect(a, b, 4, 7010, timeout=0.3)
        # An isolated direction with a rule for any peer and protocol is open too.
        env.policy(b, EndpointPolicy(True, True, frozenset({allow(IN, IDENTITY_ANY)})))
        assert tcp_connect(a, b, 4, 7010)
    finally:
        srv.close()


def test_interfaces_sharing_an_endpoint_table_are_judged_by_its_latest_generation(
        env: Env) -> None:
    """Two interfaces under one endpoint id share one policy table: writing the table through
    one of them must not leave the other passing on what its older generation allowed."""
    a, b, c = env.pod("a"), env.pod("b"), env.pod("c")
    env.policy(a, EndpointPolicy.allow_all())
    shared = env.endpoint_id(b)
    srv = TcpServer(b, 4, 7011)
    try:
        env.dp.set_endpoint(b.host_ifindex, shared, EndpointPolicy.allow_all())
        assert tcp_connect(a, b, 4, 7011)
        env.dp.set_endpoint(c.host_ifindex, shared, EndpointPolicy(True, False))
        assert not tcp_connect(a, b, 4, 7011, timeout=0.3)
    finally:
        srv.close()
