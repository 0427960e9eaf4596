"""EndpointPolicy <-> policy LPM entries (pure; see bpf/lib/maps.h struct pol_key).

A direction that is not isolated becomes one entry matching the whole direction, so
isolation changes are part of the same atomic generation as the rules. Port ranges become
masked prefixes (1-65535 takes 16 entries, 1024-65535 takes 6). Each entry's value keeps the
range it came from, so a generation can be read back exactly (in normalised form), and the id
of the set of rules that allow what it matches (flow attribution: see encode).
"""

from __future__ import annotations

import itertools
import weakref
import zlib
from collections import defaultdict
from collections.abc import Iterable

from enforcer.datapath.layout import POL_KEY, POL_VAL
from enforcer.datapath.types import (
    IDENTITY_ANY,
    PROTO_ANY,
    Direction,
    EndpointPolicy,
    PolicyEntry,
    RuleOrigin,
)

PREFIX_DIRECTION = 32
PREFIX_IDENTITY = 64
PREFIX_PROTO = 80
PORT_BITS = 16
PROTO_PROBE_ALL = 255  # bpf/lib/common.h: the lookup for what the parser cannot read


def port_blocks(lo: int, hi: int) -> list[tuple[int, int]]:
    """Cover [lo, hi] with aligned blocks: (base, mask bits) where the block is
    base .. base + 2**(16 - bits) - 1."""
    blocks = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << PORT_BITS
        while lo + size - 1 > hi:
            size >>= 1
        blocks.append((lo, PORT_BITS - size.bit_length() + 1))
        lo += size
    return blocks


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def normalize(policy: EndpointPolicy) -> EndpointPolicy:
    """The canonical form of a policy: what endpoints() reads back for it.

    Entries of a non-isolated direction are dropped (the direction allows everything),
    a protocol entry under an any-protocol entry of the same peer is dropped, and
    overlapping or adjacent port ranges are merged. (With deny entries: _normalize_verdicts.)"""
    if policy.denies:
        return _normalize_verdicts(policy)
    isolated = {Direction.INGRESS: policy.ingress_isolated,
                Direction.EGRESS: policy.egress_isolated}
    any_proto = {(e.direction, e.peer) for e in policy.entries
                 if e.protocol == PROTO_ANY and isolated[e.direction]}
    ranges: dict[tuple[Direction, int, int], list[tuple[int, int]]] = defaultdict(list)
    for e in policy.entries:
        if not isolated[e.direction] or e.protocol == PROTO_ANY:
            continue
        if (e.direction, e.peer) in any_proto:
            continue
        if not 0 <= e.port_lo <= e.port_hi <= 65535:
            raise ValueError(f"bad port range in {e}")
        ranges[(e.direction, e.peer, e.protocol)].append((e.port_lo, e.port_hi))
    entries = {PolicyEntry(d, peer, PROTO_ANY, 0, 65535) for d, peer in any_proto}
    for (d, peer, proto), rs in ranges.items():
        entries.update(PolicyEntry(d, peer, proto, lo, hi) for lo, hi in _merge(rs))
    return EndpointPolicy(policy.ingress_isolated, policy.egress_isolated, frozenset(entries))


def _normalize_verdicts(policy: EndpointPolicy) -> EndpointPolicy:
    """A policy with deny entries, canonical: per peer, protocol and verdict the ranges merged;
    a protocol range under an any-protocol entry of the same peer and verdict dropped (the
    kernel finds the same verdict through either)."""
    isolated = {Direction.INGRESS: policy.ingress_isolated,
                Direction.EGRESS: policy.egress_isolated}
    any_verdict: dict[tuple[Direction, int], bool] = {}
    for entries, allow in ((policy.denies, False), (policy.entries, True)):
        for e in entries:
            if isolated[e.direction] and e.protocol == PROTO_ANY:
                any_verdict.setdefault((e.direction, e.peer), allow)
    ranges: dict[tuple[Direction, int, int, bool], list[tuple[int, int]]] = defaultdict(list)
    for entries, allow in ((policy.entries, True), (policy.denies, False)):
        for e in entries:
            if not isolated[e.direction] or e.protocol == PROTO_ANY:
                continue
            if any_verdict.get((e.direction, e.peer)) is allow:
                continue
            if not 0 <= e.port_lo <= e.port_hi <= 65535:
                raise ValueError(f"bad port range in {e}")
            ranges[(e.direction, e.peer, e.protocol, allow)].append((e.port_lo, e.port_hi))
    out: dict[bool, set[PolicyEntry]] = {True: set(), False: set()}
    for (d, peer), allow in any_verdict.items():
        out[allow].add(PolicyEntry(d, peer, PROTO_ANY, 0, 65535))
    for (d, peer, proto, allow), rs in ranges.items():
        out[allow].update(PolicyEntry(d, peer, proto, lo, hi) for lo, hi in _merge(rs))
    return EndpointPolicy(policy.ingress_isolated, policy.egress_isolated,
                          frozenset(out[True]), denies=frozenset(out[False]))


