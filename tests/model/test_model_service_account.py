"""Selection by service account: the label SERVICE_ACCOUNT_LABEL, set by the model from
spec.serviceAccountName, matched by every selector, never taken from what the pod claims."""

from __future__ import annotations

from typing import Any

import pytest
from netpol_builders import cluster, ns, pod, policy

from enforcer.model.cluster import ClusterState
from enforcer.model.evaluate import evaluate
from enforcer.model.loader import ValidationError, parse_object
from enforcer.model.objects import SERVICE_ACCOUNT_LABEL, NetworkPolicy, Pod
from enforcer.model.staged import as_if_applied

SA = SERVICE_ACCOUNT_LABEL


def sa_pod(namespace: str, name: str, account: str | None, labels: dict[str, str] | None = None,
           **spec: Any) -> dict[str, Any]:
    doc = pod(namespace, name, labels or {}, ports=[{"containerPort": 80}])
    if account is not None:
        doc["spec"]["serviceAccountName"] = account
    doc["spec"].update(spec)
    return doc


def parsed_pod(doc: dict[str, Any]) -> Pod:
    obj = parse_object(doc)
    assert isinstance(obj, Pod)
    return obj


def by_account(account: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": {SA: account}}}


# Ingress to x/db only from the service account `billing` (any namespace's pods of that name
# do not count: a podSelector alone is the policy's namespace).
DB_FROM_BILLING = policy(
    "x", "db-from-billing",
    podSelector={"matchLabels": {"app": "db"}},
    ingress=[{"from": [by_account("billing")]}],
)


def allowed(state: ClusterState, src: str, dst: str) -> bool:
    return evaluate(state, src, dst, 80, "TCP").allowed


def test_the_label_comes_from_spec_service_account_name() -> None:
    assert parsed_pod(sa_pod("x", "a", "billing")).labels[SA] == "billing"


def test_absent_or_empty_is_default_as_the_api_server_sets_it() -> None:
    assert parsed_pod(sa_pod("x", "a", None)).labels[SA] == "default"
    assert parsed_pod(sa_pod("x", "a", "")).labels[SA] == "default"


def test_the_deprecated_field_counts_and_the_new_one_wins() -> None:
    assert parsed_pod(sa_pod("x", "a", None, serviceAccount="old")).labels[SA] == "old"
    assert parsed_pod(sa_pod("x", "a", "new", serviceAccount="old")).labels[SA] == "new"


def test_an_invalid_name_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        parse_object(sa_pod("x", "a", "Not_Valid"), "pods.yaml")
    assert err.value.field == "spec.serviceAccountName"
    assert str(err.value).startswith("pods.yaml: Pod x/a: field spec.serviceAccountName:")


def test_selection_by_service_account() -> None:
    state = cluster(
        ns("x"),
        sa_pod("x", "db", "db", {"app": "db"}),
        sa_pod("x", "billing", "billing"),
        sa_pod("x", "web", None),
        DB_FROM_BILLING,
    )
    assert allowed(state, "x/billing", "x/db")
    assert not allowed(state, "x/web", "x/db")
    assert state.pods_selected_by(parse_policy(policy("x", "q", **by_account("default")))) == {
        "x/web"}


def parse_policy(doc: dict[str, Any]) -> NetworkPolicy:
    obj = parse_object(doc)
    assert isinstance(obj, NetworkPolicy)
    return obj


def test_a_forged_label_is_overwritten() -> None:
    """A pod running as `default` that writes the label `billing` is still `default`."""
    forger = sa_pod("x", "forger", None, {SA: "billing"})
    assert parsed_pod(forger).labels[SA] == "default"
    state = cluster(ns("x"), sa_pod("x", "db", "db", {"app": "db"}), forger, DB_FROM_BILLING)
    assert not allowed(state, "x/forger", "x/db")
    # ... and a pod that writes another account's name over its own keeps its own.
    other = parsed_pod(sa_pod("x", "o", "web", {SA: "billing"}))
    assert other.labels[SA] == "web"


def test_the_default_account_is_selectable_and_selectors_see_the_key() -> None:
    """`default` is a value like any other; Exists matches every pod, DoesNotExist none."""
    state = cluster(ns("x"), sa_pod("x", "a", None), sa_pod("x", "b", "b"))
    exists = {"matchExpressions": [{"key": SA, "operator": "Exists"}]}
    absent = {"matchExpressions": [{"key": SA, "operator": "DoesNotExist"}]}
    not_default = {"matchExpressions": [{"key": SA, "operator": "NotIn", "values": ["default"]}]}
    assert state.pods_selected_by(parse_policy(policy("x", "p", podSelector=exists))) == {
        "x/a", "x/b"}
    assert state.pods_selected_by(parse_policy(policy("x", "p", podSelector=absent))) == set()
    assert state.pods_selected_by(parse_policy(policy("x", "p", podSelector=not_default))) == {
        "x/b"}


def test_a_pod_whose_account_changes_moves_between_selections() -> None:
    state = cluster(ns("x"), sa_pod("x", "db", "db", {"app": "db"}), sa_pod("x", "c", "web"),
                    DB_FROM_BILLING)
    assert not allowed(state, "x/c", "x/db")
    state.upsert(parsed_pod(sa_pod("x", "c", "billing")))  # recreated under another account
    assert allowed(state, "x/c", "x/db")
    state.upsert(parsed_pod(sa_pod("x", "c", None)))
    assert not allowed(state, "x/c", "x/db")


def test_a_namespace_label_of_that_key_means_nothing_special() -> None:
    """On a Namespace the key is an ordinary label: a namespaceSelector matches it as written,
    and it says nothing about the namespace's pods."""
    state = cluster(
        ns("x"), ns("y", **{SA: "billing"}),
        sa_pod("x", "db", "db", {"app": "db"}),
        sa_pod("y", "web", None),
        policy("x", "p", podSelector={"matchLabels": {"app": "db"}},
               ingress=[{"from": [{"namespaceSelector": {}, **by_account("billing")}]}]),
        policy("x", "q", podSelector={"matchLabels": {"app": "db"}},
               ingress=[{"from": [{"namespaceSelector": {"matchLabels": {SA: "billing"}}}]}]),
    )
    assert state.namespaces["y"].labels[SA] == "billing"
    verdict = evaluate(state, "y/web", "x/db", 80, "TCP")
    assert verdict.allowed  # through q, the namespace's own label
    assert [key for key, _ in verdict.ingress.allowing] == ["x/q"]


def test_peers_across_namespaces_by_service_account() -> None:
    state = cluster(
        ns("x"), ns("y"),
        sa_pod("x", "db", "db", {"app": "db"}),
        sa_pod("y", "billing", "billing"),
        sa_pod("y", "web", "web"),
        policy("x", "p", podSelector={"matchLabels": {"app": "db"}},
               ingress=[{"from": [{"namespaceSelector": {}, **by_account("billing")}]}]),
    )
    assert allowed(state, "y/billing", "x/db")
    assert not allowed(state, "y/web", "x/db")


def test_staged_policies_select_by_service_account_too() -> None:
    state = cluster(ns("x"), sa_pod("x", "db", "db", {"app": "db"}), sa_pod("x", "b", "billing"),
                    sa_pod("x", "w", None))
    preview = as_if_applied(state, [parse_policy(DB_FROM_BILLING)])
    assert allowed(preview, "x/b", "x/db") and not allowed(preview, "x/w", "x/db")
    assert allowed(state, "x/w", "x/db")  # the enforced state is untouched
