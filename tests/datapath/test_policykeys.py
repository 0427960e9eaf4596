"""Policy table entries (pure: no kernel): which directions a generation opens entirely, and
the rule set each entry names for attribution."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from enforcer.datapath.layout import POL_KEY, POL_VAL
from enforcer.datapath.policykeys import (
    PREFIX_DIRECTION,
    PREFIX_IDENTITY,
    PREFIX_PROTO,
    decode,
    encode,
    normalize,
    open_directions,
    rule_set_id,
)
from enforcer.datapath.types import (
    IDENTITY_ANY,
    PROTO_ANY,
    PROTO_TCP,
    PROTO_UDP,
    Direction,
    EndpointPolicy,
    PolicyEntry,
    RuleOrigin,
)

IN, OUT = Direction.INGRESS, Direction.EGRESS


def test_a_direction_is_open_when_not_isolated_or_allowing_any_peer_and_protocol() -> None:
    assert open_directions(EndpointPolicy.allow_all()) == {IN, OUT}
    assert open_directions(EndpointPolicy(True, True)) == set()
    assert open_directions(EndpointPolicy(False, True)) == {IN}
    any_peer_any_proto = PolicyEntry(OUT, IDENTITY_ANY, PROTO_ANY, 0, 65535)
    assert open_directions(EndpointPolicy(True, True, frozenset({any_peer_any_proto}))) == {OUT}


def test_narrower_rules_do_not_open_a_direction() -> None:
    narrower = [
        PolicyEntry(IN, IDENTITY_ANY, PROTO_TCP, 0, 65535),  # one protocol only
        PolicyEntry(IN, IDENTITY_ANY, PROTO_TCP, 80, 80),
        PolicyEntry(IN, 1234, PROTO_ANY, 0, 65535),  # one peer only
    ]
    for entry in narrower:
        assert open_directions(EndpointPolicy(True, True, frozenset({entry}))) == set(), entry


# --- attribution: each entry's rule set (pure) --------------------------------------------

ORIGINS = [RuleOrigin(f"ns/p{i}", i % 3) for i in range(6)]
PEERS = (IDENTITY_ANY, 20, 21)


def _lookup(pairs: list[tuple[bytes, bytes]], direction: Direction, peer: int, proto: int,
            port: int) -> int | None:
    """The kernel's two lookups (policy.h): the longest prefix for the peer, else for any
    peer; the rule set id of the entry found, or None (denied)."""
    for ident in (peer, IDENTITY_ANY):
        best: tuple[int, int] | None = None
        for key, value in pairs:
            plen, d, peer_raw, kproto, kport = POL_KEY.unpack(key)
            if d != direction:
                continue
            if plen == PREFIX_DIRECTION:
                return POL_VAL.unpack(value)[2]
            if int.from_bytes(peer_raw, "big") != ident:
                continue
            if plen > PREFIX_IDENTITY:
                if kproto != proto:
                    continue
                bits = plen - PREFIX_PROTO
                if bits and (port >> (16 - bits)) != (int.from_bytes(kport, "big") >> (16 - bits)):
                    continue
            if best is None or plen > best[0]:
                best = (plen, POL_VAL.unpack(value)[2])
        if best is not None:
            return best[1]
    return None


entry_strategy = st.builds(
    lambda d, peer, proto, lo, width: PolicyEntry(
        d, peer, proto, *((0, 65535) if proto == PROTO_ANY else (lo, min(65535, lo + width)))),
    st.sampled_from([IN, OUT]), st.sampled_from(PEERS), st.sampled_from([PROTO_ANY, PROTO_TCP,
                                                                         PROTO_UDP]),
    st.integers(0, 40), st.integers(0, 12))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(entry_strategy, st.sampled_from(ORIGINS)), max_size=10),
       st.booleans(), st.booleans())
def test_the_entry_a_packet_meets_names_every_rule_that_allows_it(
    produced: list[tuple[PolicyEntry, RuleOrigin]], in_isolated: bool, out_isolated: bool
) -> None:
    policy = EndpointPolicy(in_isolated, out_isolated, frozenset(e for e, _ in produced),
                            frozenset(produced))
    named: dict[int, frozenset[RuleOrigin]] = {}
    pairs = encode(policy, named)
    assert decode(pairs) == normalize(policy)  # the tables themselves are unchanged
    for direction in (IN, OUT):
        isolated = in_isolated if direction is IN else out_isolated
        for peer in (*PEERS[1:], 99):
            for proto in (PROTO_TCP, PROTO_UDP):
                for port in range(0, 56):
                    want = {o for e, o in produced if e.direction is direction
                            and e.peer in (peer, IDENTITY_ANY)
                            and (e.protocol == PROTO_ANY or (
                                e.protocol == proto and e.port_lo <= port <= e.port_hi))}
                    got = _lookup(pairs, direction, peer, proto, port)
                    if not isolated:
                        assert got == 0
                    elif not want:
                        assert got is None, (direction, peer, proto, port)
                    else:
                        assert got is not None and named[got] == want, (
                            direction, peer, proto, port)


def test_a_rule_set_id_is_the_same_in_every_agent_and_zero_for_none() -> None:
    a, b = RuleOrigin("ns/x", 0), RuleOrigin("ns/y", 2)
    assert rule_set_id([a, b]) == rule_set_id([b, a, a]) != rule_set_id([a])
    assert rule_set_id([]) == 0
