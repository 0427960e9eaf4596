"""A lab: pods as network namespaces behind node namespaces, one real agent per node.

State lives in /run/enforcer/labs/NAME/ (state.json, the agents' manifest folder, logs), so
`up`, `apply`, `probe` and `down` are separate commands, and `down` can clean up after a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from enforcer.agentclient import AgentEndpoint
from enforcer.digest import set_digest
from enforcer.lab import addressing, proxymode
from enforcer.lab import manifests as mf
from enforcer.lab import services as svcs
from enforcer.lab import topology as topo
from enforcer.lab.probe import ProbeEndpoint

LAB_ROOT = Path(os.environ.get("ENFORCER_LAB_ROOT", "/run/enforcer/labs"))
PIN_ROOT = Path("/sys/fs/bpf/enforcer-lab")
AGENT_ADDR = "127.0.0.1:9830"  # inside each node namespace, so every node can use it
AGENT_LISTEN = "0.0.0.0:9830"
NETNS_PREFIX = "enf-"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class LabError(RuntimeError):
    pass


@dataclass
class LabState:
    name: str
    topology: str
    ipv6: bool
    nodes: list[dict[str, Any]] = field(default_factory=list)  # NodeNet fields
    # key -> PodNet fields; a hostNetwork pod's are its node's namespace and addresses, no
    # interface (host_ifname ""), and "host_network": True.
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    fabric_netns: str | None = None
    agent_pids: dict[str, int] = field(default_factory=dict)
    server_pid: int | None = None
    console_pid: int | None = None  # `enforcer console` for the lab's nodes
    console_url: str | None = None
    next_pod_index: int = 1
    services: str = "none"  # "per-pod": a Service for every pod (see services.py)
    dns: bool = False  # a DNS pod and its kube-dns Service
    cni_masquerade: bool = False  # pod traffic leaving the pod network is SNATed (flannel)
    proxy_mode: str = proxymode.DEFAULT  # kube-proxy's --proxy-mode: iptables or nftables
    agent_args: list[str] = field(default_factory=list)  # more flags for every node's agent
    # What the "API server" allocated, so a re-applied manifest keeps its addresses.
    cluster_ips: dict[str, list[str]] = field(default_factory=dict)  # service key -> IPs
    node_ports: dict[str, int] = field(default_factory=dict)  # "ns/svc/port name" -> port

    @property
    def dir(self) -> Path:
        return LAB_ROOT / self.name

    @property
    def manifest_dir(self) -> Path:
        return self.dir / "manifests"

    def node_nets(self) -> list[topo.NodeNet]:
        return [topo.NodeNet(**n) for n in self.nodes]

    def pod_nets(self) -> list[topo.PodNet]:
        return [_pod_net(p) for p in self.pods.values()]

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        for p in data["pods"].values():
            p["ips"] = [str(ip) for ip in p["ips"]]
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.dir / "state.json")

    @classmethod
    def load(cls, name: str) -> LabState:
        path = LAB_ROOT / name / "state.json"
        if not path.exists():
            raise LabError(f"no lab named {name!r} (`enforcer lab status` lists them)")
        return cls(**json.loads(path.read_text()))


def _pod_net(data: dict[str, Any]) -> topo.PodNet:
    return topo.PodNet(
        key=data["key"],
        node=data["node"],
        netns=data["netns"],
        host_ifname=data["host_ifname"],
        ips=[ip_address(ip) for ip in data["ips"]],
    )


def pin_dir(lab: str, node: str) -> Path:
    return PIN_ROOT / lab / node


def _ensure_bpffs() -> None:
    if subprocess.run(["mountpoint", "-q", "/sys/fs/bpf"]).returncode != 0:
        subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True)


def _invalid_input(errors: list[str], outcome: str) -> str:
    """One line for one error, a list for several."""
    head = f"invalid input ({outcome})" if outcome else "invalid input"
    if len(errors) == 1:
        return f"{head}: {errors[0]}"
    return head + ":\n  " + "\n  ".join(errors)


def _valid_name(name: str) -> str:
    if not name or len(name) > 20 or not all(c.isalnum() or c == "-" for c in name):
        raise LabError(f"lab name {name!r}: use 1-20 letters, digits or dashes")
    return name


# -- up -----------------------------------------------------------------------------------------


def up(
    paths: Sequence[str | Path],
    name: str,
    topology: str = "routed",
    nodes: int = 1,
    ipv6: bool = False,
    progress: Progress = _quiet,
    timeout: float = 60.0,
    services: str = "none",
    dns: bool = False,
    cni_masquerade: bool = False,
    agent_args: Sequence[str] = (),
    proxy_mode: str = proxymode.DEFAULT,
    accept_groups: Sequence[str] = (),
) -> LabState:
    """agent_args: more flags for every node's agent (e.g. --authn k8s and its kubeconfig)."""
    _valid_name(name)
    if services not in ("none", "per-pod"):
        raise LabError(f"--services {services!r}: use none or per-pod")
    if proxy_mode not in proxymode.MODES:
        raise LabError(f"--proxy-mode {proxy_mode!r}: use {' or '.join(proxymode.MODES)}")
    if (LAB_ROOT / name / "state.json").exists():
        raise LabError(f"lab {name!r} exists already: `enforcer lab down --name {name}` first")
    objects, errors = mf.read_raw(paths, accept_groups)
    if errors:
        raise LabError(_invalid_input(errors, ""))
    if dns:
        objects += svcs.dns_objects()
    objects = mf.implied_namespaces(objects) + objects
    node_objects = [o for o in objects if o["kind"] == "Node"]
    objects = [o for o in objects if o["kind"] != "Node"]
    all_pods = [o for o in objects if o["kind"] == "Pod"]
    pods = [p for p in all_pods if not mf.host_network(p)]
    host_pods = [p for p in all_pods if mf.host_network(p)]
    state = LabState(
        name=name,
        topology=topology,
        ipv6=ipv6,
        services=services,
        dns=dns,
        cni_masquerade=cni_masquerade,
        agent_args=list(agent_args),
        proxy_mode=proxy_mode,
    )
    # The whole address plan, checked before anything is created.
    refusal = f"lab {name}: an address plan no CNI would make (nothing created)"
    node_nets, subnets, note = _plan_nodes(name, pods, node_objects, nodes, host_pods)
    state.nodes = [asdict(n) for n in node_nets]
    planned = _plan_pods(state, pods, refusal, subnets)
    host_planned = _plan_host_pods(state, host_pods, "nothing created")
    node_names = [n.name for n in node_nets]
    progress(note)
    state.fabric_netns = f"{NETNS_PREFIX}{name}-fab" if len(node_names) > 1 else None
    state.manifest_dir.mkdir(parents=True, exist_ok=True)
    state.save()  # from here on, `down` knows what to remove
    try:
        progress(f"creating {len(node_names)} node namespace(s), {topology} topology")
        _ensure_bpffs()
        topo.create_nodes(state.node_nets(), state.fabric_netns, topology)
        given = {mf.object_id(n)[2]: n for n in node_objects}
        for node in state.node_nets():
            _write_node(state, node, given.get(node.name))
        for obj in objects:
            if obj["kind"] != "Pod":
                mf.write_object(state.manifest_dir, obj)
        progress(f"creating {len(pods)} pod namespace(s)"
                 + (f", {len(host_pods)} hostNetwork pod(s)" if host_pods else ""))
        _add_pods(state, planned)
        _add_host_pods(state, host_planned)
        sync_services(state)
        progress(f"starting {len(node_names)} agent(s)")
        for node in state.node_nets():
            state.agent_pids[node.name] = _start_agent(state, node)
        state.save()
        _start_console(state)
        _restart_server(state)
        progress("waiting until every agent enforces the cluster")
        wait_enforced(state, timeout)
        _await_console(state)
    except BaseException:
        state.save()
        raise
    return state


