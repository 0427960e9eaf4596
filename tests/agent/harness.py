"""A node in network namespaces with pods, a test API server inside the node namespace, and the
real agent process running there with the real datapath."""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from enforcer.agentclient import AgentEndpoint, get_text
from enforcer.lab import topology as topo
from enforcer.lab.lab import agent_command
from enforcer.lab.probe import ProbeEndpoint, probe_pair
from enforcer.netnsutil import run_in_netns
from tests.fakeapi.server import FakeKubeAPI

AGENT_ADDR = "127.0.0.1:9830"
NODE = "node1"


def namespace(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": dict(labels or {})},
    }


def pod(ns: str, name: str, ip: str, labels: Mapping[str, str], node: str = NODE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "labels": dict(labels)},
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "c",
                    "ports": [
                        {"name": "http", "containerPort": 80, "protocol": "TCP"},
                        {"name": "echo", "containerPort": 81, "protocol": "UDP"},
                    ],
                }
            ],
        },
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def policy(ns: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": ns, "name": name},
        "spec": dict(spec),
    }


def eventually(check: Callable[[], bool], timeout: float = 5.0, what: str = "") -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true after {timeout} s: {what}")
        time.sleep(0.02)
    return time.monotonic() - start


class NodeHarness:
    """Pods x/a, x/b, y/c on one routed node; the API server and agent in the node namespace."""

    POD_NAMES = ("x/a", "x/b", "y/c")

    def __init__(self, workdir: Path, agent_args: tuple[str, ...] = ()) -> None:
        self.agent_args = agent_args
        self.tag = secrets.token_hex(3)
        self.workdir = workdir
        self.node = topo.NodeNet(NODE, 1, f"enf-a{self.tag}-n1")
        used: set = set()
        self.pods: dict[str, topo.PodNet] = {}
        for i, key in enumerate(self.POD_NAMES, start=1):
            ips = topo.allocate_ips(self.node, used, False)
            used.update(ips)
            self.pods[key] = topo.PodNet(key, NODE, f"enf-a{self.tag}-p{i}", f"enfp{i}", ips)
        self.pin_dir = Path(f"/sys/fs/bpf/enf-test-{self.tag}")
        self.api = FakeKubeAPI()
        self.agent: subprocess.Popen[bytes] | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "agent.log"
        # The agent's API socket: /status, /events and /flows (its network address serves them
        # only to authorized tokens).
        self.agent_api = AgentEndpoint(NODE, socket=str(workdir / "agent.sock"))

    def ip(self, key: str) -> str:
        return str(self.pods[key].ips[0])

    def endpoint(self, key: str) -> ProbeEndpoint:
        p = self.pods[key]
        return ProbeEndpoint(key, p.netns, p.ips[0])

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> NodeHarness:
        if subprocess.run(["mountpoint", "-q", "/sys/fs/bpf"]).returncode != 0:
            subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True)
        topo.create_nodes([self.node], None, "routed")
        run_in_netns(self.node.netns, self.api.start)
        self.api.create(namespace("x"))
        self.api.create(namespace("y"))
        labels = {"x/a": {"app": "a"}, "x/b": {"app": "b"}, "y/c": {"app": "c"}}
        for key in self.pods:
            ns, name = key.split("/")
            self.api.create(pod(ns, name, self.ip(key), labels[key]))
        topo.add_pods(list(self.pods.values()), {NODE: self.node}, [self.node], "routed")
        spec = self.workdir / "serve.json"
        spec.write_text(
            json.dumps(
                [
                    {"netns": p.netns, "ports": [[80, "TCP"], [81, "UDP"]]}
                    for p in self.pods.values()
                ]
            )
        )
        self.server = subprocess.Popen(
            [sys.executable, "-m", "enforcer.lab.serve", str(spec)], stdout=subprocess.PIPE
        )
        assert self.server.stdout is not None
        assert self.server.stdout.readline().startswith(b"serving")
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.api.url}}],
                    "users": [{"name": "u", "user": {}}],
                    "contexts": [{"name": "c", "context": {"cluster": "fake", "user": "u"}}],
                    "current-context": "c",
                }
            )
        )
        self.start_agent()
        return self

    def start_agent(self) -> None:
        cmd = agent_command(
            self.node.netns, NODE, "k8s", self.pin_dir,
            "--kubeconfig", str(self.kubeconfig), "--api-socket", str(self.agent_api.socket),
            *self.agent_args,
        )  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.agent = subprocess.Popen(cmd, stdout=log, stderr=log)
        eventually(self.ready, 60, f"agent ready (log: {self.log_path})")

    def kill_agent(self) -> None:
        assert self.agent is not None
        self.agent.send_signal(signal.SIGKILL)
        self.agent.wait(10)

    def stop(self) -> None:
        for proc in (self.agent, self.server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        try:
            run_in_netns(self.node.netns, self.api.stop)
        except OSError:
            pass
        topo.delete_netns([p.netns for p in self.pods.values()] + [self.node.netns])
        shutil.rmtree(self.pin_dir, ignore_errors=True)

    # -- observing ----------------------------------------------------------------------------

    def ready(self) -> bool:
        if self.agent is not None and self.agent.poll() is not None:
            raise AssertionError(f"agent exited: {self.log_path.read_text()[-3000:]}")
        try:
            code, _ = get_text(AGENT_ADDR, "/readyz", netns=self.node.netns, timeout=1.0)
        except OSError:
            return False
        return code == 200

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.agent_api.get_json("/status")
        return status

    def metrics(self) -> str:
        return get_text(AGENT_ADDR, "/metrics", netns=self.node.netns)[1]

    def reach(self, src: str, dst: str, port: int = 80, protocol: str = "TCP") -> bool:
        return probe_pair(self.endpoint(src), self.endpoint(dst), port, protocol, timeout=0.3)

    def expect(
        self, src: str, dst: str, allowed: bool, port: int = 80, protocol: str = "TCP"
    ) -> float:
        """Wait until src->dst has the expected verdict; returns how long that took."""
        return eventually(
            lambda: self.reach(src, dst, port, protocol) == allowed,
            5.0,
            f"{src} -> {dst} {port}/{protocol} {'allowed' if allowed else 'denied'}",
        )


@contextmanager
def probe_loop(node: NodeHarness) -> Iterator[dict[str, list[bool]]]:
    """Probes x/a all along, from x/b (TCP/80: allowed while a-from-b is in force) and from
    y/c (UDP/81: denied), each probe a fresh flow with a 50 ms timeout. On exit, checks that
    both ran often and that no allowed probe failed and no denied probe passed."""
    stop = threading.Event()
    results: dict[str, list[bool]] = {"allowed": [], "denied": []}

    def loop(kind: str, src: str, port: int, proto: str) -> None:
        while not stop.is_set():
            results[kind].append(
                probe_pair(node.endpoint(src), node.endpoint("x/a"), port, proto, 0.05))
            time.sleep(0.005)

    threads = [threading.Thread(target=loop, args=("allowed", "x/b", 80, "TCP"), daemon=True),
               threading.Thread(target=loop, args=("denied", "y/c", 81, "UDP"), daemon=True)]
    for t in threads:
        t.start()
    try:
        yield results
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert len(results["allowed"]) > 50 and len(results["denied"]) > 20
    assert all(results["allowed"]), f"{results['allowed'].count(False)} allowed probes failed"
    assert not any(results["denied"]), f"{results['denied'].count(True)} denied probes passed"
