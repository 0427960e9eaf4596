"""The agent's image, built by `make image` and run exactly as the rendered DaemonSet runs it.

The DaemonSet is read from the kustomization (tests/deploy/render.py), and each container is run
with podman with its own security context, volume mounts, environment, args and memory limit
(tests/deploy/podman.py refuses a field it does not translate). The node is a lab node's network
namespace (hostNetwork) with the upstream e2e model's nine pods on it; its /sys/fs/bpf is a plain
directory of this test's (a node without a bpffs) that the privileged init container mounts one
on, its /run/enforcer a directory of this test's, and its /run/netns, /lib/modules and /usr/src
the machine's (read-only). The API server is the test's fake one speaking HTTPS with a CA made
here, reached the way a kubelet tells a pod to (KUBERNETES_SERVICE_HOST/PORT, a service-account
token and CA at the standard path), and it refuses any other token. The agent must compile,
attach, enforce upstream cases as the model says with real packets and serve its probes within
the startup probe's budget; then the uninstall DaemonSet's command, in a container of its own,
must leave no pin, program or filter behind.

The image is built once per session by `make image`'s script (scripts/build-image.sh: 2 to 5
minutes from a clean cache on this shared 2-CPU machine, 3 s when nothing changed, about 40 s
when only the package's sources did), started in the background as soon as the session is
collected (tests/deploy/image_build.py); the test itself takes about 25 s.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from enforcer.agentclient import AgentEndpoint, get_text
from enforcer.analysis.matrix import reachability
from enforcer.datapath import bpfsys, tcx
from enforcer.datapath.tc import filters
from enforcer.lab import topology as topo
from enforcer.lab.probe import ProbeEndpoint, probe_matrix
from enforcer.model.cluster import ClusterState
from enforcer.model.loader import parse_object
from enforcer.netnsutil import run_in_netns
from tests.fakeapi.server import FakeKubeAPI
from tests.fakeapi.tls import make_server_tls
from tests.lab import upstream

from . import image_build
from .podman import PodRun, podman
from .render import DAEMONSET_DIR, agent_pod_spec, load_documents

pytestmark = pytest.mark.kernel

# daemonset/README.md, "Build the image": the budget the image must stay under.
IMAGE_BUDGET_BYTES = 600 * 1000 * 1000
NODE = "node1"
CASES = ("default-deny-all", "pod-and-namespace-selector", "named-port-ingress")
PROBED = ((80, "TCP"), (81, "UDP"))
SERVED = [[80, "TCP"], [81, "TCP"], [80, "UDP"], [81, "UDP"]]

Obj = dict[str, Any]


def _uninstall_pod() -> Obj:
    docs = load_documents(DAEMONSET_DIR / "uninstall.yaml")
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    spec: Obj = ds["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="session")
def built_image() -> str:
    """`make image`'s script, once per session, started in the background when the session
    was collected (tests/deploy/image_build.py); the image the DaemonSet names."""
    build = image_build.start(image_build.daemonset_image())
    image = build.wait()
    print(f"image built in {time.monotonic() - build.started:.0f} s after the session's "
          "collection", file=sys.stderr)
    return image


def _eventually(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true after {timeout} s: {what}")
        time.sleep(0.2)
    return time.monotonic() - start


def _probe_ok(netns: str, port: int, path: str) -> bool:
    try:
        code, _ = get_text(f"127.0.0.1:{port}", path, netns=netns, timeout=1.0)
    except OSError:
        return False
    return code == 200


def _fs_type(path: Path) -> str:
    return subprocess.run(
        ["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()


def _rejects_other_tokens(api: FakeKubeAPI, ca: Path, netns: str) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))

    def ask(token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(f"{api.url}/api/v1/pods", headers=headers)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    return run_in_netns(netns, lambda: (ask("forged"), ask(None))) == (401, 401)


@pytest.fixture
def node_bpffs(tmp_path: Path) -> Iterator[Path]:
    """The node's /sys/fs/bpf: a plain directory (a node without a bpffs), a shared mount so
    that the init container's Bidirectional mount reaches it, as on a node."""
    path = tmp_path / "node" / "sys-fs-bpf"
    path.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "--make-rshared", str(path)], check=True)
        yield path
    finally:
        # The bpffs the init container mounted, then the bind (one at a time: propagation may
        # have stacked more than one copy).
        for _ in range(10):
            if subprocess.run(["mountpoint", "-q", str(path)]).returncode != 0:
                break
            subprocess.run(["umount", str(path)], check=False)
        assert subprocess.run(["mountpoint", "-q", str(path)]).returncode != 0, "mount left"


