"""Which directions a generation opens entirely (pure: no kernel)."""

from __future__ import annotations

from enforcer.datapath.policykeys import open_directions
from enforcer.datapath.types import (
    IDENTITY_ANY,
    PROTO_ANY,
    PROTO_TCP,
    Direction,
    EndpointPolicy,
    PolicyEntry,
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
