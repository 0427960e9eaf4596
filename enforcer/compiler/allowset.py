"""What an endpoint policy allows for one peer identity, as exact sets (for write planning
and for the tiers' flattening).

An allow set is, per listed protocol number, a sorted list of disjoint inclusive port ranges,
and for every protocol not listed either everything (`rest`) or nothing. So "every protocol"
is rest with nothing listed, and "everything but TCP 80" is rest with TCP listed as 0-79 and
81-65535. Intersections are exact, unlike intersecting entry sets (an any-peer port range and
a per-identity port overlap without being equal entries).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from enforcer.datapath.types import IDENTITY_ANY, PROTO_ANY, Direction, EndpointPolicy, PolicyEntry

Ranges = tuple[tuple[int, int], ...]
FULL: Ranges = ((0, 65535),)


@dataclass(frozen=True)
class AllowSet:
    ranges: tuple[tuple[int, Ranges], ...] = ()  # (protocol, ranges), sorted by protocol
    rest: bool = False  # every protocol not in `ranges`, every port

    @classmethod
    def everything(cls) -> AllowSet:
        return cls(rest=True)

    @classmethod
    def build(cls, by_proto: dict[int, Ranges], rest: bool) -> AllowSet:
        """Canonical: a protocol is listed only where it differs from `rest`."""
        default = FULL if rest else ()
        return cls(tuple((p, rs) for p, rs in sorted(by_proto.items()) if rs != default), rest)

    @classmethod
    def of(cls, entries: Iterable[PolicyEntry]) -> AllowSet:
        by_proto: dict[int, list[tuple[int, int]]] = {}
        for e in entries:
            if e.protocol == PROTO_ANY:
                return cls.everything()
            by_proto.setdefault(e.protocol, []).append((e.port_lo, e.port_hi))
        return cls.build({p: _merge(rs) for p, rs in by_proto.items()}, rest=False)

    @property
    def every_protocol(self) -> bool:
        return self.rest and not self.ranges

    def ports(self, protocol: int) -> Ranges:
        for proto, rs in self.ranges:
            if proto == protocol:
                return rs
        return FULL if self.rest else ()

    def protocols(self) -> set[int]:
        return {p for p, _ in self.ranges}

    def is_empty(self) -> bool:
        return not self.rest and not self.ranges

    def _combine(self, other: AllowSet, rest: bool,
                 op: Callable[[Ranges, Ranges], Ranges]) -> AllowSet:
        return AllowSet.build(
            {p: op(self.ports(p), other.ports(p)) for p in self.protocols() | other.protocols()},
            rest,
        )

    def union(self, other: AllowSet) -> AllowSet:
        return self._combine(other, self.rest or other.rest, lambda a, b: _merge([*a, *b]))

    def intersect(self, other: AllowSet) -> AllowSet:
        return self._combine(other, self.rest and other.rest, _intersect)

    def minus(self, other: AllowSet) -> AllowSet:
        return self._combine(other, self.rest and not other.rest, _subtract)

    def entries(self, direction: Direction, peer: int) -> list[PolicyEntry]:
        """Allow entries for this set (exact only where nothing else is consulted: a set
        without `rest` or with nothing listed)."""
        if self.every_protocol:
            return [PolicyEntry(direction, peer, PROTO_ANY, 0, 65535)]
        return [
            PolicyEntry(direction, peer, proto, lo, hi)
            for proto, rs in self.ranges
            for lo, hi in rs
        ]

    def table(self, direction: Direction, peer: int) -> tuple[list[PolicyEntry], list[PolicyEntry]]:
        """(allows, denies) that say exactly this set for the peer whatever the wildcard
        identity's entries say: an any-protocol entry with `rest`'s verdict, and each listed
        protocol's ranges where they differ from it."""
        allows: list[PolicyEntry] = []
        denies: list[PolicyEntry] = []
        (allows if self.rest else denies).append(PolicyEntry(direction, peer, PROTO_ANY, 0, 65535))
        for proto, rs in self.ranges:
            if self.rest:
                denies.extend(PolicyEntry(direction, peer, proto, lo, hi)
                              for lo, hi in _subtract(FULL, rs))
            else:
                allows.extend(PolicyEntry(direction, peer, proto, lo, hi) for lo, hi in rs)
        return allows, denies


def _merge(ranges: Iterable[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _intersect(a: Ranges, b: Ranges) -> Ranges:
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _subtract(a: Ranges, b: Ranges) -> Ranges:
    """a minus b (both sorted, disjoint)."""
    out: list[tuple[int, int]] = []
    j = 0
    for lo, hi in a:
        while j < len(b) and b[j][1] < lo:
            j += 1
        k = j
        while k < len(b) and b[k][0] <= hi:
            if b[k][0] > lo:
                out.append((lo, b[k][0] - 1))
            lo = max(lo, b[k][1] + 1)
            k += 1
        if lo <= hi:
            out.append((lo, hi))
    return tuple(out)


class _Table:
    """One peer's entries in one direction, read as the kernel's LPM lookup reads them."""

    def __init__(self) -> None:
        self.any_verdict: bool | None = None  # the any-protocol entry's verdict, if any
        self.allow: dict[int, list[tuple[int, int]]] = {}
        self.deny: dict[int, list[tuple[int, int]]] = {}

    def add(self, entry: PolicyEntry, allow: bool) -> None:
        if entry.protocol == PROTO_ANY:
            # Allow and deny any-protocol entries of one peer cannot both be written (one
            # key): the compiler never makes both; should it, deny is what stays safe.
            self.any_verdict = allow if self.any_verdict is None else (self.any_verdict and allow)
        else:
            (self.allow if allow else self.deny).setdefault(entry.protocol, []).append(
                (entry.port_lo, entry.port_hi))

    def over(self, fallback: AllowSet) -> AllowSet:
        rest = fallback.rest if self.any_verdict is None else self.any_verdict
        out: dict[int, Ranges] = {}
        for proto in self.allow.keys() | self.deny.keys() | fallback.protocols():
            if self.any_verdict is None:
                base = fallback.ports(proto)
            else:
                base = FULL if self.any_verdict else ()
            allow = _merge(self.allow.get(proto, ()))
            deny = _merge(self.deny.get(proto, ()))
            out[proto] = _merge([*_subtract(_subtract(base, allow), deny), *allow])
        return AllowSet.build(out, rest)


class DirectionView:
    """One direction of an endpoint policy, queried per peer identity."""

    def __init__(self, policy: EndpointPolicy, direction: Direction) -> None:
        self.isolated = (
            policy.ingress_isolated if direction == Direction.INGRESS else policy.egress_isolated
        )
        self._tables: dict[int, _Table] = {}
        for entries, allow in ((policy.entries, True), (policy.denies, False)):
            for e in entries:
                if e.direction == direction:
                    self._tables.setdefault(e.peer, _Table()).add(e, allow)
        wildcard = self._tables.get(IDENTITY_ANY)
        self._any = wildcard.over(AllowSet()) if wildcard is not None else AllowSet()

    def peers(self) -> set[int]:
        return set(self._tables)

    def allowed(self, peer: int) -> AllowSet:
        """What the direction allows for a peer with this identity (IDENTITY_ANY: a peer
        with no entry of its own)."""
        if not self.isolated:
            return AllowSet.everything()
        table = self._tables.get(peer) if peer != IDENTITY_ANY else None
        return self._any if table is None else table.over(self._any)
