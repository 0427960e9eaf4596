"""Real TCP and UDP connections between pod namespaces, allowed or denied exactly as the
tables say; replies pass; a denied SYN is counted and reported."""

from __future__ import annotations

import socket

import pytest

from enforcer.datapath.layout import COUNTER_VAL, CT_KEY, CT_VAL, EP_CONFIG, U32
from enforcer.datapath.types import (
    PROTO_TCP,
    PROTO_UDP,
    Direction,
    DropEvent,
    DropReason,
    EndpointPolicy,
    PolicyEntry,
)
from enforcer.topology import Pod
from tests.conftest import KERNEL_TEST_CONFIG
from tests.datapath.conftest import IN, OUT, Env
from tests.datapath.net import (
    TcpServer,
    UdpServer,
    addr,
    on_one_cpu,
    tcp_connect,
    udp_roundtrip,
)

pytestmark = pytest.mark.kernel



def test_tables_decide_tcp_and_udp(env: Env, family: int) -> None:
    client, other, server = env.pod("client"), env.pod("other"), env.pod("server")
    env.policy(client, EndpointPolicy(True, True, frozenset({
        PolicyEntry(OUT, env.ident(server), PROTO_TCP, 8080, 8080),
        PolicyEntry(OUT, env.ident(server), PROTO_UDP, 5300, 5400),
    })))
    env.policy(other, EndpointPolicy.allow_all())
    env.policy(server, EndpointPolicy(True, True, frozenset({
        PolicyEntry(IN, env.ident(client), PROTO_TCP, 8080, 8081),
        PolicyEntry(IN, env.ident(client), PROTO_UDP, 5353, 5353),
    })))
    servers = [TcpServer(server, family, 8080), TcpServer(server, family, 8081),
               UdpServer(server, family, 5353), UdpServer(server, family, 5354),
               TcpServer(client, family, 9000)]
    try:
        assert tcp_connect(client, server, family, 8080)  # both sides allow; replies pass
        assert not tcp_connect(client, server, family, 8081, timeout=0.5)  # client egress
        assert udp_roundtrip(client, server, family, 5353)
        assert not udp_roundtrip(client, server, family, 5354)  # server ingress
        assert not tcp_connect(other, server, family, 8080, timeout=0.5)  # not a peer
        # The server's egress is isolated with no rule: it cannot open a connection...
        assert not tcp_connect(server, client, family, 9000, timeout=0.5)
        # ...but replies of connections it accepted passed above, and still do.
        assert tcp_connect(client, server, family, 8080)
    finally:
        for s in servers:
            s.close()


def test_denied_syn_is_counted_and_reported(env: Env, family: int) -> None:
    client, server = env.pod("client"), env.pod("server")
    env.policy(client, EndpointPolicy.allow_all())
    env.policy(server, EndpointPolicy(ingress_isolated=True, egress_isolated=False))
    srv = TcpServer(server, family, 7000)
    events: list[DropEvent] = []
    env.dp.poll_events(0, events.append)  # drain older events
    events.clear()
    before = env.count(server, IN, DropReason.POLICY_DENIED)
    try:
        assert not tcp_connect(client, server, family, 7000, timeout=0.3)
    finally:
        srv.close()
    assert env.count(server, IN, DropReason.POLICY_DENIED) > before
    env.dp.poll_events(200, events.append)
    syns = [e for e in events if e.ifindex == server.host_ifindex and e.dport == 7000]
    assert syns, events
    ev = syns[0]
    assert ev.reason == DropReason.POLICY_DENIED
    assert ev.direction == IN
    assert ev.protocol == PROTO_TCP
    assert str(ev.src) == addr(client, family) and str(ev.dst) == addr(server, family)
    assert ev.tcp_flags & 0x02  # SYN
    assert ev.peer_identity == env.ident(client)
    assert ev.endpoint_id == env.endpoint_id(server)


def test_allowed_traffic_is_counted_as_forwarded(env: Env) -> None:
    client, server = env.pod("client"), env.pod("server")
    env.policy(client, EndpointPolicy.allow_all())
    env.policy(server, EndpointPolicy.allow_all())
    srv = TcpServer(server, 4, 7001)
    before = env.count(server, IN, None)
    try:
        assert tcp_connect(client, server, 4, 7001)
    finally:
        srv.close()
    assert env.count(server, IN, None) >= before + 3  # SYN, ACK, data at least


def _forwarded_row(env: Env, slot: int, direction: Direction) -> tuple[int, int]:
    """Packets and bytes in an endpoint's forwarded-counter row, summed over CPUs."""
    raw = env.dp._maps["fwd_counters"].lookup(U32.pack(slot * 2 + direction))
    assert raw is not None
    rows = list(COUNTER_VAL.iter_unpack(raw))
    return sum(p for p, _ in rows), sum(b for _, b in rows)


