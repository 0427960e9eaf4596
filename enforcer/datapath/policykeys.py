"""EndpointPolicy <-> policy LPM entries (pure; see bpf/lib/maps.h struct pol_key).

A direction that is not isolated becomes one entry matching the whole direction, so
isolation changes are part of the same atomic generation as the rules. Port ranges become
masked prefixes (1-65535 takes 16 entries, 1024-65535 takes 6). Each entry's value keeps the
range it came from, so a generation can be read back exactly (in normalised form).
"""

from __future__ import annotations

from collections import defaultdict

from enforcer.datapath.layout import POL_KEY, POL_VAL
from enforcer.datapath.types import (
    IDENTITY_ANY,
    PROTO_ANY,
    Direction,
    EndpointPolicy,
    PolicyEntry,
)

PREFIX_DIRECTION = 32
PREFIX_IDENTITY = 64
PREFIX_PROTO = 80
PORT_BITS = 16


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
    overlapping or adjacent port ranges are merged."""
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


def _key(prefixlen: int, direction: int, peer: int = 0, proto: int = 0, port: int = 0) -> bytes:
    return POL_KEY.pack(prefixlen, direction, peer.to_bytes(4, "big"), proto,
                        port.to_bytes(2, "big"))


def encode(policy: EndpointPolicy) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs of one complete generation."""
    norm = normalize(policy)
    out = []
    for d, isolated in ((Direction.INGRESS, norm.ingress_isolated),
                        (Direction.EGRESS, norm.egress_isolated)):
        if not isolated:
            out.append((_key(PREFIX_DIRECTION, d), POL_VAL.pack(0, 65535, 0)))
    for e in sorted(norm.entries):
        value = POL_VAL.pack(e.port_lo, e.port_hi, 0)
        if e.protocol == PROTO_ANY:
            out.append((_key(PREFIX_IDENTITY, e.direction, e.peer), value))
            continue
        for base, bits in port_blocks(e.port_lo, e.port_hi):
            out.append((_key(PREFIX_PROTO + bits, e.direction, e.peer, e.protocol, base), value))
    return out


def open_directions(policy: EndpointPolicy) -> frozenset[Direction]:
    """The directions a policy allows everything in (not isolated, or a rule for any peer
    and any protocol): the datapath skips their identity and policy lookups (EP_F_OPEN)."""
    # One pass over the entries, no normalize(): it runs on every table write.
    out = {d for d, isolated in ((Direction.INGRESS, policy.ingress_isolated),
                                 (Direction.EGRESS, policy.egress_isolated)) if not isolated}
    out |= {e.direction for e in policy.entries
            if e.peer == IDENTITY_ANY and e.protocol == PROTO_ANY}
    return frozenset(out)


def decode(pairs: list[tuple[bytes, bytes]]) -> EndpointPolicy:
    """The policy a generation's entries express (normalised)."""
    isolated = {Direction.INGRESS: True, Direction.EGRESS: True}
    entries = set()
    for key, value in pairs:
        prefixlen, direction, peer_raw, proto, _port = POL_KEY.unpack(key)
        lo, hi, _ = POL_VAL.unpack(value[: POL_VAL.size])
        d = Direction(direction)
        peer = int.from_bytes(peer_raw, "big")
        if prefixlen == PREFIX_DIRECTION:
            isolated[d] = False
        elif prefixlen == PREFIX_IDENTITY:
            entries.add(PolicyEntry(d, peer, PROTO_ANY, 0, 65535))
        else:
            entries.add(PolicyEntry(d, peer, proto, lo, hi))
    return normalize(EndpointPolicy(isolated[Direction.INGRESS], isolated[Direction.EGRESS],
                                    frozenset(entries)))
