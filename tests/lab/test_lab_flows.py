"""Flows in the lab, with real packets: `enforcer lab flows` names, for every probed pair, the
verdict and the policies and rules that `enforcer analyze --explain` names for it, side by
side (the source's egress, the destination's ingress); audit mode passes exactly the flows that
enforcement then denies. Routed IPv4 and bridged IPv6, pods on two nodes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from enforcer.analysis.explain import verdict_for
from enforcer.commands.lab import lab_flows, probe_documents
from enforcer.flows.record import FlowRecord, parse_record
from enforcer.lab import lab
from enforcer.model.evaluate import DirectionVerdict
from enforcer.model.objects import POLICY_MODE_ANNOTATION
from tests.lab import upstream

pytestmark = pytest.mark.kernel

PORT, PROTOCOL = 80, "TCP"


def _cases() -> dict[str, list[dict[str, Any]]]:
    """Upstream cases, plus two rules and two policies allowing the same flow (attribution
    must name them all) and an egress policy elsewhere."""
    picked = {k: v for k, v in upstream.cases({"x/a": "198.18.0.1", "x/b": "198.18.0.2"}).items()
              if k in ("default-deny-ingress", "pod-or-namespace-selector", "default-deny-all")}
    picked["overlapping-rules-and-egress"] = [
        upstream.policy("two-rules", "x", {
            "podSelector": upstream.sel(pod="a"),
            "ingress": [{"from": [{"podSelector": upstream.sel(pod="b")}]},
                        {"ports": [{"port": PORT}], "from": [{"namespaceSelector": {}}]}],
        }),
        upstream.policy("also-b", "x", {
            "podSelector": upstream.sel(pod="a"),
            "ingress": [{"from": [{"podSelector": upstream.sel(pod="b")}]}],
        }),
        upstream.policy("egress-to-x", "y", {
            "podSelector": upstream.sel(pod="c"), "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": upstream.sel(ns="x")}]}],
        }),
    ]
    return picked


def _flows_since(state: lab.LabState, since: float) -> list[FlowRecord]:
    time.sleep(1.0)  # events reach the agents' stores within well under a second
    path = "/flows?" + urlencode({"since": since, "limit": 0, "port": PORT})
    return [parse_record(d) for d in lab_flows(state, path, follow=False)]


def _expected(side: DirectionVerdict) -> tuple[str, tuple[str, ...], set[tuple[str, int]]]:
    if side.allowed:
        return "allowed", tuple(sorted({p for p, _ in side.allowing})), set(side.allowing)
    return "denied", tuple(sorted(side.isolating)), set()


def _check_attribution(state: lab.LabState, records: list[FlowRecord], case: str) -> list[str]:
    model = lab.model_state(state)
    seen: dict[tuple[str, str, str], list[FlowRecord]] = {}
    for r in records:
        seen.setdefault((r.source, r.destination, r.direction), []).append(r)
    problems = []
    pods = sorted(state.pods)
    for src in pods:
        for dst in pods:
            if src == dst:
                continue
            verdict = verdict_for(model, src, dst, PORT, PROTOCOL)
            sides = [("egress", verdict.egress)]
            if verdict.egress.allowed:  # denied at the source: never reaches the destination
                sides.append(("ingress", verdict.ingress))
            for direction, side in sides:
                want, policies, rules = _expected(side)
                got = seen.get((src, dst, direction), [])
                found = {(r.verdict, r.policies,
                          frozenset((x.policy, x.rule) for x in r.rules)) for r in got}
                if found != {(want, policies, frozenset(rules))}:
                    problems.append(f"{case}: {src} -> {dst} {direction}: expected {want} by "
                                    f"{policies} {sorted(rules)}, flows say {sorted(found)}")
    return problems


@pytest.mark.parametrize("topology,family", [("routed", 4), ("bridged", 6)])
def test_flows_name_what_explain_names_for_every_pair(
    lab_factory: Callable[..., lab.LabState],
    write_manifests: Callable[[list[dict[str, Any]]], Path],
    topology: str,
    family: int,
) -> None:
    state = lab_factory([write_manifests(upstream.cluster())], topology=topology, nodes=2,
                        ipv6=family == 6)
    problems: list[str] = []
    for case, policies in _cases().items():
        path = write_manifests(policies)
        lab.apply(state, [path])
        since = time.time()
        probe_documents(state, PORT, PROTOCOL, family, 0.4)
        problems += _check_attribution(state, _flows_since(state, since), case)
        lab.delete(state, [path])
    assert problems == []


def _namespace(mode: str | None) -> dict[str, Any]:
    ns = upstream.namespace("x")
    if mode:
        ns["metadata"]["annotations"] = {POLICY_MODE_ANNOTATION: mode}
    return ns


def _denied_pairs(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(s, d) for s, row in docs[0]["matrix"].items() for d, ok in row.items() if not ok}


def test_audit_reports_exactly_what_enforcement_then_denies(
    lab_factory: Callable[..., lab.LabState],
    write_manifests: Callable[[list[dict[str, Any]]], Path],
) -> None:
    state = lab_factory([write_manifests(upstream.cluster())], topology="routed", nodes=2)
    lab.apply(state, [write_manifests(_cases()["default-deny-all"] + [_namespace("audit")])])
    since = time.time()
    audited_docs = probe_documents(state, PORT, PROTOCOL, 4, 0.4)
    assert _denied_pairs(audited_docs) == set()  # audit: nothing is dropped
    audited = {(r.source, r.destination) for r in _flows_since(state, since)
               if r.verdict == "audit"}
    for r in _flows_since(state, since):
        assert r.verdict != "denied", r
    lab.apply(state, [write_manifests([_namespace("enforce")])])
    since = time.time()
    enforced_docs = probe_documents(state, PORT, PROTOCOL, 4, 0.4)
    denied = _denied_pairs(enforced_docs)
    assert denied and audited == denied
    denied_flows = {(r.source, r.destination) for r in _flows_since(state, since)
                    if r.verdict == "denied"}
    assert denied_flows == denied


def _flows_since_all(state: lab.LabState, since: float) -> list[FlowRecord]:
    path = "/flows?" + urlencode({"since": since, "limit": 0})
    return [parse_record(d) for d in lab_flows(state, path, follow=False)]
