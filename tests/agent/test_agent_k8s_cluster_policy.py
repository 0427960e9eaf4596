"""The real agent against the fake API server (HTTP, the official client) with the Network
Policy API's CRDs: absent at start, it runs, gets ready, enforces NetworkPolicy and says once
per kind that the CRD is not installed; installed, its ClusterNetworkPolicies,
AdminNetworkPolicies and BaselineAdminNetworkPolicy are read and enforced with packets, by
tier and priority, changes and deletions followed through the watch; an invalid version is
rejected with its message and the previous one stays in force; a domainNames peer is said once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.agent.harness import NodeHarness, eventually, policy

pytestmark = pytest.mark.kernel

KINDS = ("ClusterNetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy")
V2 = "policy.networking.k8s.io/v1alpha2"
V1 = "policy.networking.k8s.io/v1alpha1"


def _ns(name: str) -> dict[str, Any]:
    return {"matchLabels": {"kubernetes.io/metadata.name": name}}


def anp_deny_y_to_x(priority: int = 5) -> dict[str, Any]:
    return {"apiVersion": V1, "kind": "AdminNetworkPolicy", "metadata": {"name": "deny-y"},
            "spec": {"priority": priority, "subject": {"namespaces": _ns("x")},
                     "ingress": [{"name": "deny-from-y", "action": "Deny",
                                  "from": [{"namespaces": _ns("y")}],
                                  "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}]}]}}


CNP_ACCEPT_Y_TO_A = {
    "apiVersion": V2, "kind": "ClusterNetworkPolicy", "metadata": {"name": "accept-y-to-a"},
    "spec": {"tier": "Admin", "priority": 1,
             "subject": {"pods": {"namespaceSelector": _ns("x"),
                                  "podSelector": {"matchLabels": {"app": "a"}}}},
             "ingress": [{"name": "from-y", "action": "Accept",
                          "from": [{"namespaces": _ns("y")}]}]},
}
BANP_DENY_UDP_IN_X = {
    "apiVersion": V1, "kind": "BaselineAdminNetworkPolicy", "metadata": {"name": "default"},
    "spec": {"subject": {"namespaces": _ns("x")},
             "ingress": [{"name": "no-udp", "action": "Deny", "from": [{"namespaces": {}}],
                          "ports": [{"portNumber": {"protocol": "UDP", "port": 81}}]}]},
}
CNP_DOMAINS = {
    "apiVersion": V2, "kind": "ClusterNetworkPolicy", "metadata": {"name": "domains"},
    "spec": {"tier": "Admin", "priority": 900, "subject": {"namespaces": _ns("y")},
             "egress": [{"name": "no-example", "action": "Deny",
                         "to": [{"domainNames": ["*.example.com"]}]}]},
}


def _log(h: NodeHarness) -> list[dict[str, Any]]:
    lines = []
    for line in h.log_path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def test_crds_absent_then_installed(tmp_path: Path) -> None:
    h = NodeHarness(tmp_path)
    for kind in KINDS:
        h.api.uninstall_crd(kind)
    try:
        h.start()  # ready although none of the three is served
        said = [e["kind"] for e in _log(h) if "its CRD is not installed" in e.get("event", "")]
        assert sorted(said) == sorted(KINDS)
        h.api.create(policy("x", "a-from-b", {
            "podSelector": {"matchLabels": {"app": "a"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}]}))
        h.expect("y/c", "x/a", False)  # NetworkPolicy enforced as usual
        h.api.delete("NetworkPolicy", "a-from-b", "x")
        h.expect("y/c", "x/a", True)
        assert h.ready()

        # Installed, with policies: the source lists again after 30 s (tests/sources cover
        # it, tests/sources/test_kubernetes_cluster_policy.py); a restart reads them at once.
        for kind in KINDS:
            h.api.install_crd(kind)
        h.api.create(anp_deny_y_to_x())
        h.api.create(BANP_DENY_UDP_IN_X)
        h.kill_agent()
        h.start_agent()
        h.expect("y/c", "x/a", False)  # Admin Deny, TCP 80
        assert h.reach("x/b", "x/a") and h.reach("y/c", "x/b", 80) is False
        h.expect("y/c", "x/a", False, 81, "UDP")  # the Baseline's Deny
        h.expect("x/b", "x/a", False, 81, "UDP")
        assert h.reach("x/a", "y/c", 81, "UDP"), "y is not the Baseline's subject"

        # Through the watch: an Admin Accept of a lower priority number wins; deleted, the
        # Deny is back (an established flow's next packet included: other tests).
        h.api.create(CNP_ACCEPT_Y_TO_A)
        h.expect("y/c", "x/a", True)
        assert not h.reach("y/c", "x/b")
        h.api.delete("ClusterNetworkPolicy", "accept-y-to-a")
        h.expect("y/c", "x/a", False)

        # A NetworkPolicy allowing UDP overrides the Baseline, not the Admin tier.
        h.api.create(policy("x", "udp-from-y", {
            "podSelector": {}, "ingress": [{"from": [{"namespaceSelector": _ns("y")}]}]}))
        h.expect("y/c", "x/a", True, 81, "UDP")
        h.expect("x/b", "x/a", False, 81, "UDP")  # isolated now, and not from y
        assert not h.reach("y/c", "x/a"), "the Admin Deny stays"
        h.api.delete("NetworkPolicy", "udp-from-y", "x")

        # An invalid version: rejected with its message, the previous one stays in force.
        h.api.update(anp_deny_y_to_x(priority=1001))
        eventually(lambda: any("deny-y" in m and "spec.priority" in m
                               for m in h.status()["invalid_objects"]), 5, "rejection listed")
        assert not h.reach("y/c", "x/a")
        assert 'enforcer_invalid_objects_total{kind="AdminNetworkPolicy"} 1.0' in h.metrics()
        h.api.update(anp_deny_y_to_x(priority=6))  # valid again
        h.api.delete("AdminNetworkPolicy", "deny-y")
        h.expect("y/c", "x/a", True)

        # domainNames: match nothing, said once for the policy.
        h.api.create(CNP_DOMAINS)
        h.api.update({**CNP_DOMAINS, "metadata": {"name": "domains", "labels": {"v": "2"}}})
        eventually(lambda: any("domainNames" in e.get("event", "") for e in _log(h)), 5,
                   "domainNames said")
        h.expect("y/c", "x/a", True)
        said = [e for e in _log(h) if "domainNames" in e.get("event", "")]
        assert len(said) == 1 and said[0]["domain_names"] == ["*.example.com"]

        # The CRD removed: its objects are gone (the source relists it as empty).
        h.api.uninstall_crd("BaselineAdminNetworkPolicy")
        h.expect("x/b", "x/a", True, 81, "UDP")
    finally:
        h.stop()
