"""Flow records for people: why each verdict, and the table `enforcer flows` prints.

The words follow the record: for a deny, the policies isolating the judged pod (the
destination for ingress, the source for egress) and the peer no rule allows; for an allow, the
rules that allow it; for a drop no policy decided, the kernel's reason in words. Ends are named
by their workload (all replicas alike), or by the pod or address when there is none.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from enforcer.analysis.table import render_columns
from enforcer.compiler.compiler import QUARANTINE
from enforcer.flows.record import FlowRecord, RuleRef

# Reasons that mean "policy decided": the words come from the policies.
POLICY_REASONS = ("", "forwarded", "policy_denied", "audit")

# The kernel's drop reasons (enforcer/datapath/types.py DropReason labels) in words.
REASON_WORDS = {
    "spoofed_source": "the source address is not the sending pod's own (spoofed)",
    "unknown_endpoint": "the interface's pod is not known to the agent yet",
    "truncated": "a header is truncated or its lengths are bogus",
    "fragment_untracked": "a fragment whose first fragment was not seen",
    "ipv6_ext_header": "an IPv6 extension header that is not allowed, or too many of them",
    "map_full": "a datapath table was full (the datapath fails closed)",
    "unsupported_l3": "a network protocol the datapath cannot parse, to an isolated pod",
    "fragment_overlap": "a fragment overlapping the transport header",
    "flow_budget": "the pod opened new flows faster than its budget allows",
}


def _end(endpoint: str, workload: str) -> str:
    return workload or endpoint


def _judged(record: FlowRecord) -> tuple[str, str]:
    """The pod whose policies judged (ingress: the destination) and its peer."""
    source = _end(record.source, record.source_workload)
    destination = _end(record.destination, record.destination_workload)
    return (destination, source) if record.direction == "ingress" else (source, destination)


def _denied_words(record: FlowRecord) -> str:
    if record.reason not in POLICY_REASONS:
        return REASON_WORDS.get(record.reason, record.reason.replace("_", " "))
    if record.policies == (QUARANTINE,):  # one pod, not its workload
        pod = record.destination if record.direction == "ingress" else record.source
        return f"{pod} is quarantined (isolated completely: `enforcer quarantine release` lifts it)"
    pod, peer = _judged(record)
    by = f" by {', '.join(record.policies)}" if record.policies else ""
    return f"{pod} isolated for {record.direction}{by}, no rule allows {peer}"


def _rules_words(policies: tuple[str, ...], rules: tuple[RuleRef, ...]) -> str:
    """`P (ingress rule 0)`, `P (ingress rules 0, 2)`; policies in the record's order, then
    any policy only a rule names."""
    by_policy: dict[str, dict[str, list[int]]] = {p: {} for p in policies}
    for rule in rules:
        by_policy.setdefault(rule.policy, {}).setdefault(rule.direction, []).append(rule.rule)
    parts = []
    for policy, directions in by_policy.items():
        which = "; ".join(
            f"{direction} rule{'s' if len(indexes) > 1 else ''} "
            f"{', '.join(str(i) for i in sorted(indexes))}"
            for direction, indexes in directions.items()
        )
        parts.append(f"{policy} ({which})" if which else policy)
    return ", ".join(parts)


def why(record: FlowRecord) -> str:
    """The verdict in plain words, e.g. "denied: backend/api isolated for ingress by
    backend/default-deny, no rule allows frontend/web"."""
    if record.verdict == "allowed":
        if record.policies or record.rules:
            words = f"allowed by {_rules_words(record.policies, record.rules)}"
        else:
            pod, _ = _judged(record)
            words = f"allowed: {pod} not isolated for {record.direction}"
    elif record.verdict == "audit":
        words = f"audit: would be denied: {_denied_words(record)}"
    else:
        words = f"{record.verdict}: {_denied_words(record)}"
    if record.staged is not None:
        staged_by = ", ".join(record.staged.policies)
        words += f"; staged: {record.staged.verdict}" + (f" by {staged_by}" if staged_by else "")
    return words


def port_text(record: FlowRecord) -> str:
    """`8080/TCP`; ICMP has no port, another IP protocol by number neither."""
    if record.protocol in ("ICMP", "ICMPv6"):
        return record.protocol
    if record.protocol.isdigit():
        return f"proto {record.protocol}"
    return f"{record.port}/{record.protocol}"


def seen_text(ts: float, now: float) -> str:
    """UTC: `HH:MM:SS` today, the full date before."""
    moment = datetime.fromtimestamp(ts, UTC)
    if moment.date() == datetime.fromtimestamp(now, UTC).date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


HEADERS = ("LAST SEEN", "SOURCE", "DESTINATION", "PORT", "DIRECTION", "VERDICT", "COUNT")
WIDE_HEADERS = ("NODE", "SOURCE IP", "DESTINATION IP")


def table(records: Iterable[FlowRecord], wide: bool = False, now: float | None = None) -> str:
    """kubectl-style columns, no borders, one row per record in the order given; times are
    UTC (`now`, for telling today, defaults to the clock). WHY stays last: it is the longest."""
    today = datetime.now(UTC).timestamp() if now is None else now
    headers = HEADERS + (WIDE_HEADERS if wide else ()) + ("WHY",)
    rows = []
    for r in records:
        row = (
            seen_text(r.last_seen, today), r.source, r.destination, port_text(r), r.direction,
            r.verdict, str(r.count),
        )
        if wide:
            row += (r.node or "-", r.source_ip or "-", r.destination_ip or "-")
        rows.append((*row, why(r)))
    return render_columns(headers, rows)
