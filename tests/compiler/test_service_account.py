"""Service-account selection in the compiler: the account is part of a pod's labels, so it
splits identities, selects endpoints and moves a pod between classes when it changes."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

from enforcer.datapath.types import PROTO_ANY, PolicyEntry
from enforcer.model.objects import SERVICE_ACCOUNT_LABEL, ModelObject

from .builders import obj, policy
from .test_compiler_rules import IN, Harness, entries


def sa_pod(name: str, ip: str, account: str | None, labels: dict[str, str] | None = None
           ) -> ModelObject:
    spec: dict[str, Any] = {"nodeName": "node-1", "containers": []}
    if account is not None:
        spec["serviceAccountName"] = account
    return obj({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "a", "uid": f"uid-{name}-{account}",
                     "labels": labels or {}},
        "spec": spec,
        "status": {"phase": "Running", "podIPs": [{"ip": ip}]},
    })


DB_FROM_BILLING = policy(
    "a", "db",
    podSelector={"matchLabels": {"app": "db"}},
    ingress=[{"from": [{"podSelector": {"matchLabels": {SERVICE_ACCOUNT_LABEL: "billing"}}}]}],
)


def test_same_labels_other_account_is_another_identity_and_only_the_account_is_allowed() -> None:
    h = Harness(
        sa_pod("db", "10.0.0.3", "db", {"app": "db"}),
        sa_pod("billing", "10.0.0.1", "billing", {"app": "client"}),
        sa_pod("other", "10.0.0.2", None, {"app": "client"}),
        # Claims the account through the label: overwritten by the model, stays `default`.
        sa_pod("forger", "10.0.0.4", None, {"app": "client", SERVICE_ACCOUNT_LABEL: "billing"}),
        DB_FROM_BILLING,
    )
    billing = h.ident("10.0.0.1")
    assert h.ident("10.0.0.2") != billing
    assert h.ident("10.0.0.4") == h.ident("10.0.0.2")  # the forger shares `default`'s class
    assert entries(h, "a/db") == {PolicyEntry(IN, billing, PROTO_ANY, 0, 65535)}
    assert h.allows("a/billing", "10.0.0.1", "a/db", "10.0.0.3", "TCP", 5432)
    assert not h.allows("a/other", "10.0.0.2", "a/db", "10.0.0.3", "TCP", 5432)
    assert not h.allows("a/forger", "10.0.0.4", "a/db", "10.0.0.3", "TCP", 5432)


def test_a_policy_selecting_by_account_picks_its_endpoints() -> None:
    h = Harness(
        sa_pod("x", "10.0.0.1", "billing"),
        sa_pod("y", "10.0.0.2", None),
        policy("a", "deny", podSelector={"matchLabels": {SERVICE_ACCOUNT_LABEL: "billing"}}),
    )
    assert h.compiler.endpoint_policy("a/x").ingress_isolated
    assert not h.compiler.endpoint_policy("a/y").ingress_isolated


def test_an_account_change_moves_the_pod_between_classes() -> None:
    h = Harness(
        sa_pod("db", "10.0.0.3", "db", {"app": "db"}),
        sa_pod("c", "10.0.0.1", "web"),
        DB_FROM_BILLING,
    )
    assert not h.allows("a/c", "10.0.0.1", "a/db", "10.0.0.3", "TCP", 1)
    delta = h.upsert(sa_pod("c", "10.0.0.1", "billing"))
    assert ip_network("10.0.0.1/32") in delta.identity_changes
    assert h.allows("a/c", "10.0.0.1", "a/db", "10.0.0.3", "TCP", 1)