def _key(prefixlen: int, direction: int, peer: int = 0, proto: int = 0, port: int = 0) -> bytes:
    return POL_KEY.pack(prefixlen, direction, peer.to_bytes(4, "big"), proto,
                        port.to_bytes(2, "big"))


def rule_set_id(origins: Iterable[RuleOrigin]) -> int:
    """A table entry's rule set as the u32 the kernel carries (0: no rule, e.g. a direction
    that is not isolated). From the content, so an agent that restarts over pinned tables
    names the same sets by the same numbers."""
    names = sorted({f"{o.policy}#{o.index}" for o in origins})
    if not names:
        return 0
    return zlib.crc32("\n".join(names).encode()) or 1


Origins = frozenset[RuleOrigin]


def _intervals(
    own: list[tuple[int, int, Origins]],
    borrowed: list[tuple[int, int, Origins]],
    common: Origins,
    everywhere: bool,
) -> list[tuple[int, int, Origins]]:
    """Disjoint port intervals where `own` ranges are (every port when `everywhere`), each
    with every rule whose range covers it, own or borrowed, plus `common`; adjacent intervals
    of one rule set merged. A sweep over the range ends, so thousands of disjoint ranges cost
    n log n, not n squared."""
    ranges = [(lo, hi, rules, True) for lo, hi, rules in own]
    ranges += [(lo, hi, rules, False) for lo, hi, rules in borrowed]
    starts: dict[int, list[int]] = defaultdict(list)
    ends: dict[int, list[int]] = defaultdict(list)
    for i, (lo, hi, _, _) in enumerate(ranges):
        starts[lo].append(i)
        ends[hi + 1].append(i)
    if everywhere:  # bounds at both ends, so intervals no range covers exist too
        starts.setdefault(0, [])
        ends.setdefault(65536, [])
    active: set[int] = set()
    out: list[tuple[int, int, Origins]] = []
    bounds = sorted(starts.keys() | ends.keys())
    for lo, nxt in itertools.pairwise(bounds):
        active.difference_update(ends.get(lo, ()))
        active.update(starts.get(lo, ()))
        if not (everywhere or any(ranges[i][3] for i in active)):
            continue
        rules = common.union(*(ranges[i][2] for i in active))
        if out and out[-1][1] == lo - 1 and out[-1][2] == rules:
            out[-1] = (out[-1][0], nxt - 1, rules)
        else:
            out.append((lo, nxt - 1, rules))
    return out


