"""The intake with cluster-scoped policies: ClusterNetworkPolicy, AdminNetworkPolicy,
BaselineAdminNetworkPolicy and Nodes enter the state as changes for the compiler; an invalid
version is rejected with its message and the previous valid one stays; domainNames peers are
said once per policy; a relist removes what it no longer names."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from structlog.testing import capture_logs

from enforcer.agent.intake import Intake
from enforcer.model.clusterpolicy import ClusterPolicy
from enforcer.model.nodes import Node
from enforcer.sources.base import EventType, SourceEvent

CNP: dict[str, Any] = {
    "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
    "metadata": {"name": "guard"},
    "spec": {"tier": "Admin", "priority": 5, "subject": {"namespaces": {}},
             "egress": [{"name": "no-dns-names", "action": "Deny",
                         "to": [{"domainNames": ["*.example.com"]}]},
                        {"name": "to-nodes", "action": "Accept",
                         "to": [{"nodes": {"matchLabels": {"role": "infra"}}}]}]},
}
ANP: dict[str, Any] = {
    "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
    "metadata": {"name": "guard"},  # the same name as the ClusterNetworkPolicy: another key
    "spec": {"priority": 5, "subject": {"namespaces": {}},
             "ingress": [{"action": "Allow", "from": [{"namespaces": {}}]}]},
}
BANP: dict[str, Any] = {
    "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
    "metadata": {"name": "default"},
    "spec": {"subject": {"namespaces": {}},
             "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]},
}
NODE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Node",
    "metadata": {"name": "n1", "labels": {"role": "infra"}},
    "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.1"},
                             {"type": "Hostname", "address": "n1"}]},
}


def _event(etype: EventType, obj: dict[str, Any] | None = None, kind: str | None = None) -> Any:
    return SourceEvent(etype, kind or (obj or {}).get("kind"), obj, None)


def test_cluster_policies_and_nodes_enter_the_state_as_changes() -> None:
    intake = Intake(lambda: "k8s:test")
    changes = [intake.apply(_event(EventType.ADDED, o)) for o in (CNP, ANP, BANP, NODE)]
    assert all(c is not None and c.old is None for c in changes)
    assert [type(c.new) for c in changes if c] == [ClusterPolicy] * 3 + [Node]
    assert sorted(intake.state.cluster_policies) == [
        "AdminNetworkPolicy/guard", "BaselineAdminNetworkPolicy/default",
        "ClusterNetworkPolicy/guard",
    ]
    assert [str(ip) for ip in intake.state.nodes["n1"].addresses] == ["192.0.2.1"]
    assert not intake.not_enforced
    digest = intake.digest
    assert digest, "every valid object is in the digest the lab waits on"

    changed = copy.deepcopy(CNP)
    changed["spec"]["priority"] = 7
    change = intake.apply(_event(EventType.MODIFIED, changed))
    assert change is not None and change.old.priority == 5 and change.new.priority == 7

    removed = intake.apply(_event(EventType.DELETED, NODE))
    assert removed is not None and removed.new is None and isinstance(removed.old, Node)
    assert "n1" not in intake.state.nodes
    removed = intake.apply(_event(EventType.DELETED, ANP))
    assert removed is not None and "AdminNetworkPolicy/guard" not in intake.state.cluster_policies
    assert "ClusterNetworkPolicy/guard" in intake.state.cluster_policies


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda s: s.update(priority=1001), "spec.priority"),
    (lambda s: s.update(tier="Middle"), "spec.tier"),
    (lambda s: s["egress"][1]["to"][0].update(networks=["10.0.0.0/8"]), "spec.egress[1].to[0]"),
    (lambda s: s["egress"][0].update(action="Allow"), "spec.egress[0].action"),
], ids=["priority", "tier", "two-peer-fields", "v1alpha1-action"])
def test_an_invalid_version_is_rejected_and_the_previous_stays(mutate: Any, field: str) -> None:
    invalid: list[str] = []
    intake = Intake(lambda: "k8s:test", invalid.append)
    assert intake.apply(_event(EventType.ADDED, CNP)) is not None
    before = intake.state.cluster_policies["ClusterNetworkPolicy/guard"]
    digest = intake.digest
    bad = copy.deepcopy(CNP)
    mutate(bad["spec"])
    assert intake.apply(_event(EventType.MODIFIED, bad)) is None
    assert invalid == ["ClusterNetworkPolicy"]
    message = intake.invalid[-1]
    assert "k8s:test" in message and "ClusterNetworkPolicy" in message and "guard" in message
    assert field in message, message
    assert intake.state.cluster_policies["ClusterNetworkPolicy/guard"] is before
    assert intake.digest == digest
    # A first version that is invalid: nothing of it enters.
    fresh = Intake(lambda: "k8s:test")
    assert fresh.apply(_event(EventType.ADDED, bad)) is None
    assert not fresh.state.cluster_policies and not fresh.objects


def test_an_invalid_node_is_rejected_with_its_field() -> None:
    intake = Intake(lambda: "k8s:test")
    bad = copy.deepcopy(NODE)
    bad["metadata"]["labels"] = {"role": "x" * 70}
    assert intake.apply(_event(EventType.ADDED, bad)) is None
    assert "Node" in intake.invalid[-1] and "metadata.labels" in intake.invalid[-1]
    assert not intake.state.nodes


def test_domain_names_are_said_once_per_policy() -> None:
    intake = Intake(lambda: "k8s:test")
    with capture_logs() as logs:
        intake.apply(_event(EventType.ADDED, CNP))
        relabeled = copy.deepcopy(CNP)
        relabeled["metadata"]["labels"] = {"a": "b"}
        intake.apply(_event(EventType.MODIFIED, relabeled))
        intake.apply(_event(EventType.ADDED, ANP))  # no domainNames: nothing said
    said = [e for e in logs if "domainNames" in e["event"]]
    assert len(said) == 1 and said[0]["domain_names"] == ["*.example.com"]
    assert "ClusterNetworkPolicy guard" in said[0]["event"]
    # Once the policy is gone, its next version is said again.
    intake.apply(_event(EventType.DELETED, CNP))
    with capture_logs() as logs:
        intake.apply(_event(EventType.ADDED, CNP))
    assert sum("domainNames" in e["event"] for e in logs) == 1


def test_a_relist_removes_the_cluster_policies_it_no_longer_names() -> None:
    intake = Intake(lambda: "k8s:test")
    intake.apply(_event(EventType.ADDED, CNP))
    intake.apply(_event(EventType.ADDED, BANP))
    intake.begin_relist("ClusterNetworkPolicy")
    intake.apply(_event(EventType.ADDED, CNP))
    intake.begin_relist("BaselineAdminNetworkPolicy")  # the CRD went away: an empty list
    removed = intake.finish_relist()
    assert [c.key for c in removed] == [("BaselineAdminNetworkPolicy", None, "default")]
    assert list(intake.state.cluster_policies) == ["ClusterNetworkPolicy/guard"]