def _memo_hits(env: Env, pod: Pod, cpu: int) -> int:
    """How many packets at the pod's host veth passed on `cpu`'s flow memory (its slots whose
    key names that veth: bpf/lib/flowcache.h)."""
    table = env.dp.program.bpf[b"flow_cache"]
    return sum(memo[cpu].hits for memo in table.values()
               if memo[cpu].key.ifindex == pod.host_ifindex)


def test_packets_passed_on_the_flow_memory_are_counted_exactly(routed_env: Env) -> None:
    """After the first datagram of a flow, its next ones pass on the per-CPU flow memory
    without the conntrack lookup; each is still counted once, with its bytes, in the
    endpoint's forwarded row (IPv4: no neighbour discovery reaches that row)."""
    env = routed_env
    client, server = _open_pair(env)
    receiver = server.run(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    receiver.bind((str(server.ipv4), 7004))
    sender = client.run(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    slot = env.dp._counter_slots[server.host_ifindex]
    payload = b"x" * 100
    frame_len = 14 + 20 + 8 + len(payload)

    def row() -> tuple[int, int]:
        return _forwarded_row(env, slot, IN)

    try:
        with on_one_cpu() as cpu:
            for _ in range(2):  # the first writes the flow's entry, the second finds it
                sender.sendto(payload, (str(server.ipv4), 7004))  # current and remembers it
            packets, octets = row()
            hits = _memo_hits(env, server, cpu)
            for _ in range(200):
                sender.sendto(payload, (str(server.ipv4), 7004))
        assert row() == (packets + 200, octets + 200 * frame_len)
        # All 200 met the memory; every 64th took the lookup all the same (for the LRU).
        assert _memo_hits(env, server, cpu) - hits == 200
    finally:
        sender.close()
        receiver.close()


def _open_pair(env: Env) -> tuple[Pod, Pod]:
    """A client and a server pod whose tables allow everything."""
    client, server = env.pod("client"), env.pod("server")
    env.policy(client, EndpointPolicy.allow_all())
    env.policy(server, EndpointPolicy.allow_all())
    return client, server


def _flows_at(env: Env, pod: Pod) -> int:
    """Conntrack entries at the pod's host veth."""
    raw = env.dp._maps["ct"].keys_raw()
    return sum(1 for key in CT_KEY.iter_unpack(raw) if key[1] == pod.host_ifindex)


def test_forwarded_counts_are_per_endpoint_and_a_reused_slot_starts_from_zero(
        routed_env: Env) -> None:
    """Forwarded packets are counted in per-endpoint counter rows (no hashing on the hot
    path); a row freed by a removed endpoint is zeroed before a new endpoint takes it."""
    env = routed_env
    client, server = _open_pair(env)
    srv = TcpServer(server, 4, 7003)
    try:
        for _ in range(20):
            assert tcp_connect(client, server, 4, 7003)
    finally:
        srv.close()
    assert env.count(server, IN, None) >= 60 and env.count(client, OUT, None) >= 60
    slots = env.dp._counter_slots
    slot = slots[server.host_ifindex]
    assert slots[client.host_ifindex] != slot

    def row_packets() -> int:
        # The row itself (counters() also adds what the per-interface hash holds for this
        # ifindex, which earlier tests' namespaces may have used too).
        return _forwarded_row(env, slot, IN)[0]

    counted = row_packets()
    assert counted >= 60  # SYN, ACK and data of each connection, at least
    env.dp.remove_endpoint(server.host_ifindex)
    late = env.pod("late")
    env.policy(late, EndpointPolicy.allow_all())
    assert env.dp._counter_slots[late.host_ifindex] == slot  # the freed row, reused
    # Zeroed: only what reached `late` since (its neighbour discovery, a few packets).
    assert row_packets() < counted // 4


def test_unknown_interface_gets_configured_verdict(env: Env) -> None:
    client, server = env.pod("client"), env.pod("server")
    env.policy(client, EndpointPolicy.allow_all())  # server attached but not known
    srv = TcpServer(server, 4, 7002)
    try:
        before = env.count(server, IN, DropReason.UNKNOWN_ENDPOINT)
        assert not tcp_connect(client, server, 4, 7002, timeout=0.3)
        assert env.count(server, IN, DropReason.UNKNOWN_ENDPOINT) > before
        env.dp.set_unknown_verdict(True)
        try:
            assert tcp_connect(client, server, 4, 7002)
        finally:
            env.dp.set_unknown_verdict(False)
        assert not tcp_connect(client, server, 4, 7002, timeout=0.3)
    finally:
        srv.close()


def test_removing_an_endpoint_forgets_its_interfaces_flows_only(routed_env: Env) -> None:
    """A later veth may reuse the ifindex: it must not inherit the removed one's flows; the
    peer's entries for the same flow stay (its interface is still in use)."""
    env = routed_env
    client, server = _open_pair(env)
    srv = TcpServer(server, 4, 7004)
    try:
        assert tcp_connect(client, server, 4, 7004)
    finally:
        srv.close()

    assert _flows_at(env, client) >= 1 and _flows_at(env, server) >= 1
    env.dp.remove_endpoint(server.host_ifindex)
    assert _flows_at(env, server) == 0
    assert _flows_at(env, client) >= 1


def test_endpoints_removed_together_lose_their_flows_and_tables(routed_env: Env) -> None:
    env = routed_env
    client, one = _open_pair(env)
    two = env.pod("two")
    env.policy(two, EndpointPolicy.allow_all())
    for port, server in ((7005, one), (7006, two)):
        srv = TcpServer(server, 4, port)
        try:
            assert tcp_connect(client, server, 4, port)
        finally:
            srv.close()
    env.dp.remove_endpoints([one.host_ifindex, two.host_ifindex, 987654])  # one unknown
    assert _flows_at(env, one) == 0 and _flows_at(env, two) == 0
    assert _flows_at(env, client) >= 2
    held = env.dp.endpoints()
    assert one.host_ifindex not in held and two.host_ifindex not in held
    tables = {U32.unpack(k)[0] for k in env.dp._maps["pol_outer"].keys()}
    assert env.endpoint_id(one) not in tables and env.endpoint_id(two) not in tables
    assert env.endpoint_id(client) in tables
    srv = TcpServer(one, 4, 7005)
    try:  # its interface is still attached: the unknown-endpoint verdict (deny)
        assert not tcp_connect(client, one, 4, 7005, timeout=0.3)
    finally:
        srv.close()


def test_an_interface_moved_to_another_table_no_longer_counts_as_sharing_the_old_one(
        routed_env: Env) -> None:
    """The writer's own index of which interfaces use which table decides the open flags
    and when a table goes: an interface written under a new endpoint id leaves the old id.
    Fake interfaces: only the maps are read."""
    dp = routed_env.dp
    first, second, old_id, new_id = 300001, 300002, 70001, 70002
    try:
        dp.set_endpoint(first, old_id, EndpointPolicy.allow_all())
        dp.set_endpoint(first, new_id, EndpointPolicy.allow_all())
        dp.set_endpoint(second, old_id, EndpointPolicy.allow_all())
        flags = EP_CONFIG.unpack(dp._maps["ep_config"].lookup(U32.pack(second)))[2]
        assert flags == 0b11  # open both ways: old_id is second's alone
        dp.remove_endpoint(second)
        tables = {U32.unpack(k)[0] for k in dp._maps["pol_outer"].keys()}
        assert old_id not in tables and new_id in tables
    finally:
        dp.remove_endpoints([first, second])


def test_a_full_conntrack_table_evicts_old_flows_and_new_ones_still_pass(
        routed_env: Env) -> None:
    """Conntrack entries are never deleted on the packet path (not even on a reset): on a
    busy node the table fills up, and from then on every new flow's entry evicts the least
    recently used one. New flows must still be tracked, so their replies pass where the
    reverse direction is isolated, and the table must not refuse them (map full)."""
    env = routed_env
    client, server = env.pod("client"), env.pod("server")
    env.policy(client, EndpointPolicy(True, True, frozenset({
        PolicyEntry(OUT, env.ident(server), PROTO_TCP, 7006, 7006)})))  # ingress: replies only
    env.policy(server, EndpointPolicy(True, True, frozenset({
        PolicyEntry(IN, env.ident(client), PROTO_TCP, 7006, 7006)})))  # egress: replies only
    ct = env.dp._maps["ct"]
    capacity = KERNEL_TEST_CONFIG.max_conntrack
    # Dead flows at no interface (ifindex 0): what closed connections leave behind.
    filler = [CT_KEY.pack(U32.pack(i) + bytes(36), 0, 0) for i in range(capacity)]
    ct.update_batch([(k, CT_VAL.pack(0, 0, 0, 0)) for k in filler])
    srv = TcpServer(server, 4, 7006)
    try:
        # Full: the LRU keeps a few free nodes per CPU, so "full" is within 10% of capacity.
        assert len(ct.keys_raw()) // CT_KEY.size >= capacity * 0.9
        for _ in range(30):
            assert tcp_connect(client, server, 4, 7006)
        assert _flows_at(env, client) >= 1 and _flows_at(env, server) >= 1
        assert len(ct.keys_raw()) // CT_KEY.size <= capacity
        assert env.count(client, IN, DropReason.MAP_FULL) == 0
        assert env.count(server, IN, DropReason.MAP_FULL) == 0
    finally:
        srv.close()
        ct.delete_batch(filler)
