"""StagedNetworkPolicies in the lab, with real packets: staged, a policy drops nothing, and the
flows it reports as `would-deny` are exactly the pairs that applying it as a NetworkPolicy then
denies (and `would-allow` the ones it then lets through). Upstream cluster, two nodes."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from enforcer.commands.lab import lab_flows, probe_documents
from enforcer.flows.record import FlowRecord, parse_record
from enforcer.lab import lab
from enforcer.model.objects import STAGED_POLICY_API
from tests.lab import upstream

pytestmark = pytest.mark.kernel

PORT, PROTOCOL = 80, "TCP"
Pairs = set[tuple[str, str]]


def _staged(policy: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(policy), "apiVersion": STAGED_POLICY_API,
            "kind": "StagedNetworkPolicy"}


def _key(policy: dict[str, Any]) -> str:
    return f"{policy['metadata']['namespace']}/{policy['metadata']['name']}"


def _cases() -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Case -> (enforced before, staged). The last one replaces an enforced policy of the
    same name with a narrower one (b -> a allowed now, not any more)."""
    up = upstream.cases({"x/a": "198.18.0.1", "x/b": "198.18.0.2"})
    from_b = upstream.policy("a-ingress", "x", {
        "podSelector": upstream.sel(pod="a"),
        "ingress": [{"from": [{"podSelector": upstream.sel(pod="b")},
                              {"namespaceSelector": upstream.sel(ns="y")}]}],
    })
    only_y = copy.deepcopy(from_b)
    only_y["spec"]["ingress"][0]["from"] = [{"namespaceSelector": upstream.sel(ns="y")}]
    return {
        "default-deny-ingress": ([], up["default-deny-ingress"]),
        "allow-from-same-namespace-podselector":
            ([], up["allow-from-same-namespace-podselector"]),
        "egress-to-namespace-with-port": ([], up["egress-to-namespace-with-port"]),
        "replace-an-enforced-policy": ([from_b], [only_y]),
    }


def _denied(state: lab.LabState) -> Pairs:
    (doc,) = probe_documents(state, PORT, PROTOCOL, 4, 0.4)
    return {(s, d) for s, row in doc["matrix"].items() for d, ok in row.items() if not ok}


def _flows_since(state: lab.LabState, since: float) -> list[FlowRecord]:
    time.sleep(1.0)  # events reach the agents' stores within well under a second
    path = "/flows?" + urlencode({"since": since, "limit": 0, "port": PORT})
    return [parse_record(d) for d in lab_flows(state, path, follow=False)]


def _staged_pairs(records: list[FlowRecord], verdict: str) -> Pairs:
    return {(r.source, r.destination) for r in records
            if r.staged is not None and r.staged.verdict == verdict}


def test_staged_reports_exactly_what_applying_it_then_denies(
    lab_factory: Callable[..., lab.LabState],
    write_manifests: Callable[[list[dict[str, Any]]], Path],
) -> None:
    state = lab_factory([write_manifests(upstream.cluster())], topology="routed", nodes=2)
    problems = []
    for case, (enforced, staged) in _cases().items():
        enforced_path = write_manifests(enforced) if enforced else None
        if enforced_path:
            lab.apply(state, [enforced_path])
        before = _denied(state)

        staged_path = write_manifests([_staged(p) for p in staged])
        lab.apply(state, [staged_path])
        names = sorted(_key(p) for p in staged)
        for node in state.node_nets():  # it reaches every agent...
            assert lab.node_status(state, node)["staged_policies"] == names, case
        # ...and is not enforced: the model the lab checks probes by leaves it out, and
        # nothing that was allowed is dropped.
        assert set(lab.model_state(state).policies) == {_key(p) for p in enforced}, case
        since = time.time()
        assert _denied(state) == before, case
        records = _flows_since(state, since)
        assert records, case
        would_deny = _staged_pairs(records, "would-deny")
        would_allow = _staged_pairs(records, "would-allow")
        named = {p for r in records if r.staged is not None for p in r.staged.policies}
        assert named <= set(names), case

        # The same policies applied as NetworkPolicies (replacing the enforced ones).
        lab.delete(state, [staged_path])
        applied_path = write_manifests(staged)
        lab.apply(state, [applied_path])
        after = _denied(state)
        if would_deny != after - before or would_allow != before - after:
            problems.append(
                f"{case}: would-deny {sorted(would_deny)} would-allow {sorted(would_allow)}; "
                f"applied, newly denied {sorted(after - before)}, "
                f"newly allowed {sorted(before - after)}"
            )
        assert after - before or before - after, f"{case}: the case changes nothing"
        lab.delete(state, [applied_path, *([enforced_path] if enforced_path else [])])
    assert problems == []
