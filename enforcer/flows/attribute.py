"""A kernel event as a flow record: who talked to whom, the verdict, and what decided it.

The kernel says which table entry allowed a flow (its rule set id, enforcer/datapath/
policykeys.py) and which endpoint judged it; this module names them as `analyze --explain`
does. For an allow: the rules of that set (the policies whose rules allow it). For a policy
deny or an audit pass: the policies that isolate the judging pod in that direction (no rule
of theirs allows it: a default deny, attributed as Cilium's PR 48588 proposes). Userspace never
re-judges the flow; it only looks the kernel's answer up.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from enforcer.datapath.policykeys import deciding_entry
from enforcer.datapath.types import (
    Direction,
    DropEvent,
    DropReason,
    EndpointPolicy,
    PolicyEntry,
    RuleOrigin,
)
from enforcer.flows.record import FlowRecord, RuleRef
from enforcer.model.objects import Pod
from enforcer.model.workloads import workload_of

PROTOCOL_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}
_PORTED = {6, 17, 132}


class FlowContext(Protocol):
    """What the agent knows that the kernel does not: names."""

    node: str

    def pod_at(self, address: str) -> Pod | None: ...

    def endpoint(self, endpoint_id: int) -> tuple[Pod, EndpointPolicy] | None:
        """The local pod an endpoint id belongs to, with the policy in force for it."""
        ...

    def rule_set(self, ident: int) -> frozenset[RuleOrigin] | None: ...

    def service_frontend(self, address: str, port: int, protocol: str) -> bool:
        """Whether (address, port, protocol) is a Service's frontend (a ClusterIP...)."""
        ...


@dataclass(frozen=True)
class _End:
    name: str  # namespace/pod, or the address
    workload: str  # namespace/name, or "" outside the cluster


def _end(ctx: FlowContext, address: str) -> _End:
    pod = ctx.pod_at(address)
    if pod is None:
        return _End(address, "")
    return _End(pod.key, workload_of(pod).key)


def verdict_of(reason: DropReason | None) -> str:
    if reason is None:
        return "allowed"
    return "audit" if reason is DropReason.AUDIT else "denied"


class MonotonicToWall:
    """Kernel event times (CLOCK_MONOTONIC ns) as unix seconds."""

    def __init__(self, wall: Callable[[], float] = time.time,
                 mono_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._offset = wall() - mono_ns() / 1e9

    def __call__(self, monotonic_ns: int) -> float:
        return self._offset + monotonic_ns / 1e9


def unjudged_service_flow(event: DropEvent, ctx: FlowContext) -> bool:
    """An allowed egress no rule decided (the source's egress is not isolated) to a Service
    frontend: nothing was judged, and the record would name the ClusterIP, not the backend
    the flow reached. Such flows are reported where they are judged, after DNAT: by the
    backend's ingress (and by the source's egress wherever an egress policy isolates it)."""
    return (event.reason is None and event.direction is Direction.EGRESS
            and not event.rule_set
            and ctx.service_frontend(str(event.dst), event.dport,
                                     PROTOCOL_NAMES.get(event.protocol, "")))


def _denying_rules(event: DropEvent, ctx: FlowContext,
                   policy: EndpointPolicy | None) -> frozenset[RuleOrigin]:
    """The rules of the deny entry that refused a flow: an audit pass carries its rule set;
    a drop does not, so its entry is looked up in the table in force, as the kernel did.
    Empty for NetworkPolicy's default deny (no entry matched)."""
    if event.rule_set:
        return ctx.rule_set(event.rule_set) or frozenset()
    if policy is None or not policy.denies:
        return frozenset()
    found = deciding_entry(policy, event.direction, event.peer_identity, event.protocol,
                           event.dport)
    if found is None or found[1]:
        return frozenset()
    return _origins_by_entry(policy).get(found[0], frozenset())


# Per table in force, the rules behind each entry: looked up, not scanned, per drop.
_ORIGINS: weakref.WeakKeyDictionary[
    EndpointPolicy, dict[PolicyEntry, frozenset[RuleOrigin]]] = weakref.WeakKeyDictionary()


def _origins_by_entry(policy: EndpointPolicy) -> dict[PolicyEntry, frozenset[RuleOrigin]]:
    index = _ORIGINS.get(policy)
    if index is None:
        grouped: dict[PolicyEntry, set[RuleOrigin]] = {}
        for entry, origin in policy.origins:
            grouped.setdefault(entry, set()).add(origin)
        index = {entry: frozenset(origins) for entry, origins in grouped.items()}
        _ORIGINS[policy] = index
    return index


def flow_record(event: DropEvent, ctx: FlowContext, when: float) -> FlowRecord:
    """The record of one event (count 1, seen at `when`)."""
    direction = event.direction.name.lower()
    source, destination = _end(ctx, str(event.src)), _end(ctx, str(event.dst))
    verdict = verdict_of(event.reason)
    policies: tuple[str, ...] = ()
    rules: tuple[RuleRef, ...] = ()
    if verdict == "allowed" and event.rule_set:
        origins = ctx.rule_set(event.rule_set) or frozenset()
        rules = tuple(RuleRef(o.policy, direction, o.index) for o in sorted(origins))
        policies = tuple(sorted({o.policy for o in origins}))
    elif event.reason in (DropReason.POLICY_DENIED, DropReason.AUDIT):
        judged = ctx.endpoint(event.endpoint_id)
        origins = _denying_rules(event, ctx, judged[1] if judged is not None else None)
        if origins:  # a cluster policy's Deny (its rule, as for an allow)
            rules = tuple(RuleRef(o.policy, direction, o.index) for o in sorted(origins))
            policies = tuple(sorted({o.policy for o in origins}))
        elif judged is not None:
            policies = judged[1].isolating(event.direction)
    return FlowRecord(
        source=source.name,
        destination=destination.name,
        port=event.dport if event.protocol in _PORTED else 0,
        protocol=PROTOCOL_NAMES.get(event.protocol, str(event.protocol)),
        direction=direction,
        verdict=verdict,
        policies=policies,
        rules=rules,
        reason="forwarded" if event.reason is None else event.reason.label,
        source_ip=str(event.src),
        destination_ip=str(event.dst),
        source_workload=source.workload,
        destination_workload=destination.workload,
        node=ctx.node,
        count=1,
        first_seen=when,
        last_seen=when,
    )
