"""The advice as YAML manifests with a comment per rule naming the flows behind it, or JSON.

PyYAML writes the data (so quoting and escaping are its job, not ours); this module only
places comment lines between the blocks it writes. Every comment is one line of text from
the cluster's own names and addresses, so the result is plain, valid multi-document YAML.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml

from enforcer.advise.advice import Advice
from enforcer.advise.baseline import ACCEPT_RULES_MAX, PRIORITY, BaselinePolicy, BaselineRule
from enforcer.advise.observations import Observation
from enforcer.advise.policies import EGRESS, INGRESS, AdvisedPolicy, AdvisedRule, PortKey
from enforcer.advise.proof import Proof
from enforcer.flows.record import rfc3339

SHOWN_FLOWS = 3


def _dump(data: Any, indent: int) -> list[str]:
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000)
    return [" " * indent + line for line in text.splitlines()]


def _comment(text: str, indent: int) -> str:
    # One line, whatever the text held: a line break would end the comment.
    return " " * indent + "# " + " ".join(text.splitlines())


def describe_flow(o: Observation) -> str:
    last = rfc3339(o.last_seen) if o.last_seen else "unknown"
    return f"{o.describe()}: {plural(o.count, 'time')}, last seen {last}"


def _flow_lines(flows: Sequence[Observation], indent: int) -> list[str]:
    lines = [_comment(f"  {describe_flow(o)}", indent) for o in flows[:SHOWN_FLOWS]]
    if len(flows) > SHOWN_FLOWS:
        lines.append(_comment(f"  and {len(flows) - SHOWN_FLOWS} more", indent))
    return lines


def _rule_lines(policy: AdvisedPolicy, rule: AdvisedRule) -> list[str]:
    flows = plural(len(rule.observations), "observed flow")
    if rule.dns:
        head = (f"DNS: {policy.workload.key} resolves names; UDP and TCP 53 to the resolvers "
                f"it used, from {flows}:")
    else:
        head = f"from {flows}:"
    lines = [_comment(head, 2), *_flow_lines(rule.observations, 2)]
    lines += [_comment(note, 2) for note in rule.notes]
    return lines + _dump([rule.manifest], 2)


def _some(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN_FLOWS])
    return shown + (f" and {len(names) - SHOWN_FLOWS} more" if len(names) > SHOWN_FLOWS else "")


def policy_yaml(policy: AdvisedPolicy) -> str:
    w = policy.workload
    pods = _some(policy.pods) or "no pod"
    lines = ["---", _comment(f"{w.key} ({w.kind}), {policy.direction}; selects {pods}", 0)]
    lines += [_comment(note, 0) for note in policy.notes]
    spec = policy.manifest["spec"]
    head = {**policy.manifest, "spec": {k: v for k, v in spec.items() if k != policy.direction}}
    lines += _dump(head, 0)
    if not policy.rules:
        lines.append(_comment(f"no {policy.direction} observed: all {policy.direction} denied",
                              2))
        lines.append(f"  {policy.direction}: []")
    else:
        lines.append(f"  {policy.direction}:")
        for rule in policy.rules:
            lines += _rule_lines(policy, rule)
    return "\n".join(lines) + "\n"


def _ports(ports: Sequence[PortKey]) -> str:
    return ", ".join(f"{proto}/{port}" for port, proto in ports)


def namespace_losses(proof: Proof, namespace: str | None = None) -> list[str]:
    """`a -> b (TCP/80, UDP/53)` per namespace pair newly denied (with an end in
    `namespace` when given)."""
    return [f"{src} -> {dst} ({_ports(ports)})"
            for (src, dst), ports in proof.newly_denied_namespaces.items()
            if namespace is None or namespace in (src, dst)]


def _baseline_rule_lines(direction: str, rule: BaselineRule, inside: str) -> list[str]:
    if rule.action == "Deny":
        if direction == INGRESS:
            head = (f"denies the rest: ingress from every namespace's pods ({inside}), on "
                    "every port not accepted above")
        else:
            head = ("denies the rest: egress to every pod and every address (networks hold the "
                    "pods' addresses too) not accepted above")
        lines = [_comment(head, 2)]
    else:
        lines = [_comment(f"from {plural(len(rule.observations), 'observed flow')}:", 2),
                 *_flow_lines(rule.observations, 2)]
    lines += [_comment(note, 2) for note in rule.notes]
    return lines + _dump([rule.manifest], 2)


def baseline_yaml(policy: BaselinePolicy, proof: Proof) -> str:
    ns = policy.namespace
    pods = _some(policy.pods) or "no pod yet"
    lines = [
        "---",
        _comment(f"Baseline default for namespace {ns} (its pods: {pods}): accepts what was "
                 "observed, by namespace, port and protocol, and denies the rest.", 0),
        _comment(f"It decides only for a pod no NetworkPolicy isolates in that direction: a "
                 f"NetworkPolicy in {ns} overrides it there (Admin tier, NetworkPolicy, "
                 f"Baseline, allow). Priority {PRIORITY}: last in the Baseline tier.", 0),
    ]
    lost = namespace_losses(proof, ns)
    if lost:
        lines.append(_comment(
            "newly denied between the pods of CLUSTER_DIR, on the observed and declared ports: "
            + "; ".join(lost[:SHOWN_FLOWS * 2])
            + (f" and {len(lost) - SHOWN_FLOWS * 2} more" if len(lost) > SHOWN_FLOWS * 2
               else ""), 0))
    lines += [_comment(note, 0) for note in policy.notes]
    spec = policy.manifest["spec"]
    head = {**policy.manifest,
            "spec": {k: v for k, v in spec.items() if k not in (INGRESS, EGRESS)}}
    lines += _dump(head, 0)
    for direction in (INGRESS, EGRESS):
        if direction not in spec:
            lines.append(_comment("no egress rules: egress is left alone (--ingress-only)", 2))
            continue
        lines.append(f"  {direction}:")
        rules = policy.rules(direction)
        if direction == INGRESS and policy.unnamed_ingress:
            lines.append(_comment(
                f"{plural(policy.unnamed_ingress, 'observed flow')} from outside the cluster "
                "need no rule: a Baseline ingress rule names namespaces and pods only, so "
                "ingress from addresses outside stays allowed", 2))
        if len(rules) - 1 > ACCEPT_RULES_MAX:  # never: fit() keeps within the schema
            raise AssertionError(f"{policy.name}: {len(rules)} {direction} rules")
        inside = "the cluster's endpoint pods; not hostNetwork pods or nodes"
        for rule in rules:
            lines += _baseline_rule_lines(direction, rule, inside)
    return "\n".join(lines) + "\n"


def render_yaml(advice: Advice) -> str:
    return "".join(policy_yaml(p) for p in advice.policies) + "".join(
        baseline_yaml(p, advice.proof) for p in advice.baseline)


def flow_document(o: Observation) -> dict[str, Any]:
    return {
        "source": o.source.name,
        "destination": o.destination.name,
        "port": o.port,
        "protocol": o.protocol,
        "count": o.count,
        "first_seen": rfc3339(o.first_seen) if o.first_seen else None,  # 0: not recorded
        "last_seen": rfc3339(o.last_seen) if o.last_seen else None,
    }


def advice_document(advice: Advice) -> dict[str, Any]:
    proof = advice.proof
    return {
        "policies": advice.manifests,
        "rules": [
            {"policy": p.key, "direction": p.direction, "rule": i, "dns": r.dns,
             "flows": [flow_document(o) for o in r.observations]}
            for p in advice.policies
            for i, r in enumerate(p.rules)
        ] + [
            {"policy": p.key, "direction": d, "rule": i, "action": r.action,
             "flows": [flow_document(o) for o in r.observations]}
            for p in advice.baseline
            for d in (INGRESS, EGRESS)
            for i, r in enumerate(p.rules(d))
        ],
        "proof": {
            "observed_flows": proof.observed,
            "all_allowed": proof.holds,
            "denied_by_other_policies": [r.describe() for r in proof.denied_elsewhere],
            "ports": [{"port": port, "protocol": proto} for port, proto in proof.ports],
            "newly_denied": proof.newly_denied,
            "newly_denied_pod_pairs": proof.newly_denied_pod_pairs,
            "newly_denied_namespaces": [
                {"source": src, "destination": dst,
                 "ports": [{"port": port, "protocol": proto} for port, proto in ports]}
                for (src, dst), ports in proof.newly_denied_namespaces.items()
            ],
        },
        "notes": advice.notes,
        "warnings": advice.warnings,
    }


def render_json(advice: Advice) -> str:
    return json.dumps(advice_document(advice), indent=2)


def plural(n: int, word: str, words: str = "") -> str:
    return f"{n} {word if n == 1 else words or word + 's'}"


def _kept(proof: Proof) -> str:
    elsewhere = len({r.observation for r in proof.denied_elsewhere})
    return (f"every one of {proof.observed} observed flows stays allowed"
            if not elsewhere else
            f"{proof.observed - elsewhere} of {proof.observed} observed flows allowed "
            f"({elsewhere} still denied by existing policies advise does not change)")


def baseline_summary(advice: Advice) -> str:
    proof = advice.proof
    n = len(advice.baseline)
    lost = namespace_losses(proof)
    between = (f" between {plural(len(lost), 'namespace pair')}: {'; '.join(lost[:5])}"
               + (f" and {len(lost) - 5} more" if len(lost) > 5 else "") if lost else "")
    egress = any(p.egress is not None for p in advice.baseline)
    return (
        f"advised a Baseline default for {plural(n, 'namespace')} "
        f"({plural(n, 'ClusterNetworkPolicy', 'ClusterNetworkPolicies')}, tier Baseline, "
        f"priority {PRIORITY}); {_kept(proof)}; "
        f"{proof.newly_denied_pod_pairs} pod pairs newly denied "
        f"({proof.newly_denied} source pod, destination pod and port combinations on the "
        f"observed and declared ports {_ports(proof.ports) or 'none'}){between}"
        + ("; and egress to every address outside the cluster that was not observed"
           if egress else "")
    )


def summary(advice: Advice) -> str:
    if advice.baseline:
        return baseline_summary(advice)
    proof = advice.proof
    ports = ", ".join(f"{proto}/{port}" for port, proto in proof.ports) or "none"
    kept = _kept(proof)
    return (
        f"advised {plural(len(advice.policies), 'policy', 'policies')} for "
        f"{plural(advice.workloads, 'workload')}; {kept}; "
        f"{proof.newly_denied_pod_pairs} pod pairs newly denied on the observed ports "
        f"({proof.newly_denied} source pod, destination pod and port combinations; ports "
        f"{ports})"
    )
