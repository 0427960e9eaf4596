"""Watch-storm benchmark: event-to-enforced latency while the API server sends 10,000 pod
updates a second (issue 22, faults). Not part of `make bench` (CI runs every entry's smoke
profile, and its budget is spent); run it on its own:

    .venv/bin/python -m bench.watch_storm [--storms 5] [--updates 10000] [--rate 10000]
                                          [--pods 2000] [--json]

A node namespace holds three real pods (namespace `storm`: client, server, other) and runs the
real agent (`--source k8s`) under nsenter, against the test API server (tests/fakeapi), which
runs in a process of its own so that issuing the storm does not share a GIL with the probes.
The cluster also holds `--pods` pods on other nodes; server takes TCP/80 from role=client.

Each storm relabels pods on other nodes `--updates` times at `--rate` updates a second (each
relabel changes the pod's identity class: identity-map writes, and the server's table when a
class appears or goes). Meanwhile, one after another, marker changes flip client's role
between client and blocked, and a probe thread in client opens a fresh TCP connection to
server every 2 ms (bench/flip_probe.py): a marker's latency is from its update on the API
server to the first of three connections with the new verdict, end to end with packets.

Reported per run: the markers' p50/p99/max (end to end under the storm); the agent's own
event-to-enforced histogram over the storms' events (`enforcer_policy_implementation_delay_
seconds`: received by the agent to maps written; its p99 as the bucket bound it falls in);
and the coalescing: compiles and events per storm (`enforcer_policy_compiles_total`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.flip_probe import FlipProbe
from bench.report import percentile
from enforcer.agentclient import get_text
from enforcer.lab import topology as topo
from enforcer.lab.lab import agent_command

NODE = "storm-node"
NS = "storm"
PORT = 80
AGENT_ADDR = "127.0.0.1:9830"  # lab.agent_command's, inside the node namespace
LOCAL = ("client", "server", "other")
DELAY = "enforcer_policy_implementation_delay_seconds"
COMPILES = "enforcer_policy_compiles_total"


def _pod(name: str, labels: dict[str, str], ip: str, node: str = NODE) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": NS, "name": name, "labels": labels, "uid": f"uid-{name}"},
        "spec": {"nodeName": node, "containers": [
            {"name": "c", "ports": [{"containerPort": PORT, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }  # fmt: skip


def _remote(i: int, role: str) -> dict[str, Any]:
    return _pod(f"r{i}", {"app": f"app{i % 50}", "role": role},
                f"10.200.{i // 250}.{i % 250 + 1}", node=f"other-{i % 10}")


POLICY = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"namespace": NS, "name": "server-from-clients"},
    "spec": {"podSelector": {"matchLabels": {"app": "server"}},
             "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                          "ports": [{"protocol": "TCP", "port": PORT}]}]},
}  # fmt: skip


# -- the API server's process -------------------------------------------------------------------


def _serve(netns: str, objects: list[dict[str, Any]], history: int, out: Any, storms: Any,
           cmds: Any) -> None:
    """The test API server in `netns`, taking commands: ("update", obj), answered on `out`
    once done, and ("storm", n, rate, seed, pods), run on a thread of its own (markers go on
    meanwhile), its duration put on `storms` at the end."""
    import threading

    from enforcer.netnsutil import run_in_netns
    from tests.fakeapi import FakeKubeAPI

    api = FakeKubeAPI(history_limit=history)
    for obj in objects:
        api.create(obj)
    run_in_netns(netns, api.start)
    out.put(api.url)

    def storm(n: int, rate: float, seed: int, pods: int) -> None:
        rng = random.Random(seed)
        began = time.monotonic()
        for k in range(n):
            # Paced: update k goes out at k/rate seconds (or as soon as it can after).
            ahead = began + k / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            api.update(_remote(rng.randrange(pods), rng.choice(("client", "web", "db"))))
        storms.put(time.monotonic() - began)

    while True:
        cmd = cmds.get()
        if cmd[0] == "stop":
            api.stop()
            return
        if cmd[0] == "update":
            api.update(cmd[1])
            out.put(None)
        elif cmd[0] == "storm":
            threading.Thread(target=storm, args=cmd[1:], daemon=True).start()


class StormNode:
    def __init__(self, pods: int, history: int) -> None:
        self.tag = secrets.token_hex(3)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"enf-bench-storm-{self.tag}-"))
        self.node = topo.NodeNet(NODE, 1, f"enf-s{self.tag}-n1")
        self.pin_dir = Path(f"/sys/fs/bpf/enf-bench-storm-{self.tag}")
        used: set[topo.IPAddress] = set()
        self.pods: dict[str, topo.PodNet] = {}
        for i, name in enumerate(LOCAL, start=1):
            ips = topo.allocate_ips(self.node, used, False)
            used.update(ips)
            self.pods[name] = topo.PodNet(f"{NS}/{name}", NODE, f"enf-s{self.tag}-p{i}",
                                          f"enfp{i}", ips)
        self.agent: subprocess.Popen[bytes] | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.api: mp.Process | None = None
        ctx = mp.get_context("spawn")  # a fresh interpreter: no threads of ours copied
        self.out: Any = ctx.Queue()
        self.storms: Any = ctx.Queue()
        self.cmds: Any = ctx.Queue()
        self.n_pods = pods
        if subprocess.run(["mountpoint", "-q", "/sys/fs/bpf"]).returncode != 0:
            subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True)
        topo.create_nodes([self.node], None, "routed")
        topo.add_pods(list(self.pods.values()), {NODE: self.node}, [self.node], "routed")
        objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
                   POLICY, self.client(True),
                   _pod("server", {"app": "server"}, self.ip("server")),
                   _pod("other", {"app": "other"}, self.ip("other")),
                   *(_remote(i, "web") for i in range(pods))]
        self.api = ctx.Process(target=_serve, args=(self.node.netns, objects, history,
                                                    self.out, self.storms, self.cmds), daemon=True)
        self.api.start()
        url = self.out.get(timeout=60)
        kubeconfig = self.workdir / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": url}}],
            "users": [{"name": "u", "user": {}}],
            "contexts": [{"name": "c", "context": {"cluster": "fake", "user": "u"}}],
            "current-context": "c"}))  # fmt: skip
        spec = self.workdir / "serve.json"
        spec.write_text(json.dumps([{"netns": self.pods["server"].netns,
                                     "ports": [[PORT, "TCP"]]}]))
        self.server = subprocess.Popen([sys.executable, "-m", "enforcer.lab.serve", str(spec)],
                                       stdout=subprocess.PIPE)
        assert self.server.stdout is not None
        if not self.server.stdout.readline().startswith(b"serving"):
            raise RuntimeError("port server did not start")
        cmd = agent_command(self.node.netns, NODE, "k8s", self.pin_dir,
                            "--kubeconfig", str(kubeconfig),
                            "--api-socket", str(self.workdir / "agent.sock"))
        with open(self.workdir / "agent.log", "ab") as log:
            self.agent = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 120
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"agent not ready:\n{self.log_tail()}")
            time.sleep(0.05)

    def ip(self, name: str) -> str:
        return str(self.pods[name].ips[0])

    def client(self, allowed: bool) -> dict[str, Any]:
        return _pod("client", {"app": "client", "role": "client" if allowed else "blocked"},
                    self.ip("client"))

    def update(self, obj: dict[str, Any]) -> None:
        self.cmds.put(("update", obj))
        self.out.get(timeout=30)

    def ready(self) -> bool:
        if self.agent is None or self.agent.poll() is not None:
            raise RuntimeError(f"agent exited:\n{self.log_tail()}")
        try:
            code, _ = get_text(AGENT_ADDR, "/readyz", netns=self.node.netns, timeout=1.0)
        except OSError:
            return False
        return code == 200

    def metrics(self) -> str:
        return get_text(AGENT_ADDR, "/metrics", netns=self.node.netns, timeout=5.0)[1]

    def log_tail(self) -> str:
        try:
            return (self.workdir / "agent.log").read_text()[-3000:]
        except OSError:
            return ""

    def close(self) -> None:
        for proc in (self.agent, self.server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        if self.api is not None and self.api.is_alive():
            self.cmds.put(("stop",))
            self.api.join(10)
            if self.api.is_alive():
                self.api.kill()
        topo.delete_netns([*(p.netns for p in self.pods.values()), self.node.netns])
        shutil.rmtree(self.pin_dir, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _histogram(text: str) -> tuple[dict[float, float], float]:
    """The delay histogram's cumulative buckets (le -> count) and its count."""
    buckets = {float("inf") if le == "+Inf" else float(le): float(n) for le, n in
               re.findall(rf'^{DELAY}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M)}
    count = re.search(rf"^{DELAY}_count (\S+)$", text, re.M)
    return buckets, float(count.group(1)) if count else 0.0


def _counter(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _bound(before: dict[float, float], after: dict[float, float], pct: float) -> float:
    """The bucket bound (seconds) that `pct` of the observations between two scrapes fall
    within."""
    total = after[float("inf")] - before.get(float("inf"), 0.0)
    for le in sorted(after):
        if total and after[le] - before.get(le, 0.0) >= pct / 100 * total:
            return le
    return float("inf")


def run(storms: int = 5, updates: int = 10_000, rate: float = 10_000.0, pods: int = 2_000,
        progress: Any = None) -> dict[str, Any]:
    say = progress or (lambda m: None)
    say(f"node with {pods:,} remote pods, agent starting")
    node = StormNode(pods, history=4 * updates)
    markers: list[float] = []
    per_storm: list[dict[str, Any]] = []
    try:
        probe = FlipProbe(node.pods["client"].netns, node.pods["server"].ips[0], PORT)
        first_text = node.metrics()
        allowed = True
        for s in range(storms):
            say(f"storm {s + 1}/{storms}: {updates:,} updates at {rate:,.0f}/s")
            before = node.metrics()
            node.cmds.put(("storm", updates, rate, s, pods))
            began = time.monotonic()
            storm_markers: list[float] = []
            # Markers one after another while the storm lasts (the last one ends after it).
            while True:
                allowed = not allowed
                flip = node.client(allowed)
                storm_markers.append(probe.measure(allowed, lambda f=flip: node.update(f)))
                if not node.storms.empty() or time.monotonic() - began > 5 * updates / rate:
                    break
            sent = node.storms.get(timeout=300)
            # Until the agent has taken in the whole storm: its histogram stops moving.
            last, deadline = _histogram(node.metrics())[1], time.monotonic() + 30
            while time.monotonic() < deadline:
                time.sleep(0.3)
                now = _histogram(node.metrics())[1]
                if now == last:
                    break
                last = now
            after = node.metrics()
            hb, cb = _histogram(before)
            ha, ca = _histogram(after)
            per_storm.append({
                "sent_s": sent,
                "events": ca - cb,
                "compiles": _counter(after, COMPILES) - _counter(before, COMPILES),
                "agent_p50_bound_ms": _bound(hb, ha, 50) * 1000,
                "agent_p99_bound_ms": _bound(hb, ha, 99) * 1000,
                "markers_ms": [m * 1000 for m in storm_markers],
            })  # fmt: skip
            markers += storm_markers
        last = node.metrics()
        hb, _ = _histogram(first_text)
        ha, _ = _histogram(last)
        return {
            "storms": storms, "updates": updates, "rate": rate, "pods": pods,
            "markers": len(markers),
            "marker_p50_ms": percentile(markers, 50) * 1000,
            "marker_p99_ms": percentile(markers, 99) * 1000,
            "marker_max_ms": max(markers) * 1000,
            "agent_p99_bound_ms": _bound(hb, ha, 99) * 1000,
            "per_storm": per_storm,
        }  # fmt: skip
    except Exception as exc:
        raise RuntimeError(f"{exc}\nagent log:\n{node.log_tail()}") from exc
    finally:
        node.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.watch_storm", description=__doc__.split("\n\n")[0])
    p.add_argument("--storms", type=int, default=5)
    p.add_argument("--updates", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=10_000.0, help="updates per second")
    p.add_argument("--pods", type=int, default=2_000, help="pods on other nodes")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = run(args.storms, args.updates, args.rate, args.pods,
            progress=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"watch storm: {r['storms']} x {r['updates']:,} pod updates at {r['rate']:,.0f}/s, "
          f"{r['pods']:,} remote pods")
    print(f"  event to enforced, end to end with packets ({r['markers']} markers): "
          f"p50 {r['marker_p50_ms']:.1f} ms, p99 {r['marker_p99_ms']:.1f} ms, "
          f"max {r['marker_max_ms']:.1f} ms")
    print(f"  agent's own (received to maps written): p99 <= {r['agent_p99_bound_ms']:g} ms")
    for i, s in enumerate(r["per_storm"], start=1):
        print(f"  storm {i}: sent in {s['sent_s']:.2f} s, {s['events']:,.0f} events in "
              f"{s['compiles']:,.0f} compiles, agent p99 <= {s['agent_p99_bound_ms']:g} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
