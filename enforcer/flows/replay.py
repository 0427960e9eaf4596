"""Replay a recorded flow against manifests: would they allow it, which policies decide, why.

Both sides count, as `analyze --explain` judges a connection: the source's egress and the
destination's ingress, whichever side recorded the flow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from enforcer.analysis.explain import verdict_for
from enforcer.flows.endpoints import resolve
from enforcer.flows.record import FlowRecord
from enforcer.model.cluster import ClusterState
from enforcer.model.evaluate import ADMIN_STAGE, BASELINE_STAGE, DirectionVerdict
from enforcer.model.evaluate_tiers import TierMatch


class Unresolvable(Exception):
    """An end of the flow is no pod of the manifests (field: source, destination or (line))."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class Replayed:
    record: FlowRecord
    allowed: bool
    policies: tuple[str, ...]  # allowing rules' policies, or the denying side's isolating ones
    reason: str  # in words, e.g. "denied: backend/api isolated for ingress by ..."

    def to_json(self) -> dict[str, Any]:
        """The record's own fields; `allowed` and `policies` are the replay's."""
        return {**self.record.to_json(), "allowed": self.allowed, "policies": list(self.policies)}


def replay(state: ClusterState, record: FlowRecord) -> Replayed:
    """Judge one recorded flow by `state`; raises Unresolvable when an end is unknown."""
    src = _end(state, "source", record.source, record.source_ip)
    dst = _end(state, "destination", record.destination, record.destination_ip)
    if src not in state.pods and dst not in state.pods:
        raise Unresolvable("(line)", f"neither {src} nor {dst} is a pod of the manifests")
    verdict = verdict_for(state, src, dst, record.port, record.protocol)
    if verdict.self_traffic:
        return Replayed(record, True, (), "allowed: a pod may always reach itself")
    # A side is judged only where its end is a pod; an address outside has no policy.
    sides = [
        (src, dst, "egress", verdict.egress, src in state.pods),
        (dst, src, "ingress", verdict.ingress, dst in state.pods and not verdict.from_node),
    ]
    judged = [(pod, peer, d, side) for pod, peer, d, side, applies in sides if applies]
    denying = [(pod, peer, d, side) for pod, peer, d, side in judged if not side.allowed]
    if denying:
        policies = [key for _, _, _, side in denying for key in _deciding(side)]
        words = "; ".join(
            f"{pod} {d} {_tier_words(side)}" if _tier(side) is not None else
            f"{pod} isolated for {d} by {', '.join(side.isolating)}, no rule allows {peer}"
            for pod, peer, d, side in denying
        )
        return Replayed(record, False, tuple(dict.fromkeys(policies)), f"denied: {words}")
    policies = [key for _, _, _, side in judged for key in _deciding(side)]
    words = "; ".join(_allowed_side(pod, d, side) for pod, _, d, side in judged)
    if verdict.from_node:
        words = f"{words}; from the destination's own node (its ingress does not apply)"
    return Replayed(record, True, tuple(dict.fromkeys(policies)), f"allowed: {words}")


def _end(state: ClusterState, field: str, name: str, ip: str) -> str:
    found = resolve(state, name, ip)
    if found is None:
        at = f"{field}_ip {ip} is no pod's" if ip else f"the record has no {field}_ip"
        raise Unresolvable(field, f"unknown pod {name} (not in the manifests, and {at})")
    return found


def _tier(side: DirectionVerdict) -> TierMatch | None:
    """The cluster-policy rule that decided the side (an Admin or Baseline Accept or Deny)."""
    if side.decided_by == ADMIN_STAGE:
        return side.admin
    if side.decided_by == BASELINE_STAGE:
        return side.baseline
    return None


def _tier_words(side: DirectionVerdict) -> str:
    match = _tier(side)
    return f"{match.verb()} by {match.describe()}" if match is not None else ""


def _deciding(side: DirectionVerdict) -> list[str]:
    """The policies behind a side's verdict: the cluster policy (KIND/NAME) that decided it,
    else the allowing NetworkPolicies, or the isolating ones when it is denied."""
    match = _tier(side)
    if match is not None:
        return [f"{match.kind}/{match.policy}"]
    if side.allowed:
        return [key for key, _ in side.allowing]
    return list(side.isolating)


def _allowed_side(pod: str, direction: str, side: DirectionVerdict) -> str:
    if _tier(side) is not None:
        return f"{pod} {direction} {_tier_words(side)}"
    if not side.isolated:
        return f"{pod} not isolated for {direction}"
    rules = ", ".join(f"{key} rule {index}" for key, index in side.allowing)
    return f"{pod} {direction} allowed by {rules}"
