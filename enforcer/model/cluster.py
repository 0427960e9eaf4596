"""The indexed, incrementally updatable cluster state: the first stage of the compiler.

Selectors resolve through label indexes (per namespace for pods, one for namespaces), so a
policy costs work proportional to what it selects, not to the size of the cluster.
Only endpoint pods (not hostNetwork, not Succeeded/Failed, with IPs) are indexed: nothing
else ever matches a selector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import ip_address
from types import MappingProxyType
from typing import Any

from enforcer.model.clusterpolicy import CLUSTER_POLICY_KINDS, ClusterPolicy
from enforcer.model.nodes import KIND_NODE, Node
from enforcer.model.objects import (
    KIND_NAMESPACE,
    KIND_NETWORK_POLICY,
    KIND_POD,
    TERMINAL_PHASES,
    IPAddress,
    IPBlock,
    LabelSelector,
    ModelObject,
    Namespace,
    NetworkPolicy,
    Pod,
    PolicyPeer,
    pending_namespace,
)
from enforcer.model.service_index import ServiceIndex
from enforcer.model.services import (
    KIND_ENDPOINT_SLICE,
    KIND_SERVICE,
    EndpointSlice,
    Service,
    ServiceObject,
)

_NO_KEYS: frozenset[str] = frozenset()


class LabelIndex:
    """Object keys indexed by label pair and by label key, for fast selector resolution."""

    __slots__ = ("_labels", "by_key", "by_pair")

    def __init__(self) -> None:
        self._labels: dict[str, Mapping[str, str]] = {}
        self.by_pair: dict[tuple[str, str], set[str]] = {}
        self.by_key: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, key: object) -> bool:
        return key in self._labels

    def keys(self) -> set[str]:
        return set(self._labels)

    def add(self, key: str, labels: Mapping[str, str]) -> None:
        if key in self._labels:
            self.discard(key)
        self._labels[key] = labels
        for pair in labels.items():
            self.by_pair.setdefault(pair, set()).add(key)
            self.by_key.setdefault(pair[0], set()).add(key)

    def discard(self, key: str) -> None:
        labels = self._labels.pop(key, None)
        if labels is None:
            return
        for pair in labels.items():
            _discard_from(self.by_pair, pair, key)
            _discard_from(self.by_key, pair[0], key)

    def select(self, selector: LabelSelector) -> set[str]:
        """Keys whose labels the selector matches."""
        if selector.is_empty():
            return set(self._labels)
        # Each positive term (a label pair, In, Exists) has an exact key set in the index:
        # intersect those; only NotIn / DoesNotExist need a look at each remaining object.
        positive: list[set[str] | frozenset[str]] = [
            self.by_pair.get(pair, _NO_KEYS) for pair in selector.match_labels.items()
        ]
        negative = []
        for req in selector.match_expressions:
            if req.operator == "In":
                positive.append(
                    set().union(*(self.by_pair.get((req.key, v), _NO_KEYS) for v in req.values))
                )
            elif req.operator == "Exists":
                positive.append(self.by_key.get(req.key, _NO_KEYS))
            else:
                negative.append(req)
        if positive:
            positive.sort(key=len)
            found = set(positive[0]).intersection(*positive[1:])
        else:
            found = set(self._labels)
        if negative:
            labels = self._labels
            found = {key for key in found if all(req.matches(labels[key]) for req in negative)}
        return found


def _discard_from(index: dict[Any, set[str]], bucket: object, key: str) -> None:
    keys = index.get(bucket)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[bucket]


class ClusterState:
    """Namespaces, pods and policies, with indexes for selector resolution.

    `planned_pods=True` treats pods that have no IPs yet as endpoints: that is what a
    what-if analysis of manifests (which carry no status) needs. The agent keeps the default.
    """

    def __init__(self, planned_pods: bool = False) -> None:
        self.planned_pods = planned_pods
        self._namespaces: dict[str, Namespace] = {}
        self._pods: dict[str, Pod] = {}
        self._policies: dict[str, NetworkPolicy] = {}
        self._policies_by_ns: dict[str, dict[str, NetworkPolicy]] = {}
        self._endpoints_by_ns: dict[str, LabelIndex] = {}
        self._pod_count_by_ns: dict[str, int] = {}
        self._ns_index = LabelIndex()  # every namespace with an identity, by effective labels
        self._ip_claims: dict[IPAddress, list[str]] = {}  # IP -> endpoint pod keys, newest last
        self.services = ServiceIndex()  # Services and EndpointSlices (see service_index.py)
        # Cluster-scoped policies by key (kind/name) and Nodes by name (their `nodes` peers).
        self._cluster_policies: dict[str, ClusterPolicy] = {}
        self._nodes: dict[str, Node] = {}
        self.generation = 0  # bumped on every change

    # --- read access ---------------------------------------------------------------------

    @property
    def namespaces(self) -> Mapping[str, Namespace]:
        """Namespace objects that were given (see namespace_identity for pending ones)."""
        return MappingProxyType(self._namespaces)

    @property
    def pods(self) -> Mapping[str, Pod]:
        return MappingProxyType(self._pods)

    @property
    def policies(self) -> Mapping[str, NetworkPolicy]:
        return MappingProxyType(self._policies)

    @property
    def cluster_policies(self) -> Mapping[str, ClusterPolicy]:
        return MappingProxyType(self._cluster_policies)

    @property
    def nodes(self) -> Mapping[str, Node]:
        return MappingProxyType(self._nodes)

    def namespace_identity(self, name: str) -> Namespace:
        """The Namespace object, or the pending identity a pod's namespace field gives."""
        return self._namespaces.get(name) or pending_namespace(name)

    def namespace_names(self) -> set[str]:
        """Namespaces that exist as objects or through pods."""
        return self._ns_index.keys()

    def is_endpoint(self, pod: Pod) -> bool:
        if pod.host_network or pod.phase in TERMINAL_PHASES:
            return False
        return bool(pod.ips) or self.planned_pods

    def endpoint_keys(self) -> list[str]:
        return sorted(k for k, p in self._pods.items() if self.is_endpoint(p))

    def policies_in(self, namespace: str) -> list[NetworkPolicy]:
        return list(self._policies_by_ns.get(namespace, {}).values())

    # --- updates ---------------------------------------------------------------------------

    def upsert(self, obj: ModelObject | ServiceObject | ClusterPolicy | Node) -> None:
        if isinstance(obj, Namespace):
            self._namespaces[obj.name] = obj
            self._ns_index.add(obj.name, obj.labels)
        elif isinstance(obj, Pod):
            self._remove_pod(obj.key)
            self._add_pod(obj)
        elif isinstance(obj, NetworkPolicy):
            self._policies[obj.key] = obj
            self._policies_by_ns.setdefault(obj.namespace, {})[obj.key] = obj
        elif isinstance(obj, Service | EndpointSlice):
            self.services.upsert(obj)
        elif isinstance(obj, ClusterPolicy):
            self._cluster_policies[obj.key] = obj
        elif isinstance(obj, Node):
            self._nodes[obj.name] = obj
        else:
            raise TypeError(f"cannot store {type(obj).__name__}")
        self.generation += 1

    def remove(self, kind: str, namespace: str | None, name: str) -> None:
        if kind == KIND_NAMESPACE:
            if self._namespaces.pop(name, None) is not None:
                self._ns_index.discard(name)
                if self._pod_count_by_ns.get(name):  # its pods keep a pending identity
                    self._ns_index.add(name, pending_namespace(name).labels)
        elif kind == KIND_POD:
            self._remove_pod(f"{namespace}/{name}")
        elif kind == KIND_NETWORK_POLICY:
            key = f"{namespace}/{name}"
            policy = self._policies.pop(key, None)
            if policy is not None:
                by_ns = self._policies_by_ns[policy.namespace]
                del by_ns[key]
                if not by_ns:
                    del self._policies_by_ns[policy.namespace]
        elif kind == KIND_SERVICE:
            self.services.remove_service(f"{namespace}/{name}")
        elif kind == KIND_ENDPOINT_SLICE:
            self.services.remove_slice(f"{namespace}/{name}")
        elif kind == KIND_NODE:
            self._nodes.pop(name, None)
        elif kind in CLUSTER_POLICY_KINDS:
            self._cluster_policies.pop(f"{kind}/{name}", None)
        else:
            raise ValueError(f"unknown kind {kind!r}")
        self.generation += 1

    def _add_pod(self, pod: Pod) -> None:
        key, ns = pod.key, pod.namespace
        self._pods[key] = pod
        self._pod_count_by_ns[ns] = self._pod_count_by_ns.get(ns, 0) + 1
        if ns not in self._ns_index:
            self._ns_index.add(ns, pending_namespace(ns).labels)
        if self.is_endpoint(pod):
            self._endpoints_by_ns.setdefault(ns, LabelIndex()).add(key, pod.labels)
            for ip in pod.ips:
                self._ip_claims.setdefault(ip, []).append(key)

    def _remove_pod(self, key: str) -> None:
        pod = self._pods.pop(key, None)
        if pod is None:
            return
        ns = pod.namespace
        self._pod_count_by_ns[ns] -= 1
        if not self._pod_count_by_ns[ns]:
            del self._pod_count_by_ns[ns]
            if ns not in self._namespaces:
                self._ns_index.discard(ns)
        index = self._endpoints_by_ns.get(ns)
        if index is not None and key in index:
            index.discard(key)
            if not len(index):
                del self._endpoints_by_ns[ns]
            for ip in pod.ips:
                # Only this pod's claim goes: a reused IP stays with its other owner.
                claims = self._ip_claims.get(ip, [])
                if key in claims:
                    claims.remove(key)
                if not claims:
                    self._ip_claims.pop(ip, None)

    # --- selector resolution -----------------------------------------------------------------

    def pods_selected_by(self, policy: NetworkPolicy) -> set[str]:
        """Endpoint pod keys the policy applies to (its podSelector, in its namespace)."""
        index = self._endpoints_by_ns.get(policy.namespace)
        return index.select(policy.pod_selector) if index is not None else set()

    def policies_selecting(self, pod_key: str) -> list[NetworkPolicy]:
        """Policies whose podSelector selects the pod (none for non-endpoints)."""
        pod = self._pods.get(pod_key)
        if pod is None or not self.is_endpoint(pod):
            return []
        return [
            p
            for p in self._policies_by_ns.get(pod.namespace, {}).values()
            if p.pod_selector.matches(pod.labels)
        ]

    def peer_namespaces(self, policy: NetworkPolicy, peer: PolicyPeer) -> set[str]:
        """Namespaces a selector peer reaches into: the policy's own without namespaceSelector."""
        if peer.namespace_selector is None:
            return {policy.namespace}
        return self._ns_index.select(peer.namespace_selector)

    def peer_pods(self, policy: NetworkPolicy, peer: PolicyPeer) -> set[str]:
        """Endpoint pods a selector peer matches. ipBlock peers give the empty set here
        (see ip_block_pods): they match addresses, not selectors."""
        if peer.ip_block is not None:
            return set()
        found: set[str] = set()
        for ns in self.peer_namespaces(policy, peer):
            index = self._endpoints_by_ns.get(ns)
            if index is None:
                continue
            if peer.pod_selector is None:
                found.update(index.keys())
            else:
                found.update(index.select(peer.pod_selector))
        return found

    def ip_block_pods(self, block: IPBlock, family: int | None = None) -> set[str]:
        """Endpoint pods with an IP (of `family`, or any) inside the block and not excepted."""
        return {
            keys[-1]
            for ip, keys in self._ip_claims.items()
            if (family is None or ip.version == family) and block.contains(ip)
        }

    def pods_by_ip(self, ip: IPAddress | str) -> str | None:
        """The endpoint pod that owns an IP (the newest claim if several pods report it)."""
        claims = self._ip_claims.get(ip_address(ip) if isinstance(ip, str) else ip)
        return claims[-1] if claims else None

    # --- pod-level predicates (used by evaluate; O(1) per check) -----------------------------

    def peer_matches_pod(
        self, policy: NetworkPolicy, peer: PolicyPeer, pod: Pod, family: int | None = None
    ) -> bool:
        if peer.ip_block is not None:
            # Addresses, not identity: an ipBlock also matches hostNetwork pods' (node) IPs.
            block = peer.ip_block
            return any(block.contains(ip) for ip in pod.ips_of_family(family))
        if not self.is_endpoint(pod):
            return False
        if peer.namespace_selector is None:
            if pod.namespace != policy.namespace:
                return False
        elif not peer.namespace_selector.matches(self.namespace_identity(pod.namespace).labels):
            return False
        return peer.pod_selector is None or peer.pod_selector.matches(pod.labels)

    def load(
        self, objects: Sequence[ModelObject | ServiceObject | ClusterPolicy | Node]
    ) -> None:
        for obj in objects:
            self.upsert(obj)

    def copy(self) -> ClusterState:
        """An independent state with the same objects (indexes rebuilt: linear in its size)."""
        twin = ClusterState(planned_pods=self.planned_pods)
        twin.load(list(self._namespaces.values()))
        twin.load(list(self._pods.values()))
        twin.load(list(self._policies.values()))
        twin.load(list(self.services.services.values()))
        twin.load(list(self.services.slices.values()))
        twin.load(list(self._nodes.values()))
        twin.load(list(self._cluster_policies.values()))
        return twin


def state_from(
    objects: Sequence[ModelObject | ServiceObject], planned_pods: bool = False
) -> ClusterState:
    state = ClusterState(planned_pods=planned_pods)
    state.load(objects)
    return state
