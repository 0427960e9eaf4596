"""The lab's network plan on the shared wiring (enforcer/topology.py): node namespaces, pod
namespaces with manifest-given or allocated addresses, a fabric between nodes, per-pod routes.

Addressing (enforcer/lab/addressing.py has the rules): a node's pods get addresses from its
pod subnet, by default 198.18.k.0/24 and 2001:2:0:k::/64, unless a manifest gives
status.podIPs; nodes reach each other over a fabric bridge on 198.19.255.k and 2001:2:ffff::k.
Both ranges are reserved for benchmarking (RFC 2544 / RFC 5180) and never routed outside.
A node's own address (its Node object's InternalIP, what a hostNetwork pod has) is its fabric
address, 198.19.255.k and 2001:2:ffff::k: on its fabric port, or on its loopback in a lab of one
node (no fabric). Pods reach it through their default route. The node's traffic to its own pods
leaves from the gateway (169.254.1.1 on the host veths, routed; the bridge's address, bridged)
unless a socket binds the node's address. Bridged pods of a node share a bridge with hairpin on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import cast

from enforcer.topology import (
    BRIDGE,
    FABRIC_BRIDGE,
    POD_SYSCTLS,
    UPLINK,
    FabricPort,
    IPAddress,
    Mode,
    NodeWiring,
    add_netns,
    add_nodes,
    delete_netns,
    existing_netns,
    fabric_route,
    free_pod_addresses,
    ip_batch,
    join_fabric,
    run,
    wire_pod,
)

__all__ = [
    "BRIDGE", "FABRIC_BRIDGE", "FABRIC_V4", "FABRIC_V6", "POD_V4", "POD_V6", "UPLINK",
    "IPAddress", "NodeNet", "PodNet", "add_pods", "allocate_ips", "create_nodes",
    "delete_netns", "existing_netns", "ip_batch", "parse_ips", "remove_pods", "run",
]

POD_V4 = IPv4Network("198.18.0.0/16")
POD_V6 = IPv6Network("2001:2::/48")
FABRIC_V4 = IPv4Network("198.19.255.0/24")
FABRIC_V6 = IPv6Network("2001:2:ffff::/64")


@dataclass
class NodeNet:
    name: str
    index: int  # 1-based
    netns: str
    # The node's pod subnets (enforcer/lab/addressing.py chooses them); unset: by index.
    pod_cidr_v4: str | None = None
    pod_cidr_v6: str | None = None

    @property
    def subnet_v4(self) -> IPv4Network:
        return IPv4Network(self.pod_cidr_v4 or f"198.18.{self.index}.0/24")

    @property
    def subnet_v6(self) -> IPv6Network:
        return IPv6Network(self.pod_cidr_v6 or f"2001:2:0:{self.index:x}::/64")

    def subnet(self, family: int) -> IPv4Network | IPv6Network:
        return self.subnet_v4 if family == 4 else self.subnet_v6

    @property
    def fabric_v4(self) -> IPv4Address:
        return FABRIC_V4[self.index]

    @property
    def fabric_v6(self) -> IPv6Address:
        return FABRIC_V6[self.index]

    @property
    def gateway_v4(self) -> IPv4Address:
        return self.subnet_v4[1]

    @property
    def gateway_v6(self) -> IPv6Address:
        return self.subnet_v6[1]

    def wiring(self, topology: str) -> NodeWiring:
        return NodeWiring(
            self.netns, cast(Mode, topology), self.subnet_v4, self.subnet_v6, hairpin=True
        )

    def fabric_port(self) -> FabricPort:
        return FabricPort(
            self.netns,
            self.index,
            IPv4Interface(f"{self.fabric_v4}/{FABRIC_V4.prefixlen}"),
            IPv6Interface(f"{self.fabric_v6}/{FABRIC_V6.prefixlen}"),
        )

    def fabric_address(self, version: int) -> IPAddress:
        return self.fabric_v4 if version == 4 else self.fabric_v6

    def addresses(self, ipv6: bool) -> list[IPAddress]:
        """The node's own addresses (its Node's InternalIPs, its hostNetwork pods')."""
        return [self.fabric_v4, self.fabric_v6] if ipv6 else [self.fabric_v4]


@dataclass
class PodNet:
    key: str  # namespace/name
    node: str
    netns: str
    host_ifname: str
    ips: list[IPAddress] = field(default_factory=list)


def create_nodes(nodes: list[NodeNet], fabric_netns: str | None, topology: str) -> None:
    add_nodes([n.wiring(topology) for n in nodes])
    if fabric_netns:
        join_fabric(fabric_netns, [n.fabric_port() for n in nodes])
        return
    for n in nodes:  # no fabric: the node's address on its loopback
        ip_batch(n.netns, [f"addr add {n.fabric_v4}/32 dev lo",
                           f"addr add {n.fabric_v6}/128 dev lo nodad"])


def add_pods(
    pods: list[PodNet], nodes: dict[str, NodeNet], all_nodes: list[NodeNet], topology: str
) -> None:
    if not pods:
        return
    add_netns([p.netns for p in pods], POD_SYSCTLS)
    for p in pods:
        node = nodes[p.node]
        wire_pod(node.wiring(topology), p.netns, p.host_ifname, p.ips)
        # Other nodes reach this pod through its node's fabric address.
        routes = [fabric_route(ip_network(ip), node.fabric_address(ip.version)) for ip in p.ips]
        for other in all_nodes:
            if other.name != p.node:
                ip_batch(other.netns, routes)


def remove_pods(pods: list[PodNet], all_nodes: list[NodeNet]) -> None:
    have = existing_netns()
    for p in pods:
        for other in all_nodes:
            if other.name != p.node and other.netns in have:
                for ip in p.ips:
                    fam = ["-6"] if ip.version == 6 else []
                    run(["ip", "-n", other.netns, *fam, "route", "del", str(ip)], check=False)
    delete_netns(p.netns for p in pods)  # each veth dies with its pod's namespace


def allocate_ips(node: NodeNet, used: set[IPAddress], ipv6: bool) -> list[IPAddress]:
    v4, v6 = free_pod_addresses(node.subnet_v4, node.subnet_v6, used)
    return [v4, v6] if ipv6 else [v4]


def parse_ips(texts: Iterable[str]) -> list[IPAddress]:
    return [ip_address(t) for t in texts]
