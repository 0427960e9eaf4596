"""StagedNetworkPolicy in the model: parsed and validated as a NetworkPolicy, kept apart from
what is enforced, applied only in a preview of the state."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from netpol_builders import ns, pod, policy, state_of

from enforcer.model.evaluate import evaluate
from enforcer.model.loader import ValidationError, load_text, parse_object
from enforcer.model.objects import STAGED_POLICY_API, NetworkPolicy
from enforcer.model.parse import parse_staged_policy
from enforcer.model.staged import as_if_applied


def staged(doc: dict[str, Any]) -> dict[str, Any]:
    """The same object as a StagedNetworkPolicy."""
    return {**copy.deepcopy(doc), "apiVersion": STAGED_POLICY_API, "kind": "StagedNetworkPolicy"}


DENY_B = policy("x", "deny-b", podSelector={"matchLabels": {"app": "b"}})
SPECS = [
    {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    {
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["b"]}]},
        "ingress": [
            {
                "from": [
                    {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {}},
                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                ],
                "ports": [{"port": 80, "endPort": 90}, {"port": "http", "protocol": "UDP"}],
            }
        ],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "a"}}}]}],
    },
]


@pytest.mark.parametrize("spec", SPECS, ids=["default-deny", "rules"])
def test_staged_policy_parses_to_the_same_networkpolicy(spec: dict[str, Any]) -> None:
    doc = policy("x", "p", **spec)
    assert parse_staged_policy(staged(doc), "f.yaml") == parse_object(doc, "f.yaml")


INVALID = [
    {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/40"}}]}]},
    {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]},
    {"ingress": [{"ports": [{"port": 80, "endPort": 79}]}]},
    {"ingress": [{"ports": [{"port": "http", "endPort": 90}]}]},
    {"egress": [{"ports": [{"protocol": "ICMP"}]}]},
    {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Is", "values": ["b"]}]}},
    {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "namespaceSelector": {}}]}]},
    {"policyTypes": ["Inbound"]},
    {"podSelector": {"matchLabels": {"app": 3}}},
    {"ingress": "all"},
]


@pytest.mark.parametrize("spec", INVALID, ids=[json.dumps(s)[:40] for s in INVALID])
def test_invalid_staged_policy_gets_the_networkpolicy_error_but_its_own_kind(spec) -> None:
    doc = policy("x", "bad", **spec)
    with pytest.raises(ValidationError) as as_policy:
        parse_object(doc, "f.yaml")
    with pytest.raises(ValidationError) as as_staged:
        parse_staged_policy(staged(doc), "f.yaml")
    want, got = as_policy.value, as_staged.value
    assert got.kind == "StagedNetworkPolicy"
    assert got.to_dict() == {**want.to_dict(), "kind": "StagedNetworkPolicy"}
    assert str(got) == str(want).replace(
        "f.yaml: NetworkPolicy x/bad", "f.yaml: StagedNetworkPolicy x/bad"
    )
    assert str(got).startswith("f.yaml: StagedNetworkPolicy x/bad: field spec.")


def test_a_nameless_staged_policy_is_named_by_kind() -> None:
    doc = staged(policy("x", "p"))
    del doc["metadata"]["name"]
    with pytest.raises(ValidationError, match=r"StagedNetworkPolicy \(unnamed\): field metadata"):
        parse_staged_policy(doc)


def test_parse_object_never_returns_a_staged_policy() -> None:
    """Whoever enforces parse_object's objects (the agent, the lab) must never get one."""
    assert parse_object(staged(policy("x", "p"))) is None
    assert parse_staged_policy(policy("x", "p")) is None


def test_another_groups_staged_policy_is_not_ours() -> None:
    calico = {**staged(policy("x", "p")), "apiVersion": "projectcalico.org/v3"}
    assert parse_staged_policy(calico) is None
    result = load_text(yaml.safe_dump(calico), "f.yaml")
    assert not result.staged and not result.objects
    assert result.notes == [
        "f.yaml: ignored projectcalico.org/v3 StagedNetworkPolicy x/p (not a kind we model)"
    ]


def test_loader_keeps_staged_policies_apart_from_the_objects() -> None:
    docs = [
        ns("x"),
        pod("x", "a", {"app": "a"}),
        DENY_B,
        staged(policy("x", "deny-all")),
        staged(policy("x", "bad", ingress=[{"ports": [{"port": 80, "endPort": 70}]}])),
        {
            "apiVersion": STAGED_POLICY_API,
            "kind": "StagedNetworkPolicyList",
            "items": [{"metadata": {"name": "in-a-list", "namespace": "x"}, "spec": {}}],
        },
    ]
    result = load_text(yaml.safe_dump_all(docs), "f.yaml")
    assert [o.key for o in result.objects if isinstance(o, NetworkPolicy)] == ["x/deny-b"]
    assert [p.key for p in result.staged] == ["x/deny-all", "x/in-a-list"]
    assert result.staged_origins == ["f.yaml", "f.yaml"]
    (error,) = result.errors
    assert error.object_ref == "StagedNetworkPolicy x/bad"
    assert error.field == "spec.ingress[0].ports[0].endPort"
    assert not result.notes


def test_as_if_applied_replaces_same_named_policies_and_leaves_the_state_alone() -> None:
    state = state_of(
        ns("x"),
        pod("x", "a", {"app": "a"}),
        pod("x", "b", {"app": "b"}),
        DENY_B,
    )
    generation = state.generation
    open_b = parse_staged_policy(
        staged(policy("x", "deny-b", podSelector={"matchLabels": {"app": "b"}}, ingress=[{}]))
    )
    deny_a = parse_staged_policy(
        staged(policy("x", "deny-a", podSelector={"matchLabels": {"app": "a"}}))
    )
    assert open_b is not None and deny_a is not None
    preview = as_if_applied(state, [open_b, deny_a])
    assert sorted(preview.policies) == ["x/deny-a", "x/deny-b"]
    assert preview.policies["x/deny-b"] == open_b  # replaced, not added beside
    assert evaluate(preview, "x/a", "x/b", 80, "TCP").allowed
    assert not evaluate(preview, "x/b", "x/a", 80, "TCP").allowed
    # The enforced state is untouched.
    assert state.generation == generation and list(state.policies) == ["x/deny-b"]
    assert not evaluate(state, "x/a", "x/b", 80, "TCP").allowed
    assert evaluate(state, "x/b", "x/a", 80, "TCP").allowed


def test_copy_is_independent_and_equal() -> None:
    state = state_of(ns("x", team="a"), pod("x", "a", {"app": "a"}), pod("y", "b"), DENY_B)
    twin = state.copy()
    assert dict(twin.namespaces) == dict(state.namespaces)
    assert dict(twin.pods) == dict(state.pods) and dict(twin.policies) == dict(state.policies)
    assert twin.namespace_names() == state.namespace_names() == {"x", "y"}
    assert twin.pods_by_ip(state.pods["x/a"].ips[0]) == "x/a"
    twin.remove("Pod", "x", "a")
    assert "x/a" in state.pods and state.pods_by_ip(state.pods["x/a"].ips[0]) == "x/a"
