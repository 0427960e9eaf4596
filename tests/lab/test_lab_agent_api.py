"""The agent's view of the cluster, read from a pod: a lab agent checks tokens with an API server
(TokenReview, SubjectAccessReview, spoken by tests/fakeapi in the node's namespace). A pod
reaches the agent's address but reads nothing of /status, /events or /flows without a token, with
a forged one or with a foreign one; the console's token reads them; metrics and health stay open;
`enforcer status` and `lab flows` on the node use the socket."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from enforcer.agentclient import AgentEndpoint
from enforcer.lab import lab
from enforcer.netnsutil import run_in_netns
from enforcer.topology import GATEWAY4
from tests.fakeapi.server import FakeKubeAPI
from tests.lab import upstream

pytestmark = pytest.mark.kernel

CONSOLE = "system:serviceaccount:enforcer-system:enforcer-console"
FOREIGN = "system:serviceaccount:x:default"


def test_a_pod_cannot_read_the_agent_and_the_console_can(
    lab_factory: Callable[..., lab.LabState],
    write_manifests: Callable[[list[dict[str, Any]]], Path],
    tmp_path: Path,
) -> None:
    state = lab_factory([write_manifests(upstream.cluster())], topology="routed", nodes=1)
    node = state.node_nets()[0]
    api = FakeKubeAPI()
    api.tokens = {"console-token": CONSOLE, "foreign-token": FOREIGN}
    api.grants = {(CONSOLE, "enforcer.dev", "agents", sub, "get")
                  for sub in ("status", "events", "flows")}
    run_in_netns(node.netns, api.start)  # where the node's agent can reach it
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": api.url}}],
            "users": [{"name": "u", "user": {}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c"}))
        state.agent_args = ["--authn", "k8s", "--authn-kubeconfig", str(kubeconfig)]
        lab.restart_agent(state, node.name)

        pod = next(e for e in lab.probe_endpoints(state) if e.key == "x/a")
        agent = f"{GATEWAY4}:9830"  # the node, as a pod sees it (routed: every veth's gateway)

        def read(path: str, token: str | None) -> tuple[int, str]:
            ep = AgentEndpoint(addr=agent, token=token)
            return run_in_netns(pod.netns, lambda: ep.get_text(path, timeout=5.0))

        for path in ("/status", "/events", "/flows?limit=1"):
            assert read(path, None)[0] == 401, path
            assert read(path, secrets.token_urlsafe(32))[0] == 401, path
            assert read(path, "foreign-token")[0] == 403, path
        code, body = read("/status", "console-token")
        assert code == 200 and json.loads(body)["node"] == node.name
        assert read("/flows?limit=1", "console-token")[0] == 200
        for path in ("/metrics", "/healthz"):  # Prometheus and kubelet need them
            assert read(path, None)[0] == 200, path
    finally:
        run_in_netns(node.netns, api.stop)

    # On the node, the CLI's defaults go through the socket (as `kubectl exec` into the
    # agent's pod would): no token needed.
    sock = str(lab.agent_socket(state, node.name))
    status = subprocess.run(
        [sys.executable, "-m", "enforcer.cli", "status", "--agent", f"unix:{sock}",
         "--output", "json"], capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(status.stdout)["node"] == node.name
    flows = subprocess.run(
        [sys.executable, "-m", "enforcer.cli", "lab", "flows", "--name", state.name, "-o",
         "json", "--last", "5"], capture_output=True, text=True, timeout=30, check=True)
    assert all(json.loads(line)["node"] == node.name for line in flows.stdout.splitlines())
