"""Cluster-scoped tiers flattened into one endpoint's table (pure, no kernel).

Per direction the Admin tier's rules, then NetworkPolicy, then the Baseline tier's rules, then
allow, decide each (peer identity, protocol, port) (enforcer.model.clusterpolicy has the
order). This module computes that decision for every peer identity some rule names, and for
the wildcard identity (every other peer: no cluster rule names it, so NetworkPolicy's
wildcard entries or the default decide), as disjoint regions with one verdict each and the
rules that decided them, and writes them as allow and deny entries (EndpointPolicy.denies):

- the wildcard identity's table, complete: an any-protocol entry and port ranges where they
  differ from it;
- a named identity's table only where its decisions differ from the wildcard's, and then
  complete (its own any-protocol entry stops the kernel from falling back to the wildcard).

So a packet costs the same two lookups as before, however many cluster policies there are:
the work is here, once per change. Identities with the same matching rules and the same
NetworkPolicy entries share one computation.

What a direction with no cluster rule for the pod has stays NetworkPolicy's table as it was.
Denied regions carry the deciding Deny rule as their origin; NetworkPolicy's default deny
carries none (flows then name the isolating policies, as before).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import ip_network

from enforcer.compiler.allowset import AllowSet, DirectionView, _merge
from enforcer.compiler.classes import ClassRegistry
from enforcer.compiler.peers import PeerKey
from enforcer.datapath.types import (
    IDENTITY_ANY,
    PROTO_ANY,
    PROTOCOL_NUMBERS,
    Direction,
    EndpointPolicy,
    PolicyEntry,
    RuleOrigin,
)
from enforcer.model.clusterpolicy import (
    ACCEPT,
    PASS,
    ClusterPeer,
    ClusterPolicy,
    ClusterRule,
)
from enforcer.model.nodes import Node
from enforcer.model.objects import EGRESS, INGRESS, IPBlock, Pod

Members = Callable[[PeerKey], set[int]]
Origins = frozenset[RuleOrigin]
PORTED = tuple(sorted(PROTOCOL_NUMBERS.values()))  # TCP, UDP, SCTP
_DIRECTIONS = ((INGRESS, Direction.INGRESS), (EGRESS, Direction.EGRESS))


def rule_origin(policy: ClusterPolicy, index: int) -> RuleOrigin:
    """`Kind/name`: never a NetworkPolicy's `namespace/name` (a namespace is lowercase)."""
    return RuleOrigin(policy.key, index)


def node_blocks(peer: ClusterPeer, nodes: Iterable[Node]) -> set[IPBlock]:
    if peer.nodes is None:
        return set()
    return {IPBlock(ip_network(ip)) for node in nodes if peer.nodes.matches(node.labels)
            for ip in node.addresses}


def peer_keys(peer: ClusterPeer, nodes: Iterable[Node]) -> list[PeerKey]:
    """The compiler's peer keys (enforcer.compiler.peers) a cluster peer's identities are."""
    if peer.namespaces is not None:
        return [("nspods", peer.namespaces, None)]
    if peer.pods is not None:
        return [("nspods", peer.pods.namespace_selector, peer.pods.pod_selector)]
    if peer.networks:
        return [("block", IPBlock(net)) for net in peer.networks]
    return [("block", block) for block in node_blocks(peer, nodes)]  # domainNames: none


def policy_blocks(policy: ClusterPolicy, nodes: Iterable[Node]) -> set[IPBlock]:
    """The address blocks a cluster policy's peers name (identity classes split on them)."""
    nodes = list(nodes)
    return {key[1] for rule in (*policy.ingress, *policy.egress) for peer in rule.peers
            for key in peer_keys(peer, nodes) if key[0] == "block"}


@dataclass(frozen=True)
class _Rule:
    policy: ClusterPolicy
    index: int
    rule: ClusterRule
    members: frozenset[int]
    named: bool  # has a named port (resolved per destination)


@dataclass(frozen=True)
class _Piece:
    region: AllowSet
    allow: bool
    origins: Origins


def tiered_policy(
    pod: Pod,
    np: EndpointPolicy,
    admin: dict[str, list[ClusterPolicy]],
    baseline: dict[str, list[ClusterPolicy]],
    registry: ClassRegistry,
    members: Members,
    nodes: Iterable[Node],
) -> tuple[EndpointPolicy, set[PeerKey]]:
    """The pod's table with the tiers over NetworkPolicy's `np`; admin/baseline: per
    direction (INGRESS, EGRESS) the tier's policies selecting the pod, in evaluation order.
    Returns the table and the peer keys it depends on."""
    nodes = list(nodes)
    uses: set[PeerKey] = set()
    isolated = {Direction.INGRESS: np.ingress_isolated, Direction.EGRESS: np.egress_isolated}
    allows: set[PolicyEntry] = set()
    denies: set[PolicyEntry] = set()
    origins: set[tuple[PolicyEntry, RuleOrigin]] = set()
    for name, direction in _DIRECTIONS:
        tiers = [_rules(admin.get(name, ()), name, nodes, members, uses),
                 _rules(baseline.get(name, ()), name, nodes, members, uses)]
        if not (tiers[0] or tiers[1]):
            kept = {e for e in np.entries if e.direction == direction}
            allows |= kept
            origins |= {(e, o) for e, o in np.origins if e in kept}
            continue
        isolated[direction] = True
        _Direction(pod, np, direction, tiers, registry).write(allows, denies, origins)
    return (
        EndpointPolicy(
            isolated[Direction.INGRESS],
            isolated[Direction.EGRESS],
            frozenset(allows),
            frozenset(origins),
            np.isolating_ingress,
            np.isolating_egress,
            audit=np.audit,
            denies=frozenset(denies),
        ),
        uses,
    )


