"""The `enforcer lab` command line, as a user drives it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from enforcer.lab import lab
from enforcer.lab import manifests as mf
from enforcer.lab.topology import existing_netns
from tests.lab import upstream

pytestmark = pytest.mark.kernel


def enforcer(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "enforcer.cli", *args], capture_output=True, text=True, timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"enforcer {' '.join(args)}: {proc.returncode}\n{proc.stderr}")
    return proc


def _lab_processes(name: str) -> list[int]:
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if f"/labs/{name}/" in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_lab_cli_end_to_end(tmp_path: Path) -> None:
    name = f"c{secrets.token_hex(3)}"
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(yaml.safe_dump_all(upstream.cluster()))
    deny = tmp_path / "deny.yaml"
    deny.write_text(
        yaml.safe_dump(
            upstream.policy("deny", "x", {"podSelector": {}, "policyTypes": ["Ingress"]})
        )
    )
    try:
        enforcer("lab", "up", str(cluster), "--name", name, "--nodes", "2")
        # Same JSON contract as analyze, and the same answer with no policies.
        probed = json.loads(
            enforcer("lab", "probe", "--name", name, "--port", "80", "--output", "json").stdout
        )
        analyzed = json.loads(
            enforcer("analyze", str(cluster), "--port", "80", "--output", "json").stdout
        )
        assert probed == analyzed
        # exec runs inside the pod's namespace.
        state = lab.LabState.load(name)
        out = enforcer(
            "lab", "exec", "--name", name, "x/a", "--", "ip", "-o", "addr", "show", "eth0"
        ).stdout
        assert state.pods["x/a"]["ips"][0] in out
        status = json.loads(enforcer("lab", "status", "--name", name, "--output", "json").stdout)
        assert set(status["nodes"]) == {"node1", "node2"}
        assert all(n["ready"] for n in status["nodes"].values())
        enforcer("lab", "apply", "--name", name, str(deny))
        assert enforcer("lab", "probe", "--name", name, "--port", "80", "--check").returncode == 0
        # The kernel and the model disagree once the agents stop following the manifests:
        # --check must say so, pair by pair, and exit 1.
        for pid in state.agent_pids.values():
            os.kill(pid, signal.SIGKILL)
        mf.remove_object(state.manifest_dir, yaml.safe_load(deny.read_text()))
        check = enforcer("lab", "probe", "--name", name, "--port", "80", "--check", check=False)
        assert check.returncode == 1
        mismatches = [line for line in check.stderr.splitlines() if line.startswith("MISMATCH")]
        # Every other pod (8) to each of x's three pods: the kernel still denies them.
        assert len(mismatches) == 24
        assert all(" -> x/" in m and "model says allowed, kernel denied" in m for m in mismatches)
    finally:
        enforcer("lab", "down", "--name", name)
    assert not [n for n in existing_netns() if n.startswith(f"enf-{name}-")]
    assert name not in lab.list_labs()
    assert not _lab_processes(name)
    assert not (lab.PIN_ROOT / name).exists()


def test_down_cleans_up_after_a_crash(tmp_path: Path) -> None:
    name = f"k{secrets.token_hex(3)}"
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(yaml.safe_dump_all(upstream.cluster()[:4]))  # namespaces and x/a
    try:
        enforcer("lab", "up", str(cluster), "--name", name)
        (lab.LAB_ROOT / name / "state.json").unlink()  # as if `up` had crashed before saving
        assert name in lab.list_labs()  # still found by its namespaces and pins
    finally:
        enforcer("lab", "down", "--name", name)
    assert not [n for n in existing_netns() if n.startswith(f"enf-{name}-")]
    assert not _lab_processes(name)
    assert not (lab.PIN_ROOT / name).exists()


def test_bad_input_names_the_object_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            upstream.policy(
                "bad",
                "x",
                {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "300.0.0.0/8"}}]}]},
            )
        )
    )
    proc = enforcer("lab", "up", str(bad), "--name", f"b{secrets.token_hex(3)}", check=False)
    assert proc.returncode == 1
    assert "x/bad" in proc.stderr and "cidr" in proc.stderr
