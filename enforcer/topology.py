"""Network-namespace topologies, the way CNIs build them: node namespaces with pod namespaces
behind veths, joined by a fabric. This module owns the wiring; two address plans use it: the
`Topology` builder below (tests, benchmarks) and the lab's (enforcer/lab/topology.py).

- routed (Calico, kindnet): each pod has a /32 (/128) and default routes via a link-local
  gateway that every host-side veth owns (169.254.1.1, fe80::1); the node has a /32 (/128)
  route per pod through its veth.
- bridged (flannel, bridge CNI): the host-side veths are ports of a bridge in the node
  namespace that holds the pod subnet's gateway address.

Several nodes are joined through a "fabric" namespace holding a bridge. Everything is created
inside namespaces made here (veths are created in the node namespace with their peer placed
straight into the pod namespace), so the root namespace's links, routes and firewall are never
touched; `ip -batch` keeps it to a few processes. IPv6 duplicate address detection is off so
addresses work at once.

`Topology` names everything uniquely (prefix `enf-` + random id; host-side veths `enfp<id><n>`
so the agent's interface pattern picks them up). Use it as a context manager: everything is
deleted on exit, even after an error.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path
from typing import Literal, TypeVar

from enforcer.netnsutil import run_in_netns

Mode = Literal["routed", "bridged"]
IPAddress = IPv4Address | IPv6Address
T = TypeVar("T")

GATEWAY4 = IPv4Address("169.254.1.1")
GATEWAY6 = IPv6Address("fe80::1")
BRIDGE = "enfbr0"
UPLINK = "uplink0"  # a node's port on the fabric
FABRIC_BRIDGE = "fab"

NETNS_SYSCTLS = {
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
    "net.ipv6.conf.all.keep_addr_on_down": "1",
}
NODE_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}
# Unprivileged ICMP echo sockets, as container runtimes allow them in pods.
POD_SYSCTLS = {"net.ipv4.ping_group_range": "0 2147483647"}


# -- primitives ----------------------------------------------------------------------------


def run(cmd: list[str], input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(cmd, input=input, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def ip_batch(netns: str | None, commands: Iterable[str]) -> None:
    text = "\n".join(commands) + "\n"
    if text.strip():
        run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], input=text)


def sysctl(netns: str, values: dict[str, str]) -> None:
    """Write /proc/sys/net values from a thread inside `netns` (/proc/sys/net follows the
    writing thread's namespace)."""

    def write() -> None:
        for key, value in values.items():
            Path("/proc/sys", *key.split(".")).write_text(value)

    run_in_netns(netns, write)


def ifindex(netns: str, name: str) -> int:
    return run_in_netns(netns, lambda: socket.if_nametoindex(name))


def existing_netns() -> set[str]:
    out = run(["ip", "netns", "list"], check=False)
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def add_netns(names: Sequence[str], settings: dict[str, str]) -> None:
    """Create namespaces with `lo` up, no DAD, and `settings` on top."""
    ip_batch(None, [f"netns add {name}" for name in names])
    for name in names:
        sysctl(name, {**NETNS_SYSCTLS, **settings})
        ip_batch(name, ["link set lo up"])


def delete_netns(names: Iterable[str]) -> None:
    """Delete those of `names` that exist (a pod's veth dies with its namespace)."""
    have = existing_netns()
    for name in names:
        if name in have:
            run(["ip", "netns", "del", name], check=False)


def free_pod_addresses(
    subnet4: IPv4Network, subnet6: IPv6Network, used: Collection[IPAddress]
) -> tuple[IPv4Address, IPv6Address]:
    """The first host number from 2 (1 is the gateway) whose addresses are unused, in both
    subnets."""
    for i in range(2, subnet4.num_addresses - 1):
        if subnet4[i] not in used and subnet6[i] not in used:
            return subnet4[i], subnet6[i]
    raise RuntimeError(f"{subnet4}: no free pod addresses")


@dataclass(frozen=True)
class NodeWiring:
    """How a node namespace wires its pods."""

    netns: str
    mode: Mode
    subnet4: IPv4Network  # bridged: the bridge holds each subnet's first address (gateway)
    subnet6: IPv6Network
    # The node's own address (on lo), source of its traffic to pods (and of its masquerading).
    # Without one, the routed gateway is a global address and serves as that source instead.
    address4: IPv4Address | None = None
    address6: IPv6Address | None = None
    hairpin: bool = False  # bridged: a pod reaching itself through a Service, as kubelet sets

    def subnet(self, version: int) -> IPv4Network | IPv6Network:
        return self.subnet4 if version == 4 else self.subnet6


def add_nodes(nodes: Sequence[NodeWiring]) -> None:
    add_netns([n.netns for n in nodes], NODE_SYSCTLS)
    for n in nodes:
        # nodad: an address added without it stays tentative until a kernel work item runs,
        # and a pod's `route ... src` naming it meanwhile fails "Invalid source address".
        cmds = [
            f"addr add {a}/{a.max_prefixlen} dev lo" + (" nodad" if a.version == 6 else "")
            for a in (n.address4, n.address6)
            if a
        ]
        if n.mode == "bridged":
            cmds += [
                f"link add {BRIDGE} type bridge mcast_snooping 0",
                f"link set {BRIDGE} up",
                f"addr add {n.subnet4[1]}/{n.subnet4.prefixlen} dev {BRIDGE}",
                f"addr add {n.subnet6[1]}/{n.subnet6.prefixlen} dev {BRIDGE} nodad",
            ]
        ip_batch(n.netns, cmds)


def wire_pod(node: NodeWiring, netns: str, host_ifname: str, ips: Sequence[IPAddress]) -> None:
    """A veth from the node to the pod namespace `netns` (made with add_netns) as `eth0`, its
    addresses and the routes both ways."""
    host = host_ifname
    node_cmds = [f"link add {host} type veth peer name eth0 netns {netns}"]
    pod_cmds = ["link set eth0 up"]
    if node.mode == "bridged":
        node_cmds.append(f"link set {host} master {BRIDGE}")
        if node.hairpin:
            node_cmds.append(f"link set {host} type bridge_slave hairpin on")
    else:
        # The gateway lives on every host veth (as Calico's does), so the pod's ARP/ND for it
        # is answered by the node itself.
        scope = " scope link" if node.address4 else ""
        node_cmds += [
            f"addr add {GATEWAY4}/32 dev {host}{scope}",
            f"addr add {GATEWAY6}/64 dev {host} nodad",
        ]
        pod_cmds.append(f"route add {GATEWAY4} dev eth0 scope link")
    node_cmds.append(f"link set {host} up")
    for addr in ips:
        v6 = addr.version == 6
        subnet = node.subnet(addr.version)
        on_bridge = node.mode == "bridged" and addr in subnet
        plen = subnet.prefixlen if on_bridge else addr.max_prefixlen
        pod_cmds.append(f"addr add {addr}/{plen} dev eth0" + (" nodad" if v6 else ""))
        if node.mode == "routed":
            src = node.address6 if v6 else node.address4
            node_cmds.append(
                f"route add {addr}/{addr.max_prefixlen} dev {host}" + (f" src {src}" if src else "")
            )
        elif not on_bridge:
            node_cmds.append(f"route add {addr}/{addr.max_prefixlen} dev {BRIDGE}")
    for version in sorted({addr.version for addr in ips}):
        if node.mode == "routed":
            gateway: IPAddress = GATEWAY4 if version == 4 else GATEWAY6
        else:
            gateway = node.subnet(version)[1]
            scope = " scope link" if version == 4 else ""
            pod_cmds.append(f"route add {gateway} dev eth0{scope}")
        pod_cmds.append(f"route add default via {gateway} dev eth0")
    ip_batch(node.netns, node_cmds)
    ip_batch(netns, pod_cmds)


@dataclass(frozen=True)
class FabricPort:
    netns: str  # the node's namespace
    index: int  # names the node's port on the fabric bridge
    address4: IPv4Interface
    address6: IPv6Interface


def join_fabric(fabric_netns: str, ports: Sequence[FabricPort]) -> None:
    """Connect node namespaces through a bridge in a new namespace `fabric_netns`."""
    add_netns([fabric_netns], {})
    ip_batch(
        fabric_netns,
        [f"link add {FABRIC_BRIDGE} type bridge mcast_snooping 0", f"link set {FABRIC_BRIDGE} up"],
    )
    for p in ports:
        port = f"n{p.index}"
        ip_batch(
            p.netns,
            [
                f"link add {UPLINK} type veth peer name {port} netns {fabric_netns}",
                f"addr add {p.address4} dev {UPLINK}",
                f"addr add {p.address6} dev {UPLINK} nodad",
                f"link set {UPLINK} up",
            ],
        )
        ip_batch(fabric_netns, [f"link set {port} master {FABRIC_BRIDGE}", f"link set {port} up"])


def fabric_route(dest: IPv4Network | IPv6Network, via: IPAddress) -> str:
    """An `ip -batch` command: reach `dest` through the node whose fabric address is `via`."""
    return f"route replace {dest} via {via} dev {UPLINK}"


# -- a topology for tests and benchmarks ---------------------------------------------------


@dataclass
class Node:
    netns: str
    index: int
    ipv4: IPv4Address  # the node's own address (on lo), source of its traffic to pods
    ipv6: IPv6Address
    pod_cidr4: IPv4Network
    pod_cidr6: IPv6Network
    fabric4: IPv4Address | None = None
    fabric6: IPv6Address | None = None
    pods: list[Pod] = field(default_factory=list)


@dataclass
class Pod:
    name: str
    netns: str
    node: Node
    host_ifname: str  # in the node namespace
    host_ifindex: int
    ipv4: IPv4Address
    ipv6: IPv6Address
    ifname: str = "eth0"

    def run(self, fn: Callable[[], T]) -> T:
        """Call fn in a thread inside the pod's namespace (sockets made there stay there)."""
        return run_in_netns(self.netns, fn)


class Topology:
    def __init__(self, mode: Mode = "routed", nodes: int = 1, prefix: str | None = None) -> None:
        self.mode: Mode = mode
        self.id = prefix or secrets.token_hex(3)
        self.prefix = f"enf-{self.id}"
        self.nodes: list[Node] = []
        self.namespaces: list[str] = []
        self._pod_count = 0
        self._node_count = nodes

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Topology:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self) -> None:
        for _ in range(self._node_count):
            self.add_node()
        if self._node_count > 1:
            self._join_nodes()

    def close(self) -> None:
        delete_netns(reversed(self.namespaces))
        self.namespaces.clear()

    # -- building --------------------------------------------------------------------------

    def _wiring(self, node: Node) -> NodeWiring:
        return NodeWiring(
            node.netns, self.mode, node.pod_cidr4, node.pod_cidr6, node.ipv4, node.ipv6
        )

    def add_node(self) -> Node:
        i = len(self.nodes)
        # Benchmarking ranges (RFC 2544 198.18.0.0/15, RFC 5180 2001:2::/48): never routed,
        # and apart from the lab's 198.18.1-199.x and 198.19.255.x.
        node = Node(f"{self.prefix}-n{i}", i, IPv4Address(f"198.19.254.{i + 1}"),
                    IPv6Address(f"2001:2:0:fe00::{i + 1}"),
                    IPv4Network(f"198.18.{200 + i}.0/24"),
                    IPv6Network(f"2001:2:0:f2{i:02x}::/64"))
        self.namespaces.append(node.netns)  # recorded first: close() removes what exists
        add_nodes([self._wiring(node)])
        self.nodes.append(node)
        return node

    def add_pod(self, node: Node | int = 0, name: str | None = None) -> Pod:
        n = self.nodes[node] if isinstance(node, int) else node
        k = self._pod_count
        self._pod_count += 1
        pod_name = name or f"p{k}"
        ns = f"{self.prefix}-{pod_name}"
        host = f"enfp{self.id}{k}"
        v4, v6 = free_pod_addresses(n.pod_cidr4, n.pod_cidr6, {p.ipv4 for p in n.pods})
        self.namespaces.append(ns)
        add_netns([ns], POD_SYSCTLS)
        wire_pod(self._wiring(n), ns, host, [v4, v6])
        pod = Pod(pod_name, ns, n, host, ifindex(n.netns, host), v4, v6)
        n.pods.append(pod)
        return pod

    def _join_nodes(self) -> None:
        fabric = f"{self.prefix}-fab"
        self.namespaces.append(fabric)
        for node in self.nodes:
            node.fabric4 = IPv4Address(f"198.19.253.{node.index + 1}")
            node.fabric6 = IPv6Address(f"2001:2:0:fd00::{node.index + 1}")
        join_fabric(fabric, [
            FabricPort(n.netns, n.index, IPv4Interface(f"{n.fabric4}/24"),
                       IPv6Interface(f"{n.fabric6}/64"))
            for n in self.nodes
        ])
        for node in self.nodes:
            routes = []
            for other in self.nodes:
                if other is not node and other.fabric4 and other.fabric6:
                    routes += [fabric_route(dest, other.fabric4)
                               for dest in (other.pod_cidr4, IPv4Network(other.ipv4))]
                    routes += [fabric_route(dest, other.fabric6)
                               for dest in (other.pod_cidr6, IPv6Network(other.ipv6))]
            ip_batch(node.netns, routes)

    @property
    def pods(self) -> list[Pod]:
        return [p for n in self.nodes for p in n.pods]
