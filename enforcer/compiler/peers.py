"""Which identities each policy peer matches, cached and kept current as classes come and go.

A peer key names what a `from`/`to` item can match, independent of the policy it is in, so
identical peers share one cache entry. Only peers some local endpoint's rules use are cached
(reference counted by endpoint); a class that appears is tested against those peers only, and
the endpoints using a peer whose members changed are reported for recomputation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from enforcer.compiler.classes import AddressClass, ClassRegistry
from enforcer.model.objects import IPBlock, LabelSelector, NetworkPolicy, PolicyPeer

# ("block", IPBlock) | ("pods", namespace, podSelector | None)
# | ("nspods", namespaceSelector, podSelector | None) | ("named", port name, protocol)
# | ("every",): every class (a table with entries for the identities no rule names,
#   enforcer/compiler/tiers.py: its users are recomputed when any class appears; its members
#   are never listed)
PeerKey = tuple

NamespaceLabels = Callable[[str], Mapping[str, str]]


def peer_key(policy: NetworkPolicy, peer: PolicyPeer) -> PeerKey:
    if peer.ip_block is not None:
        return ("block", peer.ip_block)
    if peer.namespace_selector is None:
        return ("pods", policy.namespace, peer.pod_selector)
    return ("nspods", peer.namespace_selector, peer.pod_selector)


def named_port_key(name: str, protocol: str) -> PeerKey:
    """Every pod declaring the named port: an egress rule with no `to` and a named port."""
    return ("named", name, protocol)


def _selects(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    return selector is None or selector.matches(labels)


class PeerCache:
    def __init__(self, registry: ClassRegistry, namespace_labels: NamespaceLabels) -> None:
        self._registry = registry
        self._ns_labels = namespace_labels
        self._members: dict[PeerKey, set[int]] = {}
        self._users: dict[PeerKey, set[str]] = {}
        self._uses: dict[str, set[PeerKey]] = {}
        self._keys_of_class: dict[int, set[PeerKey]] = {}
        # Indexes of cached keys, to find the ones a new class may join.
        self._pods_by_ns: dict[str, set[PeerKey]] = {}
        self._nspods: set[PeerKey] = set()
        # namespace -> the cached namespaceSelector keys that select it (lazy; dropped when
        # those keys or the namespace's labels change), so a new class tests pod selectors only
        self._nspods_by_ns: dict[str, set[PeerKey]] = {}
        self._by_block: dict[IPBlock, PeerKey] = {}
        self._by_named: dict[tuple[str, str], PeerKey] = {}

    # --- membership --------------------------------------------------------------------------

    def members(self, key: PeerKey) -> set[int]:
        found = self._members.get(key)
        if found is None:
            found = self._compute(key)
            self._members[key] = found
            for ident in found:
                self._keys_of_class.setdefault(ident, set()).add(key)
            self._index(key)
        return found

    def _compute(self, key: PeerKey) -> set[int]:
        reg = self._registry
        kind = key[0]
        if kind == "every":
            return set()
        if kind == "block":
            return set(reg.by_block.get(key[1], ()))
        if kind == "named":
            return set(reg.by_named_port.get((key[1], key[2]), ()))
        if kind == "pods":
            return {i for i in reg.by_namespace.get(key[1], ()) if self._matches(key, reg.get(i))}
        found: set[int] = set()
        for ns, idents in reg.by_namespace.items():
            if key[1].matches(self._ns_labels(ns)):
                found.update(i for i in idents if _selects(key[2], reg.get(i).labels))
        return found

    def _matches(self, key: PeerKey, cls: AddressClass) -> bool:
        kind = key[0]
        if kind == "block":
            return key[1] in cls.blocks
        if kind == "named":
            return any(n == key[1] and p == key[2] for n, p, _ in cls.named_ports)
        if cls.namespace is None:
            return False
        if kind == "pods":
            return cls.namespace == key[1] and _selects(key[2], cls.labels)
        return key[1].matches(self._ns_labels(cls.namespace)) and _selects(key[2], cls.labels)

    def _index(self, key: PeerKey) -> None:
        kind = key[0]
        if kind == "every":
            return
        if kind == "block":
            self._by_block[key[1]] = key
        elif kind == "named":
            self._by_named[(key[1], key[2])] = key
        elif kind == "pods":
            self._pods_by_ns.setdefault(key[1], set()).add(key)
        else:
            self._nspods.add(key)
            self._nspods_by_ns.clear()

    def _unindex(self, key: PeerKey) -> None:
        kind = key[0]
        if kind == "every":
            return
        if kind == "block":
            self._by_block.pop(key[1], None)
        elif kind == "named":
            self._by_named.pop((key[1], key[2]), None)
        elif kind == "pods":
            keys = self._pods_by_ns.get(key[1])
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._pods_by_ns[key[1]]
        else:
            self._nspods.discard(key)
            self._nspods_by_ns.clear()

    def _nspods_selecting(self, namespace: str) -> set[PeerKey]:
        keys = self._nspods_by_ns.get(namespace)
        if keys is None:
            labels = self._ns_labels(namespace)
            keys = {k for k in self._nspods if k[1].matches(labels)}
            self._nspods_by_ns[namespace] = keys
        return keys

    # --- users -------------------------------------------------------------------------------

    def set_uses(self, endpoint: str, keys: Iterable[PeerKey]) -> None:
        """Record the peers an endpoint's policy now depends on; evict unused entries."""
        new = set(keys)
        old = self._uses.pop(endpoint, set())
        if new:
            self._uses[endpoint] = new
        for key in new - old:
            self._users.setdefault(key, set()).add(endpoint)
        for key in old - new:
            users = self._users.get(key)
            if users is not None:
                users.discard(endpoint)
                if not users:
                    del self._users[key]
                    self._evict(key)

    def _evict(self, key: PeerKey) -> None:
        for ident in self._members.pop(key, ()):
            keys = self._keys_of_class.get(ident)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys_of_class[ident]
        self._unindex(key)

    def users_of(self, key: PeerKey) -> set[str]:
        return self._users.get(key, set())

    # --- changes -----------------------------------------------------------------------------

    def class_born(self, ident: int) -> set[str]:
        """A class appeared: add it to the cached peers it matches; returns affected endpoints."""
        cls = self._registry.get(ident)
        candidates: list[PeerKey] = [self._by_block[b] for b in cls.blocks if b in self._by_block]
        if cls.namespace is not None:
            candidates.extend(self._pods_by_ns.get(cls.namespace, ()))
            candidates.extend(self._nspods_selecting(cls.namespace))
            candidates.extend(
                self._by_named[(n, p)] for n, p, _ in cls.named_ports if (n, p) in self._by_named
            )
        affected: set[str] = set(self._users.get(("every",), ()))
        for key in candidates:
            if key in self._members and self._matches(key, cls):
                self._members[key].add(ident)
                self._keys_of_class.setdefault(ident, set()).add(key)
                affected |= self._users.get(key, set())
        return affected

    def class_died(self, ident: int) -> set[str]:
        affected: set[str] = set()
        for key in self._keys_of_class.pop(ident, ()):
            self._members[key].discard(ident)
            affected |= self._users.get(key, set())
        return affected

    def namespace_relabelled(self, namespace: str) -> set[str]:
        """Re-test namespaceSelector peers against the namespace's classes."""
        self._nspods_by_ns.pop(namespace, None)
        idents = self._registry.by_namespace.get(namespace, set())
        affected: set[str] = set()
        for key in self._nspods:
            members = self._members[key]
            for ident in idents:
                now = self._matches(key, self._registry.get(ident))
                if now != (ident in members):
                    affected |= self._users.get(key, set())
                    if now:
                        members.add(ident)
                        self._keys_of_class.setdefault(ident, set()).add(key)
                    else:
                        members.discard(ident)
                        self._keys_of_class[ident].discard(key)
        return affected
