"""An upgrade across pinned layouts without a gap: the previous layout's build (v4, from
tests/fixtures/build-layout-v4.tar.gz: this repository at commit 925eec2) enforces with its
pins; it is killed and this build started on the same pin root. Under a probe loop no allowed
probe fails and no denied one passes; a connection established before, idle through it, whose
server then speaks first (a reply into an isolated pod: it passes only on its conntrack entry)
still gets through; the older layout's pins are gone afterwards."""

from __future__ import annotations

import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from enforcer.datapath.layout import LAYOUT_VERSION
from enforcer.netnsutil import run_in_netns
from tests.agent.harness import AGENT_ADDR, NODE, NodeHarness, eventually, policy, probe_loop

pytestmark = pytest.mark.kernel

FIXTURE = Path(__file__).parent.parent / "fixtures" / "build-layout-v4.tar.gz"
IDLE_PORT = 7000

A_FROM_B = policy("x", "a-from-b", {
    "podSelector": {"matchLabels": {"app": "a"}},
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}],
})  # fmt: skip


class UpgradeHarness(NodeHarness):
    """The node, first with the v4 build's agent (its own code, this machine's Python)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.old_tree = workdir / "build-v4"
        with tarfile.open(FIXTURE) as tar:
            tar.extractall(self.old_tree)  # our own archive (tests/fixtures/README.md)
        self.build = "v4"

    def start_agent(self) -> None:
        if self.build != "v4":
            super().start_agent()
            return
        cmd = [
            "nsenter", f"--net=/run/netns/{self.node.netns}",
            "env", f"PYTHONPATH={self.old_tree}",
            sys.executable, "-m", "enforcer.cli", "agent", "--node-name", NODE,
            "--source", "k8s", "--kubeconfig", str(self.kubeconfig),
            "--pin-dir", str(self.pin_dir), "--metrics-addr", AGENT_ADDR,
        ]  # fmt: skip
        # Run from the old tree: `python -m` puts the working directory first on the path.
        with open(self.log_path, "ab") as log:
            self.agent = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=self.old_tree)
        eventually(self.ready, 90, f"v4 agent ready (log: {self.log_path})")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[UpgradeHarness]:
    h = UpgradeHarness(tmp_path)
    try:
        yield h.start()
    finally:
        h.stop()


def _idle_connection(node: UpgradeHarness) -> tuple[socket.socket, socket.socket,
                                                      socket.socket]:
    """x/a connects to y/c and both fall silent: y/c's later words are a reply into x/a,
    whose ingress admits only x/b."""
    server = node.pods["y/c"]
    listener = run_in_netns(server.netns, lambda: socket.create_server(("0.0.0.0", IDLE_PORT)))
    client = run_in_netns(node.pods["x/a"].netns, lambda: socket.create_connection(
        (node.ip("y/c"), IDLE_PORT), timeout=2.0))
    accepted, _ = listener.accept()
    client.sendall(b"hello")
    assert accepted.recv(16) == b"hello"
    return listener, client, accepted


def test_an_upgrade_across_layouts_loses_no_allowed_probe_and_no_established_flow(
    node: UpgradeHarness,
) -> None:
    assert (node.pin_dir / "v4").is_dir()
    node.api.create(A_FROM_B)
    node.expect("y/c", "x/a", False)
    node.expect("x/b", "x/a", True)
    listener, client, accepted = _idle_connection(node)
    try:
        with probe_loop(node):
            time.sleep(0.5)
            node.kill_agent()
            node.build = "current"
            node.start_agent()  # waits until ready: its first full sync is in force
            time.sleep(1.0)

        accepted.sendall(b"still there?")
        try:
            heard = client.recv(64)
        except TimeoutError:
            heard = b"(nothing)"
        assert heard == b"still there?"
    finally:
        for s in (client, accepted, listener):
            s.close()
    assert not (node.pin_dir / "v4").exists()
    assert (node.pin_dir / f"v{LAYOUT_VERSION}").is_dir()
    # The agent says it took over, with the flows it adopted.
    assert "took over from the older layout" in node.log_path.read_text()
