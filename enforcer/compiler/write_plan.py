"""The order in which the datapath writer applies a CompileDelta.

A packet's verdict combines lookups the writer cannot change atomically together: the peer
IP's identity (one LPM entry), the source endpoint's egress table and the destination
endpoint's ingress table (one generation swap each). Applying a delta in an arbitrary order
could, for a moment, combine the old half of one lookup with the new half of another and allow
what neither the old nor the new state allows (e.g. a relabelled pod's new egress rules with
its peer's ingress still keyed to its old identity). The plan has three phases:

1. Transition tables. Every endpoint that changes and already has a table gets T, which for
   every peer identity allows exactly old ∩ new:
   - stable identities (named addresses before and after): the exact intersection;
   - identities born in this delta: new (no address maps to them yet, so nothing is allowed
     early; once addresses move to them the new verdict is the right one for those addresses);
   - identities that die in this delta: old (symmetrically, they stop mattering once their
     addresses have moved).
   With the old identity map, T allows a subset of old: every endpoint is old or T, so no
   packet sees more than the old state.
2. Identity writes: upserts longest prefix first, then deletes shortest prefix first, so each
   address resolves to either its old or its new identity at every step (an upsert of a short
   prefix never exposes a longer new prefix not yet written; a delete never exposes an older,
   shorter prefix while a longer old one is still due to go). Every changed endpoint holds T,
   so each packet's verdict is within old ∩ new for its stable-identity peers; unchanged
   endpoints give each address its old or its new verdict. Then conntrack is flushed for IPs
   whose owner changed (after the writes, so no entry made under the old owner survives).
3. Final tables, then removed endpoints. With the new identity map T allows a subset of new,
   so every endpoint being T or new never exceeds the new state.

New endpoints get their table in phase 3 (until then the unknown-endpoint verdict applies).
A packet allowed by both states is allowed throughout (T contains old ∩ new); one allowed by
only one state may be denied during the window, which is indistinguishable from seeing the
other state.

When the own addresses of two or more local endpoints move in one delta (a new or removed
ipBlock reclassifies many addresses at once), a connection between two of them could be
judged, between the two address writes, by the old half of one table and the new half of the
other: the sender's egress still seeing the receiver's old identity (old: open) while the
receiver's ingress already sees the sender's new one (new: admitted), though neither state
allows it. So each such endpoint's T also narrows ingress from the other movers' old and new
numbers to what the old table allowed the one and the new table allows the other (written
even when its own table does not change): the ingress half is then within both states
whatever has been written, the egress half within one of them, so the connection is within
one state.

Limit, confined to deltas that add or remove an ipBlock: an address that moves into an
identity that persists (e.g. out of a removed block into the world), and the other members of
a number narrowed as above, get a verdict within old ∩ new until the final tables, which may
briefly deny what both states allow. The differential tests check every intermediate state of
random deltas against both end states. Node to node, each agent converges on its own (as in
every enforcer).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from enforcer.compiler.allowset import AllowSet, DirectionView
from enforcer.compiler.delta import CompileDelta
from enforcer.datapath.types import (
    IDENTITY_ANY,
    Direction,
    EndpointPolicy,
    IPNetwork,
    PolicyEntry,
)
from enforcer.model.objects import IPAddress


@dataclass(frozen=True)
class WritePolicy:
    pod_key: str
    policy: EndpointPolicy
    transitional: bool = False  # the phase-1 table, replaced by the final one in phase 3


@dataclass(frozen=True)
class WriteIdentity:
    prefix: IPNetwork
    identity: int | None  # None: delete the prefix


@dataclass(frozen=True)
class FlushConntrack:
    ips: frozenset[IPAddress]


@dataclass(frozen=True)
class RemoveEndpoint:
    pod_key: str


WriteStep = WritePolicy | WriteIdentity | FlushConntrack | RemoveEndpoint


def transition_policy(
    old: EndpointPolicy,
    new: EndpointPolicy,
    born: frozenset[int] = frozenset(),
    dead: frozenset[int] = frozenset(),
    moving_peers: Iterable[tuple[int, int]] = (),
) -> EndpointPolicy:
    """The table that allows, for every peer identity, old ∩ new (see the module doc).

    moving_peers: (identity before, identity after) of other local endpoints' addresses that
    move in this delta; ingress from either number is narrowed to what the old table allowed
    the one and the new table allows the other.
    """
    narrowed: dict[int, list[tuple[int, int]]] = {}
    for move in moving_peers:
        for ident in move:
            narrowed.setdefault(ident, []).append(move)
    entries: list[PolicyEntry] = []
    denies: list[PolicyEntry] = []
    # Allow entries alone say T exactly while every peer's set contains the wildcard's (a
    # table with no deny entries, old and new): a peer's own entries add to the wildcard's.
    # With deny entries each peer's T is written as a table of its own.
    exact_tables = bool(old.denies or new.denies)
    for direction in (Direction.INGRESS, Direction.EGRESS):
        before, after = DirectionView(old, direction), DirectionView(new, direction)
        moves = narrowed if direction is Direction.INGRESS else {}
        if not (before.isolated or after.isolated):
            continue
        # Born and dying identities need their own entries even without specific ones: the
        # any-peer entries of T are old ∩ new, narrower than what such a peer gets.
        for peer in before.peers() | after.peers() | born | dead | moves.keys() | {IDENTITY_ANY}:
            was = AllowSet.everything() if peer in born else before.allowed(peer)
            will = AllowSet.everything() if peer in dead else after.allowed(peer)
            allowed = was.intersect(will)
            for was_id, will_id in moves.get(peer, ()):
                allowed = allowed.intersect(before.allowed(was_id)).intersect(
                    after.allowed(will_id)
                )
            if exact_tables:
                allows, refusals = allowed.table(direction, peer)
                entries.extend(allows)
                denies.extend(refusals)
            else:
                entries.extend(allowed.entries(direction, peer))
    return EndpointPolicy(
        ingress_isolated=old.ingress_isolated or new.ingress_isolated,
        egress_isolated=old.egress_isolated or new.egress_isolated,
        entries=frozenset(entries),
        denies=frozenset(denies),
    )


def _moving_peers(
    delta: CompileDelta, previous_policies: Mapping[str, EndpointPolicy]
) -> dict[str, list[tuple[int, int]]]:
    """For each endpoint with a table, the moves of the other endpoints' addresses, when
    addresses of two or more such endpoints move (see the module doc)."""
    moves: dict[str, Counter[tuple[int, int]]] = {}
    for move in delta.address_moves.values():
        if move.pod_key in previous_policies:
            moves.setdefault(move.pod_key, Counter())[(move.before, move.after)] += 1
    if len(moves) < 2:
        return {}
    # Distinct (before, after) pairs: a reclassification moves whole classes, so there are
    # few, however many pods move.
    everyone: Counter[tuple[int, int]] = sum(moves.values(), Counter())
    return {key: sorted((everyone - own).keys()) for key, own in moves.items()}


def plan_writes(
    delta: CompileDelta, previous_policies: Mapping[str, EndpointPolicy]
) -> list[WriteStep]:
    """The writes for `delta`, in order; `previous_policies` are the tables now in force (for
    the endpoints the delta changes and those whose addresses it moves)."""
    steps: list[WriteStep] = []
    written: dict[str, EndpointPolicy] = {}
    moving = _moving_peers(delta, previous_policies)
    keys = sorted(delta.endpoints.keys() | moving.keys())
    for key in keys:
        old = previous_policies.get(key)
        new = delta.endpoints.get(key, old)
        if old is None or new is None or (old == new and key not in moving):
            continue
        step = transition_policy(
            old, new, delta.born_identities, delta.dead_identities, moving.get(key, ())
        )
        if step != old:
            steps.append(WritePolicy(key, step, transitional=True))
            written[key] = step
    upserts = [(p, i) for p, i in delta.identity_changes.items() if i is not None]
    deletes = [p for p, i in delta.identity_changes.items() if i is None]
    upserts.sort(key=lambda pi: (-pi[0].prefixlen, pi[0].version, int(pi[0].network_address)))
    deletes.sort(key=lambda p: (p.prefixlen, p.version, int(p.network_address)))
    steps.extend(WriteIdentity(p, i) for p, i in upserts)
    steps.extend(WriteIdentity(p, None) for p in deletes)
    if delta.ip_owner_changes:
        steps.append(FlushConntrack(frozenset(delta.ip_owner_changes)))
    for key in keys:
        new = delta.endpoints.get(key, previous_policies.get(key))
        if new is not None and written.get(key, previous_policies.get(key)) != new:
            steps.append(WritePolicy(key, new))
    steps.extend(RemoveEndpoint(k) for k in sorted(delta.removed_endpoints))
    return steps