def _requested(pod: dict[str, Any]) -> addressing.RequestedPod:
    return addressing.requested_pod(_pod_key(pod), mf.node_name(pod), mf.pod_ips(pod))


def _plan_nodes(
    name: str,
    pods: list[dict[str, Any]],
    node_objects: list[dict[str, Any]],
    count: int,
    host_pods: Sequence[dict[str, Any]] = (),
) -> tuple[list[topo.NodeNet], addressing.NodeSubnets, str]:
    """The lab's nodes (see addressing.lab_nodes) with their pod subnets, and a sentence
    saying where the nodes come from. hostNetwork pods name nodes but take no pod address."""
    try:
        names, note = addressing.lab_nodes(
            [mf.object_id(n)[2] for n in node_objects]
            + [node for p in [*pods, *host_pods] if (node := mf.node_name(p))],
            max(count, 1),
        )
        cidrs = {
            mf.object_id(n)[2]: addressing.parse_pod_cidrs(mf.object_id(n)[2], mf.pod_cidrs(n))
            for n in node_objects
        }
        subnets = addressing.node_subnets(names, [_requested(p) for p in pods], cidrs)
    except addressing.PlanError as exc:
        raise LabError(str(exc)) from None
    nets = [
        topo.NodeNet(
            node, i, f"{NETNS_PREFIX}{name}-n{i}",
            str(subnets[node][4].network), str(subnets[node][6].network),
        )
        for i, node in enumerate(names, start=1)
    ]  # fmt: skip
    return nets, subnets, note