def _rules(policies: Iterable[ClusterPolicy], direction: str, nodes: list[Node],
           members: Members, uses: set[PeerKey]) -> list[_Rule]:
    out = []
    for policy in policies:
        for index, rule in enumerate(policy.rules(direction)):
            found: set[int] = set()
            for peer in rule.peers:
                for key in peer_keys(peer, nodes):
                    uses.add(key)
                    found |= members(key)
            named = any(p.named is not None for p in rule.ports or ())
            out.append(_Rule(policy, index, rule, frozenset(found), named))
    return out


class _Direction:
    def __init__(self, pod: Pod, np: EndpointPolicy, direction: Direction,
                 tiers: list[list[_Rule]], registry: ClassRegistry) -> None:
        self.pod = pod
        self.direction = direction
        self.admin, self.baseline = tiers
        self.registry = registry
        self.view = DirectionView(np, direction)
        self.np_isolated = self.view.isolated
        self.np_peers = self.view.peers()
        self._port_sets: dict[tuple[int, int | None], AllowSet] = {}
        # NetworkPolicy's entries of this direction with their rules, per peer.
        self.np_entries: dict[int, list[tuple[PolicyEntry, Origins]]] = {}
        by_entry: dict[PolicyEntry, set[RuleOrigin]] = {}
        for e, o in np.origins:
            by_entry.setdefault(e, set()).add(o)
        for e in np.entries:
            if e.direction == direction:
                self.np_entries.setdefault(e.peer, []).append((e, frozenset(by_entry.get(e, ()))))

    def write(self, allows: set[PolicyEntry], denies: set[PolicyEntry],
              origins: set[tuple[PolicyEntry, RuleOrigin]]) -> None:
        # Per identity, the rules naming it (in order): one pass over the rules' members.
        self.matching: dict[int, list[int]] = {}
        for index, r in enumerate((*self.admin, *self.baseline)):
            for ident in r.members:
                self.matching.setdefault(ident, []).append(index)
        named = set(self.matching) | (self.np_peers - {IDENTITY_ANY})
        cache: dict[tuple, _Table] = {}
        wildcard = self._table(IDENTITY_ANY, cache)
        tables = [(IDENTITY_ANY, wildcard)]
        for ident in sorted(named):
            table = self._table(ident, cache)
            if table != wildcard:
                tables.append((ident, table))
        for ident, table in tables:
            for entry, allow, rules in table.entries(self.direction, ident):
                (allows if allow else denies).add(entry)
                origins.update((entry, o) for o in rules)

    def _signature(self, ident: int) -> tuple:
        rules = tuple(self.matching.get(ident, ()))
        own = ident if ident in self.np_peers else None
        ports = None
        if self.direction == Direction.EGRESS and ident != IDENTITY_ANY and any(
                (*self.admin, *self.baseline)[i].named for i in rules):
            ports = _class_named_ports(self.registry, ident)
        return rules, own, ports

    def _table(self, ident: int, cache: dict[tuple, _Table]) -> _Table:
        key = self._signature(ident)
        found = cache.get(key)
        if found is None:
            found = _Table.of(self._decide(ident))
            cache[key] = found
        return found

    def _decide(self, ident: int) -> list[_Piece]:
        pieces: list[_Piece] = []
        remaining = AllowSet.everything()
        remaining = self._tier(self.admin, ident, remaining, pieces)
        if self.np_isolated:
            allowed = self.view.allowed(ident)
            for own in (ident, IDENTITY_ANY) if ident != IDENTITY_ANY else (IDENTITY_ANY,):
                for entry, rules in self.np_entries.get(own, ()):
                    region = AllowSet.of([entry]).intersect(remaining).intersect(allowed)
                    if not region.is_empty():
                        pieces.append(_Piece(region, True, rules))
            refused = remaining.minus(allowed)
            if not refused.is_empty():
                pieces.append(_Piece(refused, False, frozenset()))
            return pieces
        remaining = self._tier(self.baseline, ident, remaining, pieces)
        if not remaining.is_empty():
            pieces.append(_Piece(remaining, True, frozenset()))  # nothing decided: allow
        return pieces

    def _tier(self, rules: list[_Rule], ident: int, remaining: AllowSet,
              pieces: list[_Piece]) -> AllowSet:
        """First match per region; returns what no Accept or Deny of the tier decided (a
        region a Pass matched skips the tier's later rules and goes on with it)."""
        passed = AllowSet()
        for r in rules:
            if ident not in r.members or remaining.is_empty():
                continue
            region = self._ports(r, ident).intersect(remaining)
            if region.is_empty():
                continue
            remaining = remaining.minus(region)
            if r.rule.action == PASS:
                passed = passed.union(region)
            else:
                pieces.append(_Piece(region, r.rule.action == ACCEPT,
                                     frozenset({rule_origin(r.policy, r.index)})))
        return remaining.union(passed)

    def _ports(self, r: _Rule, ident: int) -> AllowSet:
        """What the rule's ports match toward this peer (the same for every peer unless a
        named port resolves on the peer: egress)."""
        key = (id(r), ident if r.named and self.direction == Direction.EGRESS else None)
        found = self._port_sets.get(key)
        if found is None:
            found = self._port_sets[key] = self._resolve_ports(r, ident)
        return found

    def _resolve_ports(self, r: _Rule, ident: int) -> AllowSet:
        if r.rule.ports is None:
            return AllowSet.everything()
        by_proto: dict[int, list[tuple[int, int]]] = {}
        for port in r.rule.ports:
            if port.named is not None:
                for proto_name, proto in PROTOCOL_NUMBERS.items():
                    if self.direction == Direction.INGRESS:
                        numbers: Iterable[int] = self.pod.resolve_named_port(port.named,
                                                                             proto_name)
                    else:
                        numbers = _class_port_numbers(self.registry, ident, port.named,
                                                      proto_name)
                    by_proto.setdefault(proto, []).extend((n, n) for n in numbers)
            elif port.protocol is not None:
                lo = 0 if port.start is None else port.start
                hi = 65535 if port.end is None else port.end
                by_proto.setdefault(PROTOCOL_NUMBERS[port.protocol], []).append((lo, hi))
        return AllowSet.build({p: _merge(rs) for p, rs in by_proto.items()}, rest=False)


