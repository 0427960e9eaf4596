"""A quarantined pod's drops in words and in the verdict metric."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import generate_latest

from enforcer.agent.metrics import AgentMetrics
from enforcer.flows.record import FlowRecord
from enforcer.flows.render import why

DROP = FlowRecord(
    source="shop/web-7d4b9-aaaaa", destination="shop/db-0", port=5432, protocol="TCP",
    direction="egress", verdict="denied", policies=("quarantine",), reason="policy_denied",
    source_ip="10.0.0.1", destination_ip="10.0.1.2", source_workload="shop/web",
    destination_workload="shop/db", node="n1", count=1, first_seen=0.0, last_seen=0.0)


def test_the_quarantined_pod_is_named_not_its_workload() -> None:
    assert why(DROP) == ("denied: shop/web-7d4b9-aaaaa is quarantined (isolated completely: "
                         "`enforcer quarantine release` lifts it)")
    inbound = replace(DROP, direction="ingress", source="shop/web-7d4b9-bbbbb")
    assert why(inbound).startswith("denied: shop/db-0 is quarantined")
    # A policy named like it is NS/NAME: never taken for the quarantine.
    assert "isolated for egress by x/quarantine" in why(replace(DROP, policies=("x/quarantine",)))


def test_verdict_metric_names_the_quarantine_as_a_policy_without_namespace() -> None:
    metrics = AgentMetrics()
    metrics.count_verdicts(DROP)
    text = generate_latest(metrics.registry).decode()
    assert ('enforcer_policy_verdicts_total{direction="egress",namespace="",policy="quarantine",'
            'verdict="denied"} 1.0') in text
