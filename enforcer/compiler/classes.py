"""Address classes and their identity numbers.

An address class is everything policy can tell about an address: for a pod IP its namespace,
labels, named ports and the ipBlocks that contain it; for any other address only the ipBlocks
that contain it. Addresses in one class are indistinguishable to every rule in use, so they
share one identity and a new pod of an existing class costs one identity-map write.

Namespace labels are deliberately not part of a class: a namespace relabel changes which
classes a peer matches (policy entries), not the classes (identity map).

Numbers are allocated monotonically and never reused, so a number in an old policy generation
can never come to mean another class. A class that loses its last address is forgotten; if it
comes back it gets a fresh number.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from enforcer.datapath.types import FIRST_IDENTITY, IDENTITY_WORLD
from enforcer.model.objects import EMPTY_LABELS, FrozenLabels, IPBlock, Pod

NamedPort = tuple[str, str, int]  # (name, protocol, number)


@dataclass(frozen=True)
class AddressClass:
    namespace: str | None  # None: not a pod address (world, node, outside the cluster)
    labels: FrozenLabels
    named_ports: frozenset[NamedPort]
    blocks: frozenset[IPBlock]

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None

    def port_numbers(self, name: str, protocol: str) -> tuple[int, ...]:
        return tuple(sorted(n for nm, pr, n in self.named_ports if nm == name and pr == protocol))


def pod_class(pod: Pod, blocks: frozenset[IPBlock]) -> AddressClass:
    labels = pod.labels if isinstance(pod.labels, FrozenLabels) else FrozenLabels(pod.labels)
    named = frozenset((p.name, p.protocol, p.port) for p in pod.ports if p.name)
    return AddressClass(pod.namespace, labels, named, blocks)


def address_class(blocks: frozenset[IPBlock]) -> AddressClass:
    return AddressClass(None, EMPTY_LABELS, frozenset(), blocks)


class ClassRegistry:
    """Live classes with their numbers, reference counts and the indexes rules query."""

    def __init__(self, first_id: int = FIRST_IDENTITY) -> None:
        self._next_id = first_id
        self._ids: dict[AddressClass, int] = {}
        self._classes: dict[int, AddressClass] = {}
        self._refs: dict[int, int] = {}
        self.by_namespace: dict[str, set[int]] = {}
        self.by_block: dict[IPBlock, set[int]] = {}
        self.by_named_port: dict[tuple[str, str], set[int]] = {}  # (name, protocol) -> ids

    @property
    def next_id(self) -> int:
        return self._next_id

    def __len__(self) -> int:
        return len(self._classes)

    def __iter__(self) -> Iterator[int]:
        return iter(self._classes)

    def get(self, ident: int) -> AddressClass:
        return self._classes[ident]

    def id_of(self, cls: AddressClass) -> int | None:
        return self._ids.get(cls)

    def acquire(
        self, cls: AddressClass, reuse: dict[AddressClass, int] | None = None
    ) -> tuple[int, bool]:
        """One more address in `cls`: returns its identity and whether the class is new.

        `reuse` offers numbers a class had before a rebuild (same class, same meaning).
        The world class is not registered: it is always IDENTITY_WORLD.
        """
        if not cls.is_pod and not cls.blocks:
            return IDENTITY_WORLD, False
        ident = self._ids.get(cls)
        if ident is not None:
            self._refs[ident] += 1
            return ident, False
        ident = reuse.get(cls) if reuse else None
        if ident is None:
            ident = self._next_id
            self._next_id += 1
        self._ids[cls] = ident
        self._classes[ident] = cls
        self._refs[ident] = 1
        if cls.namespace is not None:
            self.by_namespace.setdefault(cls.namespace, set()).add(ident)
        for block in cls.blocks:
            self.by_block.setdefault(block, set()).add(ident)
        for name, protocol, _ in cls.named_ports:
            self.by_named_port.setdefault((name, protocol), set()).add(ident)
        return ident, True

    def release(self, ident: int) -> bool:
        """One address less; returns True when the class died (and was forgotten)."""
        if ident == IDENTITY_WORLD:
            return False
        self._refs[ident] -= 1
        if self._refs[ident] > 0:
            return False
        del self._refs[ident]
        cls = self._classes.pop(ident)
        del self._ids[cls]
        if cls.namespace is not None:
            _discard(self.by_namespace, cls.namespace, ident)
        for block in cls.blocks:
            _discard(self.by_block, block, ident)
        for name, protocol, _ in cls.named_ports:
            _discard(self.by_named_port, (name, protocol), ident)
        return True

    def snapshot(self) -> dict[AddressClass, int]:
        return dict(self._ids)


def _discard(index: dict, bucket: object, ident: int) -> None:
    ids = index.get(bucket)
    if ids is not None:
        ids.discard(ident)
        if not ids:
            del index[bucket]
