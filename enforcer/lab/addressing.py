"""The lab's address plan: which nodes a lab has, each node's pod subnet, each pod's node and
addresses, and the refusal of a plan no CNI could produce. Pure: nothing is created here.

- Nodes: those the manifests name (Node objects, pods' spec.nodeName), then node1, node2, ...
  until there are `--nodes` of them; never fewer than the manifests name.
- A node's pod subnet, per family: its Node's spec.podCIDR(s); else the smallest network, at
  least a /24 (/64), holding the addresses the manifests give its pods; else the next free
  198.18.k.0/24 (2001:2:0:k::/64).
- A pod goes to its spec.nodeName; a pod with addresses but no node goes to the node whose
  subnet holds them (the node whose CNI gave them); any other pod round-robin, its addresses
  allocated from its node's subnet.
- Bridged (flannel, the bridge CNI): a node's pods share one bridge subnet and reach any
  address in it on-link, so a pod outside its node's subnet, or two nodes' subnets overlapping,
  means pods that cannot reach each other: refused, naming the pods, nodes and addresses.
  Routed (Calico, kindnet): a route per pod, so any address works; in both, duplicate
  addresses and addresses in the lab's node fabric are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from enforcer.lab.topology import FABRIC_V4, FABRIC_V6, POD_V4, POD_V6, IPAddress
from enforcer.topology import free_pod_addresses

Subnet = IPv4Network | IPv6Network
FAMILIES = (4, 6)
MIN_PREFIX = {4: 24, 6: 64}  # the smallest pod subnet derived from addresses: kubeadm's /24
FABRIC: dict[int, Subnet] = {4: FABRIC_V4, 6: FABRIC_V6}
NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # a DNS subdomain
MAX_PROBLEMS = 12  # lines in one refusal; the rest are counted


class PlanError(ValueError):
    """A plan no CNI could produce; the message names the pods, nodes and addresses."""


@dataclass(frozen=True)
class RequestedPod:
    """A pod as its manifest asks: maybe a node, maybe addresses."""

    key: str  # namespace/name
    node: str | None
    ips: tuple[IPAddress, ...] = ()


@dataclass(frozen=True)
class PlacedPod:
    key: str
    node: str
    ips: tuple[IPAddress, ...]


@dataclass(frozen=True)
class NodeSubnet:
    network: Subnet
    origin: str  # why this subnet, for messages: "spec.podCIDR", "its pods' addresses", ...


NodeSubnets = dict[str, dict[int, NodeSubnet]]  # node -> family -> subnet


# -- nodes ----------------------------------------------------------------------------------


def _natural(name: str) -> list[int | str]:
    """node2 before node10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def lab_nodes(named: Sequence[str], count: int) -> tuple[list[str], str]:
    """The lab's node names (the manifests' first, then node1, node2, ... up to `count`) and
    a sentence saying where each came from."""
    bad = sorted({n for n in named if not NODE_NAME.match(n)})
    if bad:
        raise PlanError(
            f"node name(s) {', '.join(map(repr, bad))}: a node name is a DNS subdomain "
            "(lowercase letters, digits, '-' and '.')"
        )
    from_manifests = sorted(set(named), key=_natural)
    added: list[str] = []
    k = 1
    while len(from_manifests) + len(added) < count:
        if f"node{k}" not in from_manifests:
            added.append(f"node{k}")
        k += 1
    parts = []
    if from_manifests:
        parts.append(f"{', '.join(from_manifests)} (named by the manifests)")
    if added:
        how = f"to make --nodes {count}" if from_manifests else f"--nodes {count}"
        parts.append(f"{', '.join(added)} ({how})")
    return sorted([*from_manifests, *added], key=_natural), "nodes: " + "; ".join(parts)


# -- subnets --------------------------------------------------------------------------------


def parse_pod_cidrs(node: str, cidrs: Sequence[str]) -> dict[int, Subnet]:
    """A Node's spec.podCIDRs (or podCIDR), one per family."""
    out: dict[int, Subnet] = {}
    for text in cidrs:
        try:
            net = ip_network(text)
        except ValueError as exc:
            raise PlanError(f"Node {node}: spec.podCIDR {text!r}: {exc}") from None
        if net.version in out:
            raise PlanError(f"Node {node}: two IPv{net.version} spec.podCIDRs")
        out[net.version] = net
    return out


def covering(addresses: Sequence[IPAddress]) -> Subnet:
    """The smallest network of at least MIN_PREFIX that holds every address (one family)."""
    first = addresses[0]
    net = ip_network(f"{first}/{MIN_PREFIX[first.version]}", strict=False)
    for addr in addresses[1:]:
        while addr not in net:
            net = net.supernet()
    return net


def _default_subnet(family: int, k: int) -> Subnet:
    if family == 4:
        return IPv4Network(f"198.18.{k}.0/24")
    return IPv6Network(f"2001:2:0:{k:x}::/64")


