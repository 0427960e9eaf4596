"""Every command answers an obviously wrong argument (a namespace, file, lab or agent that is
not there) with one line on stderr naming what is wrong, a non-zero exit (2 for usage, 1 for
what it could not reach or make) and no traceback. Each case runs the real CLI, in parallel."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

MISSING = f"/nonexistent-{secrets.token_hex(3)}"
NO_NETNS = f"enf-missing-{secrets.token_hex(3)}"
NO_LAB = f"nolab{secrets.token_hex(3)}"


def _pod(name: str, node: str, ip: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "x", "name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
            "status": {"podIPs": [{"ip": ip}]}}  # fmt: skip


def _cases(tmp: Path) -> list[tuple[list[str], int, str]]:
    """(arguments, exit code, what stderr's one line says)."""
    binary = sys.executable
    broken = tmp / "broken.yaml"
    broken.write_text("a: [b\n")
    clash = tmp / "clash.yaml"  # two nodes' pods in one /24: no bridge CNI does that
    clash.write_text(yaml.safe_dump_all([_pod("a", "w1", "10.9.1.5"), _pod("b", "w2", "10.9.1.6")]))
    agent_tcp = ["--agent", "127.0.0.1:9830"]
    lab = ["lab", "up", "--name", f"b{secrets.token_hex(3)}"]
    return [
        (["monitor", *agent_tcp, "--netns", NO_NETNS], 2, f"--netns {NO_NETNS}: no such network"),
        (["flows", *agent_tcp, "--netns", NO_NETNS], 2, f"--netns {NO_NETNS}: no such network"),
        (["status", "--netns", NO_NETNS], 2, "a unix: socket needs none"),
        (["status", *agent_tcp, "--token-file", MISSING], 2, f"--token-file {MISSING}: No such"),
        (["status", "--agent", f"unix:{MISSING}.sock"], 1, "cannot reach the agent at unix:"),
        (["monitor", "--agent", f"unix:{MISSING}.sock"], 1, "is an agent running on this node"),
        (["status", "--agent", "127.0.0.1:1"], 1, "cannot reach the agent at 127.0.0.1:1"),
        (["lab", "status", "--name", NO_LAB], 1, f"no lab named {NO_LAB!r}"),
        (["lab", "monitor", "--name", NO_LAB], 1, f"no lab named {NO_LAB!r}"),
        (["lab", "down", "--name", NO_LAB], 1, f"no lab named {NO_LAB!r}"),
        ([*lab, f"{MISSING}.yaml"], 1, f"invalid input: {MISSING}.yaml: no such file"),
        ([*lab, binary], 1, f"invalid input: {binary}: cannot read: 'utf-8' codec"),
        ([*lab, str(broken)], 1, "cannot parse: line 2, column 1: did not find expected"),
        ([*lab, "--topology", "bridged", str(clash)], 1,
         "nodes w1 and w2 have overlapping pod subnets"),
        (["console", "--agents", f"lab:{NO_LAB}", "--source", f"dir:{tmp}"], 2,
         f"--agents lab:{NO_LAB}: no lab named"),
        (["console", "--agents", f"lab:{NO_LAB}", "--source", f"dir:{MISSING}"], 2,
         f"--source dir:{MISSING}: no such directory"),
        (["console", "--kubeconfig", MISSING], 2, f"--kubeconfig {MISSING}: no such file"),
        (["advise", str(clash), "--flows", binary], 2, f"--flows {binary}: cannot read"),
        (["analyze", f"{MISSING}.yaml"], 2, "no such file or directory"),
    ]  # fmt: skip


def test_bad_input_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    cases = _cases(tmp_path)
    procs = [
        subprocess.Popen([sys.executable, "-m", "enforcer.cli", *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
        for args, _, _ in cases
    ]  # fmt: skip
    wrong = []
    for (args, code, says), proc in zip(cases, procs, strict=True):
        _, stderr = proc.communicate(timeout=60)
        lines = stderr.strip().splitlines()
        ok = proc.returncode == code and len(lines) == 1 and "Traceback" not in stderr
        if not ok or says not in lines[0] or not lines[0].startswith("error: "):
            wrong.append(f"enforcer {' '.join(args)}: exit {proc.returncode}\n{stderr}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("argv", [["lab", "up", "x.yaml", "--nodes", "0"]])
def test_usage_errors_exit_2(argv: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "enforcer.cli", *argv], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert "argument --nodes: expected a number of 1 or more, got '0'" in proc.stderr
    assert "Traceback" not in proc.stderr
