"""Why a connection is allowed or denied: the deciding policies and rules, in words."""

from __future__ import annotations

from dataclasses import asdict
from ipaddress import ip_address
from typing import Any

from enforcer.model.cluster import ClusterState
from enforcer.model.evaluate import (
    ADMIN_STAGE,
    BASELINE_STAGE,
    DEFAULT,
    DirectionVerdict,
    Verdict,
    evaluate,
    evaluate_ip,
)
from enforcer.model.objects import (
    EGRESS,
    INGRESS,
    SERVICE_ACCOUNT_LABEL,
    LabelSelector,
    NetworkPolicy,
)


def verdict_for(state: ClusterState, src: str, dst: str, port: int, protocol: str) -> Verdict:
    """Evaluate between pod keys, or between a pod and an address outside the pods."""
    src_is_pod, dst_is_pod = src in state.pods, dst in state.pods
    if src_is_pod and dst_is_pod:
        return evaluate(state, src, dst, port, protocol)
    if src_is_pod and _is_ip(dst):
        return evaluate_ip(state, src, dst, port, protocol, EGRESS)
    if dst_is_pod and _is_ip(src):
        return evaluate_ip(state, dst, src, port, protocol, INGRESS)
    unknown = dst if src_is_pod else src
    raise KeyError(f"unknown pod {unknown!r}: use namespace/name of a pod, or an IP address")


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _side(what: str, pod: str, side: DirectionVerdict, direction: str) -> str:
    rules = "egress" if direction == EGRESS else "ingress"
    word = "allowed" if side.allowed else "DENIED here"
    if side.decided_by == ADMIN_STAGE and side.admin is not None:
        skipped = (f" (NetworkPolicies {', '.join(side.isolating)} not consulted)"
                   if side.isolating else "")
        return f"  {what} of {pod}: {side.admin.verb()} by {side.admin.describe()}: " \
            f"{word}{skipped}"
    passed = (f"  {what} of {pod}: passed by {side.admin.describe()} to NetworkPolicy\n"
              if side.admin is not None else "")
    if side.decided_by in (BASELINE_STAGE, DEFAULT) and side.baseline is not None:
        by = side.baseline.describe()
        if side.decided_by == BASELINE_STAGE:
            return (f"{passed}  {what} of {pod}: not isolated by a NetworkPolicy; "
                    f"{side.baseline.verb()} by {by}: {word}")
        return (f"{passed}  {what} of {pod}: not isolated by a NetworkPolicy; passed by {by}: "
                f"allowed")
    if not side.isolated:
        return (f"{passed}  {what} of {pod}: not isolated (no policy selects it for "
                f"{direction}): allowed")
    head = f"{passed}  {what} of {pod}: isolated by {', '.join(side.isolating)}"
    if side.allowed:
        by = ", ".join(f"{key} {rules} rule {index}" for key, index in side.allowing)
        return f"{head}; allowed by {by}"
    return f"{head}; no {rules} rule of these policies matches: DENIED here"


def _names_account(selector: LabelSelector | None) -> bool:
    return selector is not None and (
        SERVICE_ACCOUNT_LABEL in selector.match_labels
        or any(r.key == SERVICE_ACCOUNT_LABEL for r in selector.match_expressions)
    )


def _selects_by_account(policy: NetworkPolicy) -> bool:
    rules = (*policy.ingress, *policy.egress)
    peers = [peer for rule in rules for peer in rule.peers or ()]
    return _names_account(policy.pod_selector) or any(
        _names_account(peer.pod_selector) for peer in peers
    )


def service_accounts(state: ClusterState, *keys: str) -> dict[str, str]:
    """The service account of each pod among `keys` (addresses skipped), when some policy
    selects by account: what the model set, whatever label the pod's manifest wrote."""
    if not any(_selects_by_account(p) for p in state.policies.values()):
        return {}
    return {
        key: state.pods[key].labels.get(SERVICE_ACCOUNT_LABEL, "")
        for key in keys
        if key in state.pods
    }


def explain_text(state: ClusterState, src: str, dst: str, port: int, protocol: str) -> str:
    verdict = verdict_for(state, src, dst, port, protocol)
    word = "ALLOWED" if verdict.allowed else "DENIED"
    lines = [f"{src} -> {dst} {protocol}/{port}: {word}"]
    accounts = service_accounts(state, src, dst)
    if accounts:
        lines.append("  service accounts (" + SERVICE_ACCOUNT_LABEL + "): " + ", ".join(
            f"{key} runs as {name}" for key, name in accounts.items()))
    if verdict.self_traffic:
        lines.append("  a pod may always reach itself (policies do not apply)")
    if verdict.from_node:
        lines.append("  from the destination's own node: its ingress policies do not apply")
    lines.append(_side("egress", src, verdict.egress, EGRESS))
    lines.append(_side("ingress", dst, verdict.ingress, INGRESS))
    return "\n".join(lines)


def explain_document(
    state: ClusterState, src: str, dst: str, port: int, protocol: str
) -> dict[str, Any]:
    verdict = verdict_for(state, src, dst, port, protocol)
    doc = asdict(verdict)
    for side in ("egress", "ingress"):
        doc[side]["allowing"] = [
            {"policy": key, "rule": index} for key, index in doc[side]["allowing"]
        ]
        # With cluster-scoped policies in the input: the stage that decided (admin,
        # networkpolicy, baseline, default) and each tier's first matching rule (null when
        # none matched): tier, kind, policy, priority, rule index and name, field, action.
        direction: DirectionVerdict = getattr(verdict, side)
        if not state.cluster_policies:
            for key in ("admin", "baseline", "decided_by"):
                del doc[side][key]
            continue
        for tier in ("admin", "baseline"):
            match = getattr(direction, tier)
            doc[side][tier] = match.to_dict() if match is not None else None
    accounts = service_accounts(state, src, dst)
    if accounts:
        doc["service_accounts"] = accounts
    return {"from": src, "to": dst, "port": port, "protocol": protocol, **doc}