def _state_subnets(state: LabState) -> addressing.NodeSubnets:
    return {
        n.name: {f: addressing.NodeSubnet(n.subnet(f), "its pod subnet") for f in (4, 6)}
        for n in state.node_nets()
    }


Planned = list[tuple[dict[str, Any], addressing.PlacedPod]]


def _plan_pods(
    state: LabState,
    pods: list[dict[str, Any]],
    refusal: str,
    subnets: addressing.NodeSubnets | None = None,
    replacing: Iterable[str] = (),
) -> Planned:
    """Each new pod's node and addresses, next to the lab's pods but those `replacing`;
    LabError(refusal: why) if no CNI could produce the result."""
    subnets = subnets or _state_subnets(state)
    gone = set(replacing)
    existing = [
        addressing.PlacedPod(key, p["node"], tuple(ip_address(ip) for ip in p["ips"]))
        for key, p in state.pods.items()
        if key not in gone and not p.get("host_network")  # a hostNetwork pod has its node's
    ]
    used = {ip for p in existing for ip in p.ips}
    try:
        placed = addressing.place_pods(
            [_requested(p) for p in pods], subnets, used, len(existing), state.ipv6
        )
        addressing.refuse(addressing.problems(state.topology, subnets, existing + placed), refusal)
    except addressing.PlanError as exc:
        raise LabError(str(exc)) from None
    return list(zip(pods, placed, strict=True))


def _add_pods(state: LabState, planned: Planned) -> None:
    nodes = {n.name: n for n in state.node_nets()}
    new_nets: list[topo.PodNet] = []
    for pod, place in planned:
        ips = list(place.ips)
        index = state.next_pod_index
        state.next_pod_index += 1
        net = topo.PodNet(
            place.key, place.node, f"{NETNS_PREFIX}{state.name}-p{index}", f"enfp{index}", ips
        )
        state.pods[place.key] = {**asdict(net), "ips": [str(ip) for ip in ips]}
        new_nets.append(net)
        # Written before the namespace exists: the agent learns the pod, then its veth appears
        # (as with a CNI), and the veth is enforced from its first packet either way.
        mf.write_object(
            state.manifest_dir, mf.complete_pod(pod, place.node, [str(ip) for ip in ips])
        )
    state.save()
    topo.add_pods(new_nets, nodes, state.node_nets(), state.topology)


def _plan_host_pods(
    state: LabState, pods: list[dict[str, Any]], outcome: str
) -> list[tuple[dict[str, Any], topo.NodeNet]]:
    """Each hostNetwork pod's node: its spec.nodeName, else the lab's nodes in turn. Its
    addresses are its node's: a manifest giving others is refused."""
    nodes = state.node_nets()
    by_name = {n.name: n for n in nodes}
    placed = []
    for i, pod in enumerate(pods):
        node = by_name.get(mf.node_name(pod) or "", nodes[i % len(nodes)])
        own = [str(ip) for ip in node.addresses(state.ipv6)]
        given = mf.pod_ips(pod)
        if given and sorted(given) != sorted(own):
            raise LabError(
                f"pod {_pod_key(pod)}: hostNetwork, so its addresses are its node's "
                f"({node.name}: {', '.join(own)}), not {', '.join(given)} ({outcome})"
            )
        placed.append((pod, node))
    return placed


def _add_host_pods(state: LabState, planned: list[tuple[dict[str, Any], topo.NodeNet]]) -> None:
    """hostNetwork pods: in their node's namespace, with its addresses; nothing to create."""
    for pod, node in planned:
        ips = [str(ip) for ip in node.addresses(state.ipv6)]
        key = _pod_key(pod)
        state.pods[key] = {"key": key, "node": node.name, "netns": node.netns,
                           "host_ifname": "", "ips": ips, "host_network": True}
        mf.write_object(state.manifest_dir, mf.complete_pod(pod, node.name, ips))
    state.save()


