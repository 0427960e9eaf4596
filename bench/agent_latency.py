"""Agent benchmark: event-to-enforced latency checked with packets, cold start, memory.
Targets (issue 4), with 10,000 pods and 2,000 policies: p99 latency under 100 ms, a single pod
event under 5 ms of compute, memory under 300 MB, first full enforcement under 5 s.

    .venv/bin/python -m bench.agent_latency [--quick] [--pods N --policies N] [--changes N]

A node namespace holds four real pods (namespace `lat`: client, server, other, newcomer) and
runs the real agent (`--source dir:`) under nsenter. The agent's folder also holds a synthetic
cluster (bench.model_scale's generator: pods on other nodes, so only the real pods are local,
but every selector and peer set covers them all). Each change is a manifest renamed into the
folder; its latency is the time until fresh TCP connections (every 2 ms, bench/flip_probe.py)
show the new verdict:

- pod add: `newcomer` (role=client; its veth exists, so it has the unknown-endpoint verdict)
  appears, and newcomer -> server on TCP/80 becomes allowed; pod delete: it goes, and denied;
- label change: client's role flips between client and blocked; client -> server follows;
- policy change: a policy on server allows role=other, then role=nobody; other -> server follows.

Also the agent's compute per change (its own policy-delay histogram, scraped around each
change; and of it the CPU time of the agent's loop, its policy-cpu histogram: the rest is
waiting, mostly in the kernel for the RCU grace period of each policy map swap), the time to
first full enforcement after a cold start (no pinned maps, fresh veths without a program: agent
start until /readyz is 200, which the agent reports once its first full sync is in the maps,
checked by probes giving the policy's verdicts; see Node.cold_start), and its VmRSS then. The
directory source sees a change when inotify reports the rename (its 20 ms poll is only the
fallback); the figures include reading and parsing the file.

A cold start's first rounds are not special: /readyz used to turn 200 before the first full
sync was written, so the first pod add was timed while the agent still wrote it (the ~1 s p99
outliers of earlier runs); the agent now reports ready only once it is enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.flip_probe import FlipProbe
from enforcer.agentclient import get_text
from enforcer.lab import manifests as mf
from enforcer.lab import topology as topo

NODE = "bench-node"
NS = "lat"
PORT = 80
AGENT_ADDR = "127.0.0.1:9830"  # inside the node namespace
LOCAL_PODS = ("client", "server", "other", "newcomer")
CHUNK = 1000  # synthetic objects per file: few files to poll, small enough to parse fast
EVENTS = ("pod_add", "pod_delete", "label_change", "policy_change")
DELAY_METRIC = "enforcer_policy_implementation_delay_seconds"
CPU_METRIC = "enforcer_policy_implementation_cpu_seconds"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def _pod(name: str, labels: dict[str, str], ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": NS, "name": name, "uid": f"lat-{name}", "labels": labels},
        "spec": {
            "nodeName": NODE,
            "containers": [{"name": "c", "ports": [{"containerPort": PORT, "protocol": "TCP"}]}],
        },
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def _policy(name: str, allow_role: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": NS, "name": name},
        "spec": {
            "podSelector": {"matchLabels": {"app": "server"}},
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"role": allow_role}}}],
                    "ports": [{"protocol": "TCP", "port": PORT}],
                }
            ],
        },
    }


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


class Node:
    """One node namespace with the four real pods, the agent's folder, and the agent."""

    def __init__(self, pods: int, policies: int, progress: Progress) -> None:
        self.tag = secrets.token_hex(3)
        self.progress = progress
        self.workdir = Path(tempfile.mkdtemp(prefix=f"enf-bench-agent-{self.tag}-"))
        self.folder = self.workdir / "manifests"
        self.folder.mkdir()
        self.node = topo.NodeNet(NODE, 1, f"enf-b{self.tag}-n1")
        self.pin_root = Path(f"/sys/fs/bpf/enf-bench-{self.tag}")
        self.pin_dir = self.pin_root / "0"
        self.pods: dict[str, topo.PodNet] = {}
        used: set[topo.IPAddress] = set()
        for i, name in enumerate(LOCAL_PODS, start=1):
            ips = topo.allocate_ips(self.node, used, False)
            used.update(ips)
            self.pods[name] = topo.PodNet(
                f"{NS}/{name}", NODE, f"enf-b{self.tag}-p{i}", f"enfp{i}", ips
            )
        self.agent: subprocess.Popen[bytes] | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.cold_starts = 0
        self._write_cluster(pods, policies)
        if subprocess.run(["mountpoint", "-q", "/sys/fs/bpf"]).returncode != 0:
            subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True)
        topo.create_nodes([self.node], None, "routed")

    def ip(self, name: str) -> topo.IPAddress:
        return self.pods[name].ips[0]

    def probe(self, src: str, dst: str = "server") -> FlipProbe:
        return FlipProbe(self.pods[src].netns, self.ip(dst), PORT)

    # -- the folder ---------------------------------------------------------------------------

    def _write_cluster(self, pods: int, policies: int) -> None:
        from bench.model_scale import generate

        self.progress(f"writing {pods:,} pods and {policies:,} policies as manifests")
        docs = generate(pods, max(1, pods // 20), policies)
        for i in range(0, len(docs), CHUNK):
            items = docs[i : i + CHUNK]
            path = self.folder / f"cluster-{i // CHUNK:04d}.json"
            path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        self.put(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
            _pod("client", {"app": "client", "role": "client"}, str(self.ip("client"))),
            _pod("server", {"app": "server"}, str(self.ip("server"))),
            _pod("other", {"app": "other", "role": "other"}, str(self.ip("other"))),
            _policy("server-from-clients", "client"),
            _policy("server-from-other", "nobody"),
        )

    def put(self, *objects: dict[str, Any]) -> None:
        for obj in objects:
            mf.write_object(self.folder, obj)  # write a hidden temp file, rename into place

    def staged(self, obj: dict[str, Any]) -> Callable[[], None]:
        """Write the object to a hidden temp file now; the returned call renames it in."""
        final = self.folder / mf.file_name(obj)
        tmp = self.folder / f".{final.name}.staged"
        tmp.write_text(json.dumps(obj))
        return lambda: os.replace(tmp, final)

    def removal(self, obj: dict[str, Any]) -> Callable[[], None]:
        path = self.folder / mf.file_name(obj)
        return lambda: path.unlink()

    # -- processes ----------------------------------------------------------------------------

    def fresh_pods(self) -> None:
        """Pod namespaces with new veths that carry no program, and the port server in them."""
        self._stop(self.server)
        # Delete the veths first: a namespace's devices go asynchronously after `netns del`,
        # and a host-side name still taken would fail the re-creation.
        present = topo.run(["ip", "-n", self.node.netns, "-o", "link", "show"])
        for p in self.pods.values():
            if f" {p.host_ifname}@" in present:
                topo.run(["ip", "-n", self.node.netns, "link", "del", p.host_ifname])
        topo.delete_netns(p.netns for p in self.pods.values())
        topo.add_pods(list(self.pods.values()), {NODE: self.node}, [self.node], "routed")
        spec = self.workdir / "serve.json"
        spec.write_text(
            json.dumps([{"netns": self.pods["server"].netns, "ports": [[PORT, "TCP"]]}])
        )
        self.server = subprocess.Popen(
            [sys.executable, "-m", "enforcer.lab.serve", str(spec)], stdout=subprocess.PIPE
        )
        assert self.server.stdout is not None
        if not self.server.stdout.readline().startswith(b"serving"):
            raise RuntimeError("port server did not start")

    def start_agent(self) -> None:
        self.cold_starts += 1
        self.pin_dir = self.pin_root / str(self.cold_starts)  # nothing pinned: a cold start
        cmd = [
            "nsenter", f"--net=/run/netns/{self.node.netns}",  # not `ip netns exec`: keeps bpffs
            sys.executable, "-m", "enforcer.cli", "--log-format", "json", "agent",
            "--node-name", NODE, "--source", f"dir:{self.folder}",
            "--pin-dir", str(self.pin_dir), "--metrics-addr", AGENT_ADDR,
            "--api-socket", str(self.workdir / "agent.sock"),
        ]  # fmt: skip
        with open(self.workdir / "agent.log", "ab") as log:
            self.agent = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)

    def stop_agent(self) -> None:
        self._stop(self.agent)
        self.agent = None
        shutil.rmtree(self.pin_dir, ignore_errors=True)

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def close(self) -> None:
        self.stop_agent()
        self._stop(self.server)
        topo.delete_netns([*(p.netns for p in self.pods.values()), self.node.netns])
        shutil.rmtree(self.pin_root, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def agent_log_tail(self) -> str:
        try:
            return (self.workdir / "agent.log").read_text()[-2000:]
        except OSError:
            return ""

    # -- observing ----------------------------------------------------------------------------

    def ready(self) -> bool:
        if self.agent is None or self.agent.poll() is not None:
            raise RuntimeError(f"agent exited:\n{self.agent_log_tail()}")
        try:
            code, _ = get_text(AGENT_ADDR, "/readyz", netns=self.node.netns, timeout=1.0)
        except OSError:
            return False
        return code == 200

    def compute_seconds(self) -> tuple[float, float, float]:
        """(sum, count) of the agent's change-to-maps-written histogram, and the sum of its
        loop's CPU time for the same changes."""
        _, text = get_text(AGENT_ADDR, "/metrics", netns=self.node.netns, timeout=2.0)
        found = dict(re.findall(rf"^{DELAY_METRIC}_(sum|count) (\S+)$", text, re.M))
        cpu = re.search(rf"^{CPU_METRIC}_sum (\S+)$", text, re.M)
        return (
            float(found.get("sum", 0.0)),
            float(found.get("count", 0.0)),
            float(cpu.group(1)) if cpu else float("nan"),
        )

    def rss_mb(self) -> float:
        assert self.agent is not None
        return _rss_mb(self.agent.pid)

    # -- measurements -------------------------------------------------------------------------

    def cold_start(self, limit: float = 120.0) -> tuple[float, float]:
        """(enforced, confirmed) seconds from the agent's start.

        enforced: until /readyz is 200 (the agent turns ready once the first full sync is
        written to the maps), plus however long after their start the probes that follow
        (client->server passes, other->server drops) took to show both verdicts, so an agent
        that reported ready too early is charged the difference. The probes alone could not
        time it: before the agent attaches, every connection passes (client's verdict is right
        early), and the unknown-endpoint verdict denies other->server from the attach on,
        before any table is written.
        confirmed: until the probes have confirmed both verdicts (three attempts each; a
        denial is only known when an attempt's 100 ms timeout passes): an upper bound."""
        self.stop_agent()
        self.fresh_pods()
        t0 = time.perf_counter()
        self.start_agent()
        while not self.ready():
            if time.perf_counter() - t0 > limit:
                raise TimeoutError(f"agent not ready after {limit:g} s")
            time.sleep(0.01)
        ready = time.perf_counter() - t0
        remaining = limit - ready
        late = max(
            self.probe("other").wait_for(False, remaining),
            self.probe("client").wait_for(True, remaining),
        )
        return ready + late, time.perf_counter() - t0

    def change(
        self, probe: FlipProbe, want: bool, action: Callable[[], None]
    ) -> tuple[float, float, float]:
        """(latency s, agent compute s and its loop's CPU s per change, or nan) for one
        change."""
        s0, c0, cpu0 = self.compute_seconds()
        latency = probe.measure(want, action)
        s1, c1, cpu1 = self._quiet_histogram()
        if c1 <= c0:
            return latency, float("nan"), float("nan")
        return latency, (s1 - s0) / (c1 - c0), (cpu1 - cpu0) / (c1 - c0)

    def _quiet_histogram(self, limit: float = 5.0) -> tuple[float, float, float]:
        """The histogram once the agent has finished the change (the verdict can flip before
        the last map write), so no change's work is counted with the next one's."""
        deadline = time.monotonic() + limit
        last = self.compute_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.15)
            now = self.compute_seconds()
            if now == last:
                return now
            last = now
        return last


def _latencies(node: Node, changes: int, progress: Progress) -> dict[str, Any]:
    ms: dict[str, list[float]] = {e: [] for e in EVENTS}
    compute: dict[str, list[float]] = {e: [] for e in EVENTS}
    cpu: dict[str, list[float]] = {e: [] for e in EVENTS}

    def record(event: str, result: tuple[float, float, float]) -> None:
        ms[event].append(result[0] * 1000)
        if result[1] == result[1]:  # not nan
            compute[event].append(result[1] * 1000)
        if result[2] == result[2]:
            cpu[event].append(result[2] * 1000)

    newcomer = _pod("newcomer", {"app": "newcomer", "role": "client"}, str(node.ip("newcomer")))
    for i in range(changes):
        progress(f"changes {i + 1}/{changes}: pod add and delete, label, policy")
        record("pod_add", node.change(node.probe("newcomer"), True, node.staged(newcomer)))
        record("pod_delete", node.change(node.probe("newcomer"), False, node.removal(newcomer)))
        client = _pod("client", {"app": "client", "role": "blocked"}, str(node.ip("client")))
        record("label_change", node.change(node.probe("client"), False, node.staged(client)))
        client["metadata"]["labels"]["role"] = "client"
        record("label_change", node.change(node.probe("client"), True, node.staged(client)))
        policy = _policy("server-from-other", "other")
        record("policy_change", node.change(node.probe("other"), True, node.staged(policy)))
        policy = _policy("server-from-other", "nobody")
        record("policy_change", node.change(node.probe("other"), False, node.staged(policy)))
    return {"ms": ms, "compute_ms": compute, "cpu_ms": cpu}


def measure_size(
    pods: int,
    policies: int,
    cold_starts: int,
    changes: int,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Cold starts (each followed by an RSS reading) and, if changes > 0, the latencies."""
    node = Node(pods, policies, progress)
    out: dict[str, Any] = {
        "pods": pods,
        "policies": policies,
        "cold_start_s": [],
        "cold_start_confirmed_s": [],
        "rss_mb": [],
    }
    try:
        for i in range(cold_starts):
            progress(f"{pods:,} pods: cold start {i + 1}/{cold_starts}")
            enforced, confirmed = node.cold_start()
            out["cold_start_s"].append(enforced)
            out["cold_start_confirmed_s"].append(confirmed)
            out["rss_mb"].append(node.rss_mb())
        if changes:
            out.update(_latencies(node, changes, lambda m: progress(f"{pods:,} pods: {m}")))
            out["rss_after_changes_mb"] = node.rss_mb()
            assert node.agent is not None
            out["peak_rss_mb"] = _rss_mb(node.agent.pid, "VmHWM")
    except Exception as exc:
        raise RuntimeError(f"{exc}\nagent log:\n{node.agent_log_tail()}") from exc
    finally:
        node.close()
    return out


def run(
    quick: bool = False,
    latency_size: tuple[int, int] | list[int] | None = None,
    scale_sizes: list[list[int]] | None = None,
    changes: int | None = None,
    cold_starts: int | None = None,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Latency at `latency_size` (pods, policies); cold start and RSS at every scale size."""
    lat = (2_000, 400) if quick else (10_000, 2_000)
    if latency_size:
        lat = (int(latency_size[0]), int(latency_size[1]))
    scale = [(int(s[0]), int(s[1])) for s in scale_sizes] if scale_sizes else [lat]
    n_changes = changes or (10 if quick else 50)
    n_cold = cold_starts or (1 if quick else 3)
    result: dict[str, Any] = {"scale": []}
    for pods, policies in scale + ([] if lat in scale else [lat]):
        r = measure_size(
            pods, policies, n_cold, n_changes if (pods, policies) == lat else 0, progress
        )
        if (pods, policies) in scale:
            kept = ("pods", "policies", "cold_start_s", "cold_start_confirmed_s", "rss_mb")
            result["scale"].append({k: r[k] for k in kept})
        if (pods, policies) == lat:
            result["latency"] = {
                "pods": pods,
                "policies": policies,
                "changes": n_changes,
                "probe_interval_ms": 2.0,
                "ms": r["ms"],
                "compute_ms": r["compute_ms"],
                "cpu_ms": r["cpu_ms"],
                "rss_after_changes_mb": r["rss_after_changes_mb"],
                "peak_rss_mb": r["peak_rss_mb"],
            }
    return result


def _pct(values: list[float], pct: float) -> float:
    from bench.report import percentile

    return percentile(values, pct)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.agent_latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--pods", type=int, default=None)
    p.add_argument("--policies", type=int, default=None)
    p.add_argument("--changes", type=int, default=None)
    p.add_argument("--cold-starts", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    size = [args.pods, args.policies] if args.pods else None
    if size and args.policies is None:
        size[1] = args.pods // 5
    r = run(
        args.quick,
        size,
        None,
        args.changes,
        args.cold_starts,
        progress=lambda m: print(m, file=sys.stderr),
    )
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    lat = r["latency"]
    print(f"agent: {lat['pods']:,} pods, {lat['policies']:,} policies, {lat['changes']} rounds")
    for event in EVENTS:
        v, c, cpu = lat["ms"][event], lat["compute_ms"][event], lat["cpu_ms"][event]
        print(
            f"  {event:<14} latency median {statistics.median(v):7.1f} ms  "
            f"p99 {_pct(v, 99):7.1f} ms  (n={len(v)}; compute median "
            f"{statistics.median(c) if c else float('nan'):.2f} ms, of it CPU "
            f"{statistics.median(cpu) if cpu else float('nan'):.2f} ms)"
        )
    for s in r["scale"]:
        print(
            f"  cold start {statistics.median(s['cold_start_s']):.2f} s (confirmed by probes "
            f"{statistics.median(s['cold_start_confirmed_s']):.2f} s), RSS "
            f"{statistics.median(s['rss_mb']):.0f} MB ({s['pods']:,} pods)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
