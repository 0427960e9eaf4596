"""The node lacks what the agent needs (issue 22, faults): no bpffs under the pin root, no
kernel headers. The real agent process stays up, not ready, says what to do in one line per
fault and in /status, and touches nothing under the pin root; the checks pass on their own
once the node is fixed (a bpffs mounted on the pin root)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from enforcer import log
from enforcer.agent.preflight import Preflight, check
from enforcer.agentclient import AgentEndpoint
from enforcer.kheaders import ENV_VAR, ROOT_ENV_VAR

pytestmark = pytest.mark.kernel  # network namespaces, mounts: root only


@pytest.fixture
def netns() -> Iterator[str]:
    """The agent runs in a namespace of its own: if it ever got past its checks, it could
    attach to nothing of this machine's."""
    name = f"enf-fault-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _status(sock: Path, timeout: float = 20.0) -> dict:
    agent = AgentEndpoint(socket=str(sock))
    deadline = time.monotonic() + timeout
    while True:
        try:
            return agent.get_json("/status")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_agent_without_bpffs_or_headers_waits_not_ready(tmp_path: Path, netns: str) -> None:
    pins = tmp_path / "pins"  # a plain folder: not on a bpffs
    pins.mkdir()
    (pins / "kept").write_text("state a previous agent left")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    sock = tmp_path / "agent.sock"
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env[ROOT_ENV_VAR] = str(tmp_path / "empty-root")  # no /lib/modules, /usr/src, /sys here
    env["ENFORCER_CACHE_DIR"] = str(tmp_path / "cache")
    cmd = [
        "nsenter", f"--net=/run/netns/{netns}",
        sys.executable, "-m", "enforcer.cli", "--log-format", "json", "agent",
        "--node-name", "n1", "--source", f"dir:{manifests}", "--pin-dir", str(pins),
        "--metrics-addr", "127.0.0.1:9830", "--api-socket", str(sock),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env)
    try:
        status = _status(sock)
        agent = AgentEndpoint(socket=str(sock))
        assert status["ready"] is False
        faults = {f["fault"]: f["message"] for f in status["faults"]}
        assert set(faults) == {"bpffs", "kernel_headers"}
        assert "mount -t bpf bpf /sys/fs/bpf" in faults["bpffs"]
        assert "init container" in faults["bpffs"]
        release = os.uname().release
        assert f"linux-headers-{release}" in faults["kernel_headers"]
        assert "enforcer kernel-headers" in faults["kernel_headers"]
        assert agent.get_text("/readyz")[0] == 503
        assert agent.get_text("/healthz")[0] == 200  # alive: no restart, no crash loop
        metrics = agent.get_text("/metrics")[1]
        assert 'enforcer_node_fault{fault="bpffs"} 1.0' in metrics
        assert 'enforcer_node_fault{fault="kernel_headers"} 1.0' in metrics
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        # Nothing made or removed under the pin root.
        assert sorted(p.name for p in pins.iterdir()) == ["kept"]
        lines = [json.loads(line) for line in proc.stderr.read().splitlines()  # type: ignore[union-attr]
                 if line.startswith(b"{")]
        said = [line for line in lines if line.get("event", "").startswith("cannot start")]
        assert [line["fault"] for line in said] == ["bpffs", "kernel_headers"]  # once each
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_preflight_goes_on_once_bpffs_is_mounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bpffs instance of the test's own on its folder (never /sys/fs/bpf)."""
    monkeypatch.delenv(ENV_VAR, raising=False)  # the checks point bcc at headers: undone after
    pins = tmp_path / "pins"
    pins.mkdir()
    faults, _ = check(pins)
    assert [f.name for f in faults] == ["bpffs"]  # this machine has headers (a fallback)
    subprocess.run(["mount", "-t", "bpf", "bpf", str(pins)], check=True)
    try:
        stop = threading.Event()
        preflight = Preflight(pins, log.get("test"), retry=0.05)
        assert preflight.wait(stop) is not None
        assert preflight.faults == []
    finally:
        subprocess.run(["umount", str(pins)], check=True)


def test_pins_gone_while_running_make_the_agent_not_ready_until_fixed() -> None:
    """The loop asks its pin check (enforcer.datapath.pinguard) every 2 s: while it names a
    fault the agent is not ready and /status says why."""
    from enforcer.agent.http import EventHub
    from enforcer.agent.metrics import AgentMetrics
    from enforcer.agent.runtime import Agent
    from tests.agent.fakes import IdleSource, MemoryDatapath, StaticInterfaces

    fault: list[str | None] = ["bpffs under /x was unmounted: mount it again"]
    agent = Agent("n1", IdleSource(), MemoryDatapath(),  # type: ignore[arg-type]
                  StaticInterfaces({}), AgentMetrics(), EventHub(),  # type: ignore[arg-type]
                  pin_check=lambda: fault[0])
    agent.status.ready = True  # the first full sync is enforced
    agent._refresh_health()
    assert not agent.is_ready()
    assert agent.snapshot()["faults"] == [{"fault": "bpffs", "message": fault[0]}]
    fault[0] = None
    agent._next_pin_check = 0.0
    agent._refresh_health()
    assert agent.is_ready() and agent.snapshot()["faults"] == []
