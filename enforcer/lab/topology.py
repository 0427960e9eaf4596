"""Build and remove a lab's network: node namespaces, pod namespaces, veths, routes.

Everything is created inside namespaces the lab owns (veths are created from inside the node
namespace with their peer placed straight into the pod namespace), so the root namespace's
links, routes and firewall are never touched. `ip -batch` keeps it to a few processes.

Addressing: node k's pods get 198.18.k.i (/24) and 2001:2:0:k::i (/64) unless a manifest gives
status.podIPs; nodes reach each other over a fabric bridge on 198.19.255.k and 2001:2:ffff::k.
Both ranges are reserved for benchmarking (RFC 2544 / RFC 5180) and never routed outside.

Topologies, as CNIs do it:
- routed (Calico, kindnet): pod addresses /32 and /128, a host route per pod to its veth,
  a link-local gateway (169.254.1.1 and fe80::1) on every host veth;
- bridged (flannel, bridge CNI): pods of a node share a Linux bridge and a /24 (/64).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

IPAddress = IPv4Address | IPv6Address

POD_V4 = IPv4Network("198.18.0.0/16")
POD_V6 = IPv6Network("2001:2::/48")
FABRIC_V4 = IPv4Network("198.19.255.0/24")
FABRIC_V6 = IPv6Network("2001:2:ffff::/64")
BRIDGE = "enfbr0"
UPLINK = "uplink0"
GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::1"


@dataclass
class NodeNet:
    name: str
    index: int  # 1-based
    netns: str

    @property
    def subnet_v4(self) -> IPv4Network:
        return IPv4Network(f"198.18.{self.index}.0/24")

    @property
    def subnet_v6(self) -> IPv6Network:
        return IPv6Network(f"2001:2:0:{self.index:x}::/64")

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


@dataclass
class PodNet:
    key: str  # namespace/name
    node: str
    netns: str
    host_ifname: str
    ips: list[IPAddress] = field(default_factory=list)


def run(cmd: list[str], input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(cmd, input=input, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def ip_batch(netns: str | None, commands: Iterable[str]) -> None:
    text = "\n".join(commands) + "\n"
    if text.strip():
        run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], input=text)


def sysctl(netns: str, settings: dict[str, str]) -> None:
    args = [f"{k}={v}" for k, v in settings.items()]
    run(["nsenter", f"--net=/run/netns/{netns}", "sysctl", "-q", "-w", *args])


def existing_netns() -> set[str]:
    out = run(["ip", "netns", "list"], check=False)
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def create_nodes(nodes: list[NodeNet], fabric_netns: str | None, topology: str) -> None:
    ip_batch(
        None,
        [f"netns add {n.netns}" for n in nodes]
        + ([f"netns add {fabric_netns}"] if fabric_netns else []),
    )
    for n in nodes:
        sysctl(
            n.netns,
            {
                "net.ipv4.ip_forward": "1",
                "net.ipv6.conf.all.forwarding": "1",
                "net.ipv6.conf.default.accept_dad": "0",
                "net.ipv4.conf.all.rp_filter": "0",
                "net.ipv4.conf.default.rp_filter": "0",
            },
        )
        cmds = ["link set lo up"]
        if topology == "bridged":
            cmds += [
                f"link add {BRIDGE} type bridge",
                f"addr add {n.gateway_v4}/24 dev {BRIDGE}",
                f"addr add {n.gateway_v6}/64 dev {BRIDGE} nodad",
                f"link set {BRIDGE} up",
            ]
        ip_batch(n.netns, cmds)
    if fabric_netns:
        ip_batch(fabric_netns, ["link set lo up", "link add fab type bridge", "link set fab up"])
        for n in nodes:
            ip_batch(
                n.netns,
                [
                    f"link add {UPLINK} type veth peer name n{n.index} netns {fabric_netns}",
                    f"addr add {n.fabric_v4}/24 dev {UPLINK}",
                    f"addr add {n.fabric_v6}/64 dev {UPLINK} nodad",
                    f"link set {UPLINK} up",
                ],
            )
            ip_batch(fabric_netns, [f"link set n{n.index} master fab", f"link set n{n.index} up"])


def _in_subnet(ip: IPAddress, node: NodeNet) -> bool:
    return ip in (node.subnet_v4 if ip.version == 4 else node.subnet_v6)


def add_pods(
    pods: list[PodNet], nodes: dict[str, NodeNet], all_nodes: list[NodeNet], topology: str
) -> None:
    if not pods:
        return
    ip_batch(None, [f"netns add {p.netns}" for p in pods])
    for p in pods:
        node = nodes[p.node]
        node_cmds = [f"link add {p.host_ifname} type veth peer name eth0 netns {p.netns}"]
        pod_cmds = ["link set lo up", "link set eth0 up"]
        if topology == "bridged":
            # Hairpin mode, as the bridge CNI sets it for kubelet: a pod reaching itself
            # through its Service is bridged back out of the port it came in on.
            node_cmds += [
                f"link set {p.host_ifname} master {BRIDGE}",
                f"link set {p.host_ifname} type bridge_slave hairpin on",
            ]
        else:
            # The gateway lives on every host veth (as Calico's does), so the pod's ARP/ND for
            # it is answered by the node itself.
            node_cmds += [
                f"addr add {GATEWAY_V4}/32 dev {p.host_ifname}",
                f"addr add {GATEWAY_V6}/64 dev {p.host_ifname} nodad",
            ]
            pod_cmds += [f"route add {GATEWAY_V4} dev eth0 scope link"]
        node_cmds += [f"link set {p.host_ifname} up"]
        for ip in p.ips:
            v6 = ip.version == 6
            fam = ""
            bridged_l2 = topology == "bridged" and _in_subnet(ip, node)
            plen = (64 if v6 else 24) if bridged_l2 else (128 if v6 else 32)
            pod_cmds.append(f"{fam}addr add {ip}/{plen} dev eth0" + (" nodad" if v6 else ""))
            if topology == "routed":
                node_cmds.append(f"{fam}route add {ip}/{128 if v6 else 32} dev {p.host_ifname}")
            elif not bridged_l2:
                node_cmds.append(f"{fam}route add {ip}/{128 if v6 else 32} dev {BRIDGE}")
        has4 = any(ip.version == 4 for ip in p.ips)
        has6 = any(ip.version == 6 for ip in p.ips)
        if topology == "routed":
            if has4:
                pod_cmds.append(f"route add default via {GATEWAY_V4} dev eth0")
            if has6:
                pod_cmds.append(f"route add default via {GATEWAY_V6} dev eth0")
        else:
            if has4:
                pod_cmds += [
                    f"route add {node.gateway_v4} dev eth0 scope link",
                    f"route add default via {node.gateway_v4} dev eth0",
                ]
            if has6:
                pod_cmds += [
                    f"route add {node.gateway_v6} dev eth0",
                    f"route add default via {node.gateway_v6} dev eth0",
                ]
        ip_batch(node.netns, node_cmds)
        sysctl(
            p.netns,
            {"net.ipv6.conf.all.accept_dad": "0", "net.ipv4.ping_group_range": "0 2147483647"},
        )
        ip_batch(p.netns, pod_cmds)
        # Other nodes reach this pod through its node's fabric address.
        for other in all_nodes:
            if other.name != p.node:
                ip_batch(other.netns, [_route_via(ip, node) for ip in p.ips])


def _route_via(ip: IPAddress, node: NodeNet) -> str:
    if ip.version == 6:
        return f"route replace {ip}/128 via {node.fabric_v6} dev {UPLINK}"
    return f"route replace {ip}/32 via {node.fabric_v4} dev {UPLINK}"


def remove_pods(pods: list[PodNet], all_nodes: list[NodeNet]) -> None:
    have = existing_netns()
    for p in pods:
        for other in all_nodes:
            if other.name != p.node and other.netns in have:
                for ip in p.ips:
                    fam = ["-6"] if ip.version == 6 else []
                    run(["ip", "-n", other.netns, *fam, "route", "del", str(ip)], check=False)
        if p.netns in have:
            run(["ip", "netns", "del", p.netns], check=False)  # the veth dies with it


def delete_netns(names: Iterable[str]) -> None:
    have = existing_netns()
    for name in names:
        if name in have:
            run(["ip", "netns", "del", name], check=False)


def allocate_ips(node: NodeNet, used: set[IPAddress], ipv6: bool) -> list[IPAddress]:
    for i in range(2, 255):
        v4 = node.subnet_v4[i]
        if v4 not in used:
            ips: list[IPAddress] = [v4]
            if ipv6:
                ips.append(node.subnet_v6[i])
            return ips
    raise RuntimeError(f"node {node.name}: no free pod addresses")


def parse_ips(texts: Iterable[str]) -> list[IPAddress]:
    return [ip_address(t) for t in texts]
