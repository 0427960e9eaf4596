"""The advice proves itself in the model before anyone applies it.

1. Every learned flow is allowed with the advised policies in place, on both sides (the
   source's egress and the destination's ingress), exactly as `analyze --explain` judges it.
   A flow denied on a side an advised policy isolates is a bug of the advice; one denied only
   on a side the advice leaves alone (a namespace not chosen, egress under --ingress-only) is
   denied by the cluster's existing policies, and said so.
2. What it takes away: (source pod, destination pod, port, protocol) combinations among the
   cluster's pods, over the ports the advised rules name, that were allowed before and are
   denied after. Only pairs an advised policy touches can change (policies are additive), so
   only those are evaluated, and once per class of pods no policy can tell apart (same
   namespace, labels, declared ports and ipBlock memberships: a Deployment's replicas).

The Baseline default (`--baseline`, enforcer/advise/baseline.py) is proven the same way, with
the cluster-scoped tiers in the model (Admin, NetworkPolicy where it isolates, Baseline, allow):
an observed flow refused by one of the advised Baseline policies is a bug; one refused by
anything else (an Admin Deny, a NetworkPolicy, a Baseline policy before ours) is said. What it
takes away is counted over the observed ports and every port a pod declares, for the pairs
with an end in a subject namespace, and listed by namespace pair.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from enforcer.advise.baseline import BaselinePolicy
from enforcer.advise.observations import DNS_PORT, DNS_PROTOCOLS, Endpoint, Observation
from enforcer.advise.policies import EGRESS, INGRESS, AdvisedPolicy, PortKey
from enforcer.analysis.explain import verdict_for
from enforcer.model.cluster import ClusterState
from enforcer.model.clusterpolicy import KIND_CLUSTER_NETWORK_POLICY, ClusterPolicy
from enforcer.model.evaluate import (
    BASELINE_STAGE,
    NETWORK_POLICY_STAGE,
    DirectionVerdict,
    PairEvaluator,
)
from enforcer.model.objects import IPBlock, IPNetwork, NetworkPolicy


@dataclass(frozen=True)
class Refusal:
    """An observed flow that the policies after the advice deny, and where."""

    observation: Observation
    source: str  # the pod (or address) evaluated
    destination: str
    sides: tuple[str, ...]  # "egress of ns/pod", "ingress of ns/pod"

    def describe(self) -> str:
        o = self.observation
        return (f"{self.source} -> {self.destination} {o.protocol}/{o.port}: "
                f"denied at {' and '.join(self.sides)}")


@dataclass
class Proof:
    observed: int  # learned flows checked
    refused: list[Refusal]  # denied on a side an advised policy isolates: a bug
    denied_elsewhere: list[Refusal]  # denied only by policies the advice does not touch
    ports: tuple[PortKey, ...]  # the ports the newly denied pairs are counted on
    newly_denied: int  # (source pod, destination pod, port, protocol) combinations
    newly_denied_pod_pairs: int  # distinct (source pod, destination pod)
    # (source namespace, destination namespace) -> the ports newly denied between some of
    # their pods (the Baseline default's proof; empty for NetworkPolicy advice)
    newly_denied_namespaces: dict[tuple[str, str], tuple[PortKey, ...]] = field(
        default_factory=dict)

    @property
    def holds(self) -> bool:
        return not self.refused


def with_policies(
    state: ClusterState, policies: Iterable[NetworkPolicy | ClusterPolicy]
) -> ClusterState:
    """A copy of the state (its cluster-scoped policies and Nodes too), plus `policies`."""
    after = state.copy()
    after.load(list(policies))
    return after


def _ends(endpoint: Endpoint) -> tuple[str, ...]:
    return endpoint.pods if endpoint.workload is not None else (str(endpoint.address),)


def decided_by_networkpolicies(advised: set[str]) -> Callable[[DirectionVerdict], bool]:
    """A side the advised NetworkPolicies decided (an Admin-tier Accept or Deny decides
    before any NetworkPolicy is consulted: not theirs)."""
    return lambda side: (side.decided_by == NETWORK_POLICY_STAGE
                         and bool(advised.intersection(side.isolating)))


def decided_by_baseline(names: set[str]) -> Callable[[DirectionVerdict], bool]:
    """A side one of the advised Baseline-tier policies decided."""
    return lambda side: (side.decided_by == BASELINE_STAGE and side.baseline is not None
                         and side.baseline.kind == KIND_CLUSTER_NETWORK_POLICY
                         and side.baseline.policy in names)


def _deciders(side: DirectionVerdict) -> str:
    if side.decided_by == BASELINE_STAGE and side.baseline is not None:
        return side.baseline.describe()
    if side.decided_by != NETWORK_POLICY_STAGE and side.admin is not None:
        return side.admin.describe()
    return ", ".join(side.isolating)


def check_flows(
    after: ClusterState,
    observations: Sequence[Observation],
    ours: Callable[[DirectionVerdict], bool],
) -> tuple[list[Refusal], list[Refusal]]:
    """The observed flows `after` denies: those a side `ours` decided, and the others."""
    refused, elsewhere = [], []
    for o in observations:
        for src in _ends(o.source):
            for dst in _ends(o.destination):
                verdict = verdict_for(after, src, dst, o.port, o.protocol)
                if verdict.allowed:
                    continue
                sides, by_us = [], False
                for name, side, who in (("egress", verdict.egress, src),
                                        ("ingress", verdict.ingress, dst)):
                    if not side.allowed:
                        sides.append(f"{name} of {who} ({_deciders(side)})")
                        by_us = by_us or ours(side)
                refusal = Refusal(o, src, dst, tuple(sides))
                (refused if by_us else elsewhere).append(refusal)
    return refused, elsewhere


def pod_classes(state: ClusterState) -> list[list[str]]:
    """Endpoint pods grouped so that every policy of the state judges a class's pods alike."""
    blocks: dict[IPBlock, None] = {}
    for policy in state.policies.values():
        for rule in (*policy.ingress, *policy.egress):
            for peer in rule.peers or ():
                if peer.ip_block is not None:
                    blocks[peer.ip_block] = None
    networks: dict[IPNetwork, None] = {}  # cluster policies' `networks` hold pods' addresses
    for cluster_policy in state.cluster_policies.values():
        for cluster_rule in (*cluster_policy.ingress, *cluster_policy.egress):
            for cluster_peer in cluster_rule.peers:
                networks.update(dict.fromkeys(cluster_peer.networks))
    classes: dict[tuple[object, ...], list[str]] = defaultdict(list)
    for key in state.endpoint_keys():
        pod = state.pods[key]
        inside = tuple(any(b.contains(ip) for ip in pod.ips) for b in blocks) + tuple(
            any(ip.version == n.version and ip in n for ip in pod.ips) for n in networks)
        classes[(pod.namespace, pod.labels, pod.ports, inside)].append(key)
    return list(classes.values())


