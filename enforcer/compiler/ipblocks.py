"""The ipBlocks in use and the partition of the address space they induce.

Two questions matter to identities: which blocks contain one address (for a pod IP's class),
and how the non-pod address space splits into classes. Every cidr and every except of every
block in use is a "relevant prefix"; any two prefixes are nested or disjoint, so for an
address the longest relevant prefix containing it decides exactly which blocks contain it:
a block contains the address iff its cidr contains that prefix and none of its excepts do.
One LPM entry per relevant prefix therefore classifies every address exactly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from enforcer.model.objects import IPAddress, IPBlock, IPNetwork

NO_BLOCKS: frozenset[IPBlock] = frozenset()

_PrefixKey = tuple[int, int, int]  # (IP version, prefix length, network address >> host bits)


def _key(version: int, value: int, max_len: int, length: int) -> _PrefixKey:
    return (version, length, value >> (max_len - length))


def _net_key(net: IPNetwork, length: int | None = None) -> _PrefixKey:
    length = net.prefixlen if length is None else length
    return _key(net.version, int(net.network_address), net.max_prefixlen, length)


class BlockIndex:
    """Reference-counted set of ipBlocks in use, indexed by cidr for containment queries."""

    def __init__(self) -> None:
        self._refs: Counter[IPBlock] = Counter()
        self._by_cidr: dict[_PrefixKey, set[IPBlock]] = {}
        self._lengths: dict[int, list[int]] = {4: [], 6: []}  # cidr prefix lengths in use

    def __contains__(self, block: object) -> bool:
        return block in self._refs

    def blocks(self) -> set[IPBlock]:
        return set(self._refs)

    def add(self, blocks: Iterable[IPBlock]) -> set[IPBlock]:
        """Count one more use of each block; returns the blocks that were not in use."""
        added = set()
        for block in blocks:
            self._refs[block] += 1
            if self._refs[block] == 1:
                added.add(block)
                self._by_cidr.setdefault(_net_key(block.cidr), set()).add(block)
        if added:
            self._reindex_lengths()
        return added

    def remove(self, blocks: Iterable[IPBlock]) -> set[IPBlock]:
        """Count one use less; returns the blocks no longer in use."""
        removed = set()
        for block in blocks:
            self._refs[block] -= 1
            if self._refs[block] <= 0:
                del self._refs[block]
                removed.add(block)
                key = _net_key(block.cidr)
                self._by_cidr[key].discard(block)
                if not self._by_cidr[key]:
                    del self._by_cidr[key]
        if removed:
            self._reindex_lengths()
        return removed

    def _reindex_lengths(self) -> None:
        lengths: dict[int, set[int]] = {4: set(), 6: set()}
        for version, length, _ in self._by_cidr:
            lengths[version].add(length)
        self._lengths = {v: sorted(ls) for v, ls in lengths.items()}

    def containing_address(self, ip: IPAddress) -> frozenset[IPBlock]:
        """Blocks in use whose cidr holds the address and no except of which does."""
        lengths = self._lengths[ip.version]
        if not lengths:
            return NO_BLOCKS
        value, max_len = int(ip), ip.max_prefixlen
        found = []
        for length in lengths:
            for block in self._by_cidr.get(_key(ip.version, value, max_len, length), ()):
                if not any(ip in ex for ex in block.except_):
                    found.append(block)
        return frozenset(found)

    def containing_prefix(self, net: IPNetwork) -> frozenset[IPBlock]:
        """Blocks containing every address of `net`, for a relevant prefix `net`."""
        found = []
        for length in self._lengths[net.version]:
            if length > net.prefixlen:
                break
            for block in self._by_cidr.get(_net_key(net, length), ()):
                if not any(net.subnet_of(ex) for ex in block.except_):  # type: ignore[arg-type]
                    found.append(block)
        return frozenset(found)

    def partition(self) -> dict[IPNetwork, frozenset[IPBlock]]:
        """Every relevant prefix with the set of blocks containing it (empty = world)."""
        prefixes: set[IPNetwork] = set()
        for block in self._refs:
            prefixes.add(block.cidr)
            prefixes.update(block.except_)
        return {net: self.containing_prefix(net) for net in prefixes}
