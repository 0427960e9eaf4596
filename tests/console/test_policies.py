"""The policy view against a small cluster: what each policy selects, allows and decided."""

from __future__ import annotations

import pytest

from enforcer.console.policies import UnknownPolicy, policy_detail, policy_list
from enforcer.flows.record import StagedVerdict
from enforcer.flows.store import FlowStore
from enforcer.sources.base import EventType

from .cluster import ALLOW_WEB, DENY_ALL, policy, send, small_cluster
from .fakes import T0, record


def _store() -> FlowStore:
    store = FlowStore(clock=lambda: T0 + 60)
    store.add(record("a/web", "b/api", 80, T0, policies=("b/allow-web",)))
    store.add(record("b/db", "b/api", 80, T0 + 1, verdict="denied", policies=("b/allow-web",)))
    store.add(record("a/web", "b/api", 80, T0 + 2, policies=("b/allow-web",),
                     staged=StagedVerdict("would-deny", ("b/allow-web",))))
    store.add(record("a/web", "b/db", 5432, T0 + 3))
    return store


def test_the_list_names_enforced_and_staged_policies_and_what_they_select() -> None:
    assert policy_list(small_cluster()) == {"policies": [
        {"key": "b/allow-web", "kind": "NetworkPolicy", "selects": ["b/api"]},
        {"key": "b/allow-web", "kind": "StagedNetworkPolicy", "selects": ["b/api"]},
    ]}  # fmt: skip


def test_a_policy_shows_its_spec_the_models_matrix_and_its_flows() -> None:
    doc = policy_detail(small_cluster(), _store(), "b", "allow-web", "NetworkPolicy")
    assert (doc["key"], doc["kind"], doc["spec"], doc["selects"]) == (
        "b/allow-web", "NetworkPolicy", ALLOW_WEB, ["b/api"])
    (matrix,) = doc["matrix"]  # api declares port 80 only
    assert (matrix["port"], matrix["protocol"]) == (80, "TCP")
    assert matrix["matrix"]["a/web"]["b/api"] is True
    assert matrix["matrix"]["b/db"]["b/api"] is False
    assert matrix["matrix"]["b/db"]["a/web"] is True  # web is not isolated
    assert [(f["source"], f["verdict"]) for f in doc["flows"]] == [
        ("a/web", "allowed"), ("b/db", "denied"), ("a/web", "allowed")]
    assert doc["flows"][1]["why"].startswith("denied: b/api isolated for ingress by b/allow-web")


def test_a_staged_policy_is_analyzed_as_if_applied_and_shows_its_would_deny_flows() -> None:
    doc = policy_detail(small_cluster(), _store(), "b", "allow-web", "StagedNetworkPolicy")
    assert doc["spec"] == DENY_ALL
    (matrix,) = doc["matrix"]
    assert matrix["matrix"]["a/web"]["b/api"] is False
    assert [f["staged"]["verdict"] for f in doc["flows"]] == ["would-deny"]


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(UnknownPolicy, match="no NetworkPolicy b/nope"):
        policy_detail(small_cluster(), _store(), "b", "nope", "NetworkPolicy")


def test_an_invalid_update_keeps_the_last_valid_spec_and_a_deletion_removes_it() -> None:
    view = small_cluster()
    bad = policy("b", "allow-web", {"podSelector": {}, "ingress": [{"ports": [{"port": 0}]}]})
    send(view, [bad], EventType.MODIFIED, synced=False)
    assert view.spec("NetworkPolicy", "b", "allow-web") == ALLOW_WEB
    send(view, [policy("b", "allow-web", ALLOW_WEB)], EventType.DELETED, synced=False)
    assert view.spec("NetworkPolicy", "b", "allow-web") is None
    assert [p["kind"] for p in policy_list(view)["policies"]] == ["StagedNetworkPolicy"]


def test_an_egress_policy_is_shown_on_the_ports_its_pods_reach() -> None:
    view = small_cluster()
    web_to_api = {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                  "egress": [{"to": [{"namespaceSelector": {}, "podSelector":
                                      {"matchLabels": {"app": "api"}}}]}]}  # fmt: skip
    send(view, [policy("a", "web-out", web_to_api)])
    doc = policy_detail(view, FlowStore(), "a", "web-out", "NetworkPolicy")
    # web serves 80 only, but its egress is judged on db's 5432 too
    matrices = {(m["port"], m["protocol"]): m["matrix"] for m in doc["matrix"]}
    assert set(matrices) == {(80, "TCP"), (5432, "TCP")}
    assert matrices[(5432, "TCP")]["a/web"]["b/db"] is False
    assert matrices[(80, "TCP")]["a/web"]["b/api"] is True
