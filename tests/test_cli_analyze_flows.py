"""`enforcer analyze DIR --flows FLOWS.jsonl`: recorded flows replayed against manifests.

JSON contract, table, reasons, exit codes (--fail-on-deny, --strict, usage), line-numbered
errors, stdin, --staged, and pods found by address when the manifests name them otherwise.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from enforcer.cli import main
from enforcer.flows.record import FlowRecord
from enforcer.model.objects import STAGED_POLICY_API

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "examples" / "three-tier")
ENFORCER = str(Path(sys.executable).parent / "enforcer")

WEB_TO_API = FlowRecord(
    "frontend/web", "backend/api", 8080, "TCP", "ingress", "allowed",
    policies=("backend/backend-from-frontend",), reason="forwarded",
    source_ip="198.18.1.10", destination_ip="198.18.2.20", node="node2", count=4,
)  # fmt: skip
WEB_TO_DB = FlowRecord(
    "frontend/web", "database/postgres", 5432, "TCP", "egress", "denied",
    policies=("frontend/default-deny-all",), reason="policy_denied",
)  # fmt: skip
API_TO_DNS = FlowRecord("backend/api", "kube-system/coredns", 53, "UDP", "egress", "allowed")
API_TO_OUTSIDE = FlowRecord("backend/api", "192.0.2.7", 443, "TCP", "egress", "denied")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def flows_file(tmp_path: Path, *lines: FlowRecord | str, name: str = "flows.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join((x if isinstance(x, str) else x.to_line()) + "\n" for x in lines))
    return str(path)


def staged_file(tmp_path: Path, *docs: dict[str, Any]) -> str:
    folder = tmp_path / "staged"
    folder.mkdir()
    (folder / "staged.yaml").write_text(yaml.safe_dump_all(docs))
    return str(folder)


def staged_policy(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": STAGED_POLICY_API,
        "kind": "StagedNetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podSelector": {}, **spec},
    }


def test_json_is_each_record_with_the_replays_verdict_and_policies(capsys, tmp_path):
    path = flows_file(tmp_path, WEB_TO_API, WEB_TO_DB, API_TO_DNS, API_TO_OUTSIDE)
    code, out, err = run_cli(capsys, "analyze", EXAMPLE, "--flows", path, "--output", "json")
    assert code == 0 and "warning" not in err
    doc = json.loads(out)
    assert list(doc) == ["flows"]
    flows = doc["flows"]
    records = [WEB_TO_API, WEB_TO_DB, API_TO_DNS, API_TO_OUTSIDE]
    for flow, record in zip(flows, records, strict=True):
        own = record.to_json()
        assert set(flow) == set(own) | {"allowed", "policies"}
        assert {k: v for k, v in flow.items() if k not in ("allowed", "policies")} == {
            k: v for k, v in own.items() if k != "policies"
        }
    assert [f["allowed"] for f in flows] == [True, False, True, False]
    # Allowed: the policies whose rules allow it, both sides.
    assert flows[0]["policies"] == ["frontend/frontend-to-backend", "backend/backend-from-frontend"]
    assert flows[2]["policies"] == ["backend/allow-dns"]  # coredns is not isolated
    # Denied: the isolating policies of each denying side.
    assert flows[1]["policies"] == [
        "frontend/allow-dns",
        "frontend/default-deny-all",
        "frontend/frontend-to-backend",
        "database/database-from-backend",
        "database/default-deny-all",
    ]
    assert flows[3]["policies"] == [
        "backend/allow-dns",
        "backend/backend-to-database",
        "backend/default-deny-all",
    ]


def test_table_has_kubectl_columns_and_says_why(capsys, tmp_path):
    path = flows_file(tmp_path, WEB_TO_API, WEB_TO_DB, API_TO_OUTSIDE)
    code, out, _ = run_cli(capsys, "analyze", EXAMPLE, "--flows", path)
    assert code == 0
    head, *rows, summary = out.splitlines()
    assert head.split() == [
        "SOURCE", "DESTINATION", "PORT", "PROTOCOL", "VERDICT", "POLICIES", "REASON"
    ]  # fmt: skip
    assert rows[0].split()[:5] == ["frontend/web", "backend/api", "8080", "TCP", "allowed"]
    assert (
        "allowed: frontend/web egress allowed by frontend/frontend-to-backend rule 0; "
        "backend/api ingress allowed by backend/backend-from-frontend rule 0"
    ) in rows[0]
    assert rows[1].split()[:5] == ["frontend/web", "database/postgres", "5432", "TCP", "denied"]
    assert (
        "denied: frontend/web isolated for egress by frontend/allow-dns, "
        "frontend/default-deny-all, frontend/frontend-to-backend, no rule allows "
        "database/postgres; database/postgres isolated for ingress by "
        "database/database-from-backend, database/default-deny-all, no rule allows frontend/web"
    ) in rows[1]
    assert rows[2].endswith("no rule allows 192.0.2.7")
    assert summary == "3 flow(s): 2 denied"
    # Columns line up: every row's VERDICT starts where the header's does.
    column = head.index("VERDICT")
    assert all(row[column:].startswith(("allowed", "denied")) for row in rows)


def test_fail_on_deny_exits_1_only_when_a_flow_would_be_denied(capsys, tmp_path):
    denied = flows_file(tmp_path, WEB_TO_API, WEB_TO_DB, name="denied.jsonl")
    allowed = flows_file(tmp_path, WEB_TO_API, API_TO_DNS, name="allowed.jsonl")
    assert run_cli(capsys, "analyze", EXAMPLE, "--flows", denied)[0] == 0
    assert run_cli(capsys, "analyze", EXAMPLE, "--flows", denied, "--fail-on-deny")[0] == 1
    assert run_cli(capsys, "analyze", EXAMPLE, "--flows", allowed, "--fail-on-deny")[0] == 0
    code, out, _ = run_cli(
        capsys, "analyze", EXAMPLE, "--flows", denied, "--fail-on-deny", "--output", "json"
    )
    assert code == 1 and len(json.loads(out)["flows"]) == 2  # the report is still printed


def test_a_pod_self_flow_and_an_empty_file(capsys, tmp_path):
    itself = FlowRecord("backend/api", "backend/api", 9, "TCP", "egress", "allowed")
    code, out, _ = run_cli(capsys, "analyze", EXAMPLE, "--flows", flows_file(tmp_path, itself))
    assert code == 0 and "allowed: a pod may always reach itself" in out
    empty = flows_file(tmp_path, "", name="empty.jsonl")
    code, out, _ = run_cli(capsys, "analyze", EXAMPLE, "--flows", empty, "--output", "json")
    assert code == 0 and json.loads(out) == {"flows": []}
    code, out, _ = run_cli(capsys, "analyze", EXAMPLE, "--flows", empty, "--fail-on-deny")
    assert code == 0 and out.strip() == "(no flows)"


BAD_LINES = [
    WEB_TO_API,
    "",
    "{not json",
    json.dumps({**WEB_TO_DB.to_json(), "port": "5432"}),
    WEB_TO_DB,
    json.dumps({**WEB_TO_DB.to_json(), "direction": "sideways"}),
]


def test_bad_lines_are_reported_with_file_line_and_field_and_skipped(capsys, tmp_path):
    path = flows_file(tmp_path, *BAD_LINES)
    code, out, err = run_cli(capsys, "analyze", EXAMPLE, "--flows", path, "--output", "json")
    assert code == 0
    assert [f["destination"] for f in json.loads(out)["flows"]] == [
        "backend/api",
        "database/postgres",
    ]
    lines = err.splitlines()
    assert f"warning: {path}:3: (line): not JSON" in lines[0]
    assert lines[1].startswith(f"warning: {path}:4: port: must be a port number")
    assert lines[2].startswith(f"warning: {path}:6: direction: must be one of ingress, egress")
    assert all(line.endswith("(line skipped)") for line in lines)


def test_strict_fails_on_the_first_bad_line_with_exit_2(capsys, tmp_path):
    path = flows_file(tmp_path, *BAD_LINES)
    code, out, err = run_cli(capsys, "analyze", EXAMPLE, "--flows", path, "--strict")
    assert code == 2 and out == ""
    assert err.startswith(f"error: {path}:3: (line): not JSON") and ":4:" not in err


def test_a_pod_the_manifests_lack_is_found_by_address_or_reported_by_line(capsys, tmp_path):
    renamed = FlowRecord(
        "frontend/web-5d8f", "backend/api-0", 8080, "TCP", "ingress", "allowed",
        source_ip="198.18.1.10", destination_ip="198.18.2.20",
    )  # fmt: skip
    gone = FlowRecord(
        "frontend/gone", "backend/api", 8080, "TCP", "ingress", "allowed", source_ip="10.9.9.9"
    )
    nameless = FlowRecord("frontend/gone", "backend/api", 8080, "TCP", "ingress", "allowed")
    outside = FlowRecord("192.0.2.1", "203.0.113.5", 80, "TCP", "ingress", "denied")
    path = flows_file(tmp_path, renamed, gone, nameless, outside)
    code, out, err = run_cli(capsys, "analyze", EXAMPLE, "--flows", path, "--output", "json")
    assert code == 0
    (flow,) = json.loads(out)["flows"]
    assert flow["source"] == "frontend/web-5d8f" and flow["allowed"] is True
    assert err.splitlines() == [
        f"warning: {path}:2: source: unknown pod frontend/gone (not in the manifests, and "
        "source_ip 10.9.9.9 is no pod's) (line skipped)",
        f"warning: {path}:3: source: unknown pod frontend/gone (not in the manifests, and the "
        "record has no source_ip) (line skipped)",
        f"warning: {path}:4: (line): neither 192.0.2.1 nor 203.0.113.5 is a pod of the "
        "manifests (line skipped)",
    ]
    code, out, err = run_cli(capsys, "analyze", EXAMPLE, "--flows", path, "--strict")
    assert code == 2 and out == "" and err.startswith(f"error: {path}:2: source: unknown pod")


def test_flows_from_stdin(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(WEB_TO_DB.to_line() + "\n{}\n"))
    code, out, err = run_cli(
        capsys, "analyze", EXAMPLE, "--flows", "-", "--output", "json", "--fail-on-deny"
    )
    assert code == 1 and json.loads(out)["flows"][0]["allowed"] is False
    assert "warning: <stdin>:2: port:" in err


def test_console_script_reads_stdin_and_exits_1_on_deny():
    proc = subprocess.run(
        [ENFORCER, "analyze", EXAMPLE, "--flows", "-", "--fail-on-deny"],
        input=WEB_TO_API.to_line() + "\n" + WEB_TO_DB.to_line() + "\n",
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    assert "1 denied" in proc.stdout


def test_staged_policies_count_only_with_staged(capsys, tmp_path):
    """A staged lockdown of the backend's ingress would break web -> api: only --staged says
    so, naming it; a staged replacement of the database's ingress opens web -> postgres."""
    staged = staged_file(
        tmp_path,
        staged_policy("backend", "backend-from-frontend", policyTypes=["Ingress"]),
        staged_policy(
            "database",
            "database-from-backend",
            podSelector={"matchLabels": {"app": "postgres"}},
            ingress=[{"from": [{"namespaceSelector": {}}]}],
        ),
    )
    path = flows_file(tmp_path, WEB_TO_API)
    code, out, err = run_cli(
        capsys, "analyze", EXAMPLE, staged, "--flows", path, "--output", "json", "--fail-on-deny"
    )
    assert code == 0 and json.loads(out)["flows"][0]["allowed"] is True
    assert "2 StagedNetworkPolicy object(s) not applied" in err
    code, out, err = run_cli(
        capsys, "analyze", EXAMPLE, staged, "--flows", path, "--staged", "--fail-on-deny"
    )
    assert code == 1 and "not applied" not in err
    assert "backend/api isolated for ingress by backend/backend-from-frontend, " in out
    code, out, _ = run_cli(
        capsys, "analyze", EXAMPLE, staged, "--staged", "--port", "5432", "--output", "json"
    )
    # As if applied: postgres's ingress is open to every namespace (web's egress still not);
    # without --staged the matrix is the enforced one, the staged policies ignored.
    matrix = json.loads(out)["matrix"]
    assert matrix["kube-system/coredns"]["database/postgres"]
    assert not matrix["frontend/web"]["database/postgres"]
    code, out, _ = run_cli(capsys, "analyze", EXAMPLE, staged, "--port", "5432", "--output", "json")
    code, enforced, _ = run_cli(capsys, "analyze", EXAMPLE, "--port", "5432", "--output", "json")
    assert json.loads(out) == json.loads(enforced)
    assert not json.loads(out)["matrix"]["kube-system/coredns"]["database/postgres"]