def _class_named_ports(registry: ClassRegistry, ident: int) -> frozenset | None:
    try:
        return registry.get(ident).named_ports
    except KeyError:  # the wildcard or the world: no pod, no named port
        return None


def _class_port_numbers(registry: ClassRegistry, ident: int, name: str,
                        protocol: str) -> tuple[int, ...]:
    try:
        return registry.get(ident).port_numbers(name, protocol)
    except KeyError:
        return ()


@dataclass(frozen=True)
class _Table:
    """One identity's decisions: the verdict and rules for protocols without ports (and for
    ports no range names), and per ported protocol the ranges that differ from it."""

    other: tuple[bool, Origins]
    ranges: tuple[tuple[int, tuple[tuple[int, int, bool, Origins], ...]], ...]

    @classmethod
    def of(cls, pieces: list[_Piece]) -> _Table:
        other_allow, other_rules = False, frozenset()
        for piece in pieces:
            if piece.region.rest:
                other_allow = piece.allow
                other_rules = other_rules | piece.origins
        ranges = []
        for proto in PORTED:
            cuts = _sweep([(lo, hi, p.allow, p.origins) for p in pieces
                           for lo, hi in p.region.ports(proto)])
            differing = tuple(c for c in cuts if (c[2], c[3]) != (other_allow, other_rules))
            if differing:
                ranges.append((proto, differing))
        return cls((other_allow, other_rules), tuple(ranges))

    def entries(self, direction: Direction, ident: int
                ) -> list[tuple[PolicyEntry, bool, Origins]]:
        allow, rules = self.other
        out = [(PolicyEntry(direction, ident, PROTO_ANY, 0, 65535), allow, rules)]
        for proto, cuts in self.ranges:
            out.extend((PolicyEntry(direction, ident, proto, lo, hi), ok, why)
                       for lo, hi, ok, why in cuts)
        return out


def _sweep(parts: list[tuple[int, int, bool, Origins]]) -> list[tuple[int, int, bool, Origins]]:
    """Disjoint intervals over 0-65535 from parts that overlap only with the same verdict;
    overlapping parts' rules are united, adjacent equal intervals merged. A port no part
    covers is denied with no rule (cannot happen: the pieces cover everything)."""
    bounds = sorted({0, 65536} | {lo for lo, _, _, _ in parts} | {hi + 1 for _, hi, _, _ in parts})
    out: list[tuple[int, int, bool, Origins]] = []
    for lo, nxt in itertools.pairwise(bounds):
        covering = [p for p in parts if p[0] <= lo and p[1] >= nxt - 1]
        allow = bool(covering) and all(p[2] for p in covering)
        rules: Origins = frozenset().union(*(p[3] for p in covering))
        if out and out[-1][1] == lo - 1 and out[-1][2:] == (allow, rules):
            out[-1] = (out[-1][0], nxt - 1, allow, rules)
        else:
            out.append((lo, nxt - 1, allow, rules))
    return out