class Cluster:
    """The upstream model's pods on one node, served, and the model's view of what is applied."""

    def __init__(self, tag: str) -> None:
        self.node = topo.NodeNet(NODE, 1, f"enf-i{tag}-n1")
        used: set[topo.IPAddress] = set()
        self.pods: dict[str, topo.PodNet] = {}
        for i, (ns, name) in enumerate(
            ((n, p) for n in upstream.NAMESPACES for p in upstream.PODS), start=1
        ):
            ips = topo.allocate_ips(self.node, used, False)
            used.update(ips)
            self.pods[f"{ns}/{name}"] = topo.PodNet(
                f"{ns}/{name}", NODE, f"enf-i{tag}-p{i}", f"enfp{i}", ips
            )
        self.objects: list[Obj] = []
        self.server: subprocess.Popen[bytes] | None = None

    def pod_objects(self) -> list[Obj]:
        out = [upstream.namespace(n) for n in upstream.NAMESPACES]
        for key, net in self.pods.items():
            ns, name = key.split("/")
            obj = upstream.pod(ns, name)
            obj["spec"]["nodeName"] = NODE
            ip = str(net.ips[0])
            obj["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
            out.append(obj)
        return out

    def up(self, workdir: Path) -> None:
        topo.create_nodes([self.node], None, "routed")
        topo.add_pods(list(self.pods.values()), {NODE: self.node}, [self.node], "routed")
        spec = workdir / "serve.json"
        spec.write_text(
            json.dumps(
                [{"netns": p.netns, "ports": SERVED} for p in self.pods.values()]
            )
        )
        self.server = subprocess.Popen(
            [sys.executable, "-m", "enforcer.lab.serve", str(spec)], stdout=subprocess.PIPE
        )
        assert self.server.stdout is not None
        assert self.server.stdout.readline().startswith(b"serving")

    def down(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(10)
        topo.delete_netns([p.netns for p in self.pods.values()] + [self.node.netns])

    def endpoints(self) -> list[ProbeEndpoint]:
        return [ProbeEndpoint(k, p.netns, p.ips[0]) for k, p in self.pods.items()]

    def expected(self, objects: list[Obj], port: int, protocol: str) -> dict[str, dict[str, bool]]:
        state = ClusterState()
        for raw in objects:
            obj = parse_object(raw, "test")
            if obj is not None:
                state.upsert(obj)
        return reachability(state, port, protocol, 4, pods=list(self.pods))

    def host_ifindexes(self) -> list[int]:
        from pyroute2 import IPRoute

        def lookup() -> list[int]:
            with IPRoute() as ipr:
                return [ipr.link_lookup(ifname=p.host_ifname)[0] for p in self.pods.values()]

        return run_in_netns(self.node.netns, lookup)

    def attached_program_ids(self) -> set[int]:
        def query() -> set[int]:
            return {
                prog_id
                for ifindex in self.host_ifindexes()
                for attach in tcx.HOOKS.values()
                for prog_id in bpfsys.prog_query(ifindex, attach)
            }

        return run_in_netns(self.node.netns, query)


# linux/capability.h
CAPABILITY_BITS = {"NET_ADMIN": 12, "SYS_ADMIN": 21, "SYS_RESOURCE": 24, "PERFMON": 38, "BPF": 39}


def _capabilities(status: Path, field: str) -> set[int]:
    line = next(ln for ln in status.read_text().splitlines() if ln.startswith(f"{field}:"))
    mask = int(line.split()[1], 16)
    return {bit for bit in range(64) if mask >> bit & 1}


def _program_exists(prog_id: int) -> bool:
    try:
        fd = bpfsys.prog_fd_by_id(prog_id)
    except FileNotFoundError:
        return False
    os.close(fd)
    return True


# The first kernel test to use the image builds it: 3 to 5 minutes from a clean cache here.
@pytest.mark.timeout(1200)
def test_the_image_runs_under_the_daemonsets_own_spec_and_uninstalls_clean(
    built_image: str, tmp_path: Path, node_bpffs: Path
) -> None:
    size = int(podman("image", "inspect", "--format", "{{.Size}}", built_image).stdout)
    assert size <= IMAGE_BUDGET_BYTES, f"image {size / 1e6:.0f} MB over its budget"

    tag = secrets.token_hex(3)
    cluster = Cluster(tag)
    token = f"sa-token-{secrets.token_hex(16)}"
    tls = make_server_tls(tmp_path / "pki", ["127.0.0.1"], ("kubernetes.default.svc",))
    api = FakeKubeAPI(host="127.0.0.1", tls=(str(tls.cert), str(tls.key)), bearer_token=token)
    run_enforcer = tmp_path / "node" / "run-enforcer"
    pod_spec = agent_pod_spec()
    agent_pod = PodRun(
        pod_spec,
        netns=cluster.node.netns,
        node_name=NODE,
        workdir=tmp_path / "agent-pod",
        node_paths={"/sys/fs/bpf": node_bpffs, "/run/enforcer": run_enforcer},
        service_account={
            "token": token.encode(),
            "ca.crt": tls.ca_cert.read_bytes(),
            "namespace": b"enforcer-system",
        },
    )
    uninstall_pod = PodRun(
        _uninstall_pod(),
        netns=cluster.node.netns,
        node_name=NODE,
        workdir=tmp_path / "uninstall-pod",
        node_paths={"/sys/fs/bpf": node_bpffs},
    )
    (agent,) = pod_spec["containers"]
    pin_dir_arg = next(a for a in agent["args"] if a.startswith("--pin-dir="))
    pin_dir = node_bpffs / Path(pin_dir_arg.split("=", 1)[1]).relative_to("/sys/fs/bpf")
    metrics_port = next(p["containerPort"] for p in agent["ports"] if p["name"] == "metrics")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert agent[probe]["httpGet"]["port"] == "metrics"
    startup = agent["startupProbe"]
    startup_budget = startup["periodSeconds"] * startup["failureThreshold"]
    agent_name = f"enf-i{tag}-agent"
    try:
        cluster.up(tmp_path)
        run_in_netns(cluster.node.netns, api.start)
        for obj in cluster.pod_objects():
            api.create(obj)
        agent_pod.env = {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(api.port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(api.port),
        }

        # The init container: a node without a bpffs gets one, and the agent sees it.
        assert _fs_type(node_bpffs) != "bpf_fs"
        (init,) = pod_spec["initContainers"]
        done = agent_pod.run(init["name"], f"enf-i{tag}-init")
        assert done.returncode == 0, done.stderr
        assert _fs_type(node_bpffs) == "bpf_fs", "the init container mounted no bpffs on the node"

        started = time.monotonic()
        agent_pod.start(agent["name"], agent_name)

        def logs() -> str:
            out = podman("logs", agent_name, check=False)
            return (out.stdout + out.stderr)[-6000:]

        def alive(path: str) -> Callable[[], bool]:
            def check() -> bool:
                state = podman("inspect", "--format", "{{.State.Status}}", agent_name, check=False)
                if state.stdout.strip() not in ("running", "created", "configured"):
                    raise AssertionError(f"agent container {state.stdout.strip()}:\n{logs()}")
                return _probe_ok(cluster.node.netns, metrics_port, path)

            return check

        try:
            healthy = _eventually(alive(agent["startupProbe"]["httpGet"]["path"]),
                                  startup_budget, "healthz within the startup probe's budget")
            ready = _eventually(alive(agent["readinessProbe"]["httpGet"]["path"]), 120, "readyz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{logs()}") from None
        print(f"agent healthy {healthy:.1f} s, ready {healthy + ready:.1f} s after start "
              f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
        liveness = agent["livenessProbe"]["httpGet"]["path"]
        assert _probe_ok(cluster.node.netns, metrics_port, liveness)

        # It runs with the manifest's capabilities and nothing else: those the runner itself may
        # grant (a sandboxed runner may lack CAP_SYS_RESOURCE: podman leaves out what it cannot
        # give; on kernels >= 5.11 the agent needs no memlock), on a read-only root.
        pid = podman("inspect", "--format", "{{.State.Pid}}", agent_name).stdout.strip()
        granted = _capabilities(Path(f"/proc/{pid}/status"), "CapEff")
        wanted = {CAPABILITY_BITS[c] for c in agent["securityContext"]["capabilities"]["add"]}
        assert granted == wanted & _capabilities(Path("/proc/self/status"), "CapBnd")
        assert {CAPABILITY_BITS[c] for c in ("BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN")} <= granted
        wrote = podman("exec", agent_name, "sh", "-c", "touch /opt/enforcer/x", check=False)
        assert wrote.returncode != 0 and "Read-only file system" in wrote.stderr

        # It came in with the service account's token over TLS, and nothing else gets in.
        assert api.unauthorized == 0
        assert api.requests, "the agent asked the API server nothing"
        assert _rejects_other_tokens(api, tls.ca_cert, cluster.node.netns)
        assert api.unauthorized == 2

        # Its API socket is on the node, in the hostPath.
        def agent_status() -> Any:
            return AgentEndpoint(NODE, socket=str(run_enforcer / "agent.sock")).get_json("/status")

        status = agent_status()
        assert len(status["endpoints"]) == len(cluster.pods), status

        # Enforced as the model says, with real packets, case by case.
        ips = {k: str(p.ips[0]) for k, p in cluster.pods.items()}
        cases = upstream.cases(ips)
        base = cluster.pod_objects()
        for name in CASES:
            policies = cases[name]
            for pol in policies:
                api.create(pol)
            for port, proto in PROBED:
                want = cluster.expected(base + policies, port, proto)
                assert any(not ok for row in want.values() for ok in row.values()), name

                seen: list[dict[str, dict[str, bool]]] = []

                def matches(port: int = port, proto: str = proto,
                            want: dict[str, dict[str, bool]] = want,
                            seen: list[dict[str, dict[str, bool]]] = seen) -> bool:
                    seen[:] = [probe_matrix(cluster.endpoints(), port, proto, 0.5)]
                    return seen[0] == want

                try:
                    _eventually(matches, 20, f"{name}: {port}/{proto} as the model says")
                except AssertionError as exc:
                    wrong = [f"{s} -> {d}: model {'allowed' if ok else 'denied'}"
                             for s, row in want.items() for d, ok in row.items()
                             if seen[0][s][d] != ok]
                    raise AssertionError(f"{exc}: {wrong}\n{logs()}\n{agent_status()}") from None
            for pol in policies:
                api.delete(pol["kind"], pol["metadata"]["name"], pol["metadata"]["namespace"])

        # Left enforcing: the pinned maps and programs outlive the agent's container.
        deny = cases["default-deny-all"]
        for pol in deny:
            api.create(pol)
        x_a, y_a = (e for e in cluster.endpoints() if e.key in ("x/a", "y/a"))
        def y_a_reaches_x_a() -> bool:
            return probe_matrix([y_a], 80, "TCP", 0.5, destinations=[x_a])["y/a"]["x/a"]

        _eventually(lambda: not y_a_reaches_x_a(), 20, "y/a -> x/a denied")
        programs = cluster.attached_program_ids()
        assert programs, "nothing attached to the pods' veths"
        assert pin_dir.is_dir() and any(pin_dir.iterdir())
        podman("stop", "--time", str(pod_spec["terminationGracePeriodSeconds"]), agent_name,
               timeout=60)
        assert not y_a_reaches_x_a()
        assert cluster.attached_program_ids() == programs

        # The uninstall DaemonSet's command, in its own container: nothing of ours is left.
        (uninstall,) = _uninstall_pod()["initContainers"]
        removed = uninstall_pod.run(uninstall["name"], f"enf-i{tag}-uninstall")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert not pin_dir.exists()
        assert cluster.attached_program_ids() == set()
        for ifindex in cluster.host_ifindexes():
            assert tcx.programs(ifindex, cluster.node.netns) == []
            assert filters(ifindex, cluster.node.netns) == []
        _eventually(lambda: not any(_program_exists(p) for p in programs), 10, "programs freed")
        assert y_a_reaches_x_a()
    finally:
        agent_pod.remove_all()
        uninstall_pod.remove_all()
        try:
            run_in_netns(cluster.node.netns, api.stop)
        except OSError:
            pass
        cluster.down()