@dataclass
class Losses:
    combinations: int = 0  # (source pod, destination pod, port, protocol)
    pairs: int = 0  # distinct (source pod, destination pod)
    namespaces: dict[tuple[str, str], set[PortKey]] = field(default_factory=dict)


def count_newly_denied(
    before: ClusterState,
    after: ClusterState,
    sources: set[str],
    destinations: set[str],
    ports: Sequence[PortKey],
) -> Losses:
    """What `after` denies that `before` allowed, over `ports`, for the pairs whose source is
    in `sources` or destination in `destinations` (only those can change)."""
    was, now = PairEvaluator(before), PairEvaluator(after)
    classes = pod_classes(after)  # after holds every policy of before, and the advised ones
    losses = Losses()
    for a in classes:
        for b in classes:
            if a is b:  # pairs of distinct pods within the class (a pod may reach itself)
                if len(a) < 2:
                    continue
                src, dst, members = a[0], a[1], len(a) * (len(a) - 1)
            else:
                src, dst, members = a[0], b[0], len(a) * len(b)
            if src not in sources and dst not in destinations:
                continue
            lost = [
                (port, protocol) for port, protocol in ports
                if was.verdict(src, dst, port, protocol).allowed
                and not now.verdict(src, dst, port, protocol).allowed
            ]
            losses.combinations += len(lost) * members
            losses.pairs += members if lost else 0
            if lost:
                between = (after.pods[src].namespace, after.pods[dst].namespace)
                losses.namespaces.setdefault(between, set()).update(lost)
    return losses


def prove(
    before: ClusterState,
    advised: Sequence[AdvisedPolicy],
    parsed: Sequence[NetworkPolicy],
    observations: Sequence[Observation],
) -> Proof:
    """`parsed`: the advised manifests as the model's parser reads them back."""
    after = with_policies(before, parsed)
    refused, elsewhere = check_flows(
        after, observations, decided_by_networkpolicies({a.key for a in advised}))
    ports = tuple(sorted({port for a in advised for rule in a.rules for port in rule.ports}))
    sources = {p for a in advised if a.direction == EGRESS for p in a.pods}
    destinations = {p for a in advised if a.direction == INGRESS for p in a.pods}
    losses = count_newly_denied(before, after, sources, destinations, ports)
    return Proof(len(observations), refused, elsewhere, ports, losses.combinations,
                 losses.pairs)


def baseline_ports(state: ClusterState, observations: Sequence[Observation]) -> tuple[
        PortKey, ...]:
    """The observed ports (DNS on both protocols) and every port an endpoint pod declares."""
    ports: set[PortKey] = set()
    for o in observations:
        ports.update([(DNS_PORT, p) for p in DNS_PROTOCOLS] if o.is_dns else [
            (o.port, o.protocol)])
    for key in state.endpoint_keys():
        ports.update((p.port, p.protocol) for p in state.pods[key].ports)
    return tuple(sorted(ports))


def prove_baseline(
    before: ClusterState,
    advised: Sequence[BaselinePolicy],
    parsed: Sequence[ClusterPolicy],
    observations: Sequence[Observation],
) -> Proof:
    """`parsed`: the advised Baseline policies as parse_cluster_object reads them back."""
    after = with_policies(before, parsed)
    refused, elsewhere = check_flows(
        after, observations, decided_by_baseline({a.name for a in advised}))
    ports = baseline_ports(before, observations)
    destinations = {p for a in advised for p in a.pods}
    sources = {p for a in advised if a.egress is not None for p in a.pods}
    losses = count_newly_denied(before, after, sources, destinations, ports)
    namespaces = {pair: tuple(sorted(lost)) for pair, lost in sorted(losses.namespaces.items())}
    return Proof(len(observations), refused, elsewhere, ports, losses.combinations,
                 losses.pairs, namespaces)
