"""Lint checks for cluster-scoped policies (enforcer.model.clusterpolicy).

- cluster-shadowed-rule: a rule that can never match, because an earlier rule of the same
  policy, or a rule of a policy before it in the same tier with the same subject, matches
  everything it would (same direction; Pass rules shadow too: they decide the tier);
- pass-without-networkpolicy: an Admin Pass rule hands over to NetworkPolicy, but no
  NetworkPolicy of the input isolates the subject's pods in that direction;
- baseline-deny-not-overridden: a Baseline Deny rule in force for pods (or, without pods in
  the input, for every namespace) that no NetworkPolicy overrides in that direction;
- equal-priority: two policies of a tier with the same priority select the same pods: either
  may apply upstream; here the order is by name (then kind), and this says which;
- domain-names-not-enforced: a `domainNames` peer matches nothing here (no DNS inspection);
- cluster-policy-selects-no-pod: with pods in the input, a subject that selects none of them.

Coverage is judged on what is written (selectors, CIDRs, port ranges), so a finding holds
whatever pods exist.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from enforcer.analysis.lint import WARNING, Finding
from enforcer.model.cluster import ClusterState
from enforcer.model.clusterpolicy import (
    ADMIN,
    BASELINE,
    DENY,
    PASS,
    ClusterPeer,
    ClusterPolicy,
    ClusterPort,
    ClusterRule,
)
from enforcer.model.evaluate_tiers import selects
from enforcer.model.loader import LoadResult
from enforcer.model.objects import EGRESS, INGRESS, LabelSelector


def cluster_findings(result: LoadResult, state: ClusterState) -> list[Finding]:
    return _ClusterLinter(result, state).run()


class _ClusterLinter:
    def __init__(self, result: LoadResult, state: ClusterState) -> None:
        self.state = state
        self.origins = {p.key: o for p, o in zip(result.cluster_policies, result.cluster_origins,
                                                 strict=True)}
        self.policies = sorted(state.cluster_policies.values(),
                               key=lambda p: (p.tier != ADMIN, p.sort_key()))
        self.has_pods = any(state.is_endpoint(p) for p in state.pods.values())
        self.findings: list[Finding] = []
        counts: dict[str, int] = defaultdict(int)
        for policy in result.cluster_policies:
            counts[policy.key] += 1
        self.duplicates = {key: n for key, n in counts.items() if n > 1}

    def add(self, policy: ClusterPolicy, check: str, message: str, field: str = "") -> None:
        self.findings.append(Finding(WARNING, check, f"{policy.kind} {policy.name}", message,
                                     field, self.origins.get(policy.key, "")))

    def run(self) -> list[Finding]:
        for key, n in sorted(self.duplicates.items()):
            policy = self.state.cluster_policies[key]
            self.add(policy, "duplicate",
                     f"defined {n} times in the input: only the last definition applies")
        for policy in self.policies:
            if self.has_pods and not self._subject_pods(policy):
                self.add(policy, "cluster-policy-selects-no-pod",
                         "its subject selects none of the input's pods (host-network pods are "
                         "never subjects)", "spec.subject")
            for direction in (INGRESS, EGRESS):
                for index, rule in enumerate(policy.rules(direction)):
                    field = f"spec.{direction.lower()}[{index}]"
                    self.shadowed(policy, direction, index, rule, field)
                    self.domain_names(policy, rule, field)
                    if rule.action == PASS and policy.tier == ADMIN:
                        self.pass_without_networkpolicy(policy, direction, field)
                    if rule.action == DENY and policy.tier == BASELINE:
                        self.baseline_deny(policy, direction, field)
        self.equal_priorities()
        return self.findings

    # --- checks -------------------------------------------------------------------------------

    def shadowed(self, policy: ClusterPolicy, direction: str, index: int, rule: ClusterRule,
                 field: str) -> None:
        for earlier, shadow in enumerate(policy.rules(direction)[:index]):
            if rule_covers(shadow, rule):
                self.add(policy, "cluster-shadowed-rule",
                         f"never matches: {_rule_name(direction, earlier, shadow)} of this "
                         f"policy comes first and matches all it would ({shadow.action})",
                         field)
                return
        for other in self.policies:
            if other is policy:
                return  # only policies before it in its tier
            if other.tier != policy.tier or other.subject != policy.subject:
                continue
            for earlier, shadow in enumerate(other.rules(direction)):
                if rule_covers(shadow, rule):
                    self.add(policy, "cluster-shadowed-rule",
                             f"never matches: {other.describe()}, evaluated before it with the "
                             f"same subject, matches all it would with "
                             f"{_rule_name(direction, earlier, shadow)} ({shadow.action})",
                             field)
                    return

    def domain_names(self, policy: ClusterPolicy, rule: ClusterRule, field: str) -> None:
        for j, peer in enumerate(rule.peers):
            if peer.domain_names:
                effect = ("allows nothing" if rule.action not in (DENY, PASS)
                          else "denies nothing" if rule.action == DENY else "passes nothing")
                self.add(policy, "domain-names-not-enforced",
                         f"domainNames {', '.join(peer.domain_names)} are not enforced (no DNS "
                         f"inspection): this peer matches nothing, so it {effect}; the rule's "
                         "other peers and the policy's other rules apply",
                         f"{field}.to[{j}].domainNames")

    def _subject_pods(self, policy: ClusterPolicy) -> list[str]:
        return sorted(key for key, pod in self.state.pods.items()
                      if selects(self.state, policy, pod))

    def _isolated(self, pod_key: str, direction: str) -> bool:
        return any(direction in p.policy_types for p in self.state.policies_selecting(pod_key))

    def pass_without_networkpolicy(self, policy: ClusterPolicy, direction: str,
                                   field: str) -> None:
        if self.has_pods:
            pods = self._subject_pods(policy)
            if not pods or any(self._isolated(key, direction) for key in pods):
                return
            whose = f"its {len(pods)} subject pod(s)"
        else:
            if any(direction in p.policy_types for p in self.state.policies.values()):
                return
            whose = "any pod"
        self.add(policy, "pass-without-networkpolicy",
                 f"Pass hands {direction.lower()} over to NetworkPolicy, but no NetworkPolicy "
                 f"of the input isolates {whose} for {direction}: the Baseline tier, else "
                 "allow, decides what it passes", field)

    def baseline_deny(self, policy: ClusterPolicy, direction: str, field: str) -> None:
        if self.has_pods:
            pods = [key for key in self._subject_pods(policy)
                    if not self._isolated(key, direction)]
            if not pods:
                return
            namespaces = sorted({key.split("/", 1)[0] for key in pods})
            where = f"{len(pods)} pod(s) in {', '.join(namespaces)}"
        else:
            if any(direction in p.policy_types for p in self.state.policies.values()):
                return
            where = "every subject namespace"
        self.add(policy, "baseline-deny-not-overridden",
                 f"this Baseline Deny is in force for {where}: no NetworkPolicy of the input "
                 f"isolates them for {direction} (one would override it)", field)

    def equal_priorities(self) -> None:
        groups: dict[tuple[str, int], list[ClusterPolicy]] = defaultdict(list)
        for policy in self.policies:
            if policy.priority is not None:
                groups[(policy.tier, policy.priority)].append(policy)
        for group in groups.values():
            for i, first in enumerate(group):
                for second in group[i + 1:]:
                    shared = self._overlap(first, second)
                    if shared is None:
                        continue
                    self.add(second, "equal-priority",
                             f"same priority as {first.describe()}{shared}: upstream either may "
                             f"apply; here {first.name} ({first.kind}) is evaluated first "
                             "(equal priorities go by name, then kind)", "spec.priority")

    def _overlap(self, a: ClusterPolicy, b: ClusterPolicy) -> str | None:
        """None when the two cannot meet; else words on the pods they share."""
        directions = [d for d in (INGRESS, EGRESS) if a.rules(d) and b.rules(d)]
        if not directions:
            return None
        if not self.has_pods:
            return ""
        shared = sorted(set(self._subject_pods(a)) & set(self._subject_pods(b)))
        if not shared:
            return None
        more = f" and {len(shared) - 3} more" if len(shared) > 3 else ""
        return f", both selecting {', '.join(shared[:3])}{more}"


def _rule_name(direction: str, index: int, rule: ClusterRule) -> str:
    name = f" '{rule.name}'" if rule.name else ""
    return f"{direction.lower()} rule {index}{name}"


# --- coverage on what is written ---------------------------------------------------------------


def rule_covers(a: ClusterRule, b: ClusterRule) -> bool:
    """Whether rule `a` matches all that rule `b` does (same direction)."""
    return _ports_cover(a.ports, b.ports) and all(
        any(_peer_covers(p, q) for p in a.peers) for q in b.peers)


def _ports_cover(a: Sequence[ClusterPort] | None, b: Sequence[ClusterPort] | None) -> bool:
    if a is None:
        return True
    if b is None:
        return False
    return all(any(_port_covers(p, q) for p in a) for q in b)


def _port_covers(p: ClusterPort, q: ClusterPort) -> bool:
    if p.named is not None or q.named is not None:
        return p.named is not None and p.named == q.named
    if p.protocol != q.protocol:
        return False
    if p.start is None or p.end is None:
        return True
    if q.start is None or q.end is None:
        return False
    return p.start <= q.start and q.end <= p.end


def _pod_view(peer: ClusterPeer) -> tuple[LabelSelector, LabelSelector] | None:
    """(namespace selector, pod selector) of a namespaces or pods peer."""
    if peer.namespaces is not None:
        return peer.namespaces, LabelSelector()
    if peer.pods is not None:
        return peer.pods.namespace_selector, peer.pods.pod_selector
    return None


def _peer_covers(p: ClusterPeer, q: ClusterPeer) -> bool:
    if p == q:
        return True
    pv, qv = _pod_view(p), _pod_view(q)
    if pv is not None and qv is not None:
        return all(ps.is_empty() or ps == qs for ps, qs in zip(pv, qv, strict=True))
    if p.networks and q.networks:
        return all(any(n.version == m.version and m.subnet_of(n)  # type: ignore[arg-type]
                       for n in p.networks) for m in q.networks)
    if p.nodes is not None and q.nodes is not None:
        return p.nodes.is_empty() or p.nodes == q.nodes
    if p.domain_names and q.domain_names:
        return set(q.domain_names) <= set(p.domain_names)
    return False