def encode(
    policy: EndpointPolicy, named: dict[int, Origins] | None = None
) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs of one complete generation. Each value carries the id of the set of
    rules that allow what it matches (rule_set_id); `named` collects id -> rule set.

    The kernel looks up the peer's own entries first and the any-peer entries only when those
    miss, so a peer's own entries also name the any-peer rules that match the same ports: an
    event then names every rule that allows the flow, as `analyze --explain` does. Where
    nothing records origins (tests, benchmarks, transition tables) every id is 0 and the
    entries are those of the normalised policy."""
    if policy.denies:
        return _encode_verdicts(policy, named)
    isolated = {Direction.INGRESS: policy.ingress_isolated,
                Direction.EGRESS: policy.egress_isolated}
    out = []
    for d in (Direction.INGRESS, Direction.EGRESS):
        if not isolated[d]:
            out.append((_key(PREFIX_DIRECTION, d), POL_VAL.pack(0, 65535, 0, 0)))
    by_entry: dict[PolicyEntry, set[RuleOrigin]] = defaultdict(set)
    for entry, origin in policy.origins:
        by_entry[entry].add(origin)
    groups: dict[tuple[Direction, int], list[PolicyEntry]] = defaultdict(list)
    for e in policy.entries:
        if isolated[e.direction]:
            if e.protocol != PROTO_ANY and not 0 <= e.port_lo <= e.port_hi <= 65535:
                raise ValueError(f"bad port range in {e}")
            groups[(e.direction, e.peer)].append(e)

    def value(lo: int, hi: int, rules: Origins) -> bytes:
        ident = rule_set_id(rules)
        if named is not None and ident:
            named[ident] = rules
        return POL_VAL.pack(lo, hi, ident, 0)

    def split(entries: list[PolicyEntry]) -> tuple[bool, Origins, dict[int, list]]:
        any_proto = [e for e in entries if e.protocol == PROTO_ANY]
        origins: Origins = frozenset().union(*(by_entry[e] for e in any_proto))
        by_proto: dict[int, list[tuple[int, int, Origins]]] = defaultdict(list)
        for e in entries:
            if e.protocol != PROTO_ANY:
                by_proto[e.protocol].append((e.port_lo, e.port_hi, frozenset(by_entry[e])))
        return bool(any_proto), origins, by_proto

    no_origins = not policy.origins
    for (d, peer), entries in sorted(groups.items()):
        has_any, any_origins, by_proto = split(entries)
        borrowed_any: Origins = frozenset()
        borrowed: dict[int, list[tuple[int, int, Origins]]] = {}
        if peer != IDENTITY_ANY and not no_origins and (d, IDENTITY_ANY) in groups:
            _, borrowed_any, borrowed = split(groups[(d, IDENTITY_ANY)])
        common = any_origins | borrowed_any
        if has_any:
            out.append((_key(PREFIX_IDENTITY, d, peer), value(0, 65535, common)))
        for proto in sorted(by_proto.keys() | (borrowed.keys() if has_any else set())):
            for lo, hi, rules in _intervals(by_proto.get(proto, []), borrowed.get(proto, []),
                                            common, everywhere=has_any):
                if has_any and rules == common:
                    continue  # the any-protocol entry already says it
                for base, bits in port_blocks(lo, hi):
                    out.append((_key(PREFIX_PROTO + bits, d, peer, proto, base),
                                value(lo, hi, rules)))
    return out


def _encode_verdicts(
    policy: EndpointPolicy, named: dict[int, Origins] | None
) -> list[tuple[bytes, bytes]]:
    """encode() for a policy with deny entries: each entry as it is, with its verdict, and
    the origins the compiler gave it (enforcer/compiler/tiers.py gives every entry of a tiered
    direction the complete set of rules that decide what it matches, so nothing is borrowed
    from the wildcard's entries here). A direction with a deny entry also gets one for the
    probe of what the parser cannot read (PROTO_PROBE_ALL), which passes only where the
    direction allows every peer everything."""
    normal = _normalize_verdicts(policy)
    by_entry: dict[PolicyEntry, set[RuleOrigin]] = defaultdict(set)
    for entry, origin in policy.origins:
        by_entry[entry].add(origin)
    isolated = {Direction.INGRESS: policy.ingress_isolated,
                Direction.EGRESS: policy.egress_isolated}
    out = [(_key(PREFIX_DIRECTION, d), POL_VAL.pack(0, 65535, 0, 0))
           for d in (Direction.INGRESS, Direction.EGRESS) if not isolated[d]]

    def value(lo: int, hi: int, rules: Origins, deny: bool) -> bytes:
        ident = rule_set_id(rules)
        if named is not None and ident:
            named[ident] = rules
        return POL_VAL.pack(lo, hi, ident, int(deny))

    # Origins per (direction, peer, protocol, verdict) from the entries as given, so ranges
    # that normalize() merged still name each part's own rules.
    given: dict[tuple[Direction, int, int, bool], list[tuple[int, int, Origins]]] = (
        defaultdict(list))
    for entries, allow in ((policy.entries, True), (policy.denies, False)):
        for e in entries:
            if e.protocol != PROTO_ANY:
                given[(e.direction, e.peer, e.protocol, allow)].append(
                    (e.port_lo, e.port_hi, frozenset(by_entry[e])))
    denying: set[Direction] = set()
    for entries, allow in ((normal.entries, True), (normal.denies, False)):
        for e in sorted(entries):
            if not allow:
                denying.add(e.direction)
            if e.protocol == PROTO_ANY:
                out.append((_key(PREFIX_IDENTITY, e.direction, e.peer),
                            value(0, 65535, frozenset(by_entry[e]), not allow)))
                continue
            parts = [(lo, hi, rules) for lo, hi, rules in
                     _intervals(given[(e.direction, e.peer, e.protocol, allow)], [],
                                frozenset(), everywhere=False)
                     if lo <= e.port_hi and hi >= e.port_lo]
            for lo, hi, rules in parts:
                lo, hi = max(lo, e.port_lo), min(hi, e.port_hi)
                for base, bits in port_blocks(lo, hi):
                    out.append((_key(PREFIX_PROTO + bits, e.direction, e.peer, e.protocol, base),
                                value(e.port_lo, e.port_hi, rules, not allow)))
    for d in sorted(denying):
        out.append((_key(PREFIX_PROTO + PORT_BITS, d, IDENTITY_ANY, PROTO_PROBE_ALL, 0),
                    POL_VAL.pack(0, 0, 0, 1)))
    return out


def open_directions(policy: EndpointPolicy) -> frozenset[Direction]:
    """The directions a policy allows everything in (not isolated, or a rule for any peer
    and any protocol): the datapath skips their identity and policy lookups (EP_F_OPEN)."""
    # One pass over the entries, no normalize(): it runs on every table write.
    out = {d for d, isolated in ((Direction.INGRESS, policy.ingress_isolated),
                                 (Direction.EGRESS, policy.egress_isolated)) if not isolated}
    out |= {e.direction for e in policy.entries
            if e.peer == IDENTITY_ANY and e.protocol == PROTO_ANY}
    return frozenset(out - {e.direction for e in policy.denies})


def decode(pairs: list[tuple[bytes, bytes]]) -> EndpointPolicy:
    """The policy a generation's entries express (normalised)."""
    isolated = {Direction.INGRESS: True, Direction.EGRESS: True}
    found: dict[bool, set[PolicyEntry]] = {True: set(), False: set()}  # by verdict: allow
    for key, value in pairs:
        prefixlen, direction, peer_raw, proto, _port = POL_KEY.unpack(key)
        lo, hi, _, deny = POL_VAL.unpack(value[: POL_VAL.size])
        d = Direction(direction)
        peer = int.from_bytes(peer_raw, "big")
        if prefixlen == PREFIX_DIRECTION:
            isolated[d] = False
        elif prefixlen == PREFIX_IDENTITY:
            found[not deny].add(PolicyEntry(d, peer, PROTO_ANY, 0, 65535))
        elif proto != PROTO_PROBE_ALL:  # the probe entry follows from the denies
            found[not deny].add(PolicyEntry(d, peer, proto, lo, hi))
    return normalize(EndpointPolicy(isolated[Direction.INGRESS], isolated[Direction.EGRESS],
                                    frozenset(found[True]), denies=frozenset(found[False])))


# Per table in force, its entries by (direction, peer): a drop's attribution reads the entry
# the kernel found without scanning the table. Dies with the table (a replaced generation).
_BY_PEER: weakref.WeakKeyDictionary[
    EndpointPolicy, dict[tuple[Direction, int], tuple[tuple[PolicyEntry, bool], ...]]
] = weakref.WeakKeyDictionary()


def _entries_by_peer(
    policy: EndpointPolicy,
) -> dict[tuple[Direction, int], tuple[tuple[PolicyEntry, bool], ...]]:
    index = _BY_PEER.get(policy)
    if index is None:
        grouped: defaultdict[tuple[Direction, int], list[tuple[PolicyEntry, bool]]] = (
            defaultdict(list))
        for entries, allow in ((policy.entries, True), (policy.denies, False)):
            for e in entries:
                grouped[(e.direction, e.peer)].append((e, allow))
        index = {key: tuple(found) for key, found in grouped.items()}
        _BY_PEER[policy] = index
    return index


def deciding_entry(
    policy: EndpointPolicy, direction: Direction, identity: int, protocol: int, port: int
) -> tuple[PolicyEntry, bool] | None:
    """The entry the kernel's lookup finds for a packet, with its verdict (True: allow), as
    bpf/lib/policy.h reads a generation: the peer's own most specific entry (a port range
    before an any-protocol entry), else the wildcard identity's; None: no entry (denied)."""
    by_peer = _entries_by_peer(policy)
    for peer in (identity, IDENTITY_ANY):
        best: tuple[int, PolicyEntry, bool] | None = None
        for e, allow in by_peer.get((direction, peer), ()):
            if e.protocol == protocol and e.port_lo <= port <= e.port_hi:
                rank = 2
            elif e.protocol == PROTO_ANY:
                rank = 1
            else:
                continue
            if best is None or rank > best[0] or (rank == best[0] and not allow):
                best = (rank, e, allow)
        if best is not None:
            return best[1], best[2]
    return None
