"""`enforcer advise`: output, stderr reports, exit codes, bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from enforcer.advise import advice as advice_module
from enforcer.cli import main
from enforcer.flows.record import FlowRecord
from enforcer.model.loader import load_paths

from .builders import API, DB, DNS, WEB, both_sides, flow, netpol, shop, write_cluster

REPO = Path(__file__).resolve().parents[2]
THREE_TIER = REPO / "examples" / "three-tier"


def write_flows(path: Path, records: list[FlowRecord], extra: list[str] = ()) -> str:
    path.write_text("".join(r.to_line() + "\n" for r in records) + "".join(
        line + "\n" for line in extra))
    return str(path)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["advise", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cluster(tmp_path: Path) -> str:
    return write_cluster(tmp_path / "cluster", shop())


GOOD = [*both_sides(WEB[0], API[0], 8080), flow(WEB[1], DNS, 53, "UDP"), flow(API[0], DB, 5432)]


def test_prints_proven_yaml_and_a_summary(capsys, tmp_path, cluster) -> None:
    code, out, err = run(capsys, cluster, "--flows", write_flows(tmp_path / "f.jsonl", GOOD))
    assert code == 0
    advice_file = tmp_path / "advice.yaml"
    advice_file.write_text(out)
    loaded = load_paths([advice_file])
    assert loaded.errors == [] and len(loaded.objects) == 8
    assert "advised 8 policies for 4 workloads; every one of 3 observed flows stays allowed;" \
        in err


def test_bad_flow_lines_are_reported_by_line_and_skipped(capsys, tmp_path, cluster) -> None:
    no_destination = '{"source": "a/b", "port": 1, "protocol": "TCP"}'
    flows = write_flows(tmp_path / "f.jsonl", GOOD, [no_destination, "not json"])
    code, out, err = run(capsys, cluster, "--flows", flows)
    assert code == 0 and out
    assert f"warning: {flows}:5: destination: must be a non-empty string" in err
    assert f"warning: {flows}:6: (line): not JSON" in err


def test_strict_fails_on_the_first_bad_flow_line(capsys, tmp_path, cluster) -> None:
    flows = write_flows(tmp_path / "f.jsonl", GOOD, ["not json"])
    code, out, err = run(capsys, cluster, "--flows", flows, "--strict")
    assert (code, out) == (2, "")
    assert f"error: {flows}:5: (line): not JSON" in err


def test_unknown_pods_are_reported_and_skipped(capsys, tmp_path, cluster) -> None:
    flows = write_flows(tmp_path / "f.jsonl", [*GOOD, flow("shop/ghost", API[0], 8080)])
    code, _, err = run(capsys, cluster, "--flows", flows)
    assert code == 0
    assert "note: unknown pod shop/ghost: 1 flow(s) skipped" in err


@pytest.mark.parametrize("argv, message", [
    (["--cidr-prefix", "33"], "--cidr-prefix 33 out of range 0-32"),
    (["--cidr-prefix-v6", "129"], "--cidr-prefix-v6 129 out of range 0-128"),
])
def test_bad_prefixes_are_refused(capsys, tmp_path, cluster, argv, message) -> None:
    flows = write_flows(tmp_path / "f.jsonl", GOOD)
    code, _, err = run(capsys, cluster, "--flows", flows, *argv)
    assert code == 2 and message in err


def test_missing_inputs_are_invalid_input(capsys, tmp_path, cluster) -> None:
    assert run(capsys, cluster, "--flows", str(tmp_path / "none.jsonl"))[0] == 2
    flows = write_flows(tmp_path / "f.jsonl", GOOD)
    assert run(capsys, str(tmp_path / "nothing"), "--flows", flows)[0] == 2


def test_nothing_to_learn_prints_nothing(capsys, tmp_path, cluster) -> None:
    flows = write_flows(tmp_path / "f.jsonl", [flow(WEB[0], DB, 5432, verdict="denied")])
    code, out, err = run(capsys, cluster, "--flows", flows)
    assert (code, out) == (0, "")
    assert "nothing advised" in err


def test_flows_from_standard_input_and_json_output(capsys, monkeypatch, tmp_path,
                                                   cluster) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(r.to_line() + "\n" for r in GOOD)))
    code, out, _ = run(capsys, cluster, "--flows", "-", "--output", "json", "--ingress-only")
    assert code == 0
    doc = json.loads(out)
    assert {p["spec"]["policyTypes"][0] for p in doc["policies"]} == {"Ingress"}


def test_an_advice_that_fails_its_proof_is_not_printed(capsys, monkeypatch, tmp_path,
                                                       cluster) -> None:
    build = advice_module.build_policies

    def forgetful(*args, **kwargs):  # a bug: the manifests lose their rules
        policies, warnings = build(*args, **kwargs)
        for p in policies:
            p.manifest["spec"][p.direction] = []
        return policies, warnings

    monkeypatch.setattr(advice_module, "build_policies", forgetful)
    code, out, err = run(capsys, cluster, "--flows", write_flows(tmp_path / "f.jsonl", GOOD))
    assert (code, out) == (3, "")
    assert "the advice does not allow these observed flows" in err
    assert f"{WEB[0]} -> {API[0]} TCP/8080: denied at egress of {WEB[0]}" in err


def test_an_invalid_manifest_is_a_bug_too(capsys, monkeypatch, tmp_path, cluster) -> None:
    build = advice_module.build_policies

    def misnamed(*args, **kwargs):
        policies, warnings = build(*args, **kwargs)
        policies[0].manifest["metadata"]["name"] = "Not_A_Name"
        return policies, warnings

    monkeypatch.setattr(advice_module, "build_policies", misnamed)
    code, out, err = run(capsys, cluster, "--flows", write_flows(tmp_path / "f.jsonl", GOOD))
    assert (code, out) == (3, "")
    assert "advised an invalid policy" in err and "metadata.name" in err


def test_existing_policies_stay_and_flows_they_deny_elsewhere_are_said(capsys,
                                                                      tmp_path) -> None:
    # The three-tier example with its policies: web -> postgres is audited (would be denied);
    # advising the frontend only cannot open the database's ingress.
    flows = write_flows(tmp_path / "f.jsonl", [
        flow("frontend/web", "backend/api", 8080),
        flow("frontend/web", "database/postgres", 5432, verdict="audit"),
    ])
    code, out, err = run(capsys, str(THREE_TIER), "--flows", flows, "--namespace", "frontend")
    assert code == 0
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(out)] == [
        "web-ingress", "web-egress"]
    assert ("warning: still denied by policies advise does not change: frontend/web -> "
            "database/postgres TCP/5432: denied at ingress of database/postgres "
            "(database/database-from-backend, database/default-deny-all)") in err
    assert "1 of 2 observed flows allowed (1 still denied by existing policies" in err


def test_an_existing_policy_in_the_cluster_dir_counts_in_the_proof(capsys, tmp_path) -> None:
    docs = [*shop(), netpol("shop", "deny-all", policyTypes=["Ingress", "Egress"])]
    cluster = write_cluster(tmp_path / "cluster", docs)
    flows = write_flows(tmp_path / "f.jsonl", [flow(WEB[0], API[0], 8080, verdict="audit")])
    code, _, err = run(capsys, cluster, "--flows", flows)
    assert code == 0 and "every one of 1 observed flows stays allowed" in err
    # Everything was denied before: advising takes nothing more away.
    assert "0 pod pairs newly denied" in err
