"""Network-namespace topologies: a node namespace with pod namespaces behind veths, the way
CNIs build them, for tests, benchmarks and the lab. Never touches the root namespace.

- routed (Calico, kindnet): each pod has a /32 (/128) and a default route via a link-local
  gateway that the host-side veth owns (169.254.1.1, fe80::1); the node has a /32 (/128)
  route per pod through its veth.
- bridged (flannel, bridge CNI): the host-side veths are ports of a bridge in the node
  namespace that holds the pod subnet's gateway address.

Several nodes are joined through a "fabric" namespace holding a bridge, with routes to each
other's pod subnets. IPv6 duplicate address detection is off so addresses work at once.
Names are unique per topology (prefix `enf-` + random id); host-side veths are named
`enfp<id><n>` so the agent's interface pattern picks them up. Use it as a context manager:
everything is deleted on exit, even after an error.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Literal, TypeVar

from enforcer.netnsutil import run_in_netns

Mode = Literal["routed", "bridged"]
T = TypeVar("T")

GATEWAY4 = IPv4Address("169.254.1.1")
GATEWAY6 = IPv6Address("fe80::1")
BRIDGE = "enfbr0"
FABRIC_BRIDGE = "enffab0"


def ip(*args: str, netns: str | None = None) -> str:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")
    return res.stdout


def sysctl(netns: str, values: dict[str, str]) -> None:
    """Write /proc/sys/net values from a thread inside `netns` (/proc/sys/net follows the
    writing thread's namespace)."""

    def write() -> None:
        for key, value in values.items():
            Path("/proc/sys", *key.split(".")).write_text(value)

    run_in_netns(netns, write)


def ifindex(netns: str, name: str) -> int:
    return run_in_netns(netns, lambda: socket.if_nametoindex(name))


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
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()

    # -- building --------------------------------------------------------------------------

    def _new_netns(self, name: str) -> str:
        ip("netns", "add", name)
        self.namespaces.append(name)
        sysctl(name, {
            "net.ipv6.conf.all.accept_dad": "0",
            "net.ipv6.conf.default.accept_dad": "0",
            "net.ipv6.conf.all.keep_addr_on_down": "1",
        })
        ip("link", "set", "lo", "up", netns=name)
        return name

    def add_node(self) -> Node:
        i = len(self.nodes)
        ns = self._new_netns(f"{self.prefix}-n{i}")
        sysctl(ns, {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"})
        # Benchmarking ranges (RFC 2544 198.18.0.0/15, RFC 5180 2001:2::/48): never routed,
        # and apart from the lab's 198.18.1-199.x and 198.19.255.x.
        node = Node(ns, i, IPv4Address(f"198.19.254.{i + 1}"),
                    IPv6Address(f"2001:2:0:fe00::{i + 1}"),
                    IPv4Network(f"198.18.{200 + i}.0/24"),
                    IPv6Network(f"2001:2:0:f2{i:02x}::/64"))
        ip("addr", "add", f"{node.ipv4}/32", "dev", "lo", netns=ns)
        ip("addr", "add", f"{node.ipv6}/128", "dev", "lo", netns=ns)
        if self.mode == "bridged":
            ip("link", "add", BRIDGE, "type", "bridge", "mcast_snooping", "0", netns=ns)
            ip("link", "set", BRIDGE, "up", netns=ns)
            ip("addr", "add", f"{node.pod_cidr4[1]}/24", "dev", BRIDGE, netns=ns)
            ip("addr", "add", f"{node.pod_cidr6[1]}/64", "dev", BRIDGE, "nodad", netns=ns)
        self.nodes.append(node)
        return node

    def add_pod(self, node: Node | int = 0, name: str | None = None) -> Pod:
        n = self.nodes[node] if isinstance(node, int) else node
        k = self._pod_count
        self._pod_count += 1
        pod_name = name or f"p{k}"
        ns = self._new_netns(f"{self.prefix}-{pod_name}")
        host = f"enfp{self.id}{k}"
        host_index = len(n.pods) + 2
        v4 = n.pod_cidr4[host_index]
        v6 = n.pod_cidr6[host_index]
        ip("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns,
           netns=n.netns)
        ip("link", "set", "eth0", "up", netns=ns)
        if self.mode == "routed":
            ip("addr", "add", f"{GATEWAY4}/32", "dev", host, "scope", "link", netns=n.netns)
            ip("addr", "add", f"{GATEWAY6}/64", "dev", host, "nodad", netns=n.netns)
            ip("link", "set", host, "up", netns=n.netns)
            ip("route", "add", f"{v4}/32", "dev", host, "src", str(n.ipv4), netns=n.netns)
            ip("-6", "route", "add", f"{v6}/128", "dev", host, "src", str(n.ipv6),
               netns=n.netns)
            ip("addr", "add", f"{v4}/32", "dev", "eth0", netns=ns)
            ip("addr", "add", f"{v6}/128", "dev", "eth0", "nodad", netns=ns)
            ip("route", "add", f"{GATEWAY4}/32", "dev", "eth0", "scope", "link", netns=ns)
            ip("route", "add", "default", "via", str(GATEWAY4), "dev", "eth0", netns=ns)
            ip("-6", "route", "add", "default", "via", str(GATEWAY6), "dev", "eth0", netns=ns)
        else:
            ip("link", "set", host, "master", BRIDGE, "up", netns=n.netns)
            ip("addr", "add", f"{v4}/24", "dev", "eth0", netns=ns)
            ip("addr", "add", f"{v6}/64", "dev", "eth0", "nodad", netns=ns)
            ip("route", "add", "default", "via", str(n.pod_cidr4[1]), netns=ns)
            ip("-6", "route", "add", "default", "via", str(n.pod_cidr6[1]), netns=ns)
        pod = Pod(pod_name, ns, n, host, ifindex(n.netns, host), v4, v6)
        n.pods.append(pod)
        return pod

    def _join_nodes(self) -> None:
        fabric = self._new_netns(f"{self.prefix}-fab")
        ip("link", "add", FABRIC_BRIDGE, "type", "bridge", "mcast_snooping", "0", netns=fabric)
        ip("link", "set", FABRIC_BRIDGE, "up", netns=fabric)
        for node in self.nodes:
            port = f"enfn{self.id}{node.index}"
            ip("link", "add", "fab0", "type", "veth", "peer", "name", port, "netns", fabric,
               netns=node.netns)
            ip("link", "set", port, "master", FABRIC_BRIDGE, "up", netns=fabric)
            node.fabric4 = IPv4Address(f"198.19.253.{node.index + 1}")
            node.fabric6 = IPv6Address(f"2001:2:0:fd00::{node.index + 1}")
            ip("addr", "add", f"{node.fabric4}/24", "dev", "fab0", netns=node.netns)
            ip("addr", "add", f"{node.fabric6}/64", "dev", "fab0", "nodad", netns=node.netns)
            ip("link", "set", "fab0", "up", netns=node.netns)
        for node in self.nodes:
            for other in self.nodes:
                if other is node:
                    continue
                for dest in (other.pod_cidr4, f"{other.ipv4}/32"):
                    ip("route", "add", str(dest), "via", str(other.fabric4), netns=node.netns)
                for dest6 in (other.pod_cidr6, f"{other.ipv6}/128"):
                    ip("-6", "route", "add", str(dest6), "via", str(other.fabric6),
                       netns=node.netns)

    @property
    def pods(self) -> list[Pod]:
        return [p for n in self.nodes for p in n.pods]


def pod_address(pod: Pod, family: int) -> IPv4Address | IPv6Address:
    return pod.ipv4 if family == 4 else pod.ipv6
