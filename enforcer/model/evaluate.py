"""The verdict for one new connection, with the policies and rules that decide it.

A connection needs the source's egress AND the destination's ingress. A direction is
isolated when some policy selects the pod with that type; then only the union of those
policies' rules allows. A pod may always reach itself, and its own node may always reach it
(a hostNetwork pod on the same node is node traffic; its egress is never policed).

ipBlock and pods: a pod matches an ipBlock when one of its IPs (of the connection's IP family,
or any family when `family` is None) is inside the cidr and in no `except`.
Named ports resolve on the destination pod, by name AND protocol; traffic to an address
outside the cluster, or to a hostNetwork pod (its node's address), has no destination pod, so a
named egress port never matches it.

Cluster-scoped policies (enforcer.model.clusterpolicy) wrap NetworkPolicy in each direction:
the Admin tier's first matching rule decides (Accept, Deny; Pass goes on), then NetworkPolicy
if it isolates the pod in that direction, then the Baseline tier's first matching rule
(Accept, Deny; Pass goes on), then allow. `decided_by` says which stage decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_address

from enforcer.model.cluster import ClusterState
from enforcer.model.clusterpolicy import ACCEPT, ADMIN, BASELINE, PASS, ClusterPolicy
from enforcer.model.evaluate_tiers import TierMatch, first_match, tier_policies
from enforcer.model.objects import (
    EGRESS,
    INGRESS,
    IPAddress,
    NetworkPolicy,
    Pod,
    PolicyPort,
    PolicyRule,
)

ADMIN_STAGE = "admin"
NETWORK_POLICY_STAGE = "networkpolicy"
BASELINE_STAGE = "baseline"
DEFAULT = "default"

# A pod's cluster policies for one direction: (Admin tier, Baseline tier), in evaluation order.
Tiers = tuple[list[ClusterPolicy], list[ClusterPolicy]]
NO_TIERS: Tiers = ([], [])


def pod_tiers(state: ClusterState, pod: Pod, direction: str) -> Tiers:
    if not state.cluster_policies:
        return NO_TIERS
    return (tier_policies(state, pod, ADMIN, direction),
            tier_policies(state, pod, BASELINE, direction))


@dataclass
class DirectionVerdict:
    """One side of a connection: the source's egress or the destination's ingress."""

    isolated: bool
    allowed: bool
    allowing: list[tuple[str, int]] = field(default_factory=list)  # (policy key, rule index)
    isolating: list[str] = field(default_factory=list)  # keys of policies that isolate
    # The cluster-scoped tiers: the Admin rule that matched first (its Accept or Deny decided;
    # a Pass handed over), the Baseline rule that matched first when it was reached.
    admin: TierMatch | None = None
    baseline: TierMatch | None = None
    decided_by: str = DEFAULT  # ADMIN_STAGE, NETWORK_POLICY_STAGE, BASELINE_STAGE or DEFAULT

    @classmethod
    def unrestricted(cls) -> DirectionVerdict:
        return cls(isolated=False, allowed=True)


@dataclass
class Verdict:
    allowed: bool
    egress: DirectionVerdict
    ingress: DirectionVerdict
    self_traffic: bool = False  # allowed because a pod may always reach itself
    from_node: bool = False  # from the destination's own node (a hostNetwork pod there)


@dataclass(frozen=True)
class _Remote:
    """The other end of a connection: a pod, or just addresses outside the cluster."""

    pod: Pod | None
    ips: tuple[IPAddress, ...]


def port_matches(policy_port: PolicyPort, port: int, protocol: str, dst_pod: Pod | None) -> bool:
    if policy_port.protocol != protocol:
        return False
    if isinstance(policy_port.port, str):
        return dst_pod is not None and port in dst_pod.resolve_named_port(
            policy_port.port, protocol
        )
    return policy_port.matches_number(protocol, port)


def rule_matches(
    state: ClusterState,
    policy: NetworkPolicy,
    rule: PolicyRule,
    remote: _Remote,
    dst_pod: Pod | None,
    port: int,
    protocol: str,
    family: int | None,
) -> bool:
    if rule.ports and not any(port_matches(p, port, protocol, dst_pod) for p in rule.ports):
        return False
    if not rule.peers:
        return True
    for peer in rule.peers:
        if remote.pod is not None:
            if state.peer_matches_pod(policy, peer, remote.pod, family):
                return True
        elif peer.ip_block is not None and any(peer.ip_block.contains(ip) for ip in remote.ips):
            return True
    return False


def applying_policies(state: ClusterState, pod: Pod, direction: str) -> list[NetworkPolicy]:
    """Policies that select the pod for `direction` (sorted by key); empty: not isolated."""
    return sorted(
        (p for p in state.policies_selecting(pod.key) if direction in p.policy_types),
        key=lambda p: p.key,
    )


def _direction(
    state: ClusterState,
    direction: str,
    policies: list[NetworkPolicy],
    remote: _Remote,
    dst_pod: Pod | None,
    port: int,
    protocol: str,
    family: int | None,
    tiers: Tiers = NO_TIERS,
) -> DirectionVerdict:
    admin_policies, baseline_policies = tiers
    admin = (
        first_match(state, admin_policies, direction, remote.pod, remote.ips, dst_pod, port,
                    protocol)
        if admin_policies
        else None
    )
    isolating = [p.key for p in policies]
    if admin is not None and admin.action != PASS:
        return DirectionVerdict(isolated=bool(policies), allowed=admin.action == ACCEPT,
                                isolating=isolating, admin=admin, decided_by=ADMIN_STAGE)
    if policies:
        allowing = [
            (p.key, i)
            for p in policies
            for i, rule in enumerate(p.rules(direction))
            if rule_matches(state, p, rule, remote, dst_pod, port, protocol, family)
        ]
        return DirectionVerdict(
            isolated=True,
            allowed=bool(allowing),
            allowing=allowing,
            isolating=isolating,
            admin=admin,
            decided_by=NETWORK_POLICY_STAGE,
        )
    baseline = (
        first_match(state, baseline_policies, direction, remote.pod, remote.ips, dst_pod, port,
                    protocol)
        if baseline_policies
        else None
    )
    if baseline is not None and baseline.action != PASS:
        return DirectionVerdict(isolated=False, allowed=baseline.action == ACCEPT, admin=admin,
                                baseline=baseline, decided_by=BASELINE_STAGE)
    return DirectionVerdict(isolated=False, allowed=True, admin=admin, baseline=baseline)


def _pod(state: ClusterState, key: str) -> Pod:
    pod = state.pods.get(key)
    if pod is None:
        raise KeyError(f"unknown pod {key!r} (use namespace/name)")
    return pod


def _connection(
    state: ClusterState,
    src: Pod,
    dst: Pod,
    src_egress: list[NetworkPolicy],
    dst_ingress: list[NetworkPolicy],
    port: int,
    protocol: str,
    family: int | None,
    src_tiers: Tiers = NO_TIERS,
    dst_tiers: Tiers = NO_TIERS,
) -> Verdict:
    egress = _direction(
        state,
        EGRESS,
        src_egress,
        _Remote(dst, dst.ips_of_family(family)),
        # A named port resolves on an endpoint pod only: a hostNetwork pod's address is its
        # node's (which of the node's pods declares the name is no property of the address).
        dst if state.is_endpoint(dst) else None,
        port,
        protocol,
        family,
        src_tiers,
    )
    ingress = _direction(
        state,
        INGRESS,
        dst_ingress,
        _Remote(src, src.ips_of_family(family)),
        dst,
        port,
        protocol,
        family,
        dst_tiers,
    )
    if src.key == dst.key:
        return Verdict(allowed=True, egress=egress, ingress=ingress, self_traffic=True)
    if src.host_network and src.node_name is not None and src.node_name == dst.node_name:
        # Traffic from the pod's own node is always allowed (kubelet probes and the like);
        # a hostNetwork pod's traffic is node traffic. This holds for the cluster tiers too.
        return Verdict(allowed=egress.allowed, egress=egress, ingress=ingress, from_node=True)
    return Verdict(allowed=egress.allowed and ingress.allowed, egress=egress, ingress=ingress)


def evaluate(
    state: ClusterState,
    src_pod_key: str,
    dst_pod_key: str,
    port: int,
    protocol: str,
    family: int | None = None,
) -> Verdict:
    """May `src` open a new connection to `dst` on port/protocol?"""
    src, dst = _pod(state, src_pod_key), _pod(state, dst_pod_key)
    return _connection(
        state,
        src,
        dst,
        applying_policies(state, src, EGRESS),
        applying_policies(state, dst, INGRESS),
        port,
        protocol,
        family,
        pod_tiers(state, src, EGRESS),
        pod_tiers(state, dst, INGRESS),
    )


class PairEvaluator:
    """evaluate() for many pairs of one state: each pod's policies are looked up once.

    The state must not change while it is in use."""

    def __init__(self, state: ClusterState, family: int | None = None) -> None:
        self._state = state
        self._family = family
        self._egress: dict[str, list[NetworkPolicy]] = {}
        self._ingress: dict[str, list[NetworkPolicy]] = {}
        self._tiers: dict[tuple[str, str], Tiers] = {}

    def _policies(
        self, cache: dict[str, list[NetworkPolicy]], pod: Pod, direction: str
    ) -> list[NetworkPolicy]:
        found = cache.get(pod.key)
        if found is None:
            found = cache[pod.key] = applying_policies(self._state, pod, direction)
        return found

    def _pod_tiers(self, pod: Pod, direction: str) -> Tiers:
        found = self._tiers.get((pod.key, direction))
        if found is None:
            found = self._tiers[(pod.key, direction)] = pod_tiers(self._state, pod, direction)
        return found

    def verdict(self, src_pod_key: str, dst_pod_key: str, port: int, protocol: str) -> Verdict:
        src, dst = _pod(self._state, src_pod_key), _pod(self._state, dst_pod_key)
        return _connection(
            self._state,
            src,
            dst,
            self._policies(self._egress, src, EGRESS),
            self._policies(self._ingress, dst, INGRESS),
            port,
            protocol,
            self._family,
            self._pod_tiers(src, EGRESS),
            self._pod_tiers(dst, INGRESS),
        )


def evaluate_ip(
    state: ClusterState,
    pod_key: str,
    ip: IPAddress | str,
    port: int,
    protocol: str,
    direction: str = EGRESS,
) -> Verdict:
    """A pod and an address: pod -> ip for direction Egress, ip -> pod for Ingress.

    An address that belongs to an endpoint pod is that pod (evaluated with the address's
    family); any other address is outside the cluster and only ipBlock peers match it (and
    a cluster policy's `networks`, and `nodes` when it is a Node's address).
    """
    addr = ip_address(ip) if isinstance(ip, str) else ip
    if direction not in (EGRESS, INGRESS):
        raise ValueError(f"direction must be {EGRESS} or {INGRESS}")
    owner = state.pods_by_ip(addr)
    if owner is not None:
        if direction == EGRESS:
            return evaluate(state, pod_key, owner, port, protocol, family=addr.version)
        return evaluate(state, owner, pod_key, port, protocol, family=addr.version)
    pod = _pod(state, pod_key)
    outside = _Remote(None, (addr,))
    tiers = pod_tiers(state, pod, direction)
    if direction == EGRESS:
        policies = applying_policies(state, pod, EGRESS)
        verdict = _direction(state, EGRESS, policies, outside, None, port, protocol, addr.version,
                             tiers)
        return Verdict(verdict.allowed, egress=verdict, ingress=DirectionVerdict.unrestricted())
    policies = applying_policies(state, pod, INGRESS)
    verdict = _direction(state, INGRESS, policies, outside, pod, port, protocol, addr.version,
                         tiers)
    return Verdict(verdict.allowed, egress=DirectionVerdict.unrestricted(), ingress=verdict)
