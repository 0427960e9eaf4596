"""`enforcer analyze`: matrices (JSON contract and table), explain, invalid input, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from enforcer.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "examples" / "three-tier")
ENFORCER = str(Path(sys.executable).parent / "enforcer")
PODS = ["backend/api", "database/postgres", "frontend/web", "kube-system/coredns"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, docs: list[dict]) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def pod(ns: str, name: str, labels: dict, ip: str | None = "10.0.0.1", **spec) -> dict:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}], **spec},
    }
    if ip:
        doc["status"] = {"phase": "Running", "podIPs": [{"ip": ip}]}
    return doc


def netpol(ns: str, name: str, **spec) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"podSelector": {}, **spec},
    }


def test_json_matrix_for_one_port_is_the_documented_contract(capsys):
    code, out, _ = run_cli(capsys, "analyze", EXAMPLE, "--port", "8080", "--output", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["port"] == 8080 and doc["protocol"] == "TCP"
    assert list(doc["matrix"]) == PODS and all(list(row) == PODS for row in doc["matrix"].values())
    allowed = {(s, d) for s, row in doc["matrix"].items() for d, ok in row.items() if ok and s != d}
    assert allowed == {("frontend/web", "backend/api")}
    assert all(doc["matrix"][p][p] for p in PODS)  # a pod may always reach itself


def test_without_port_every_declared_port_gets_a_matrix(capsys):
    code, out, _ = run_cli(capsys, "analyze", EXAMPLE, "--output", "json")
    assert code == 0
    docs = json.loads(out)
    assert [(d["port"], d["protocol"]) for d in docs] == [
        (53, "TCP"),
        (53, "UDP"),
        (80, "TCP"),
        (5432, "TCP"),
        (8080, "TCP"),
    ]
    dns = docs[1]["matrix"]
    assert dns["frontend/web"]["kube-system/coredns"] and dns["backend/api"]["kube-system/coredns"]
    assert not dns["database/postgres"]["kube-system/coredns"]  # the database has no egress
    code, out, _ = run_cli(capsys, "analyze", EXAMPLE, "--protocol", "UDP", "--output", "json")
    assert [(d["port"], d["protocol"]) for d in json.loads(out)] == [(53, "UDP")]


def test_table_marks_allowed_and_denied_with_a_legend(capsys):
    code, out, _ = run_cli(capsys, "analyze", EXAMPLE, "--port", "5432")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("Port 5432/TCP") and "OK = allowed" in lines[0]
    assert "-- = denied" in lines[0]
    row = next(line for line in lines if "backend/api" in line)
    assert row.split()[-4:] == ["OK", "OK", "--", "--"]  # api -> itself, api -> postgres
    assert "1 of 12 pairs allowed" in out


def test_explain_names_the_allowing_rules_and_the_isolating_policies(capsys):
    code, out, _ = run_cli(
        capsys, "analyze", EXAMPLE, "--explain", "frontend/web", "backend/api", "--port", "8080"
    )
    assert code == 0
    assert "ALLOWED" in out and "frontend/frontend-to-backend egress rule 0" in out
    assert "backend/backend-from-frontend ingress rule 0" in out
    code, out, _ = run_cli(
        capsys,
        "analyze",
        EXAMPLE,
        "--explain",
        "frontend/web",
        "database/postgres",
        "--port",
        "5432",
    )
    assert "DENIED" in out
    assert "egress of frontend/web: isolated by" in out and "DENIED here" in out
    code, out, _ = run_cli(
        capsys,
        "analyze",
        EXAMPLE,
        "--explain",
        "database/postgres",
        "kube-system/coredns",
        "--port",
        "53",
        "--protocol",
        "UDP",
        "--output",
        "json",
    )
    doc = json.loads(out)
    assert doc["allowed"] is False and doc["egress"]["isolating"] == ["database/default-deny-all"]
    assert doc["ingress"] == {"isolated": False, "allowed": True, "allowing": [], "isolating": []}


def test_explain_names_the_service_accounts_when_a_policy_selects_by_one(capsys, tmp_path):
    key = "policy.enforcer.dev/serviceaccount"
    docs = [
        pod("x", "db", {"app": "db"}, "10.0.0.1", serviceAccountName="db"),
        pod("x", "billing", {}, "10.0.0.2", serviceAccountName="billing"),
        pod("x", "web", {key: "billing"}, "10.0.0.3"),  # claims billing, runs as default
    ]
    plain = write(tmp_path, "plain.yaml", docs)
    code, out, _ = run_cli(capsys, "analyze", plain, "--explain", "x/web", "x/db", "--port", "80")
    assert code == 0 and "service accounts" not in out  # no policy selects by account
    path = write(tmp_path, "sa.yaml", [*docs, netpol(
        "x", "db-from-billing", podSelector={"matchLabels": {"app": "db"}},
        ingress=[{"from": [{"podSelector": {"matchLabels": {key: "billing"}}}]}])])
    code, out, _ = run_cli(capsys, "analyze", path, "--explain", "x/web", "x/db", "--port", "80")
    assert "DENIED" in out
    assert f"service accounts ({key}): x/web runs as default, x/db runs as db" in out
    code, out, _ = run_cli(capsys, "analyze", path, "--explain", "x/billing", "x/db",
                           "--port", "80", "--output", "json")
    doc = json.loads(out)
    assert doc["allowed"] and doc["service_accounts"] == {"x/billing": "billing", "x/db": "db"}


def test_explain_without_port_uses_the_destinations_ports_and_accepts_ips(capsys):
    code, out, _ = run_cli(
        capsys, "analyze", EXAMPLE, "--explain", "backend/api", "kube-system/coredns"
    )
    assert code == 0 and "TCP/53: ALLOWED" in out and "UDP/53: ALLOWED" in out
    code, out, _ = run_cli(
        capsys, "analyze", EXAMPLE, "--explain", "backend/api", "192.0.2.1", "--port", "443"
    )
    assert code == 0 and "DENIED" in out
    code, _, err = run_cli(
        capsys, "analyze", EXAMPLE, "--explain", "x/nope", "backend/api", "--port", "1"
    )
    assert code == 2 and "unknown pod 'x/nope'" in err


BAD = netpol("x", "bad", ingress=[{"ports": [{"port": 80, "endPort": 70}]}])


def test_invalid_object_is_skipped_with_a_warning_and_never_half_applied(capsys, tmp_path):
    path = write(
        tmp_path, "in.yaml", [pod("x", "a", {}, "10.0.0.1"), pod("x", "b", {}, "10.0.0.2"), BAD]
    )
    code, out, err = run_cli(capsys, "analyze", path, "--port", "80", "--output", "json")
    assert code == 0
    assert f"warning: {path}: NetworkPolicy x/bad: field spec.ingress[0].ports[0].endPort" in err
    # The bad policy would isolate both pods for ingress; skipped, it changes nothing.
    assert json.loads(out)["matrix"]["x/a"]["x/b"] is True


def test_invalid_object_with_strict_fails_with_exit_2(capsys, tmp_path):
    path = write(tmp_path, "in.yaml", [pod("x", "a", {}), BAD])
    code, out, err = run_cli(capsys, "analyze", path, "--port", "80", "--strict")
    assert code == 2 and out == ""
    assert "error:" in err and "x/bad" in err and "endPort" in err


def test_pods_without_status_are_analyzed_and_host_network_pods_left_out(capsys, tmp_path):
    path = write(
        tmp_path,
        "in.yaml",
        [
            pod("x", "a", {"app": "a"}, None),
            pod("x", "b", {"app": "b"}, None),
            pod("x", "c", {"app": "c"}, None),
            pod("x", "h", {}, "10.0.0.9", hostNetwork=True),
            netpol(
                "x",
                "only-a",
                podSelector={"matchLabels": {"app": "b"}},
                ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}],
            ),
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s", "namespace": "x"}},
        ],
    )
    code, out, err = run_cli(capsys, "analyze", path, "--output", "json", "--allow-ignored")
    assert code == 0
    (doc,) = json.loads(out)
    assert sorted(doc["matrix"]) == ["x/a", "x/b", "x/c"]  # x/h is not an endpoint
    assert doc["matrix"]["x/a"]["x/b"] and not doc["matrix"]["x/c"]["x/b"]
    assert "x/h" in err and "note: " + path + ": ignored v1 ConfigMap x/s" in err
    # Without --allow-ignored the same output, and exit 2: the ConfigMap was not read.
    code, again, err = run_cli(capsys, "analyze", path, "--output", "json")
    assert code == 2 and again == out
    assert "error: " + path + ": ignored v1 ConfigMap x/s: not a kind the model reads" in err


def test_input_problems_exit_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "analyze", str(tmp_path / "missing.yaml"))
    assert code == 2 and "no such file" in err
    path = write(tmp_path, "noports.yaml", [netpol("x", "p")])
    code, _, err = run_cli(capsys, "analyze", path)
    assert code == 2 and "pass --port" in err


def test_console_script_exit_codes(tmp_path):
    ok = subprocess.run(
        [ENFORCER, "analyze", EXAMPLE, "--port", "80", "--output", "json"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["port"] == 80
    path = write(tmp_path, "bad.yaml", [BAD])
    bad = subprocess.run(
        [ENFORCER, "analyze", path, "--port", "80", "--strict"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "x/bad" in bad.stderr


def _bad(**spec) -> dict:
    return netpol("x", "bad", **{"podSelector": {"matchLabels": {"app": "b"}}, **spec})


NAMELESS = netpol("x", "nameless")
del NAMELESS["metadata"]["name"]
EVERY_VALIDATION_ERROR = [
    (_bad(ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/40"}}]}]), "invalid CIDR"),
    (
        _bad(ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]),
        "strict subset",
    ),
    (_bad(ingress=[{"ports": [{"port": 80, "endPort": 79}]}]), "greater than or equal"),
    (_bad(ingress=[{"ports": [{"port": "http", "endPort": 90}]}]), "non-numeric"),
    (_bad(ingress=[{"ports": [{"protocol": "ICMP"}]}]), "unsupported protocol"),
    (
        _bad(podSelector={"matchExpressions": [{"key": "a", "operator": "Is", "values": ["b"]}]}),
        "unsupported operator",
    ),
    (
        _bad(ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "namespaceSelector": {}}]}]),
        "both ipBlock and another peer",
    ),
    (NAMELESS, "metadata.name: required value"),
]


@pytest.mark.parametrize(
    ("bad", "message"), EVERY_VALIDATION_ERROR, ids=[m for _, m in EVERY_VALIDATION_ERROR]
)
def test_every_validation_error_exit_code_and_nothing_partial(capsys, tmp_path, bad, message):
    deny_b = netpol("x", "deny-b", podSelector={"matchLabels": {"app": "b"}})
    path = write(
        tmp_path,
        "in.yaml",
        [
            pod("x", "a", {"app": "a"}, "10.0.0.1"),
            pod("x", "b", {"app": "b"}, "10.0.0.2"),
            bad,
            deny_b,
        ],
    )
    code, out, err = run_cli(capsys, "analyze", path, "--port", "80", "--strict")
    assert code == 2 and out == "" and message in err and path in err
    code, out, err = run_cli(capsys, "analyze", path, "--port", "80", "--output", "json")
    assert code == 0 and message in err and "object skipped" in err
    matrix = json.loads(out)["matrix"]
    # The valid policy in the same file applies; the invalid one adds nothing (had any part
    # of an `ingress: [...]` allow rule been applied, a -> b would be allowed).
    assert matrix["x/a"]["x/b"] is False and matrix["x/b"]["x/a"] is True
