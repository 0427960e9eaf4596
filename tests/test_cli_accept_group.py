"""What users have: the brief's first example, a NetworkPolicy of `security.aqua.io/v1alpha1`
(tests/fixtures/README.md), through the real CLI. Nothing of it passes silently; with
--accept-group it is read as a NetworkPolicy named NAME.GROUP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SEED = Path(__file__).parent / "fixtures" / "seed_000_aqua_networkpolicy.txt"
GROUP = "security.aqua.io"
NAME = "deny-all-ingress-except-http"
READ_AS = f"default/{NAME}.{GROUP}"


def seed_manifest() -> str:
    """The manifest as a reader copies it from the page: from `apiVersion:` to its last line."""
    text = SEED.read_text(encoding="utf-8")
    start = text.index("apiVersion: security.aqua.io/v1alpha1")
    end = text.index("\n\n", text.index("port: 5432", start))
    return text[start:end] + "\n"


def enforcer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "enforcer.cli", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def aqua(tmp_path: Path) -> Path:
    path = tmp_path / "aqua.yaml"
    path.write_text(seed_manifest())
    return path


def pod(name: str, labels: dict[str, str], ip: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": "default", "name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
            "status": {"phase": "Running", "podIPs": [{"ip": ip}]}}


def test_the_seed_is_what_the_brief_shows(aqua: Path) -> None:
    doc = yaml.safe_load(aqua.read_text())
    assert doc["apiVersion"] == f"{GROUP}/v1alpha1" and doc["kind"] == "NetworkPolicy"
    assert doc["metadata"] == {"name": NAME, "namespace": "default"}


def test_lint_never_passes_it_silently(aqua: Path) -> None:
    proc = enforcer("lint", str(aqua))
    assert proc.returncode == 2
    assert (f"error: {aqua}: ignored {GROUP}/v1alpha1 NetworkPolicy default/{NAME}: "
            f"a NetworkPolicy of API group {GROUP}, not networking.k8s.io: "
            f"--accept-group {GROUP} reads it as one") in proc.stderr
    assert "1 object(s) or file(s) not read" in proc.stdout
    # --allow-ignored: exit 0, and JSON still names what was not read.
    proc = enforcer("lint", str(aqua), "--allow-ignored", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["findings"] == []
    assert doc["ignored"] == [{
        "file": str(aqua), "kind": "NetworkPolicy", "apiVersion": f"{GROUP}/v1alpha1",
        "namespace": "default", "name": NAME,
        "reason": f"a NetworkPolicy of API group {GROUP}, not networking.k8s.io: "
                  f"--accept-group {GROUP} reads it as one",
    }]


def test_lint_with_accept_group_reads_it_as_a_network_policy(aqua: Path) -> None:
    proc = enforcer("lint", str(aqua), "--accept-group", GROUP, "--output", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ignored"] == [] and doc["empty"] == []
    # Read, so checked: it restricts egress without allowing DNS.
    assert [(f["check"], f["object"]) for f in doc["findings"]] == [
        ("dns-not-allowed", f"NetworkPolicy {READ_AS}")]


def test_analyze_enforces_it_only_when_accepted(aqua: Path, tmp_path: Path) -> None:
    pods = tmp_path / "pods.yaml"
    pods.write_text(yaml.safe_dump_all([
        pod("frontend", {"app": "frontend"}, "10.0.0.1"),
        pod("api", {"app": "api"}, "10.0.0.2"),
    ]))
    args = ("analyze", str(aqua), str(pods), "--port", "80", "--output", "json")
    ignored = enforcer(*args)
    assert ignored.returncode == 2 and f"ignored {GROUP}/v1alpha1 NetworkPolicy" in ignored.stderr
    assert json.loads(ignored.stdout)["matrix"]["default/frontend"]["default/api"] is True
    accepted = enforcer(*args, "--accept-group", GROUP)
    assert accepted.returncode == 0, accepted.stderr
    matrix = json.loads(accepted.stdout)["matrix"]
    assert matrix["default/frontend"]["default/api"] is False  # its egress: 192.168/16:5432
    assert matrix["default/api"]["default/frontend"] is False
    explain = enforcer("analyze", str(aqua), str(pods), "--accept-group", GROUP,
                       "--explain", "default/api", "192.168.3.4", "--port", "5432")
    assert explain.returncode == 0, explain.stderr
    assert f"allowed by {READ_AS} egress rule 0" in explain.stdout


def test_bad_groups_and_an_empty_file_exit_2(aqua: Path, tmp_path: Path) -> None:
    for bad, says in (("networking.k8s.io", "always read"),
                      (f"{GROUP}/v1alpha1", "the API group alone"),
                      ("Aqua", "not an API group")):
        proc = enforcer("lint", str(aqua), "--accept-group", bad)
        assert proc.returncode == 2 and says in proc.stdout, (bad, proc.stdout)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    proc = enforcer("analyze", str(empty), "--port", "80")
    assert proc.returncode == 2
    assert f"error: {empty}: nothing read: no object in it" in proc.stderr