def _write_node(state: LabState, node: topo.NodeNet, given: dict[str, Any] | None) -> None:
    """The node's Node object, for the agents (the `nodes` peers of cluster policies)."""
    cidrs = [str(node.subnet_v4)] + ([str(node.subnet_v6)] if state.ipv6 else [])
    addresses = [str(ip) for ip in node.addresses(state.ipv6)]
    mf.write_object(state.manifest_dir, mf.lab_node(node.name, given, cidrs, addresses))


def agent_command(netns: str, node: str, source: str, pins: Path, *extra: str) -> list[str]:
    """The real agent inside a node namespace. nsenter, not `ip netns exec`: the latter
    remounts /sys and would hide the pinned maps under /sys/fs/bpf."""
    return [
        "nsenter", f"--net=/run/netns/{netns}",
        sys.executable, "-m", "enforcer.cli", "--log-format", "json", "agent",
        "--node-name", node, "--source", source, "--pin-dir", str(pins),
        "--metrics-addr", AGENT_ADDR, *extra,
    ]  # fmt: skip


def agent_socket(state: LabState, node_name: str) -> Path:
    """The node agent's API socket (--api-socket): /status, /events and /flows, which its
    network address serves only to authorized tokens (--authn), as on a real node."""
    return state.dir / f"agent-{node_name}.sock"


