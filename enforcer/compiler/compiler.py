"""The incremental compiler: cluster state -> identity map + local endpoints' allow tables.

Pure (no kernel). The caller updates the ClusterState first, then tells the compiler about
the same object; the compiler returns the CompileDelta for the datapath writer. Each event
touches only what it affects:

- a pod whose class already exists: identity-map writes only;
- a pod whose class is new (or whose class's last member left): also the local endpoints
  whose cached peers match that class;
- a local pod's labels or ports: that endpoint;
- a policy: the local endpoints its old or new version selects (plus the ipBlock partition
  and the pod IPs inside changed blocks when its set of ipBlocks changes, which is rare);
- a namespace relabel: the local endpoints whose namespaceSelector peers gained or lost
  classes of that namespace.

IP ownership follows ClusterState.pods_by_ip (the newest claim of an endpoint pod), keyed by
pod key and UID: a late delete of an old owner never removes the newer owner's entry, and
every change of owner (and every address losing its owner) is reported in ip_owner_changes;
an address gaining an owner incrementally is not (see _reassign). full() reports every
address whose owner differs from its previous run's, from nobody included: at a start it
flushes what changed while no agent watched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from types import MappingProxyType

from enforcer.compiler.classes import AddressClass, ClassRegistry, address_class, pod_class
from enforcer.compiler.delta import AddressMove, CompileDelta
from enforcer.compiler.entries import endpoint_policy
from enforcer.compiler.ipblocks import BlockIndex
from enforcer.compiler.peers import PeerCache
from enforcer.compiler.tiers import Skeletons, tiered_policy
from enforcer.compiler.tiers import policy_blocks as cluster_policy_blocks
from enforcer.datapath.types import FIRST_IDENTITY, EndpointPolicy, IPNetwork
from enforcer.model.cluster import ClusterState
from enforcer.model.clusterpolicy import ADMIN, ClusterPolicy
from enforcer.model.evaluate_tiers import selects
from enforcer.model.nodes import Node
from enforcer.model.objects import (
    EGRESS,
    INGRESS,
    IPAddress,
    IPBlock,
    ModelObject,
    Namespace,
    NetworkPolicy,
    Pod,
)


def policy_blocks(policy: NetworkPolicy) -> set[IPBlock]:
    return {
        peer.ip_block
        for rule in (*policy.ingress, *policy.egress)
        for peer in rule.peers or ()
        if peer.ip_block is not None
    }


def host_prefix(ip: IPAddress) -> IPNetwork:
    # From the integer: the network classes' fast path (a full sync makes tens of thousands).
    return IPv4Network(int(ip)) if ip.version == 4 else IPv6Network(int(ip))


@dataclass
class _Txn:
    """What the current step touched, to build its delta."""

    prefixes_before: dict[IPNetwork, int | None] = field(default_factory=dict)
    owner_changes: set[IPAddress] = field(default_factory=set)
    dirty: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    born: set[int] = field(default_factory=set)
    dead: set[int] = field(default_factory=set)
    moves: dict[IPAddress, AddressMove] = field(default_factory=dict)


@dataclass(frozen=True)
class _Owner:
    pod_key: str
    uid: str
    identity: int


class Compiler:
    """node_name None: every endpoint pod is local (the analyzer / single-node lab case)."""

    def __init__(
        self,
        state: ClusterState,
        node_name: str | None,
        first_identity: int = FIRST_IDENTITY,
        policy_mode: str = "enforce",
    ) -> None:
        """first_identity: number above every identity an older generation may still name
        (an agent restarting over pinned tables), so no number changes meaning.
        policy_mode: the node's default, "enforce" or "audit" (a namespace's or pod's
        annotation overrides it)."""
        self._state = state
        self._node = node_name
        self._default_mode = policy_mode
        # Each namespace's policy mode as last compiled: a relabel that keeps it rewrites
        # nothing for the mode's sake.
        self._ns_modes: dict[str, str | None] = {}
        self._reset(ClassRegistry(first_id=first_identity))

    def _reset(self, registry: ClassRegistry) -> None:
        self._registry = registry
        self._reuse: dict[AddressClass, int] | None = None
        self._blocks = BlockIndex()
        self._peers = PeerCache(registry, self._namespace_labels)
        self._partition: dict[IPNetwork, int] = {}
        self._owners: dict[IPAddress, _Owner] = {}
        self._map: dict[IPNetwork, int] = {}
        self._pods: dict[str, Pod] = {}  # as last seen: the "old" version on the next upsert
        self._policies: dict[str, NetworkPolicy] = {}
        # Cluster-scoped policies and Nodes as last seen, and the address blocks their peers
        # name (one reference in the block index for the whole set).
        self._cluster: dict[str, ClusterPolicy] = {}
        self._nodes: dict[str, Node] = {}
        self._cluster_blocks: set[IPBlock] = set()
        self._local: dict[str, Pod] = {}
        self._skeletons: Skeletons | None = None
        # The cluster policies in evaluation order (None: to sort again), and which namespace
        # subjects select which namespace, for one step.
        self._cluster_order: list[ClusterPolicy] | None = None
        self._subject_hits: dict[tuple[str, str], bool] = {}
        self._local_by_ns: dict[str, set[str]] = {}
        self._out: dict[str, EndpointPolicy] = {}
        self._txn = _Txn()

    def _namespace_labels(self, namespace: str) -> Mapping[str, str]:
        return self._state.namespace_identity(namespace).labels

    # --- read access -------------------------------------------------------------------------

    def identities(self) -> Mapping[IPNetwork, int]:
        return MappingProxyType(self._map)

    def endpoint_policy(self, pod_key: str) -> EndpointPolicy:
        return self._out[pod_key]

    def local_endpoints(self) -> set[str]:
        return set(self._out)

    def policies(self) -> Mapping[str, EndpointPolicy]:
        return MappingProxyType(self._out)

    def identity_count(self) -> int:
        return len(self._registry)

    # --- events ------------------------------------------------------------------------------

    def full(self) -> CompileDelta:
        """Rebuild from the state; the delta is against what this compiler produced before.

        Classes that survive keep their numbers, so a relist rewrites only what changed.
        """
        before_map, before_out = self._map, self._out
        before_owners = self._owners
        before_ids = set(self._registry)
        reuse = self._registry.snapshot()
        self._reset(ClassRegistry(first_id=self._registry.next_id))
        self._reuse = reuse
        state = self._state
        self._ns_modes = {name: mode for name in state.namespace_names()
                          if (mode := state.namespace_identity(name).policy_mode)}
        for policy in state.policies.values():
            self._policies[policy.key] = policy
            self._blocks.add(policy_blocks(policy))
        self._cluster = dict(state.cluster_policies)
        self._nodes = dict(state.nodes)
        self._cluster_blocks = self._wanted_cluster_blocks()
        self._blocks.add(self._cluster_blocks)
        self._rebuild_partition()
        for pod in state.pods.values():
            self._pods[pod.key] = pod
            for ip in pod.ips:
                self._reassign(ip)
            if self._is_local(pod):
                self._add_local(pod)
        self._skeletons = None
        self._subject_hits = {}
        for key in self._local:
            self._recompute(key)
        self._skeletons = None
        self._reuse = None
        self._txn = _Txn()
        after_ids = set(self._registry)
        owner_changes = {
            ip
            for ip in before_owners.keys() | self._owners.keys()
            if _owner_id(before_owners.get(ip)) != _owner_id(self._owners.get(ip))
        }
        return CompileDelta(
            identity_changes={
                net: self._map.get(net)
                for net in before_map.keys() | self._map.keys()
                if before_map.get(net) != self._map.get(net)
            },
            endpoints={k: p for k, p in self._out.items() if before_out.get(k) != p},
            removed_endpoints=before_out.keys() - self._out.keys(),
            ip_owner_changes=owner_changes,
            born_identities=frozenset(after_ids - before_ids),
            dead_identities=frozenset(before_ids - after_ids),
            address_moves=self._local_moves(
                {
                    ip: AddressMove(was.pod_key, was.identity, now.identity)
                    for ip, was in before_owners.items()
                    if (now := self._owners.get(ip)) is not None
                    and _owner_id(was) == _owner_id(now)
                }
            ),
        )

    def on_upsert(self, obj: ModelObject) -> CompileDelta:
        """Call after state.upsert(obj)."""
        self._txn = _Txn()
        self._upsert(obj)
        return self._finish()

    def on_remove(self, old_obj: ModelObject) -> CompileDelta:
        """Call after state.remove(...) with the object as last seen (only its key is needed
        when the compiler saw it)."""
        self._txn = _Txn()
        self._remove(old_obj)
        return self._finish()

    def on_changes(self, changes: Sequence[tuple[ModelObject | None, ModelObject | None]]
                   ) -> CompileDelta:
        """Several changes, all applied to the state already, compiled as one step: one delta
        from the tables before the first to the tables after the last (a burst of watch
        events costs one write pass, not one per event). `changes` are (old, new) per object,
        new None for a removal, each object once, its latest version (the state's); the
        versions in between were never written, so nothing needs them."""
        self._txn = _Txn()
        for old, new in changes:
            if new is not None:
                self._upsert(new)
            elif old is not None and self._seen(old):
                self._remove(old)
        return self._finish()

    def _seen(self, obj: ModelObject) -> bool:
        """Removing what this compiler never saw (added and removed in one batch) is a no-op,
        and must be: a policy's ipBlocks are reference-counted."""
        if isinstance(obj, Pod):
            return obj.key in self._pods
        if isinstance(obj, NetworkPolicy):
            return obj.key in self._policies
        if isinstance(obj, ClusterPolicy):
            return obj.key in self._cluster
        if isinstance(obj, Node):
            return obj.name in self._nodes
        return True

    def _upsert(self, obj: ModelObject) -> None:
        if isinstance(obj, Namespace):
            self._txn.dirty |= self._peers.namespace_relabelled(obj.name)
            if self._cluster:  # a cluster policy's subject may select its pods now, or not
                self._txn.dirty |= self._local_by_ns.get(obj.name, set())
            if self._ns_modes.get(obj.name) != obj.policy_mode:  # its pods' audit flags follow
                self._txn.dirty |= self._local_by_ns.get(obj.name, set())
            self._ns_modes[obj.name] = obj.policy_mode
        elif isinstance(obj, Pod):
            self._pod_changed(self._pods.get(obj.key), obj)
        elif isinstance(obj, NetworkPolicy):
            old = self._policies.get(obj.key)
            self._policies[obj.key] = obj
            self._policy_changed(old, obj)
        elif isinstance(obj, ClusterPolicy):
            self._cluster_policy_changed(self._cluster.get(obj.key), obj)
        elif isinstance(obj, Node):
            self._node_changed(self._nodes.get(obj.name), obj)
        else:
            raise TypeError(f"cannot compile {type(obj).__name__}")

    def _remove(self, old_obj: ModelObject) -> None:
        if isinstance(old_obj, Namespace):
            self._txn.dirty |= self._peers.namespace_relabelled(old_obj.name)
            if self._ns_modes.pop(old_obj.name, None) is not None:
                self._txn.dirty |= self._local_by_ns.get(old_obj.name, set())
        elif isinstance(old_obj, Pod):
            self._pod_changed(self._pods.get(old_obj.key, old_obj), None)
        elif isinstance(old_obj, NetworkPolicy):
            self._policy_changed(self._policies.pop(old_obj.key, old_obj), None)
        elif isinstance(old_obj, ClusterPolicy):
            self._cluster_policy_changed(self._cluster.get(old_obj.key, old_obj), None)
        elif isinstance(old_obj, Node):
            self._node_changed(self._nodes.get(old_obj.name, old_obj), None)
        else:
            raise TypeError(f"cannot compile {type(old_obj).__name__}")

    # --- pods --------------------------------------------------------------------------------

    def _pod_changed(self, old: Pod | None, new: Pod | None) -> None:
        key = (new or old).key  # type: ignore[union-attr]
        if new is None:
            self._pods.pop(key, None)
        else:
            self._pods[key] = new
        ips = dict.fromkeys((*(old.ips if old else ()), *(new.ips if new else ())))
        for ip in ips:
            self._reassign(ip)
        was_local = key in self._local
        if new is not None and self._is_local(new):
            if not was_local or old is None or _policy_relevant(old) != _policy_relevant(new):
                self._txn.dirty.add(key)
            if was_local:
                self._drop_local(key, removed=False)
            self._add_local(new)
        elif was_local:
            self._drop_local(key, removed=True)

    def _is_local(self, pod: Pod) -> bool:
        return self._state.is_endpoint(pod) and (self._node is None or pod.node_name == self._node)

    def _add_local(self, pod: Pod) -> None:
        self._local[pod.key] = pod
        self._local_by_ns.setdefault(pod.namespace, set()).add(pod.key)

    def _drop_local(self, key: str, removed: bool) -> None:
        pod = self._local.pop(key)
        keys = self._local_by_ns[pod.namespace]
        keys.discard(key)
        if not keys:
            del self._local_by_ns[pod.namespace]
        if removed:
            self._peers.set_uses(key, ())
            self._out.pop(key, None)
            self._txn.removed.add(key)

    # --- identities --------------------------------------------------------------------------

    def _reassign(self, ip: IPAddress) -> None:
        """Bring the IP's owner and class in line with the state."""
        owner_key = self._state.pods_by_ip(ip)
        pod = self._state.pods.get(owner_key) if owner_key is not None else None
        old = self._owners.get(ip)
        if pod is None:
            if old is None:
                return
            del self._owners[ip]
            self._release(old.identity)
            self._txn.owner_changes.add(ip)
        else:
            cls = pod_class(pod, self._blocks.containing_address(ip))
            if (
                old is not None
                and (old.pod_key, old.uid) == (pod.key, pod.uid)
                and self._registry.get(old.identity) == cls
            ):
                return
            ident = self._acquire(cls)
            self._owners[ip] = _Owner(pod.key, pod.uid, ident)
            if old is not None and _owner_id(old) == (pod.key, pod.uid):
                first = self._txn.moves.get(ip)
                before = old.identity if first is None else first.before
                self._txn.moves[ip] = AddressMove(pod.key, before, ident)
            if old is not None:
                self._release(old.identity)
            # From nobody needs no flush: the address's flows were flushed when its last owner
            # went, and flows made since were judged against no pod; the new host prefix
            # bumps the policy epoch, so they are re-checked at their next packet.
            if old is not None and (old.pod_key, old.uid) != (pod.key, pod.uid):
                self._txn.owner_changes.add(ip)
        self._refresh(host_prefix(ip))

    def _acquire(self, cls: AddressClass) -> int:
        ident, born = self._registry.acquire(cls, self._reuse)
        if born:
            self._txn.born.add(ident)
            self._txn.dirty |= self._peers.class_born(ident)
        return ident

    def _release(self, ident: int) -> None:
        if self._registry.release(ident):
            if ident in self._txn.born:
                self._txn.born.discard(ident)
            else:
                self._txn.dead.add(ident)
            self._txn.dirty |= self._peers.class_died(ident)

    def _refresh(self, net: IPNetwork) -> None:
        """Recompute one prefix of the identity map: a pod's own entry beats the partition's."""
        value: int | None = None
        if net.prefixlen == net.max_prefixlen:
            owner = self._owners.get(net.network_address)
            if owner is not None:
                value = owner.identity
        if value is None:
            value = self._partition.get(net)
        current = self._map.get(net)
        if value == current:
            return
        self._txn.prefixes_before.setdefault(net, current)
        if value is None:
            del self._map[net]
        else:
            self._map[net] = value

    def _rebuild_partition(self) -> None:
        old = self._partition
        new = {
            net: self._acquire(address_class(blocks))
            for net, blocks in self._blocks.partition().items()
        }
        self._partition = new
        for ident in old.values():
            self._release(ident)
        for net in old.keys() | new.keys():
            self._refresh(net)

    # --- policies ----------------------------------------------------------------------------

    def _policy_changed(self, old: NetworkPolicy | None, new: NetworkPolicy | None) -> None:
        if new is None and old is not None:
            self._policies.pop(old.key, None)
        added = self._blocks.add(policy_blocks(new)) if new is not None else set()
        removed = self._blocks.remove(policy_blocks(old)) if old is not None else set()
        if added or removed:
            self._blocks_changed(added | removed)
        for policy in (old, new):
            if policy is None:
                continue
            for key in self._local_by_ns.get(policy.namespace, ()):
                if policy.pod_selector.matches(self._local[key].labels):
                    self._txn.dirty.add(key)

    # --- cluster-scoped policies and nodes -----------------------------------------------------

    def _wanted_cluster_blocks(self) -> set[IPBlock]:
        nodes = list(self._nodes.values())
        return set().union(*(cluster_policy_blocks(p, nodes) for p in self._cluster.values()))

    def _cluster_blocks_refresh(self) -> None:
        wanted = self._wanted_cluster_blocks()
        old = self._cluster_blocks
        self._cluster_blocks = wanted
        added = self._blocks.add(wanted - old)
        removed = self._blocks.remove(old - wanted)
        if added or removed:
            self._blocks_changed(added | removed)

    def _cluster_policy_changed(self, old: ClusterPolicy | None,
                                new: ClusterPolicy | None) -> None:
        if old == new:
            return
        if new is None:
            self._cluster.pop(old.key, None)  # type: ignore[union-attr]
        else:
            self._cluster[new.key] = new
        self._cluster_order = None
        self._cluster_blocks_refresh()
        for policy in (old, new):
            if policy is not None:
                self._txn.dirty |= {key for key, pod in self._local.items()
                                    if selects(self._state, policy, pod)}

    def _node_changed(self, old: Node | None, new: Node | None) -> None:
        if old == new:  # a status heartbeat: nothing policy reads
            return
        if new is None:
            self._nodes.pop(old.name, None)  # type: ignore[union-attr]
        else:
            self._nodes[new.name] = new
        self._cluster_blocks_refresh()
        for policy in self._cluster.values():
            if any(peer.nodes is not None for rule in (*policy.ingress, *policy.egress)
                   for peer in rule.peers):
                self._txn.dirty |= {key for key, pod in self._local.items()
                                    if selects(self._state, policy, pod)}

    def _blocks_changed(self, blocks: set[IPBlock]) -> None:
        """Rare: the set of ipBlocks in use changed. Re-partition, reclassify pod IPs inside."""
        self._rebuild_partition()
        cidrs = [b.cidr for b in blocks]
        for ip in [ip for ip in self._owners if any(ip in c for c in cidrs)]:
            self._reassign(ip)

    # --- endpoints ---------------------------------------------------------------------------

    def _recompute(self, key: str) -> None:
        pod = self._local[key]
        if pod.quarantine is not None:
            # Above every policy, audit mode included: nothing in, nothing out (the node's
            # own traffic, kubelet probes, passes before any table is read).
            self._peers.set_uses(key, ())
            self._out[key] = quarantined_policy()
            return
        policy, uses = endpoint_policy(
            pod, self._state.policies_selecting(key), self._registry, self._peers.members,
            audit=self._audited(pod),
        )
        if self._cluster:
            admin, baseline = self._tiers_of(pod)
            if admin or baseline:
                if self._skeletons is None:  # one per step: its endpoints share them
                    self._skeletons = Skeletons(self._registry, self._peers.members,
                                                self._nodes.values())
                policy, tier_uses = tiered_policy(pod, policy, admin, baseline, self._skeletons)
                uses |= tier_uses
        self._peers.set_uses(key, uses)
        self._out[key] = policy

    def _tiers_of(self, pod: Pod) -> tuple[dict[str, list[ClusterPolicy]],
                                            dict[str, list[ClusterPolicy]]]:
        """Per direction, the Admin and the Baseline tier's policies selecting the pod, in
        evaluation order (those without rules in a direction left out). One pass over the
        policies; a namespace subject is tested once per namespace and step."""
        found: tuple[dict[str, list[ClusterPolicy]], dict[str, list[ClusterPolicy]]] = ({}, {})
        if self._cluster_order is None:
            self._cluster_order = sorted(self._cluster.values(), key=ClusterPolicy.sort_key)
        for policy in self._cluster_order:
            subject = policy.subject
            if subject.namespaces is not None:
                key = (policy.key, pod.namespace)
                hit = self._subject_hits.get(key)
                if hit is None:
                    hit = self._subject_hits[key] = selects(self._state, policy, pod)
            else:
                hit = selects(self._state, policy, pod)
            if not hit:
                continue
            out = found[0] if policy.tier == ADMIN else found[1]
            for direction in (INGRESS, EGRESS):
                if policy.rules(direction):
                    out.setdefault(direction, []).append(policy)
        return found

    def _audited(self, pod: Pod) -> bool:
        mode = pod.policy_mode or self._state.namespace_identity(pod.namespace).policy_mode
        return (mode or self._default_mode) == "audit"

    def _finish(self) -> CompileDelta:
        txn = self._txn
        delta = CompileDelta(
            removed_endpoints=set(txn.removed),
            ip_owner_changes=set(txn.owner_changes),
            born_identities=frozenset(txn.born),
            dead_identities=frozenset(txn.dead),
            address_moves=self._local_moves(txn.moves),
        )
        for net, before in txn.prefixes_before.items():
            now = self._map.get(net)
            if now != before:
                delta.identity_changes[net] = now
        self._skeletons = None
        self._subject_hits = {}
        for key in txn.dirty:
            if key not in self._local:
                continue
            before = self._out.get(key)
            self._recompute(key)
            if self._out[key] != before:
                delta.endpoints[key] = self._out[key]
        delta.removed_endpoints -= self._out.keys()
        self._skeletons = None
        self._txn = _Txn()
        return delta

    def _local_moves(
        self, moves: Mapping[IPAddress, AddressMove]
    ) -> dict[IPNetwork, AddressMove]:
        """The moves of local endpoints' addresses that end in another identity."""
        return {
            host_prefix(ip): move
            for ip, move in moves.items()
            if move.before != move.after and move.pod_key in self._local
        }


def _owner_id(owner: _Owner | None) -> tuple[str, str] | None:
    return None if owner is None else (owner.pod_key, owner.uid)


def _policy_relevant(pod: Pod) -> tuple[object, ...]:
    """What of a local pod its own table depends on: labels select policies, ports resolve
    ingress named ports, the mode sets audit, a quarantine replaces it all."""
    return (pod.labels, pod.ports, pod.policy_mode, pod.quarantine)


# What flows and `status` name as the deciding "policy" of a quarantined pod's drops.
QUARANTINE = "quarantine"


def quarantined_policy() -> EndpointPolicy:
    return EndpointPolicy(ingress_isolated=True, egress_isolated=True,
                          isolating_ingress=(QUARANTINE,), isolating_egress=(QUARANTINE,))
