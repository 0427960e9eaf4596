"""`enforcer advise --baseline`: the Baseline default from a flows file, as YAML and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from enforcer.advise import advice as advice_module
from enforcer.model.clusterpolicy import BASELINE
from enforcer.model.loader import load_paths

from .builders import API, DB, WEB, flow, netpol, shop, write_cluster
from .test_cli import GOOD, run, write_flows


def test_baseline_yaml_reads_back_as_baseline_policies(capsys, tmp_path: Path) -> None:
    cluster = write_cluster(tmp_path / "cluster", shop())
    flows = write_flows(tmp_path / "f.jsonl", [*GOOD, flow(API[0], "192.0.2.7", 443)])
    code, out, err = run(capsys, cluster, "--flows", flows, "--baseline")
    assert code == 0
    (tmp_path / "advice.yaml").write_text(out)
    loaded = load_paths([tmp_path / "advice.yaml"])
    assert loaded.errors == [] and loaded.objects == []
    assert [(p.name, p.tier, p.priority) for p in loaded.cluster_policies] == [
        ("advised-baseline-data", BASELINE, 1000),
        ("advised-baseline-kube-system", BASELINE, 1000),
        ("advised-baseline-shop", BASELINE, 1000)]
    assert "# Baseline default for namespace shop" in out
    assert "a NetworkPolicy in shop overrides it there" in out
    assert "#   shop/api-5d8f7c9b6-0 -> 192.0.2.7 TCP/443: 1 time" in out
    assert ("advised a Baseline default for 3 namespaces (3 ClusterNetworkPolicies, tier "
            "Baseline, priority 1000); every one of 4 observed flows stays allowed;") in err
    assert "namespace pairs: data -> kube-system (" in err
    assert "warning: kube-system get a default too" in err


def test_baseline_json_lists_what_it_newly_denies(capsys, tmp_path: Path) -> None:
    cluster = write_cluster(tmp_path / "cluster", shop())
    flows = write_flows(tmp_path / "f.jsonl", GOOD)
    code, out, _ = run(capsys, cluster, "--flows", flows, "--baseline", "--output", "json",
                       "--namespace", "data")
    assert code == 0
    doc = json.loads(out)
    assert [p["metadata"]["name"] for p in doc["policies"]] == ["advised-baseline-data"]
    assert [(r["direction"], r["action"]) for r in doc["rules"]] == [
        ("ingress", "Accept"), ("ingress", "Deny"), ("egress", "Deny")]
    assert doc["rules"][0]["flows"][0]["source"] == API[0]
    denied = {(d["source"], d["destination"]) for d in doc["proof"]["newly_denied_namespaces"]}
    assert ("shop", "data") in denied and ("data", "shop") in denied
    assert doc["proof"]["all_allowed"] is True


def test_a_flow_a_teams_networkpolicy_denies_is_said_not_blamed(capsys, tmp_path) -> None:
    docs = [*shop(), netpol("data", "deny-all", policyTypes=["Ingress"])]
    cluster = write_cluster(tmp_path / "cluster", docs)
    flows = write_flows(tmp_path / "f.jsonl", [flow(WEB[0], DB, 5432, verdict="audit")])
    code, out, err = run(capsys, cluster, "--flows", flows, "--baseline")
    assert code == 0 and len(list(yaml.safe_load_all(out))) == 2
    assert ("warning: still denied by policies advise does not change: "
            f"{WEB[0]} -> {DB} TCP/5432: denied at ingress of {DB} (data/deny-all)") in err


def test_an_invalid_baseline_is_a_bug_and_not_printed(capsys, monkeypatch, tmp_path) -> None:
    build = advice_module.build_baseline

    def out_of_range(*args, **kwargs):
        policies, warnings = build(*args, **kwargs)
        policies[0].manifest["spec"]["priority"] = 1001
        return policies, warnings

    monkeypatch.setattr(advice_module, "build_baseline", out_of_range)
    cluster = write_cluster(tmp_path / "cluster", shop())
    code, out, err = run(capsys, cluster, "--flows", write_flows(tmp_path / "f.jsonl", GOOD),
                         "--baseline")
    assert (code, out) == (3, "")
    assert "advised an invalid policy" in err and "spec.priority" in err


def test_a_baseline_that_fails_its_proof_is_not_printed(capsys, monkeypatch, tmp_path) -> None:
    build = advice_module.build_baseline

    def forgetful(*args, **kwargs):  # a bug: only the final Deny is left
        policies, warnings = build(*args, **kwargs)
        for p in policies:
            p.manifest["spec"]["ingress"] = p.manifest["spec"]["ingress"][-1:]
        return policies, warnings

    monkeypatch.setattr(advice_module, "build_baseline", forgetful)
    cluster = write_cluster(tmp_path / "cluster", shop())
    code, out, err = run(capsys, cluster, "--flows", write_flows(tmp_path / "f.jsonl", GOOD),
                         "--baseline")
    assert (code, out) == (3, "")
    assert (f"{WEB[0]} -> {API[0]} TCP/8080: denied at ingress of {API[0]} (baseline policy "
            "advised-baseline-shop (priority 1000) ingress rule 0 'deny-unobserved')") in err