def _holder(addr: IPAddress, subnets: Mapping[str, Mapping[int, Subnet]]) -> str | None:
    return next((n for n, by in subnets.items() if addr in by.get(addr.version, ())), None)


def node_subnets(
    nodes: Sequence[str],
    pods: Sequence[RequestedPod],
    pod_cidrs: Mapping[str, Mapping[int, Subnet]],
) -> NodeSubnets:
    """Each node's pod subnet per family: spec.podCIDR, else from its pods' addresses, else a
    default one that no other node's subnet overlaps."""
    addresses: dict[str, dict[int, list[IPAddress]]] = {n: {4: [], 6: []} for n in nodes}
    for pod in pods:
        if pod.node in addresses:
            for ip in pod.ips:
                addresses[pod.node][ip.version].append(ip)
    _claim_subnets(nodes, [p for p in pods if p.ips and not p.node], pod_cidrs, addresses)
    out: NodeSubnets = {n: {} for n in nodes}
    for n in nodes:
        for family in FAMILIES:
            if family in pod_cidrs.get(n, {}):
                out[n][family] = NodeSubnet(pod_cidrs[n][family], "from spec.podCIDR")
            elif addresses[n][family]:
                derived = covering(addresses[n][family])
                out[n][family] = NodeSubnet(derived, "from its pods' addresses")
    _add_defaults(nodes, out)
    return out


def _claim_subnets(
    nodes: Sequence[str],
    unplaced: Sequence[RequestedPod],
    pod_cidrs: Mapping[str, Mapping[int, Subnet]],
    addresses: dict[str, dict[int, list[IPAddress]]],
) -> None:
    """Pods with addresses but no node: each joins the node whose subnet (so far) holds one of
    its addresses, or else the next node that has no subnet yet; their addresses then shape
    that node's subnet."""
    for pod in unplaced:
        known = {
            n: {
                f: pod_cidrs.get(n, {}).get(f) or covering(addresses[n][f])
                for f in FAMILIES
                if f in pod_cidrs.get(n, {}) or addresses[n][f]
            }
            for n in nodes
        }
        node = next((h for ip in pod.ips if (h := _holder(ip, known))), None)
        if node is None:
            node = next((n for n in nodes if not known[n]), None)
        if node is not None:
            for ip in pod.ips:
                addresses[node][ip.version].append(ip)


def _add_defaults(nodes: Sequence[str], out: NodeSubnets) -> None:
    for family in FAMILIES:
        taken = [s[family].network for s in out.values() if family in s]
        k = 1
        for n in nodes:
            if family in out[n]:
                continue
            while any(_default_subnet(family, k).overlaps(t) for t in taken):
                k += 1
            out[n][family] = NodeSubnet(_default_subnet(family, k), "the lab's default")
            taken.append(out[n][family].network)
            k += 1


def cluster_cidr(subnets: Sequence[Subnet], family: int) -> Subnet:
    """The pod network all nodes' subnets lie in (kube-proxy's --cluster-cidr): the lab's
    default range when they fit in it, else the smallest network holding them all."""
    default = POD_V4 if family == 4 else POD_V6
    mine = [s for s in subnets if s.version == family]
    if all(s.subnet_of(default) for s in mine):
        return default
    net = mine[0]
    for s in mine[1:]:
        while not s.subnet_of(net):
            net = net.supernet()
    return net


# -- pods -----------------------------------------------------------------------------------


def _allocate(
    key: str, node: str, nets: Mapping[int, Subnet], used: set[IPAddress], ipv6: bool
) -> tuple[IPAddress, ...]:
    try:
        v4, v6 = free_pod_addresses(nets[4], nets[6], used)
    except RuntimeError:
        raise PlanError(f"pod {key}: node {node}'s pod subnet {nets[4]} is full") from None
    return (v4, v6) if ipv6 else (v4,)


def networks(subnets: NodeSubnets) -> dict[str, dict[int, Subnet]]:
    return {n: {f: s.network for f, s in by.items()} for n, by in subnets.items()}


def place_pods(
    pods: Sequence[RequestedPod],
    subnets: NodeSubnets,
    used: set[IPAddress],
    first: int,
    ipv6: bool,
) -> list[PlacedPod]:
    """Each pod's node and addresses. `used` (every address already taken) grows with the
    allocated ones; `first` continues the round-robin where the last batch stopped."""
    nodes = list(subnets)
    nets = networks(subnets)
    placed = []
    for i, pod in enumerate(pods):
        held_by = next((h for ip in pod.ips if (h := _holder(ip, nets))), None)
        node = pod.node or held_by or nodes[(first + i) % len(nodes)]
        ips: tuple[IPAddress, ...] = ()  # a node the lab lacks: refused by problems()
        if pod.ips:
            ips = pod.ips
        elif node in nets:
            ips = _allocate(pod.key, node, nets[node], used, ipv6)
        used.update(ips)
        placed.append(PlacedPod(pod.key, node, tuple(ips)))
    return placed


# -- refusals -------------------------------------------------------------------------------


