"""`advise`: least-privilege NetworkPolicies from observed flows, proven in the model; or,
with `baseline`, a Baseline-tier default per namespace (enforcer/advise/baseline.py)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from enforcer.advise.baseline import BaselinePolicy, build_baseline
from enforcer.advise.observations import Observation, learn, workload_pods
from enforcer.advise.policies import EGRESS, AdvisedPolicy, Prefixes, build_policies
from enforcer.advise.proof import Proof, prove, prove_baseline
from enforcer.flows.record import FlowRecord
from enforcer.model.cluster import ClusterState
from enforcer.model.clusterpolicy import ClusterPolicy
from enforcer.model.objects import NetworkPolicy
from enforcer.model.parse import ValidationError, parse_object
from enforcer.model.parse_clusterpolicy import parse_cluster_object
from enforcer.model.workloads import Workload


class AdviceError(Exception):
    """The advice is wrong (an invalid manifest): a bug of advise, never of its input."""


@dataclass(frozen=True)
class AdviseOptions:
    prefixes: Prefixes = field(default_factory=Prefixes)  # addresses outside, aggregated
    ingress_only: bool = False
    namespaces: frozenset[str] = frozenset()  # only these namespaces' workloads; empty: all
    include_denied: bool = False  # learn flows that were denied, too
    baseline: bool = False  # a Baseline-tier default per namespace instead of NetworkPolicies


@dataclass
class Advice:
    policies: list[AdvisedPolicy]
    observations: list[Observation]  # the learned flows
    proof: Proof
    notes: list[str] = field(default_factory=list)  # what was not learned, and why
    warnings: list[str] = field(default_factory=list)
    baseline: list[BaselinePolicy] = field(default_factory=list)  # with options.baseline

    @property
    def manifests(self) -> list[dict[str, Any]]:
        return [p.manifest for p in self.policies] + [p.manifest for p in self.baseline]

    @property
    def workloads(self) -> int:
        return len({p.workload for p in self.policies})


def parse_manifests(policies: Iterable[AdvisedPolicy]) -> list[NetworkPolicy]:
    """The manifests through the validator the agent uses; an invalid one is a bug."""
    parsed = []
    for policy in policies:
        try:
            obj = parse_object(policy.manifest, "<advice>")
        except ValidationError as exc:
            raise AdviceError(f"advised an invalid policy: {exc}") from exc
        assert isinstance(obj, NetworkPolicy)
        parsed.append(obj)
    return parsed


def parse_baseline(policies: Iterable[BaselinePolicy]) -> list[ClusterPolicy]:
    """The Baseline manifests through the cluster policies' validator (the CRD's schema and
    CEL rules, as the agent applies them); an invalid one is a bug."""
    parsed = []
    for policy in policies:
        try:
            obj = parse_cluster_object(policy.manifest, "<advice>")
        except ValidationError as exc:
            raise AdviceError(f"advised an invalid policy: {exc}") from exc
        assert isinstance(obj, ClusterPolicy)
        parsed.append(obj)
    return parsed


def _denied_dns(learned_dns: dict[Workload, list[str]], in_scope: list[Observation],
                policies: list[BaselinePolicy]) -> list[str]:
    resolving = {o.source.workload.namespace for o in in_scope
                 if o.is_dns and o.source.workload is not None}
    warnings = []
    for policy in policies:
        tried = [t for w, ts in sorted(learned_dns.items()) if w.namespace == policy.namespace
                 for t in ts]
        if policy.egress is not None and tried and policy.namespace not in resolving:
            warnings.append(
                f"namespace {policy.namespace} resolved names but was denied "
                f"({', '.join(tried[:3])}): {policy.name} accepts no DNS "
                "(--include-denied learns it)")
    return warnings


def advise(
    state: ClusterState, records: Iterable[FlowRecord], options: AdviseOptions = AdviseOptions()
) -> Advice:
    workloads = workload_pods(state)
    learned = learn(state, records, options.include_denied, workloads)
    in_scope = [
        o for o in learned.observations
        if not options.namespaces
        or any(e.workload is not None and e.workload.namespace in options.namespaces
               for e in (o.source, o.destination))
    ]
    if options.baseline:
        baseline, warnings = build_baseline(
            state, in_scope, options.prefixes, options.namespaces, options.ingress_only)
        warnings += _denied_dns(learned.denied_dns, in_scope, baseline)
        proof = prove_baseline(state, baseline, parse_baseline(baseline), in_scope)
        return Advice([], in_scope, proof, learned.notes, warnings, baseline)
    policies, warnings = build_policies(
        state, in_scope, workloads, options.prefixes, options.namespaces, options.ingress_only)
    resolving = {o.source.workload for o in in_scope if o.is_dns}
    for policy in policies:
        tried = learned.denied_dns.get(policy.workload)
        if policy.direction == EGRESS and tried and policy.workload not in resolving:
            warnings.append(
                f"{policy.workload.key} resolved names but was denied ({', '.join(tried[:3])}):"
                f" {policy.key} allows no DNS (--include-denied learns it)")
    proof = prove(state, policies, parse_manifests(policies), in_scope)
    return Advice(policies, in_scope, proof, learned.notes, warnings)
