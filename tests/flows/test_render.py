"""Flow records in words and in the table `enforcer flows` prints."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from enforcer.flows.record import FlowRecord, RuleRef, StagedVerdict
from enforcer.flows.render import table, why

NOW = 1_785_578_400.0  # 2026-08-01T10:00:00Z

DENIED = FlowRecord(
    source="frontend/web-7d4b9-aaaaa", destination="backend/api-5f9c7-bbbbb", port=8080,
    protocol="TCP", direction="ingress", verdict="denied", policies=("backend/default-deny",),
    reason="policy_denied", source_ip="10.0.0.1", destination_ip="10.0.1.2",
    source_workload="frontend/web", destination_workload="backend/api", node="node1",
    count=3, first_seen=NOW - 60, last_seen=NOW - 5,
)
ALLOWED = replace(
    DENIED, verdict="allowed", reason="forwarded", policies=("backend/allow-web",),
    rules=(RuleRef("backend/allow-web", "ingress", 0),),
)


@pytest.mark.parametrize(
    ("record", "words"),
    [
        (DENIED,
         "denied: backend/api isolated for ingress by backend/default-deny, "
         "no rule allows frontend/web"),
        # Egress: the source is the pod isolated; a peer outside is named by its address.
        (replace(DENIED, direction="egress", destination="203.0.113.9",
                 destination_workload="", policies=("frontend/egress-lock", "frontend/dns")),
         "denied: frontend/web isolated for egress by frontend/egress-lock, frontend/dns, "
         "no rule allows 203.0.113.9"),
        # A pod without a workload is named by itself.
        (replace(DENIED, source_workload=""),
         "denied: backend/api isolated for ingress by backend/default-deny, "
         "no rule allows frontend/web-7d4b9-aaaaa"),
        (replace(DENIED, verdict="audit", reason="audit"),
         "audit: would be denied: backend/api isolated for ingress by backend/default-deny, "
         "no rule allows frontend/web"),
        (ALLOWED, "allowed by backend/allow-web (ingress rule 0)"),
        (replace(ALLOWED, policies=("backend/allow-web", "backend/allow-mon"),
                 rules=(RuleRef("backend/allow-web", "ingress", 2),
                        RuleRef("backend/allow-mon", "ingress", 0),
                        RuleRef("backend/allow-web", "ingress", 0))),
         "allowed by backend/allow-web (ingress rules 0, 2), backend/allow-mon (ingress rule 0)"),
        (replace(ALLOWED, rules=()), "allowed by backend/allow-web"),
        (replace(ALLOWED, direction="egress", policies=(), rules=()),
         "allowed: frontend/web not isolated for egress"),
        (replace(DENIED, reason="spoofed_source", policies=()),
         "denied: the source address is not the sending pod's own (spoofed)"),
        (replace(DENIED, reason="truncated", policies=()),
         "denied: a header is truncated or its lengths are bogus"),
        (replace(DENIED, reason="unknown_endpoint", policies=()),
         "denied: the interface's pod is not known to the agent yet"),
        (replace(DENIED, reason="some_new_reason", policies=()), "denied: some new reason"),
        (replace(ALLOWED, staged=StagedVerdict("would-deny", ("backend/lockdown",))),
         "allowed by backend/allow-web (ingress rule 0); staged: would-deny by backend/lockdown"),
        (replace(DENIED, staged=StagedVerdict("would-allow", ("backend/allow-web", "x/y"))),
         "denied: backend/api isolated for ingress by backend/default-deny, no rule allows "
         "frontend/web; staged: would-allow by backend/allow-web, x/y"),
    ],
)
def test_why_says_the_verdict_in_words(record: FlowRecord, words: str) -> None:
    assert why(record) == words


def test_the_table_has_kubectl_columns_and_a_row_per_record() -> None:
    old = replace(DENIED, last_seen=NOW - 86400 * 2, count=12)
    icmp = replace(ALLOWED, protocol="ICMP", port=0, policies=(), rules=(),
                   direction="egress")
    text = table([old, ALLOWED, icmp], now=NOW)
    assert text.splitlines() == [
        "LAST SEEN             SOURCE                     DESTINATION               PORT"
        "       DIRECTION   VERDICT   COUNT   WHY",
        "2026-07-30 10:00:00   frontend/web-7d4b9-aaaaa   backend/api-5f9c7-bbbbb   8080/TCP"
        "   ingress     denied    12      denied: backend/api isolated for ingress by "
        "backend/default-deny, no rule allows frontend/web",
        "09:59:55              frontend/web-7d4b9-aaaaa   backend/api-5f9c7-bbbbb   8080/TCP"
        "   ingress     allowed   3       allowed by backend/allow-web (ingress rule 0)",
        "09:59:55              frontend/web-7d4b9-aaaaa   backend/api-5f9c7-bbbbb   ICMP"
        "       egress      allowed   3       allowed: frontend/web not isolated for egress",
    ]


def test_the_wide_table_adds_node_and_addresses() -> None:
    outside = replace(DENIED, source="203.0.113.9", source_ip="", source_workload="", node="")
    lines = table([DENIED, outside], wide=True, now=NOW).splitlines()
    assert re.split(r"\s{2,}", lines[0])[7:] == ["NODE", "SOURCE IP", "DESTINATION IP", "WHY"]
    assert "   node1   10.0.0.1    10.0.1.2         denied: " in lines[1]
    assert "   -       -           10.0.1.2         denied: " in lines[2]


def test_an_empty_table_is_its_header() -> None:
    assert table([], now=NOW) == (
        "LAST SEEN   SOURCE   DESTINATION   PORT   DIRECTION   VERDICT   COUNT   WHY")


def test_other_ip_protocols_show_their_number() -> None:
    gre = replace(ALLOWED, protocol="47", port=0)
    assert "   proto 47   " in table([gre], now=NOW)