def problems(topology: str, subnets: NodeSubnets, pods: Sequence[PlacedPod]) -> list[str]:
    """Why no CNI could produce this plan, one line each; empty if one could."""
    found = _unknown_nodes(subnets, pods) + _duplicates(pods) + _in_fabric(subnets, pods)
    if topology == "bridged":
        found += _overlapping_subnets(subnets, pods)
        found += _outside_own_subnet(subnets, pods)
        found += _reserved_addresses(subnets, pods)
    return found


def refuse(found: Sequence[str], header: str) -> None:
    """PlanError(header: the problem), or with several, one line each."""
    if not found:
        return
    if len(found) == 1:
        raise PlanError(f"{header}: {found[0]}")
    lines = list(found[:MAX_PROBLEMS])
    if len(found) > MAX_PROBLEMS:
        lines.append(f"... and {len(found) - MAX_PROBLEMS} more")
    raise PlanError(header + ":\n  " + "\n  ".join(lines))


def _unknown_nodes(subnets: NodeSubnets, pods: Sequence[PlacedPod]) -> list[str]:
    nodes = ", ".join(subnets)
    return [
        f"pod {p.key}: spec.nodeName {p.node!r} is not a node of this lab (its nodes: {nodes})"
        for p in pods
        if p.node not in subnets
    ]


def _duplicates(pods: Sequence[PlacedPod]) -> list[str]:
    owner: dict[IPAddress, str] = {}
    found = []
    for p in pods:
        for ip in p.ips:
            if ip in owner and owner[ip] != p.key:
                found.append(f"pods {owner[ip]} and {p.key} both have {ip}")
            owner.setdefault(ip, p.key)
    return found


def _in_fabric(subnets: NodeSubnets, pods: Sequence[PlacedPod]) -> list[str]:
    found = [
        f"pod {p.key} has {ip}, inside the lab's node fabric {FABRIC[ip.version]}"
        for p in pods
        for ip in p.ips
        if ip in FABRIC[ip.version]
    ]
    found += [
        f"node {n}'s pod subnet {s.network} ({s.origin}) overlaps the lab's node fabric "
        f"{FABRIC[f]}"
        for n, by in subnets.items()
        for f, s in by.items()
        if s.network.overlaps(FABRIC[f])
    ]
    return found


def _describe(node: str, s: NodeSubnet) -> str:
    return f"{node}'s {s.network} ({s.origin})"


def _overlapping_subnets(subnets: NodeSubnets, pods: Sequence[PlacedPod]) -> list[str]:
    """Each pair of nodes whose subnets overlap, with the pods of one inside the other's."""
    found = []
    nodes = list(subnets)
    for i, a in enumerate(nodes):
        for b in nodes[i + 1 :]:
            for f in FAMILIES:
                sa, sb = subnets[a][f], subnets[b][f]
                if not sa.network.overlaps(sb.network):
                    continue
                strays = [
                    f"{p.key} on {p.node} has {ip}, inside {other}'s subnet"
                    for p in pods
                    for ip in p.ips
                    for node, other, net in ((a, b, sb.network), (b, a, sa.network))
                    if p.node == node and ip in net
                ]
                detail = f": {'; '.join(strays[:4])}" if strays else ""
                found.append(
                    f"nodes {a} and {b} have overlapping pod subnets, {_describe(a, sa)} and "
                    f"{_describe(b, sb)}{detail} (each node's pods need addresses from a "
                    "subnet of its own: a Node object's spec.podCIDR sets one)"
                )
    return found


def _outside_own_subnet(subnets: NodeSubnets, pods: Sequence[PlacedPod]) -> list[str]:
    found = []
    for p in pods:
        for ip in p.ips:
            own = subnets.get(p.node, {}).get(ip.version)
            if own is None or ip in own.network:
                continue
            other = _holder(ip, networks(subnets))
            where = f"; inside {_describe(other, subnets[other][ip.version])}" if other else ""
            found.append(
                f"pod {p.key} on node {p.node} has {ip}, outside {_describe(p.node, own)}{where}"
                " (a bridged node's pods take addresses from its subnet)"
            )
    return found


def _reserved_addresses(subnets: NodeSubnets, pods: Sequence[PlacedPod]) -> list[str]:
    """The bridge's gateway (the subnet's first host), and IPv4's network and broadcast."""
    found = []
    for p in pods:
        for ip in p.ips:
            own = subnets.get(p.node, {}).get(ip.version)
            if own is None or ip not in own.network:
                continue
            net = own.network
            reserved = {net[1]: "the gateway address of its node's bridge"}
            if ip.version == 4 and net.num_addresses > 2:
                reserved |= {net[0]: "the network address", net[-1]: "the broadcast address"}
            if ip in reserved:
                found.append(
                    f"pod {p.key} on node {p.node} has {ip}, {reserved[ip]} of "
                    f"{_describe(p.node, own)}"
                )
    return found


def requested_pod(key: str, node: str | None, ips: Sequence[str]) -> RequestedPod:
    return RequestedPod(key, node or None, tuple(ip_address(ip) for ip in ips))
