"""The lab's network without any enforcement: every pod reaches every pod, in both topologies,
across nodes, over IPv4 and IPv6, through real sockets served by the lab's port server."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from enforcer.agent.interfaces import InterfaceDiscovery
from enforcer.lab import topology as topo
from enforcer.lab.probe import PortProbe, ProbeEndpoint, probe_matrices, probe_matrix
from enforcer.netnsutil import run_in_netns

pytestmark = pytest.mark.kernel


class Net:
    def __init__(self, topology: str, nodes: int, pods_per_node: int, ipv6: bool) -> None:
        tag = secrets.token_hex(3)
        self.nodes = [topo.NodeNet(f"node{i}", i, f"enf-t{tag}-n{i}") for i in range(1, nodes + 1)]
        self.fabric = f"enf-t{tag}-fab" if nodes > 1 else None
        self.pods: list[topo.PodNet] = []
        used: set = set()
        for n in self.nodes:
            for _ in range(pods_per_node):
                ips = topo.allocate_ips(n, used, ipv6)
                used.update(ips)
                idx = len(self.pods) + 1
                self.pods.append(
                    topo.PodNet(f"ns/p{idx}", n.name, f"enf-t{tag}-p{idx}", f"enfp{idx}", ips)
                )
        self.topology = topology

    def names(self) -> list[str]:
        return (
            [p.netns for p in self.pods]
            + [n.netns for n in self.nodes]
            + ([self.fabric] if self.fabric else [])
        )


@pytest.fixture
def build(tmp_path: Path) -> Iterator:
    made: list[Net] = []
    servers: list[subprocess.Popen] = []

    def _build(topology: str, nodes: int = 1, pods_per_node: int = 2, ipv6: bool = False) -> Net:
        net = Net(topology, nodes, pods_per_node, ipv6)
        made.append(net)
        topo.create_nodes(net.nodes, net.fabric, topology)
        topo.add_pods(net.pods, {n.name: n for n in net.nodes}, net.nodes, topology)
        spec = tmp_path / f"serve-{len(made)}.json"
        import json

        spec.write_text(
            json.dumps([{"netns": p.netns, "ports": [[80, "TCP"], [81, "UDP"]]} for p in net.pods])
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "enforcer.lab.serve", str(spec)], stdout=subprocess.PIPE
        )
        servers.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"serving")
        return net

    try:
        yield _build
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(5)
        for net in made:
            topo.delete_netns(net.names())
        leftovers = [ns for net in made for ns in net.names() if ns in topo.existing_netns()]
        assert not leftovers


def endpoints(net: Net, family: int) -> list[ProbeEndpoint]:
    return [
        ProbeEndpoint(p.key, p.netns, next(ip for ip in p.ips if ip.version == family))
        for p in net.pods
    ]


@pytest.mark.parametrize("topology", ["routed", "bridged"])
def test_two_nodes_full_mesh_v4_v6(build, topology: str) -> None:
    net = build(topology, nodes=2, pods_per_node=2, ipv6=True)
    for family in (4, 6):
        for port, proto in ((80, "TCP"), (81, "UDP")):
            matrix = probe_matrix(endpoints(net, family), port, proto, timeout=2.0)
            denied = [(s, d) for s, row in matrix.items() for d, ok in row.items() if not ok]
            assert denied == [], f"IPv{family} {port}/{proto}"


def test_closed_port_is_reported_unreachable(build) -> None:
    net = build("routed", nodes=1, pods_per_node=2)
    matrix = probe_matrix(endpoints(net, 4), 9999, "TCP", timeout=0.5)
    assert not any(ok for row in matrix.values() for ok in row.values())


def test_several_ports_probed_at_once_each_answer_in_its_own_matrix(build) -> None:
    net = build("routed", nodes=1, pods_per_node=2)
    pods = endpoints(net, 4)
    probes = [
        PortProbe(80, "TCP"),  # served
        PortProbe(9999, "TCP"),  # closed
        PortProbe(81, "UDP"),  # served
        PortProbe(80, "UDP"),  # closed
        PortProbe(80, "TCP", destinations=pods[1:]),  # served, one column
    ]
    served, closed, echoed, unanswered, one_column = probe_matrices(pods, probes, timeout=1.0)
    keys = [p.key for p in pods]
    for matrix in (served, closed, echoed, unanswered):
        assert {s: list(row) for s, row in matrix.items()} == {k: keys for k in keys}
    assert all(ok for m in (served, echoed) for row in m.values() for ok in row.values())
    assert not any(ok for m in (closed, unanswered) for row in m.values() for ok in row.values())
    assert one_column == {k: {keys[1]: True} for k in keys}


def test_sctp_probe_sees_injected_init(build) -> None:
    net = build("bridged", nodes=2, pods_per_node=1)
    # A fresh bridge can hold the first packet ~1 s (first ARP lost): as the TCP/UDP test does.
    matrix = probe_matrix(endpoints(net, 4), 80, "SCTP", timeout=2.5)
    assert all(ok for row in matrix.values() for ok in row.values())


@pytest.mark.parametrize("topology", ["routed", "bridged"])
def test_interface_discovery_finds_each_pods_veth(build, topology: str) -> None:
    net = build(topology, nodes=1, pods_per_node=3, ipv6=True)
    node = net.nodes[0]

    def discover() -> dict[str, tuple[int | None, set]]:
        found = {}
        d = InterfaceDiscovery()
        by_name = {i.name: i for i in d.list_interfaces()}
        for p in net.pods:
            idx = d.interface_for_ip(p.ips[0])
            found[p.host_ifname] = (idx, d.addresses_behind(by_name[p.host_ifname]))
        found["_names"] = (None, set(by_name))
        return found

    found = run_in_netns(node.netns, discover)
    assert found.pop("_names")[1] == {p.host_ifname for p in net.pods}  # uplinks/bridges excluded
    ifindex = {name: idx for name, idx in run_in_netns(node.netns, _ifindexes).items()}
    for p in net.pods:
        idx, addrs = found[p.host_ifname]
        assert idx == ifindex[p.host_ifname]
        assert set(p.ips) <= addrs


def _ifindexes() -> dict[str, int]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}


def test_netlink_watch_reports_new_and_gone_veths(build) -> None:
    import threading

    net = build("routed", nodes=1, pods_per_node=1)
    node = net.nodes[0]
    seen_new: list[str] = []
    seen_gone: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        InterfaceDiscovery().watch(lambda i: seen_new.append(i.name), seen_gone.append, stop)

    t = threading.Thread(target=lambda: run_in_netns(node.netns, watch), daemon=True)
    t.start()
    time.sleep(0.3)
    extra = topo.PodNet("ns/extra", node.name, net.pods[0].netns + "x", "enfp99", [])
    net.pods.append(extra)
    topo.add_pods([extra], {node.name: node}, net.nodes, "routed")
    deadline = time.monotonic() + 3
    while "enfp99" not in seen_new and time.monotonic() < deadline:
        time.sleep(0.02)
    topo.delete_netns([extra.netns])
    while not seen_gone and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    t.join(2)
    assert "enfp99" in seen_new
    assert seen_gone
