"""What an endpoint policy allows for one peer identity, as exact sets (for write planning).

An allow set is "every protocol" or, per protocol number, a sorted list of disjoint inclusive
port ranges. Intersections are exact, unlike intersecting entry sets (an any-peer port range
and a per-identity port overlap without being equal entries).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from enforcer.datapath.types import IDENTITY_ANY, PROTO_ANY, Direction, EndpointPolicy, PolicyEntry

Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class AllowSet:
    every_protocol: bool = False
    ranges: tuple[tuple[int, Ranges], ...] = ()  # (protocol, ranges), sorted by protocol

    @classmethod
    def everything(cls) -> AllowSet:
        return cls(every_protocol=True)

    @classmethod
    def of(cls, entries: Iterable[PolicyEntry]) -> AllowSet:
        by_proto: dict[int, list[tuple[int, int]]] = {}
        for e in entries:
            if e.protocol == PROTO_ANY:
                return cls.everything()
            by_proto.setdefault(e.protocol, []).append((e.port_lo, e.port_hi))
        return cls(ranges=tuple((p, _merge(rs)) for p, rs in sorted(by_proto.items())))

    def is_empty(self) -> bool:
        return not self.every_protocol and not self.ranges

    def union(self, other: AllowSet) -> AllowSet:
        if self.every_protocol or other.every_protocol:
            return AllowSet.everything()
        merged: dict[int, list[tuple[int, int]]] = {}
        for proto, rs in (*self.ranges, *other.ranges):
            merged.setdefault(proto, []).extend(rs)
        return AllowSet(ranges=tuple((p, _merge(rs)) for p, rs in sorted(merged.items())))

    def intersect(self, other: AllowSet) -> AllowSet:
        if self.every_protocol:
            return other
        if other.every_protocol:
            return self
        theirs = dict(other.ranges)
        out = []
        for proto, rs in self.ranges:
            if proto in theirs:
                common = _intersect(rs, theirs[proto])
                if common:
                    out.append((proto, common))
        return AllowSet(ranges=tuple(out))

    def entries(self, direction: Direction, peer: int) -> list[PolicyEntry]:
        if self.every_protocol:
            return [PolicyEntry(direction, peer, PROTO_ANY, 0, 65535)]
        return [
            PolicyEntry(direction, peer, proto, lo, hi)
            for proto, rs in self.ranges
            for lo, hi in rs
        ]


def _merge(ranges: list[tuple[int, int]]) -> Ranges:
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


class DirectionView:
    """One direction of an endpoint policy, queried per peer identity."""

    def __init__(self, policy: EndpointPolicy, direction: Direction) -> None:
        self.isolated = (
            policy.ingress_isolated if direction == Direction.INGRESS else policy.egress_isolated
        )
        grouped: dict[int, list[PolicyEntry]] = {}
        for e in policy.entries:
            if e.direction == direction:
                grouped.setdefault(e.peer, []).append(e)
        self._sets = {peer: AllowSet.of(es) for peer, es in grouped.items()}
        self._any = self._sets.get(IDENTITY_ANY, AllowSet())

    def peers(self) -> set[int]:
        return set(self._sets)

    def allowed(self, peer: int) -> AllowSet:
        """What the direction allows for a peer with this identity (IDENTITY_ANY: a peer
        with no entry of its own)."""
        if not self.isolated:
            return AllowSet.everything()
        if peer == IDENTITY_ANY:
            return self._any
        return self._any.union(self._sets.get(peer, AllowSet()))
