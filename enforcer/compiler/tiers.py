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
from dataclasses import dataclass, field
from ipaddress import ip_network

from enforcer.compiler.allowset import AllowSet, DirectionView, _merge
from enforcer.compiler.classes import ClassRegistry
from enforcer.compiler.peers import PeerKey
from enforcer.datapath.types import (
    IDENTITY_ANY,
    IDENTITY_WORLD,
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


EVERY_CLASS: PeerKey = ("every",)  # a table that names every class: any new class changes it


@dataclass
class Skeleton:
    """What one direction's tier rules make of the identities, the same for every endpoint
    the same policies select: each rule with its members, and the identities grouped by the
    rules that name them (one pass over the members, shared by those endpoints)."""

    rules: list[_Rule]  # the Admin tier's first (admin_count of them), then the Baseline's
    admin_count: int
    groups: dict[tuple[int, ...], set[int]]  # indexes of the rules naming them -> identities
    keys: set[PeerKey]
    registry: ClassRegistry
    _named: set[int] | None = None
    _unnamed: set[int] | None = None
    # Decided tables by what they depend on besides the rules: the endpoint's NetworkPolicy
    # side of the direction (and its own named ports, for ingress named ports). Endpoints
    # with the same NetworkPolicies share them.
    tables: dict[tuple, dict[tuple, _Table]] = field(default_factory=dict)

    @classmethod
    def build(cls, admin: list[ClusterPolicy], baseline: list[ClusterPolicy], direction: str,
              nodes: list[Node], members: Members, registry: ClassRegistry) -> Skeleton:
        keys: set[PeerKey] = set()
        rules = []
        for policy in (*admin, *baseline):
            for index, rule in enumerate(policy.rules(direction)):
                found: set[int] = set()
                for peer in rule.peers:
                    for key in peer_keys(peer, nodes):
                        keys.add(key)
                        found |= members(key)
                named = any(p.named is not None for p in rule.ports or ())
                rules.append(_Rule(policy, index, rule, frozenset(found), named))
        # The identities split by which rules name them, by set operations (a rule naming
        # thousands of classes costs C-level set work, not a Python step per class).
        groups: dict[tuple[int, ...], set[int]] = {}
        seen: set[int] = set()
        for position, r in enumerate(rules):
            if not r.members:
                continue
            refined: dict[tuple[int, ...], set[int]] = {}
            for positions, idents in groups.items():
                inside = idents & r.members
                if not inside:
                    refined[positions] = idents
                    continue
                refined[(*positions, position)] = inside
                if len(inside) < len(idents):
                    refined[positions] = idents - inside
            fresh = r.members - seen
            if fresh:
                refined[(position,)] = set(fresh)
                seen |= fresh
            groups = refined
        admin_count = sum(len(p.rules(direction)) for p in admin)
        return cls(rules, admin_count, groups, keys, registry)

    def named(self) -> set[int]:
        """The identities some rule names."""
        if self._named is None:
            self._named = set().union(*self.groups.values())
        return self._named

    def unnamed(self) -> set[int]:
        """Every identity no rule names: the classes, and the world (no class covers it)."""
        if self._unnamed is None:
            named = self.named()
            self._unnamed = {i for i in self.registry if i not in named}
            self._unnamed.add(IDENTITY_WORLD)
        return self._unnamed


class Skeletons:
    """Skeletons by (direction, the tiers' policies), for one compiler step: the endpoints a
    cluster policy selects are recomputed in the same step, and share them. Members change
    only between steps."""

    def __init__(self, registry: ClassRegistry, members: Members, nodes: Iterable[Node]) -> None:
        self.registry, self.members, self.nodes = registry, members, list(nodes)
        self._found: dict[tuple, Skeleton] = {}

    def get(self, direction: str, admin: list[ClusterPolicy],
            baseline: list[ClusterPolicy]) -> Skeleton:
        key = (direction, tuple(p.key for p in admin), tuple(p.key for p in baseline))
        found = self._found.get(key)
        if found is None:
            found = Skeleton.build(admin, baseline, direction, self.nodes, self.members,
                                   self.registry)
            self._found[key] = found
        return found


def tiered_policy(
    pod: Pod,
    np: EndpointPolicy,
    admin: dict[str, list[ClusterPolicy]],
    baseline: dict[str, list[ClusterPolicy]],
    skeletons: Skeletons,
) -> tuple[EndpointPolicy, set[PeerKey]]:
    """The pod's table with the tiers over NetworkPolicy's `np`; admin/baseline: per
    direction (INGRESS, EGRESS) the tier's policies selecting the pod, in evaluation order.
    Returns the table and the peer keys it depends on."""
    uses: set[PeerKey] = set()
    isolated = {Direction.INGRESS: np.ingress_isolated, Direction.EGRESS: np.egress_isolated}
    allows: set[PolicyEntry] = set()
    denies: set[PolicyEntry] = set()
    origins: set[tuple[PolicyEntry, RuleOrigin]] = set()
    for name, direction in _DIRECTIONS:
        if not (admin.get(name) or baseline.get(name)):
            kept = {e for e in np.entries if e.direction == direction}
            allows |= kept
            origins |= {(e, o) for e, o in np.origins if e in kept}
            continue
        skeleton = skeletons.get(name, admin.get(name, []), baseline.get(name, []))
        uses |= skeleton.keys
        isolated[direction] = True
        if _Direction(pod, np, direction, skeleton).write(allows, denies, origins):
            uses.add(EVERY_CLASS)
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


class _Direction:
    def __init__(self, pod: Pod, np: EndpointPolicy, direction: Direction,
                 skeleton: Skeleton) -> None:
        self.pod = pod
        self.direction = direction
        self.skeleton = skeleton
        self.rules = skeleton.rules
        self.registry = skeleton.registry
        self.view = DirectionView(np, direction)
        self.np_isolated = self.view.isolated
        self.np_peers = self.view.peers() - {IDENTITY_ANY}
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
              origins: set[tuple[PolicyEntry, RuleOrigin]]) -> bool:
        """Adds the direction's entries. The wildcard identity gets the table most
        identities have (so a Deny of every other tenant costs entries for the few it does
        not name, not for the many it does); every identity with another table gets its own.
        Returns whether the identities no rule names got their own entries (then a new
        class needs the table recomputed: EVERY_CLASS)."""
        cache = self.skeleton.tables.setdefault(self._np_signature(), {})
        # (table, identities) per signature; identities with NetworkPolicy entries of their
        # own, or an egress named port resolving on them, are signatures of their own.
        found: list[tuple[_Table, Iterable[int], int]] = []
        for positions, idents in self.skeleton.groups.items():
            own_np = idents & self.np_peers
            plain = idents - own_np if own_np else idents
            if self._per_peer_ports(positions):
                for ident in plain:
                    table = self._table(positions, None, ident, cache)
                    found.append((table, (ident,), 1))
            elif plain:
                found.append((self._table(positions, None, None, cache), plain, len(plain)))
            for ident in own_np:
                found.append((self._table(positions, ident, ident, cache), (ident,), 1))
        named = self.skeleton.named()
        np_only = self.np_peers - named
        for ident in np_only:
            found.append((self._table((), ident, ident, cache), (ident,), 1))
        rest = self._table((), None, None, cache)
        rest_count = len(self.registry) + 1 - len(named) - len(np_only)
        weight: dict[_Table, int] = {rest: rest_count}
        for table, _, count in found:
            weight[table] = weight.get(table, 0) + count
        wildcard = max(weight, key=lambda t: (weight[t], t is rest))
        tables: list[tuple[Iterable[int], _Table]] = [((IDENTITY_ANY,), wildcard)]
        tables += [(idents, table) for table, idents, _ in found if table != wildcard]
        spelled_out = rest != wildcard
        if spelled_out:
            tables.append((self.skeleton.unnamed() - self.np_peers, rest))
        for idents, table in tables:
            for ident in idents:
                for entry, allow, rules in table.entries(self.direction, ident):
                    (allows if allow else denies).add(entry)
                    origins.update((entry, o) for o in rules)
        return spelled_out

    def _np_signature(self) -> tuple:
        """What the decided tables depend on besides the skeleton: NetworkPolicy's entries
        of the direction with their rules, its isolation, and (when an ingress rule names a
        port) the pod's own named ports."""
        own_ports = (frozenset((p.name, p.protocol, p.port) for p in self.pod.ports)
                     if self.direction == Direction.INGRESS
                     and any(r.named for r in self.rules) else None)
        entries = frozenset((e, rules) for e, rules in
                            ((e, r) for group in self.np_entries.values() for e, r in group))
        return (self.np_isolated, entries, own_ports)

    def _per_peer_ports(self, positions: tuple[int, ...]) -> bool:
        return self.direction == Direction.EGRESS and any(self.rules[i].named
                                                         for i in positions)

    def _table(self, positions: tuple[int, ...], own: int | None, port_peer: int | None,
               cache: dict) -> _Table:
        ports_key = (_class_named_ports(self.registry, port_peer)
                     if port_peer is not None and self._per_peer_ports(positions) else None)
        key = (positions, own, ports_key)
        found = cache.get(key)
        if found is None:
            found = _Table.of(self._decide(positions, own, port_peer))
            cache[key] = found
        return found

    def _decide(self, positions: tuple[int, ...], own: int | None,
                port_peer: int | None) -> list[_Piece]:
        pieces: list[_Piece] = []
        admin_count = self.skeleton.admin_count
        remaining = AllowSet.everything()
        admin = [i for i in positions if i < admin_count]
        remaining = self._tier(admin, port_peer, remaining, pieces)
        if self.np_isolated:
            allowed = self.view.allowed(IDENTITY_ANY if own is None else own)
            for peer in (IDENTITY_ANY,) if own is None else (own, IDENTITY_ANY):
                for entry, rules in self.np_entries.get(peer, ()):
                    region = AllowSet.of([entry]).intersect(remaining).intersect(allowed)
                    if not region.is_empty():
                        pieces.append(_Piece(region, True, rules))
            refused = remaining.minus(allowed)
            if not refused.is_empty():
                pieces.append(_Piece(refused, False, frozenset()))
            return pieces
        baseline = [i for i in positions if i >= admin_count]
        remaining = self._tier(baseline, port_peer, remaining, pieces)
        if not remaining.is_empty():
            pieces.append(_Piece(remaining, True, frozenset()))  # nothing decided: allow
        return pieces

    def _tier(self, positions: list[int], port_peer: int | None, remaining: AllowSet,
              pieces: list[_Piece]) -> AllowSet:
        """First match per region; returns what no Accept or Deny of the tier decided (a
        region a Pass matched skips the tier's later rules and goes on with it)."""
        passed = AllowSet()
        for i in positions:
            if remaining.is_empty():
                break
            r = self.rules[i]
            region = self._ports(r, port_peer).intersect(remaining)
            if region.is_empty():
                continue
            remaining = remaining.minus(region)
            if r.rule.action == PASS:
                passed = passed.union(region)
            else:
                pieces.append(_Piece(region, r.rule.action == ACCEPT,
                                     frozenset({rule_origin(r.policy, r.index)})))
        return remaining.union(passed)

    def _ports(self, r: _Rule, peer: int | None) -> AllowSet:
        """What the rule's ports match toward this peer (the same for every peer unless a
        named port resolves on the peer: egress)."""
        per_peer = r.named and self.direction == Direction.EGRESS
        key = (id(r), peer if per_peer else None)
        found = self._port_sets.get(key)
        if found is None:
            found = self._port_sets[key] = self._resolve_ports(r, peer)
        return found

    def _resolve_ports(self, r: _Rule, peer: int | None) -> AllowSet:
        if r.rule.ports is None:
            return AllowSet.everything()
        by_proto: dict[int, list[tuple[int, int]]] = {}
        for port in r.rule.ports:
            if port.named is not None:
                for proto_name, proto in PROTOCOL_NUMBERS.items():
                    if self.direction == Direction.INGRESS:
                        numbers: Iterable[int] = self.pod.resolve_named_port(port.named,
                                                                             proto_name)
                    elif peer is None:
                        numbers = ()
                    else:
                        numbers = _class_port_numbers(self.registry, peer, port.named,
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

