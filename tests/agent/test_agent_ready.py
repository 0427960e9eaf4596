"""/readyz turns 200 only once the first full sync is in the maps: the first connections after
it already get the policy's verdicts (before the agent attaches, every connection passes)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from enforcer.lab.lab import agent_command
from tests.agent.harness import NodeHarness, pod, policy

pytestmark = pytest.mark.kernel

# Peers on another node: they make the first full sync take a while to write (thousands of
# identity entries), the window in which an agent that reported ready early was not enforcing.
REMOTE_PODS = 3000


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeHarness]:
    h = NodeHarness(tmp_path)
    h.start_agent = lambda: None  # type: ignore[method-assign]  # started by the test
    try:
        yield h.start()
    finally:
        h.stop()


def test_first_ready_means_enforced(node: NodeHarness) -> None:
    for i in range(REMOTE_PODS):
        ip = f"10.77.{i // 250}.{i % 250 + 1}"
        node.api.create(pod("x", f"remote-{i}", ip, {"app": f"r{i % 50}"}, node="node2"))
    node.api.create(
        policy(
            "x",
            "a-from-b",
            {
                "podSelector": {"matchLabels": {"app": "a"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}],
            },
        )
    )
    assert node.reach("y/c", "x/a"), "without the agent, everything passes"
    cmd = agent_command(
        node.node.netns, "node1", "k8s", node.pin_dir, "--kubeconfig", str(node.kubeconfig),
        "--api-socket", str(node.agent_api.socket),
    )
    with open(node.log_path, "ab") as log:
        node.agent = subprocess.Popen(cmd, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while not node.ready():
        assert time.monotonic() < deadline, f"agent not ready (log: {node.log_path})"
        time.sleep(0.005)
    # At once, no waiting for convergence: the verdicts must already be the policy's.
    assert not node.reach("y/c", "x/a")
    assert node.reach("x/b", "x/a")
    status = node.status()
    assert all(ep["ifindex"] and ep["generation"] for ep in status["endpoints"])
