"""The workload map from flow records."""

from __future__ import annotations

from enforcer.console.graph import graph_document
from enforcer.flows.record import StagedVerdict

from .fakes import T0, record

RECORDS = [
    record("a/web", "b/api", 80, T0, policies=("b/allow-web",)),
    record("a/web", "b/api", 80, T0 + 1, policies=("b/allow-web",), direction="egress", count=2),
    record("b/db", "b/api", 80, T0, verdict="denied", policies=("b/allow-web",)),
    record("a/web", "b/api", 80, T0, policies=("b/allow-web",),
           staged=StagedVerdict("would-deny", ("b/tighter",))),
    record("b/api", "203.0.113.9", 443, T0, verdict="audit", policies=("b/egress",),
           direction="egress"),
]


def test_one_edge_per_pair_port_protocol_and_verdict_staged_verdicts_first() -> None:
    doc = graph_document(RECORDS)
    assert doc["nodes"] == [
        {"id": "203.0.113.9", "label": "203.0.113.9", "namespace": None, "kind": "external"},
        {"id": "a/web", "label": "web", "namespace": "a", "kind": "workload"},
        {"id": "b/api", "label": "api", "namespace": "b", "kind": "workload"},
        {"id": "b/db", "label": "db", "namespace": "b", "kind": "workload"},
    ]
    edges = {(e["source"], e["target"], e["verdict"]): e for e in doc["edges"]}
    assert sorted(edges) == [
        ("a/web", "b/api", "allowed"), ("a/web", "b/api", "would-deny"),
        ("b/api", "203.0.113.9", "audit"), ("b/db", "b/api", "denied"),
    ]  # fmt: skip
    allowed = edges[("a/web", "b/api", "allowed")]
    assert (allowed["port"], allowed["protocol"], allowed["count"]) == (80, "TCP", 3)
    assert allowed["policies"] == ["b/allow-web"]
    assert edges[("a/web", "b/api", "would-deny")]["policies"] == ["b/allow-web", "b/tighter"]


def test_a_namespace_keeps_the_edges_with_an_end_in_it() -> None:
    doc = graph_document(RECORDS, ["a"])
    assert {(e["source"], e["target"]) for e in doc["edges"]} == {("a/web", "b/api")}
    assert [n["id"] for n in doc["nodes"]] == ["a/web", "b/api"]
    assert graph_document(RECORDS, ["nowhere"]) == {"nodes": [], "edges": []}