def test_an_invalid_staged_policy_is_reported_like_a_networkpolicy(capsys, tmp_path):
    staged = staged_file(
        tmp_path,
        staged_policy("backend", "bad", ingress=[{"ports": [{"port": 80, "endPort": 70}]}]),
    )
    path = flows_file(tmp_path, WEB_TO_API)
    code, _, err = run_cli(capsys, "analyze", EXAMPLE, staged, "--flows", path, "--staged")
    assert code == 0
    assert (
        f"warning: {staged}/staged.yaml: StagedNetworkPolicy backend/bad: field "
        "spec.ingress[0].ports[0].endPort: must be greater than or equal to `port` (80) "
        "(object skipped)"
    ) in err
    code, out, _ = run_cli(
        capsys, "analyze", EXAMPLE, staged, "--flows", path, "--staged", "--strict"
    )
    assert code == 2 and out == ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fail-on-deny"], "--fail-on-deny needs --flows"),
        (["--flows", "f.jsonl", "--port", "80"], "drop --port"),
        (["--flows", "f.jsonl", "--explain", "a/b", "c/d"], "drop --explain"),
        (["--flows", "f.jsonl", "--via", "service", "--protocol", "UDP"], "drop --protocol, --via"),
        (["--flows", "missing.jsonl"], "missing.jsonl: cannot read"),
    ],
    ids=["fail-on-deny-alone", "port", "explain", "via-protocol", "missing-file"],
)
def test_usage_errors_exit_2(capsys, tmp_path, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.jsonl").write_text(WEB_TO_API.to_line() + "\n")
    code, out, err = run_cli(capsys, "analyze", EXAMPLE, *extra)
    assert code == 2 and out == "" and message in err


def test_the_staged_example_breaks_only_the_recorded_tcp_dns_flow(capsys):
    """examples/staged: the README's CI step passes without --staged, fails with it."""
    staged, flows = (
        str(REPO / "examples" / "staged"),
        str(REPO / "examples" / "staged" / "flows.jsonl"),
    )
    argv = ["analyze", EXAMPLE, staged, "--flows", flows, "--fail-on-deny", "--output", "json"]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and all(f["allowed"] for f in json.loads(out)["flows"])
    code, out, _ = run_cli(capsys, *argv, "--staged")
    assert code == 1
    denied = [f for f in json.loads(out)["flows"] if not f["allowed"]]
    assert [(f["destination"], f["port"], f["protocol"]) for f in denied] == [
        ("kube-system/coredns", 53, "TCP")
    ]
    assert "frontend/allow-dns" in denied[0]["policies"]
