"""Flow records: the JSON line `enforcer flows --output json` prints is read back exactly."""

from __future__ import annotations

import json

import pytest

from enforcer.flows.record import (
    FlowFormatError,
    FlowRecord,
    RuleRef,
    StagedVerdict,
    parse_record,
    read_lines,
)

RECORD = FlowRecord(
    source="frontend/web-1", destination="backend/api-0", port=8080, protocol="TCP",
    direction="ingress", verdict="allowed", policies=("backend/allow-web",),
    rules=(RuleRef("backend/allow-web", "ingress", 0),), reason="forwarded",
    source_ip="10.0.0.1", destination_ip="10.0.1.2", source_workload="frontend/web",
    destination_workload="backend/api", node="node1", count=3, first_seen=1700000000.25,
    last_seen=1700000005.5, staged=StagedVerdict("would-deny", ("backend/lockdown",)),
)


def test_a_record_round_trips_through_its_json_line() -> None:
    doc = json.loads(RECORD.to_line())
    assert doc["first_seen"] == "2023-11-14T22:13:20.250Z"
    assert doc["rules"] == [{"policy": "backend/allow-web", "direction": "ingress", "rule": 0}]
    assert parse_record(doc) == RECORD


def test_the_minimal_line_the_issue_names_is_enough() -> None:
    doc = {"source": "a/b", "destination": "203.0.113.9", "port": 53, "protocol": "udp",
           "direction": "egress", "verdict": "denied", "policies": ["a/deny"]}
    record = parse_record(doc)
    assert (record.protocol, record.count, record.rules) == ("UDP", 1, ())


def test_bad_lines_are_reported_by_number_and_field_and_skipped() -> None:
    good = RECORD.to_line()
    text = [good, "", "{not json", json.dumps({**json.loads(good), "verdict": "maybe"}),
            json.dumps({**json.loads(good), "port": 70000}), good]
    result = read_lines(text, "flows.jsonl")
    assert result.records == [RECORD, RECORD]
    assert [(e.line, e.field) for e in result.errors] == [
        (3, "(line)"), (4, "verdict"), (5, "port")]
    assert str(result.errors[1]).startswith("flows.jsonl:4: verdict: must be one of")


def test_strict_fails_on_the_first_bad_line() -> None:
    with pytest.raises(FlowFormatError, match=r"flows\.jsonl:2: count"):
        read_lines([RECORD.to_line(), json.dumps({**RECORD.to_json(), "count": 0})],
                   "flows.jsonl", strict=True)
