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
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from enforcer.advise.observations import Endpoint, Observation
from enforcer.advise.policies import EGRESS, INGRESS, AdvisedPolicy, PortKey
from enforcer.analysis.explain import verdict_for
from enforcer.model.cluster import ClusterState
from enforcer.model.evaluate import PairEvaluator
from enforcer.model.objects import IPBlock, NetworkPolicy


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

    @property
    def holds(self) -> bool:
        return not self.refused


def with_policies(state: ClusterState, policies: Iterable[NetworkPolicy]) -> ClusterState:
    """A copy of the state's namespaces, pods and policies, plus `policies`."""
    after = ClusterState(planned_pods=state.planned_pods)
    after.load([*state.namespaces.values(), *state.pods.values(), *state.policies.values()])
    after.load(list(policies))
    return after


def _ends(endpoint: Endpoint) -> tuple[str, ...]:
    return endpoint.pods if endpoint.workload is not None else (str(endpoint.address),)


def check_flows(
    after: ClusterState, observations: Sequence[Observation], advised: set[str]
) -> tuple[list[Refusal], list[Refusal]]:
    refused, elsewhere = [], []
    for o in observations:
        for src in _ends(o.source):
            for dst in _ends(o.destination):
                verdict = verdict_for(after, src, dst, o.port, o.protocol)
                if verdict.allowed:
                    continue
                sides, ours = [], False
                for name, side, who in (("egress", verdict.egress, src),
                                        ("ingress", verdict.ingress, dst)):
                    if not side.allowed:
                        sides.append(f"{name} of {who} ({', '.join(side.isolating)})")
                        ours = ours or bool(advised.intersection(side.isolating))
                refusal = Refusal(o, src, dst, tuple(sides))
                (refused if ours else elsewhere).append(refusal)
    return refused, elsewhere


def pod_classes(state: ClusterState) -> list[list[str]]:
    """Endpoint pods grouped so that every policy of the state judges a class's pods alike."""
    blocks: dict[IPBlock, None] = {}
    for policy in state.policies.values():
        for rule in (*policy.ingress, *policy.egress):
            for peer in rule.peers or ():
                if peer.ip_block is not None:
                    blocks[peer.ip_block] = None
    classes: dict[tuple[object, ...], list[str]] = defaultdict(list)
    for key in state.endpoint_keys():
        pod = state.pods[key]
        inside = tuple(any(b.contains(ip) for ip in pod.ips) for b in blocks)
        classes[(pod.namespace, pod.labels, pod.ports, inside)].append(key)
    return list(classes.values())


def count_newly_denied(
    before: ClusterState,
    after: ClusterState,
    policies: Sequence[AdvisedPolicy],
    ports: Sequence[PortKey],
) -> tuple[int, int]:
    sources = {p for a in policies if a.direction == EGRESS for p in a.pods}
    destinations = {p for a in policies if a.direction == INGRESS for p in a.pods}
    was, now = PairEvaluator(before), PairEvaluator(after)
    classes = pod_classes(after)  # after holds every policy of before, and the advised ones
    combinations, pairs = 0, 0
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
            lost = sum(
                was.verdict(src, dst, port, protocol).allowed
                and not now.verdict(src, dst, port, protocol).allowed
                for port, protocol in ports
            )
            combinations += lost * members
            pairs += members if lost else 0
    return combinations, pairs


def prove(
    before: ClusterState,
    advised: Sequence[AdvisedPolicy],
    parsed: Sequence[NetworkPolicy],
    observations: Sequence[Observation],
) -> Proof:
    """`parsed`: the advised manifests as the model's parser reads them back."""
    after = with_policies(before, parsed)
    refused, elsewhere = check_flows(after, observations, {a.key for a in advised})
    ports = tuple(sorted({port for a in advised for rule in a.rules for port in rule.ports}))
    newly, pairs = count_newly_denied(before, after, advised, ports)
    return Proof(len(observations), refused, elsewhere, ports, newly, pairs)
