"""What StagedNetworkPolicies would change for a recorded flow.

A flow record is one side's verdict (`direction`: the source's egress or the destination's
ingress). The staged view judges that side twice with the model's evaluator: by the enforced
policies, and as if the staged ones were applied (a staged policy replaces the enforced policy
of the same namespace/name, or is added). Only a change is reported: `would-deny` naming the
staged policies that newly isolate the pod in that direction and those that replace a policy
whose rule allowed it, `would-allow` naming the staged policies whose rules allow it (or, when
the pod would not be isolated at all, those that replace the policies isolating it). The
policies named are enough on their own: staging only them makes the same change.

The baseline is the model's verdict for the enforced policies, not the record's `verdict`
field: they agree for every policy verdict, and comparing two model verdicts keeps what no
policy decides (a spoofed source, an unknown endpoint) from showing up as a staged change.
"""

from __future__ import annotations

from collections.abc import Sequence

from enforcer.analysis.explain import verdict_for
from enforcer.flows.endpoints import resolve
from enforcer.flows.record import FlowRecord, StagedVerdict
from enforcer.model.cluster import ClusterState
from enforcer.model.evaluate import DirectionVerdict, Verdict
from enforcer.model.objects import NetworkPolicy
from enforcer.model.staged import as_if_applied

WOULD_DENY = "would-deny"
WOULD_ALLOW = "would-allow"


class StagedView:
    """The enforced state and its preview with the staged policies applied.

    Build one per change of the staged set. The preview is a copy of the state (linear in its
    size), rebuilt only when the state's generation moves, so a verdict costs two evaluations
    of one connection. `state` is the live state: it may change between calls, not during one.
    """

    def __init__(self, state: ClusterState, staged: Sequence[NetworkPolicy]) -> None:
        self.state = state
        self.staged = tuple(staged)
        self._staged_keys = frozenset(p.key for p in self.staged)
        self._preview = as_if_applied(state, self.staged)
        self._generation = state.generation

    @property
    def preview(self) -> ClusterState:
        """The state as if the staged policies were applied (do not modify it)."""
        if self._generation != self.state.generation:
            self._preview = as_if_applied(self.state, self.staged)
            self._generation = self.state.generation
        return self._preview

    def verdict(self, record: FlowRecord) -> StagedVerdict | None:
        """The staged change for this flow's judging side; None when nothing would change, no
        staged policy exists, or an end of the flow is unknown to the state."""
        if not self.staged:
            return None
        src = resolve(self.state, record.source, record.source_ip)
        dst = resolve(self.state, record.destination, record.destination_ip)
        if src is None or dst is None:
            return None
        try:
            now = verdict_for(self.state, src, dst, record.port, record.protocol)
            then = verdict_for(self.preview, src, dst, record.port, record.protocol)
        except KeyError:  # two addresses outside the cluster: no pod judged it
            return None
        allowed_now, side_now = judged_side(now, record.direction)
        allowed_then, side_then = judged_side(then, record.direction)
        if allowed_now == allowed_then:
            return None
        if allowed_now:
            return StagedVerdict(WOULD_DENY, self._denying(side_now, side_then))
        return StagedVerdict(WOULD_ALLOW, self._allowing(side_now, side_then))

    def _denying(self, now: DirectionVerdict, then: DirectionVerdict) -> tuple[str, ...]:
        # Allowed before, so every policy that allowed it was replaced by a staged one (which
        # may no longer isolate at all): those replacements, and the staged policies that
        # isolate the pod newly, cause it. Together they deny it even without the rest.
        newly = [k for k in then.isolating if k in self._staged_keys and k not in now.isolating]
        return tuple(dict.fromkeys([*newly, *(key for key, _ in now.allowing)]))

    def _allowing(self, now: DirectionVerdict, then: DirectionVerdict) -> tuple[str, ...]:
        by_rules = [key for key, _ in then.allowing if key in self._staged_keys]
        if by_rules:
            return tuple(dict.fromkeys(by_rules))
        # Not isolated any more: the staged replacements of the isolating policies lift it.
        return tuple(key for key in now.isolating if key in self._staged_keys)


def judged_side(verdict: Verdict, direction: str) -> tuple[bool, DirectionVerdict]:
    """Whether the side `direction` (egress|ingress, as in a flow record) lets the connection
    through, and that side's verdict. A pod reaching itself passes both sides; its own node
    passes the destination's ingress."""
    if direction == "egress":
        return verdict.self_traffic or verdict.egress.allowed, verdict.egress
    return (
        verdict.self_traffic or verdict.from_node or verdict.ingress.allowed,
        verdict.ingress,
    )


def staged_verdict(
    state: ClusterState, staged: Sequence[NetworkPolicy], record: FlowRecord
) -> StagedVerdict | None:
    """One flow's staged change (builds the preview: for many flows keep a StagedView)."""
    return StagedView(state, staged).verdict(record)
