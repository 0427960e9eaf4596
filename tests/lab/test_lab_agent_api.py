"""The agent's view of the cluster, read from a pod: a lab agent checks tokens with an API server
(TokenReview, SubjectAccessReview, spoken by tests/fakeapi in the node's namespace). A pod
reaches the agent's address but reads nothing of /status, /events or /flows without a token, with
a forged one or with a foreign one; the console's token reads them; metrics and health stay open;
`enforcer status` and `lab flows` on the node use the socket. And the console run as in a
cluster: in a pod, it finds the agent as the DaemonSet's pod through the API server and reads
its status and flows with its own service-account token."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from enforcer.agentclient import AgentEndpoint
from enforcer.console.agents import DEFAULT_NAMESPACE
from enforcer.lab import lab
from enforcer.lab.probe import probe_pair
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
    api = FakeKubeAPI(host="0.0.0.0")  # the node's agent and a pod's console both reach it
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

        _console_finds_the_agent_through_the_api(state, api, pod.netns, tmp_path)
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


def _kubeconfig(path: Path, server: str, token: str | None) -> str:
    user = {"token": token} if token else {}
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c"}))
    return str(path)


def _console_finds_the_agent_through_the_api(
    state: lab.LabState, api: FakeKubeAPI, netns: str, tmp_path: Path
) -> None:
    """`enforcer console --agents k8s` in a pod: the agent's DaemonSet pod (host network: its
    address is the node's) listed from the API, its flows read with the console's token."""
    node = state.node_nets()[0]
    api.apply({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": DEFAULT_NAMESPACE, "name": "enforcer-agent-x1",
                     "labels": {"app.kubernetes.io/name": "enforcer",
                                "app.kubernetes.io/component": "agent"},
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": node.name, "hostNetwork": True,
                 "containers": [{"name": "agent", "image": "enforcer"}]},
        "status": {"phase": "Running", "podIP": str(GATEWAY4)},
    })  # fmt: skip
    ends = {e.key: e for e in lab.probe_endpoints(state)}
    kubeconfig = _kubeconfig(tmp_path / "console-kubeconfig",
                             f"http://{GATEWAY4}:{api.port}", "console-token")
    console = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "enforcer.cli", "console",
         "--agents", "k8s", "--kubeconfig", kubeconfig, "--listen", "127.0.0.1:9840"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def get(path: str) -> Any:
            def fetch() -> Any:
                with urllib.request.urlopen(f"http://127.0.0.1:9840{path}", timeout=3) as r:
                    return json.loads(r.read())
            return run_in_netns(netns, fetch)

        probe_pair(ends["x/a"], ends["x/b"], 80, "TCP", 0.5)
        deadline = time.monotonic() + 20
        nodes: list[dict[str, Any]] = []
        flows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            assert console.poll() is None, console.communicate()[1]
            try:
                nodes = get("/api/nodes")["nodes"]
                flows = get("/api/flows?from=x/a&to=x/b&port=80&limit=0")["flows"]
            except OSError:  # not listening yet
                pass
            if nodes and nodes[0]["reachable"] and nodes[0]["ready"] and flows:
                break
            time.sleep(0.2)
        assert [(n["name"], n["reachable"], n["ready"]) for n in nodes] == [
            (node.name, True, True)], nodes
        assert flows and {f["node"] for f in flows} == {node.name}, flows
    finally:
        console.terminate()
        console.wait(timeout=10)
