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
from enforcer.advise.observations import Observation
from enforcer.advise.policies import AdvisedPolicy, AdvisedRule
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


def render_yaml(advice: Advice) -> str:
    return "".join(policy_yaml(p) for p in advice.policies)


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
        ],
        "proof": {
            "observed_flows": proof.observed,
            "all_allowed": proof.holds,
            "denied_by_other_policies": [r.describe() for r in proof.denied_elsewhere],
            "ports": [{"port": port, "protocol": proto} for port, proto in proof.ports],
            "newly_denied": proof.newly_denied,
            "newly_denied_pod_pairs": proof.newly_denied_pod_pairs,
        },
        "notes": advice.notes,
        "warnings": advice.warnings,
    }


def render_json(advice: Advice) -> str:
    return json.dumps(advice_document(advice), indent=2)


def plural(n: int, word: str, words: str = "") -> str:
    return f"{n} {word if n == 1 else words or word + 's'}"


def summary(advice: Advice) -> str:
    proof = advice.proof
    ports = ", ".join(f"{proto}/{port}" for port, proto in proof.ports) or "none"
    elsewhere = len({r.observation for r in proof.denied_elsewhere})
    kept = (f"every one of {proof.observed} observed flows stays allowed"
            if not elsewhere else
            f"{proof.observed - elsewhere} of {proof.observed} observed flows allowed "
            f"({elsewhere} still denied by existing policies advise does not change)")
    return (
        f"advised {plural(len(advice.policies), 'policy', 'policies')} for "
        f"{plural(advice.workloads, 'workload')}; {kept}; "
        f"{proof.newly_denied_pod_pairs} pod pairs newly denied on the observed ports "
        f"({proof.newly_denied} source pod, destination pod and port combinations; ports "
        f"{ports})"
    )
