"""The write plan: no intermediate datapath state allows what neither end state allows."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from enforcer.compiler import (
    AddressMove,
    CompileDelta,
    FlushConntrack,
    RemoveEndpoint,
    WriteIdentity,
    WritePolicy,
    plan_writes,
    transition_policy,
)
from enforcer.datapath.types import (
    IDENTITY_ANY,
    PROTO_ANY,
    PROTO_TCP,
    PROTO_UDP,
    Direction,
    EndpointPolicy,
    PolicyEntry,
)

from .builders import pod, policy
from .simulator import Datapath
from .test_compiler_rules import Harness

IN, OUT = Direction.INGRESS, Direction.EGRESS


def test_transition_is_the_exact_intersection() -> None:
    old = EndpointPolicy(True, False, frozenset({PolicyEntry(IN, IDENTITY_ANY, PROTO_TCP, 80, 90)}))
    new = EndpointPolicy(
        True,
        False,
        frozenset({PolicyEntry(IN, 20, PROTO_TCP, 85, 100), PolicyEntry(IN, 21, PROTO_ANY)}),
    )
    t = transition_policy(old, new)
    assert t.ingress_isolated and not t.egress_isolated
    assert set(t.entries) == {
        PolicyEntry(IN, 20, PROTO_TCP, 85, 90),
        PolicyEntry(IN, 21, PROTO_TCP, 80, 90),
    }


def test_transition_isolates_when_either_side_does_and_keeps_born_and_dying_peers() -> None:
    old = EndpointPolicy(False, True, frozenset({PolicyEntry(OUT, 30, PROTO_UDP, 53, 53)}))
    new = EndpointPolicy(
        True,
        True,
        frozenset({PolicyEntry(OUT, 31, PROTO_UDP, 53, 53), PolicyEntry(IN, 31, PROTO_ANY)}),
    )
    t = transition_policy(old, new, born=frozenset({31}), dead=frozenset({30}))
    assert t.ingress_isolated and t.egress_isolated
    assert set(t.entries) == {
        PolicyEntry(OUT, 30, PROTO_UDP, 53, 53),
        PolicyEntry(OUT, 31, PROTO_UDP, 53, 53),
        PolicyEntry(IN, 31, PROTO_ANY),
        PolicyEntry(IN, 30, PROTO_ANY),  # dying: keeps its old (unisolated) verdict
    }


def test_identity_writes_go_longest_first_then_deletes_shortest_first() -> None:
    n = ip_network
    delta = CompileDelta(
        identity_changes={
            n("10.0.0.0/8"): 20,
            n("10.1.0.0/16"): 21,
            n("10.1.2.3/32"): 22,
            n("10.2.0.0/16"): None,
            n("10.2.3.0/24"): None,
        },
        ip_owner_changes={ip_address("10.1.2.3")},
        endpoints={"a/p": EndpointPolicy.allow_all()},
        removed_endpoints={"a/gone"},
    )
    steps = plan_writes(delta, {})
    assert steps == [
        WriteIdentity(n("10.1.2.3/32"), 22),
        WriteIdentity(n("10.1.0.0/16"), 21),
        WriteIdentity(n("10.0.0.0/8"), 20),
        WriteIdentity(n("10.2.0.0/16"), None),
        WriteIdentity(n("10.2.3.0/24"), None),
        FlushConntrack(frozenset({ip_address("10.1.2.3")})),
        WritePolicy("a/p", EndpointPolicy.allow_all()),
        RemoveEndpoint("a/gone"),
    ]


def _check_every_step(h: Harness, change) -> list:
    """Apply `change` through the plan, checking e -> z and z -> e on a few ports at every
    step against the states before and after."""
    before = h.dp.copy()
    delta = change()
    after = before.copy()
    after.apply(delta)
    probes = [
        (src, ip_address(sip), dst, ip_address(dip), proto, port)
        for src, sip, dst, dip in (
            ("a/e", "10.0.0.1", "a/z", "10.0.0.2"),
            ("a/z", "10.0.0.2", "a/e", "10.0.0.1"),
        )
        for proto, port in (("TCP", 80), ("UDP", 53))
    ]
    mid = before.copy()
    steps = plan_writes(delta, before.policies)
    for step in steps:
        mid.apply_step(step)
        for probe in probes:
            now, old, new = (d.connection(*probe) for d in (mid, before, after))
            assert not now or old or new, (probe, step)
            assert now or not (old and new), (probe, step)
    assert mid == after
    return steps


def test_relabel_never_combines_new_egress_with_old_peer_identity() -> None:
    # e's egress is closed while it is role=a; as role=b it may reach z, but z only admits
    # role=a. Neither state lets e reach z; writing e's new table before its identity (or a
    # union of old and new) would, for a moment.
    h = Harness(
        pod("a", "e", ["10.0.0.1"], {"role": "a"}),
        pod("a", "z", ["10.0.0.2"], {"app": "z"}),
        policy("a", "qa", podSelector={"matchLabels": {"role": "a"}}, policyTypes=["Egress"]),
        policy(
            "a",
            "qb",
            podSelector={"matchLabels": {"role": "b"}},
            policyTypes=["Egress"],
            egress=[{"to": [{"podSelector": {}}]}],
        ),
        policy(
            "a",
            "z",
            podSelector={"matchLabels": {"app": "z"}},
            ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "a"}}}]}],
        ),
    )
    relabel = pod("a", "e", ["10.0.0.1"], {"role": "b"})

    def change() -> CompileDelta:
        h.state.upsert(relabel)
        return h.compiler.on_upsert(relabel)

    steps = _check_every_step(h, change)
    assert any(isinstance(s, WritePolicy) and s.transitional for s in steps)


def test_policy_swap_between_two_local_endpoints_never_widens() -> None:
    # Egress of e and ingress of z flip at once: each old/new mix must stay within a state.
    h = Harness(
        pod("a", "e", ["10.0.0.1"], {"app": "e"}),
        pod("a", "z", ["10.0.0.2"], {"app": "z"}),
        policy("a", "pe", podSelector={"matchLabels": {"app": "e"}}, policyTypes=["Egress"]),
        policy("a", "pz", podSelector={"matchLabels": {"app": "z"}}, ingress=[{}]),
    )
    swap = policy(
        "a", "pz", podSelector={"matchLabels": {"app": "e"}}, policyTypes=["Egress"], egress=[{}]
    )

    def change() -> CompileDelta:
        h.state.upsert(swap)
        return h.compiler.on_upsert(swap)

    _check_every_step(h, change)


def test_two_endpoints_moving_identity_at_once_never_widens() -> None:
    # A new ipBlock moves both pods' addresses to a new class. Old: z admits nobody, e may
    # send anywhere; new: z admits the block, e sends nowhere. Between the two address writes
    # e's egress still sees z's old identity (old: open) and z's ingress already sees e's new
    # one (new: admitted): neither state allows e -> z, the mix would.
    h = Harness(
        pod("a", "e", ["10.0.0.1"]),
        pod("a", "z", ["10.0.0.2"]),
        policy("a", "p", podSelector={}),
    )
    swap = policy(
        "a",
        "p",
        podSelector={},
        policyTypes=["Ingress", "Egress"],
        ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}],
    )

    def change() -> CompileDelta:
        h.state.upsert(swap)
        return h.compiler.on_upsert(swap)

    steps = _check_every_step(h, change)
    moves = [s for s in steps if isinstance(s, WriteIdentity) and s.prefix.prefixlen == 32]
    assert len(moves) == 2  # the case this test is about: both ends move in one delta


def test_endpoints_whose_tables_stay_still_get_a_transition_when_both_ends_move() -> None:
    # Both addresses move from identity 20 to 21 (both persist: other members), tables
    # unchanged: e1 may send to 20 only, e2 admits 21 only. Neither state allows e1 -> e2;
    # writing e1's address first would let e2 admit it (21) while e1 still sees e2 as 20.
    a1, a2 = ip_network("10.0.0.1/32"), ip_network("10.0.0.2/32")
    e1 = EndpointPolicy(False, True, frozenset({PolicyEntry(OUT, 20, PROTO_ANY)}))
    e2 = EndpointPolicy(True, False, frozenset({PolicyEntry(IN, 21, PROTO_ANY)}))
    before = Datapath.of(
        {a1: 20, a2: 20, ip_network("10.0.0.3/32"): 20, ip_network("10.0.0.4/32"): 21},
        {"a/e1": e1, "a/e2": e2},
    )
    delta = CompileDelta(
        identity_changes={a1: 21, a2: 21},
        address_moves={a1: AddressMove("a/e1", 20, 21), a2: AddressMove("a/e2", 20, 21)},
    )
    after = before.copy()
    after.apply(delta)
    probe = ("a/e1", ip_address("10.0.0.1"), "a/e2", ip_address("10.0.0.2"), "TCP", 80)
    assert not before.connection(*probe) and not after.connection(*probe)
    mid = before.copy()
    steps = plan_writes(delta, before.policies)
    for step in steps:
        mid.apply_step(step)
        assert not mid.connection(*probe), step
    assert mid == after
    assert [s.pod_key for s in steps if isinstance(s, WritePolicy)] == ["a/e2", "a/e2"]


def test_plan_for_an_unchanged_table_writes_nothing_for_it() -> None:
    policy_now = EndpointPolicy(True, False, frozenset({PolicyEntry(IN, 20, PROTO_ANY)}))
    delta = CompileDelta(endpoints={"a/p": policy_now})
    assert plan_writes(delta, {"a/p": policy_now}) == []
    assert Datapath().lookup(ip_address("1.2.3.4")) == 1