def _start_agent(state: LabState, node: topo.NodeNet) -> int:
    cmd = agent_command(
        node.netns, node.name, f"dir:{state.manifest_dir}", pin_dir(state.name, node.name),
        # Every address of the node, as the DaemonSet's 0.0.0.0: pods can reach it.
        "--metrics-addr", AGENT_LISTEN, "--api-socket", str(agent_socket(state, node.name)),
        *state.agent_args,
    )
    with open(state.dir / f"agent-{node.name}.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    return proc.pid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_console(state: LabState) -> None:
    """`enforcer console` for the lab's nodes and manifests, on a free port of this machine's
    loopback; its URL and pid go in the state, its log in the lab's folder."""
    listen = f"127.0.0.1:{_free_port()}"
    cmd = [
        sys.executable, "-m", "enforcer.cli", "--log-format", "json", "console",
        "--listen", listen, "--agents", f"lab:{state.name}",
        "--source", f"dir:{state.manifest_dir}",
    ]  # fmt: skip
    with open(state.dir / "console.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    state.console_pid, state.console_url = proc.pid, f"http://{listen}/"
    state.save()


def _await_console(state: LabState, timeout: float = 10.0) -> None:
    """Until the console accepts connections (it starts while the agents compile)."""
    port = int((state.console_url or "").rstrip("/").rpartition(":")[2])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if state.console_pid and not _alive(state.console_pid):
            break
        time.sleep(0.05)
    raise LabError(f"the console did not start: see {state.dir}/console.log")


def _all_ports(state: LabState) -> list[tuple[int, str]]:
    ports: set[tuple[int, str]] = set()
    for obj in mf.read_folder(state.manifest_dir):
        if obj.get("kind") == "Pod":
            ports.update(mf.pod_ports(obj))
    return sorted(ports)


def _restart_server(state: LabState) -> None:
    """Every pod listens on every port any pod declares, so a probe measures policy only."""
    _kill(state.server_pid)
    ports = _all_ports(state)
    dns_pod = f"{svcs.DNS_NAMESPACE}/{svcs.DNS_POD}"
    records = str(svcs.records_path(state.dir))
    spec = [
        {
            "key": key,
            "netns": p["netns"],
            "ports": ports,
            "dns": records if key == dns_pod else None,
        }
        for key, p in state.pods.items()
        if not p.get("host_network")
    ]
    # hostNetwork pods share their node's namespace: one set of sockets per node.
    host_nodes: dict[str, str] = {}
    for key, p in sorted(state.pods.items()):
        if p.get("host_network"):
            host_nodes.setdefault(p["netns"], key)
    spec += [{"key": key, "netns": netns, "ports": ports, "dns": None}
             for netns, key in host_nodes.items()]
    spec_path = state.dir / "serve.json"
    spec_path.write_text(json.dumps(spec))
    log_path = state.dir / "serve.log"
    log_path.write_bytes(b"")
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "enforcer.lab.serve", str(spec_path)],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    state.server_pid = proc.pid
    state.save()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if log_path.read_bytes().startswith(b"serving"):
            return
        if proc.poll() is not None:
            raise LabError(f"port server failed: {log_path.read_text()[-500:]}")
        time.sleep(0.02)
    raise LabError("port server did not start in 10 s")


def _kill(pid: int | None, sig: int = signal.SIGTERM, wait: float = 5.0) -> None:
    if not pid:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:  # not our child: poll for its exit
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- waiting for enforcement --------------------------------------------------------------------


def expected_digest(state: LabState) -> str:
    """The digest of what the agents have taken in: the objects their parsers model, and the
    staged policies they judge flows by."""
    from enforcer.model.loader import parse_staged_policy

    tracked = [
        o
        for o in mf.read_folder(state.manifest_dir)
        if _model_object(o, "lab") is not None or parse_staged_policy(o) is not None
    ]
    return f"{set_digest(tracked):016x}"


def _model_object(raw: dict[str, Any], origin: str) -> Any:
    """What an agent's intake takes into its state from `raw` (enforcer.agent.intake): the
    model's objects, Services, and the cluster-scoped policies and Nodes."""
    from enforcer.model.loader import parse_object
    from enforcer.model.parse_clusterpolicy import parse_cluster_object
    from enforcer.model.parse_services import parse_service_object

    obj = parse_object(raw, origin) or parse_service_object(raw, origin)
    if obj is None:
        obj = parse_cluster_object(raw, origin)
    return obj


def node_status(state: LabState, node: topo.NodeNet) -> dict[str, Any]:
    status: dict[str, Any] = agent_endpoints(state)[node.name].get_json("/status", timeout=2.0)
    return status


def _node_enforced(state: LabState, node: topo.NodeNet, digest: str) -> tuple[bool, str]:
    try:
        status = node_status(state, node)
    except (OSError, RuntimeError) as exc:
        return False, f"agent not reachable ({exc})"
    if not status.get("ready"):
        return False, "agent not ready"
    if status.get("digest") != digest:
        return False, "agent has not applied the latest objects"
    local = {k for k, p in state.pods.items()
             if p["node"] == node.name and not p.get("host_network")}
    bound = {
        ep["pod"]
        for ep in status["endpoints"]
        if ep["ifindex"] is not None and ep["generation"] and not ep["error"]
    }
    missing = local - bound
    if missing:
        return False, f"endpoints not enforced yet: {', '.join(sorted(missing))}"
    return True, "enforced"


def wait_enforced(state: LabState, timeout: float = 60.0) -> float:
    """Block until every node's agent reports the lab's objects enforced; returns seconds."""
    start = time.monotonic()
    digest = expected_digest(state)
    pending = {n.name: "starting" for n in state.node_nets()}
    while True:
        for node in state.node_nets():
            if node.name in pending:
                ok, why = _node_enforced(state, node, digest)
                if ok:
                    del pending[node.name]
                else:
                    pending[node.name] = why
                    pid = state.agent_pids.get(node.name)
                    if pid and not _alive(pid):
                        raise LabError(
                            f"agent on {node.name} exited: see {state.dir}/agent-{node.name}.log"
                        )
        if not pending:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            detail = "; ".join(f"{n}: {w}" for n, w in sorted(pending.items()))
            raise LabError(f"not enforced after {timeout:.0f} s: {detail}")
        time.sleep(0.05)


def restart_agent(state: LabState, node_name: str, timeout: float = 60.0) -> None:
    """Stop a node's agent and start it again with the lab's current agent_args (the datapath
    stays in place: a restart leaves no gap); waits until every node enforces again."""
    node = next(n for n in state.node_nets() if n.name == node_name)
    pid = state.agent_pids.get(node_name)
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    state.agent_pids[node_name] = _start_agent(state, node)
    state.save()
    wait_enforced(state, timeout)


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False


# -- apply / delete -----------------------------------------------------------------------------


def apply(
    state: LabState,
    paths: Sequence[str | Path],
    timeout: float = 60.0,
    accept_groups: Sequence[str] = (),
) -> float:
    objects, errors = mf.read_raw(paths, accept_groups)
    if errors:
        raise LabError(_invalid_input(errors, "nothing applied"))
    nodes = _lab_nodes_of(state, objects)
    objects = [o for o in objects if o["kind"] != "Node"]
    objects = [
        o for o in mf.implied_namespaces([*mf.read_folder(state.manifest_dir), *objects])
    ] + objects
    pods = [o for o in objects if o["kind"] == "Pod"]
    # Same pod, new labels/spec: it keeps its node and addresses unless the manifest gives
    # other addresses (or another node, or turns hostNetwork on or off), and then it is made
    # anew.
    moved = [p for p in pods if _pod_key(p) in state.pods and _readdressed(state, p)]
    kept = [p for p in pods if _pod_key(p) in state.pods and p not in moved]
    new = [p for p in pods if _pod_key(p) not in state.pods]
    planned = _plan_pods(
        state,
        [p for p in new + moved if not mf.host_network(p)],
        f"lab {state.name}: an address plan no CNI would make (nothing applied)",
        replacing=[_pod_key(p) for p in moved],
    )
    host_planned = _plan_host_pods(
        state, [p for p in new + moved if mf.host_network(p)], "nothing applied"
    )
    for node in state.node_nets():
        if node.name in nodes:
            _write_node(state, node, nodes[node.name])
    for obj in objects:
        if obj["kind"] != "Pod":
            mf.write_object(state.manifest_dir, obj)
    for pod in kept:
        net = state.pods[_pod_key(pod)]
        mf.write_object(state.manifest_dir, mf.complete_pod(pod, net["node"], net["ips"]))
    if moved:
        _delete_pods(state, [_pod_key(p) for p in moved])
    if planned:
        _add_pods(state, planned)
    _add_host_pods(state, host_planned)
    sync_services(state)
    _restart_server(state)
    return wait_enforced(state, timeout)


def _pod_key(pod: dict[str, Any]) -> str:
    return "/".join(mf.object_id(pod)[1:])


def _readdressed(state: LabState, pod: dict[str, Any]) -> bool:
    now = state.pods[_pod_key(pod)]
    if mf.host_network(pod) != bool(now.get("host_network")):
        return True
    if mf.host_network(pod):
        return mf.node_name(pod) not in (None, now["node"])
    given = mf.pod_ips(pod)
    return bool(given) and sorted(given) != sorted(now["ips"])


def _lab_nodes_of(state: LabState, objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Nodes among the objects, by name: a lab's nodes and their subnets are fixed by
    `lab up`, so only their labels and annotations change."""
    nodes = {n.name: n for n in state.node_nets()}
    found = {}
    for obj in objects:
        if obj["kind"] != "Node":
            continue
        name = mf.object_id(obj)[2]
        if name not in nodes:
            raise LabError(
                f"Node {name}: lab {state.name} has nodes {', '.join(nodes)}, "
                "fixed by `lab up` (nothing applied)"
            )
        found[name] = obj
    return found


def delete(
    state: LabState,
    paths: Sequence[str | Path],
    timeout: float = 60.0,
    accept_groups: Sequence[str] = (),
) -> float:
    objects, errors = mf.read_raw(paths, accept_groups)
    if errors:
        raise LabError(_invalid_input(errors, "nothing deleted"))
    pods = []
    for obj in objects:
        if obj["kind"] == "Pod":
            pods.append("/".join(mf.object_id(obj)[1:]))
        elif obj["kind"] != "Node":  # a lab's nodes stay until `lab down`
            mf.remove_object(state.manifest_dir, obj)
    _delete_pods(state, [p for p in pods if p in state.pods])
    sync_services(state)
    _restart_server(state)
    return wait_enforced(state, timeout)


def _delete_pods(state: LabState, keys: Iterable[str]) -> None:
    nets = []
    for key in keys:
        data = state.pods.pop(key)
        ns, name = key.split("/", 1)
        mf.remove_object(
            state.manifest_dir, {"kind": "Pod", "metadata": {"namespace": ns, "name": name}}
        )
        if not data.get("host_network"):  # a hostNetwork pod's namespace is its node's
            nets.append(_pod_net(data))
    topo.remove_pods(nets, state.node_nets())
    state.save()


# -- probing ------------------------------------------------------------------------------------


def agent_endpoints(state: LabState) -> dict[str, AgentEndpoint]:
    """Each node's agent API, by node name (what lab flows, status and a console read)."""
    return {node.name: AgentEndpoint(node.name, socket=str(agent_socket(state, node.name)))
            for node in state.node_nets()}


def probe_endpoints(state: LabState, family: int = 4) -> list[ProbeEndpoint]:
    out = []
    for key in sorted(state.pods):
        net = _pod_net(state.pods[key])
        ips = [ip for ip in net.ips if ip.version == family]
        if not ips:
            raise LabError(f"pod {key} has no IPv{family} address (lab up --ipv6 for IPv6)")
        host = bool(state.pods[key].get("host_network"))
        out.append(ProbeEndpoint(key, net.netns, ips[0], host=host))
    return out


def model_state(state: LabState) -> Any:
    """The model's view of the lab's current objects, for `probe --check`: what is enforced,
    so without the StagedNetworkPolicies (see staged_policies)."""
    return _cluster_of(mf.read_folder(state.manifest_dir), str(state.manifest_dir))


def staged_policies(state: LabState) -> list[Any]:
    """The lab's StagedNetworkPolicies, as the NetworkPolicies they preview."""
    from enforcer.model.loader import parse_staged_policy

    folder = state.manifest_dir
    found = (parse_staged_policy(raw, str(folder)) for raw in mf.read_folder(folder))
    return [p for p in found if p is not None]


def _cluster_of(objects: Iterable[dict[str, Any]], origin: str) -> Any:
    from enforcer.model.cluster import ClusterState

    cluster = ClusterState()
    for raw in objects:
        obj = _model_object(raw, origin)
        if obj is not None:
            cluster.upsert(obj)
    return cluster


# -- Services: the API server's, the EndpointSlice controller's, kube-proxy's and DNS's part -----


def sync_services(state: LabState) -> None:
    """Bring Services, lab-made EndpointSlices, every node's kube-proxy rules and the DNS
    records in line with the lab's pods and manifests."""
    folder = state.manifest_dir
    objects = list(mf.read_folder(folder))
    services = [o for o in objects if o.get("kind") == "Service"]
    per_pod: dict[str, str] = {}
    if state.services == "per-pod":
        taken = {"/".join(mf.object_id(o)[1:]) for o in services}
        ports = _all_ports(state)
        wanted = []
        for key in sorted(state.pods):
            ns, name = key.split("/", 1)
            svc_key = f"{ns}/{svcs.per_pod_name(name)}"
            per_pod[svc_key] = name
            if svc_key not in taken or _is_per_pod(services, svc_key):
                wanted.append(svcs.per_pod_service(ns, name, ports))
        services = [o for o in services if not _per_pod_of(o)] + wanted
        for old in objects:
            if old.get("kind") == "Service" and _per_pod_of(old):
                if "/".join(mf.object_id(old)[1:]) not in per_pod:
                    mf.remove_object(folder, old)
    for svc in svcs.allocate([_remembered(state, o) for o in services], state.ipv6):
        _remember(state, svc)
        mf.write_object(folder, svc)
    state.save()
    objects = [o for o in mf.read_folder(folder) if not svcs.is_lab_slice(o)]
    cluster = _cluster_of(objects, str(folder))
    nodes = {k: p["node"] for k, p in state.pods.items()}
    slices = svcs.endpoint_slices(cluster, per_pod, nodes)
    keep = {mf.file_name(o) for o in slices}
    for old in mf.read_folder(folder):
        if svcs.is_lab_slice(old) and mf.file_name(old) not in keep:
            mf.remove_object(folder, old)
    for es in slices:
        mf.write_object(folder, es)
        cluster.upsert(_parse_service(es))
    for node in state.node_nets():
        for family in (4, 6) if state.ipv6 else (4,):
            cidr = addressing.cluster_cidr([n.subnet(family) for n in state.node_nets()], family)
            proxymode.sync(
                state.proxy_mode, node.netns, cluster, family, cidr, node.name, nodes,
                state.cni_masquerade,
            )  # fmt: skip
    if state.dns:
        from enforcer.lab import dns

        dns.write_records(svcs.records_path(state.dir), svcs.dns_records(cluster))


def _remembered(state: LabState, svc: dict[str, Any]) -> dict[str, Any]:
    """The Service with the addresses and node ports it was given before, unless it names
    its own."""
    svc = json.loads(json.dumps(svc))
    key = "/".join(mf.object_id(svc)[1:])
    spec = svc.setdefault("spec", {})
    if not spec.get("clusterIP") and not spec.get("clusterIPs") and key in state.cluster_ips:
        spec["clusterIP"] = state.cluster_ips[key][0]
        spec["clusterIPs"] = state.cluster_ips[key]
    for port in spec.get("ports") or []:
        remembered = state.node_ports.get(f"{key}/{port.get('name') or ''}")
        if remembered and spec.get("type") in ("NodePort", "LoadBalancer"):
            port.setdefault("nodePort", remembered)
    return svc


def _remember(state: LabState, svc: dict[str, Any]) -> None:
    key = "/".join(mf.object_id(svc)[1:])
    spec = svc.get("spec") or {}
    if spec.get("clusterIPs"):
        state.cluster_ips[key] = list(spec["clusterIPs"])
    for port in spec.get("ports") or []:
        if port.get("nodePort"):
            state.node_ports[f"{key}/{port.get('name') or ''}"] = int(port["nodePort"])


def _per_pod_of(svc: dict[str, Any]) -> str | None:
    annotations = (svc.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(svcs.PER_POD_ANNOTATION)
    return str(value) if value else None


def _is_per_pod(services: list[dict[str, Any]], key: str) -> bool:
    return any("/".join(mf.object_id(o)[1:]) == key and _per_pod_of(o) for o in services)


def _parse_service(raw: dict[str, Any]) -> Any:
    from enforcer.model.parse_services import parse_service_object

    return parse_service_object(raw, "lab")


def service_targets(
    state: LabState, port: int, protocol: str, family: int = 4
) -> dict[str, tuple[str, Any]]:
    """Destination pod -> (Service key, frontend IP) of a Service whose only backend on
    port/protocol is that pod (the per-pod Services of `--services per-pod` are such)."""
    cluster = model_state(state)
    found: dict[str, tuple[str, Any]] = {}
    for key, svc in sorted(cluster.services.services.items()):
        ips = [ip for ip in svc.cluster_ips if ip.version == family]
        if not ips or not svc.proxied:
            continue
        for sp in svc.ports:
            if sp.port != port or sp.protocol != protocol:
                continue
            pods = {b.pod for b in cluster.services.backends(cluster, key, sp)}
            if len(pods) == 1 and None not in pods:
                (pod,) = pods
                found.setdefault(str(pod), (key, ips[0]))
    return found


def declared_ports(state: LabState, protocol: str | None) -> list[tuple[int, str]]:
    return [(p, proto) for p, proto in _all_ports(state) if protocol in (None, proto)]


# -- down ---------------------------------------------------------------------------------------


def list_labs() -> list[str]:
    found = {p.name for p in LAB_ROOT.glob("*") if (p / "state.json").exists()}
    found |= {
        ns[len(NETNS_PREFIX) :].rsplit("-", 1)[0]
        for ns in topo.existing_netns()
        if ns.startswith(NETNS_PREFIX)
    }
    if PIN_ROOT.exists():
        found |= {p.name for p in PIN_ROOT.iterdir()}
    return sorted(found)


def down(name: str, progress: Progress = _quiet) -> None:
    """Remove every namespace, process, file and pinned map of lab `name`, even after a crash."""
    path = LAB_ROOT / name / "state.json"
    if path.exists():
        try:
            state = LabState.load(name)
            for pid in [*state.agent_pids.values(), state.server_pid, state.console_pid]:
                _kill(pid)
        except (OSError, ValueError, TypeError) as exc:
            progress(f"state of lab {name} unreadable ({exc}); removing by name")
    # Anything else still running from this lab's folder (a crashed `up` may not have saved pids).
    lab_dir = str(LAB_ROOT / name)
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if lab_dir + "/" in cmdline.replace("\0", " ") + " " and int(proc.name) != os.getpid():
            _kill(int(proc.name))
    prefix = f"{NETNS_PREFIX}{name}-"
    names = [ns for ns in topo.existing_netns() if ns.startswith(prefix)]
    # Pods first (their veths live in node namespaces), then nodes and the fabric.
    names.sort(key=lambda ns: (0 if "-p" in ns[len(prefix) - 1 :] else 1, ns))
    topo.delete_netns(names)
    shutil.rmtree(PIN_ROOT / name, ignore_errors=True)
    with contextlib.suppress(OSError):  # the last lab leaves no empty directory in bpffs
        PIN_ROOT.rmdir()
    shutil.rmtree(LAB_ROOT / name, ignore_errors=True)
    progress(f"lab {name} removed ({len(names)} namespaces)")
