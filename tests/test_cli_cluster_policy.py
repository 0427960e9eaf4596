"""Cluster-scoped policies through the real CLI: analyze's matrix and --explain (text and JSON)
name the tier, policy, priority and rule that decided; lint's checks on them; a validation
error names file, object and field; and neither command warns any more that the agent does not
enforce them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

CNP_API = "policy.networking.k8s.io/v1alpha2"
# What analyze and lint said of them before the agent enforced them: never said now.
STALE_WARNING = "the agent does not enforce cluster-scoped policies"


def enforcer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "enforcer.cli", *args],
                          capture_output=True, text=True, timeout=60)


def namespace(name: str, tenant: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"tenant": tenant}}}


def pod(ns: str, name: str, ip: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": ns, "name": name, "labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80,
                                                             "name": "http"}]}]},
            "status": {"phase": "Running", "podIPs": [{"ip": ip}]}}


def cnp(name: str, tier: str, priority: int, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": CNP_API, "kind": "ClusterNetworkPolicy", "metadata": {"name": name},
            "spec": {"tier": tier, "priority": priority, "subject": {"namespaces": {}},
                     **spec}}


TENANT_ISOLATION = cnp("tenant-isolation", "Admin", 10, ingress=[
    {"name": "allow-monitoring", "action": "Accept",
     "from": [{"namespaces": {"matchLabels": {"tenant": "ops"}}}]},
    {"name": "pass-own-tenant", "action": "Pass",
     "from": [{"namespaces": {"matchLabels": {"tenant": "a"}}}]},
    {"name": "deny-other-tenants", "action": "Deny", "from": [{"namespaces": {}}]},
])


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump_all([
        namespace("a1", "a"), namespace("a2", "a"), namespace("b1", "b"),
        namespace("ops", "ops"),
        pod("a1", "web", "10.0.0.1"), pod("a2", "api", "10.0.0.2"), pod("b1", "db", "10.0.0.3"),
        pod("ops", "prom", "10.0.0.4"),
    ]))
    (tmp_path / "guardrails.yaml").write_text(yaml.safe_dump_all([
        TENANT_ISOLATION,
        cnp("default-deny", "Baseline", 100, ingress=[
            {"name": "deny-all", "action": "Deny", "from": [{"namespaces": {}}]}]),
    ]))
    return tmp_path


def test_analyze_matrix_applies_the_tiers(cluster: Path) -> None:
    proc = enforcer("analyze", str(cluster), "--port", "80", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    matrix = json.loads(proc.stdout)["matrix"]
    assert matrix["ops/prom"]["b1/db"] is True  # admin Accept
    assert matrix["b1/db"]["a1/web"] is False  # admin Deny
    assert matrix["a2/api"]["a1/web"] is False  # passed; no NetworkPolicy; baseline Deny
    assert matrix["a1/web"]["a1/web"] is True  # a pod may always reach itself
    assert STALE_WARNING not in proc.stderr  # enforced: nothing to warn about


def test_explain_names_tier_priority_policy_and_rule(cluster: Path) -> None:
    proc = enforcer("analyze", str(cluster), "--port", "80", "--explain", "b1/db", "a1/web")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "b1/db -> a1/web TCP/80: DENIED",
        "  egress of b1/db: not isolated (no policy selects it for Egress): allowed",
        "  ingress of a1/web: denied by admin policy tenant-isolation (priority 10) ingress "
        "rule 2 'deny-other-tenants': DENIED here",
    ]
    proc = enforcer("analyze", str(cluster), "--port", "80", "--explain", "a2/api", "a1/web")
    assert "  ingress of a1/web: passed by admin policy tenant-isolation (priority 10) ingress "\
        "rule 1 'pass-own-tenant' to NetworkPolicy" in proc.stdout.splitlines()
    assert "  ingress of a1/web: not isolated by a NetworkPolicy; denied by baseline policy "\
        "default-deny (priority 100) ingress rule 0 'deny-all': DENIED here" \
        in proc.stdout.splitlines()


def test_explain_json_carries_the_same(cluster: Path) -> None:
    proc = enforcer("analyze", str(cluster), "--port", "80", "--explain", "a2/api", "a1/web",
                    "--output", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["allowed"] is False
    ingress = doc["ingress"]
    assert ingress["decided_by"] == "baseline" and ingress["allowed"] is False
    assert ingress["admin"] == {
        "tier": "Admin", "kind": "ClusterNetworkPolicy", "policy": "tenant-isolation",
        "priority": 10, "rule": 1, "rule_name": "pass-own-tenant", "field": "spec.ingress[1]",
        "action": "Pass"}
    assert ingress["baseline"]["policy"] == "default-deny"
    assert ingress["baseline"]["action"] == "Deny"
    assert doc["egress"]["decided_by"] == "default"


def test_a_network_policy_decides_what_the_admin_tier_passes(cluster: Path) -> None:
    (cluster / "np.yaml").write_text(yaml.safe_dump({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"namespace": "a1", "name": "from-tenant-a"},
        "spec": {"podSelector": {}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"tenant": "a"}}}]}]}}))
    proc = enforcer("analyze", str(cluster), "--port", "80", "--explain", "a2/api", "a1/web")
    assert proc.stdout.splitlines()[0] == "a2/api -> a1/web TCP/80: ALLOWED"
    assert "isolated by a1/from-tenant-a; allowed by a1/from-tenant-a ingress rule 0" \
        in proc.stdout


def test_lint_checks_cluster_policies(cluster: Path) -> None:
    (cluster / "more.yaml").write_text(yaml.safe_dump_all([
        cnp("egress-guard", "Admin", 10, egress=[
            {"name": "allow-registry", "action": "Accept",
             "to": [{"domainNames": ["registry.example.com"]}]},
            {"name": "deny-internet", "action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]},
            {"name": "deny-ten", "action": "Deny", "to": [{"networks": ["10.0.0.0/8"]}]},
        ]),
    ]))
    proc = enforcer("lint", str(cluster), "--output", "json")
    assert proc.returncode == 0, proc.stderr  # warnings only
    found = {(f["check"], f["object"], f["field"]) for f in json.loads(proc.stdout)["findings"]}
    assert found >= {
        ("domain-names-not-enforced", "ClusterNetworkPolicy egress-guard",
         "spec.egress[0].to[0].domainNames"),
        ("cluster-shadowed-rule", "ClusterNetworkPolicy egress-guard", "spec.egress[2]"),
        ("pass-without-networkpolicy", "ClusterNetworkPolicy tenant-isolation",
         "spec.ingress[1]"),
        ("baseline-deny-not-overridden", "ClusterNetworkPolicy default-deny",
         "spec.ingress[0]"),
    }
    # egress-guard's subject is every namespace; a subject of no pod is said
    assert not any(check == "cluster-policy-selects-no-pod" for check, _, _ in found)
    # Same priority, only one has ingress rules: they never meet; egress-guard has no ingress.
    assert not any(check == "equal-priority" for check, _, _ in found)
    assert STALE_WARNING not in proc.stderr
    assert enforcer("lint", str(cluster), "--fail-on", "warning").returncode == 1


def test_a_subject_of_no_pod_is_said(cluster: Path) -> None:
    nobody = cnp("nobody", "Admin", 7, ingress=[{"action": "Deny",
                                                 "from": [{"namespaces": {}}]}])
    nobody["spec"]["subject"] = {"namespaces": {"matchLabels": {"tenant": "gone"}}}
    (cluster / "none.yaml").write_text(yaml.safe_dump(nobody))
    proc = enforcer("lint", str(cluster), "--output", "json")
    found = [(f["check"], f["field"]) for f in json.loads(proc.stdout)["findings"]
             if f["object"] == "ClusterNetworkPolicy nobody"]
    assert found == [("cluster-policy-selects-no-pod", "spec.subject")]


def test_equal_priorities_are_ordered_by_name_and_lint_warns(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump_all([
        namespace("x", "a"), pod("x", "web", "10.0.0.1"), pod("x", "api", "10.0.0.2"),
        cnp("b-allow", "Admin", 5, ingress=[{"action": "Accept", "from": [{"namespaces": {}}]}]),
        cnp("a-deny", "Admin", 5, ingress=[{"action": "Deny", "from": [{"namespaces": {}}]}]),
    ]))
    proc = enforcer("analyze", str(tmp_path), "--port", "80", "--explain", "x/api", "x/web")
    assert "denied by admin policy a-deny (priority 5) ingress rule 0" in proc.stdout
    proc = enforcer("lint", str(tmp_path), "--output", "json")
    [finding] = [f for f in json.loads(proc.stdout)["findings"] if f["check"] == "equal-priority"]
    assert finding["object"] == "ClusterNetworkPolicy b-allow"
    assert "here a-deny (ClusterNetworkPolicy) is evaluated first" in finding["message"]


def test_an_invalid_cluster_policy_names_file_object_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    bad = cnp("too-high", "Admin", 1001)
    path.write_text(yaml.safe_dump_all([namespace("x", "a"), bad]))
    proc = enforcer("lint", str(path), "--output", "json")
    assert proc.returncode == 2  # invalid input
    [finding] = json.loads(proc.stdout)["findings"]
    assert finding == {"level": "error", "check": "invalid", "object":
                       "ClusterNetworkPolicy too-high", "message": "1001 out of range 0-1000",
                       "field": "spec.priority", "origin": str(path)}
    proc = enforcer("analyze", str(path), "--port", "80", "--strict")
    assert proc.returncode == 2
    assert (f"error: {path}: ClusterNetworkPolicy too-high: field spec.priority: 1001 out of "
            "range 0-1000") in proc.stderr


def test_replayed_flows_name_the_cluster_policy_that_decided(cluster: Path) -> None:
    from enforcer.flows.record import FlowRecord

    flows = cluster / "flows.jsonl"  # not a manifest suffix: analyze does not read it
    flows.write_text("\n".join(json.dumps(FlowRecord(src, dst, 80, "TCP", "egress",
                                                     "allowed").to_json())
                               for src, dst in (("b1/db", "a1/web"), ("ops/prom", "b1/db"))))
    proc = enforcer("analyze", str(cluster), "--flows", str(flows), "--output", "json")
    assert proc.returncode == 0, proc.stderr
    denied, accepted = json.loads(proc.stdout)["flows"]
    assert denied["allowed"] is False
    assert denied["policies"] == ["ClusterNetworkPolicy/tenant-isolation"]
    assert accepted["allowed"] is True
    assert accepted["policies"] == ["ClusterNetworkPolicy/tenant-isolation"]
    proc = enforcer("analyze", str(cluster), "--flows", str(flows))
    assert ("a1/web ingress denied by admin policy tenant-isolation (priority 10) ingress rule 2 "
            "'deny-other-tenants'") in proc.stdout


def test_the_example_guardrails_over_the_three_tier_app() -> None:
    """examples/cluster-guardrails: lint-clean over examples/three-tier; the Admin tier opens
    DNS to the database (its NetworkPolicies deny its egress) and keeps the frontend away
    from it, passing only the backend to the database's NetworkPolicies."""
    root = Path(__file__).parent.parent / "examples"
    paths = [str(root / "three-tier"), str(root / "cluster-guardrails")]
    proc = enforcer("lint", *paths)
    assert proc.returncode == 0 and proc.stdout.startswith("0 finding(s)"), proc.stdout
    proc = enforcer("analyze", *paths, "--port", "53", "--protocol", "UDP", "--output", "json")
    assert json.loads(proc.stdout)["matrix"]["database/postgres"]["kube-system/coredns"] is True
    proc = enforcer("analyze", *paths, "--port", "5432", "--explain", "frontend/web",
                    "database/postgres")
    assert ("ingress of database/postgres: denied by admin policy protect-database (priority "
            "20) ingress rule 1 'deny-others'") in proc.stdout
    proc = enforcer("analyze", *paths, "--port", "5432", "--explain", "backend/api",
                    "database/postgres")
    assert proc.stdout.startswith("backend/api -> database/postgres TCP/5432: ALLOWED")
