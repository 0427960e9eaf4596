"""Observations -> a Baseline-tier default per namespace (`enforcer advise --baseline`).

One ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2, `tier: Baseline`) per namespace
with a workload in a learned flow, `advised-baseline-<namespace>`, its subject that namespace
(by `kubernetes.io/metadata.name`). It accepts what was observed at namespace granularity, by
port and protocol: ingress from the namespaces whose pods were seen connecting, egress to the
namespaces and address blocks the namespace's pods were seen reaching; a last rule denies the
rest. One policy per namespace keeps the pairs apart: a single policy's rules would apply to
every subject alike, so A -> B and C -> D on one port would also accept A -> D.

Where it decides: the Baseline tier comes after NetworkPolicy, so for a pod that a NetworkPolicy
isolates in a direction, that NetworkPolicy decides and the default is never consulted. A team
writing its own policies overrides the default; a namespace without any keeps what was
observed working. Priority 1000, the last in the tier: a Baseline policy an administrator
writes comes first (a BaselineAdminNetworkPolicy v1alpha1 comes after every priority, so after
this default's final Deny: it is shadowed for these namespaces, and said so).

What a Baseline rule cannot name: ingress peers are namespaces and pods only, so ingress from
addresses outside the cluster is never matched, neither accepted nor denied: it stays allowed.
Egress to every address is denied through `networks` 0.0.0.0/0 and ::/0 (which hold the pods'
addresses too) beside `namespaces: {}`.

Limits (the v1alpha2 schema, as enforcer/model/parse_clusterpolicy.py checks it): at most 25
rules per direction, 25 peers and 25 protocols per rule, 25 CIDRs per `networks` peer. Rules
group peers with the same observed ports: the namespaces as one peer (`matchExpressions` In,
any number), address blocks 25 to a peer; more than 25 ports take more rules. When that needs
more than 24 Accept rules (the 25th is the Deny), groups are merged, the pair that accepts the
fewest unobserved (peer, port) combinations first, into namespace sets sharing the union of
their ports; when one group is still too large, its nearest ports become ranges. Every such
widening is said in a warning and a comment.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush
from ipaddress import collapse_addresses, ip_network
from itertools import pairwise
from math import ceil
from typing import Any

from enforcer.advise.observations import DNS_PORT, DNS_PROTOCOLS, Observation
from enforcer.advise.policies import EGRESS, INGRESS, Prefixes
from enforcer.model.cluster import ClusterState
from enforcer.model.clusterpolicy import (
    ACCEPT,
    BASELINE,
    DENY,
    KIND_CLUSTER_NETWORK_POLICY,
    V1ALPHA2,
    ClusterPolicy,
)
from enforcer.model.evaluate_tiers import selects
from enforcer.model.objects import NAMESPACE_NAME_LABEL, IPNetwork

RULES_MAX = 25  # per direction (v1alpha2); parse_clusterpolicy._LIST_MAX_V2
LIST_MAX = 25  # peers and protocols per rule, CIDRs per networks peer
ACCEPT_RULES_MAX = RULES_MAX - 1  # the last rule is the Deny
PRIORITY = 1000
NAME_PREFIX = "advised-baseline-"
DENY_RULE = "deny-unobserved"
EVERY_ADDRESS = ("0.0.0.0/0", "::/0")
RULE_NAME_MAX = 100
PEERS_KEY = {INGRESS: "from", EGRESS: "to"}

PortRange = tuple[str, int, int]  # (protocol, first, last); one port: first == last
Peer = str | IPNetwork  # a namespace's name, or an address block (egress only)


def _peer_key(peer: Peer) -> tuple[Any, ...]:
    if isinstance(peer, str):
        return (0, peer)
    return (1, peer.version, int(peer.network_address), peer.prefixlen)


def _port_key(port: PortRange) -> tuple[int, str, int]:
    protocol, first, last = port
    return (first, protocol, last)


def describe_ports(ports: Sequence[PortRange]) -> str:
    return ", ".join(
        f"{proto}/{first}" if first == last else f"{proto}/{first}-{last}"
        for proto, first, last in sorted(ports, key=_port_key))


def _size(ports: set[PortRange]) -> int:
    return sum(last - first + 1 for _, first, last in ports)


@dataclass
class _Group:
    """Peers accepted on the same ports."""

    peers: set[Peer]
    ports: set[PortRange]
    observations: list[Observation]

    def peer_items(self) -> int:
        """`from`/`to` items: the namespaces as one, address blocks LIST_MAX to one."""
        namespaces = any(isinstance(p, str) for p in self.peers)
        networks = sum(not isinstance(p, str) for p in self.peers)
        return int(namespaces) + ceil(networks / LIST_MAX)

    def rules(self) -> int:
        return ceil(self.peer_items() / LIST_MAX) * ceil(len(self.ports) / LIST_MAX)

    def sort_key(self) -> tuple[Any, ...]:
        return (min(_peer_key(p) for p in self.peers),)


@dataclass
class BaselineRule:
    action: str  # Accept | Deny
    namespaces: tuple[str, ...]  # peers: namespaces by name (Deny: none, every namespace)
    networks: tuple[IPNetwork, ...]  # peers: address blocks (egress)
    ports: tuple[PortRange, ...] | None  # None: every port
    observations: tuple[Observation, ...]  # the flows that justify an Accept
    manifest: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # widening, printed as comments


@dataclass
class BaselinePolicy:
    namespace: str  # the subject
    manifest: dict[str, Any]
    ingress: list[BaselineRule]
    egress: list[BaselineRule] | None  # None: egress untouched (--ingress-only)
    pods: tuple[str, ...]  # the endpoint pods of the namespace (the subject's)
    notes: list[str] = field(default_factory=list)  # printed as comments
    unnamed_ingress: int = 0  # observed flows from outside the cluster: no rule can name them

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def key(self) -> str:
        return f"{KIND_CLUSTER_NETWORK_POLICY}/{self.name}"

    def rules(self, direction: str) -> list[BaselineRule]:
        return self.ingress if direction == INGRESS else (self.egress or [])


def policy_name(namespace: str) -> str:
    return NAME_PREFIX + namespace  # a namespace is a DNS label: the name is a valid one


def _ports_of(observation: Observation) -> set[PortRange]:
    if observation.is_dns:  # both protocols, as the NetworkPolicy advice does (policies.py)
        return {(p, DNS_PORT, DNS_PORT) for p in DNS_PROTOCOLS}
    return {(observation.protocol, observation.port, observation.port)}


def _merge_cost(a: _Group, b: _Group) -> int:
    """Unobserved (peer, port) combinations the merge of two groups accepts."""
    return len(a.peers) * _size(b.ports - a.ports) + len(b.peers) * _size(a.ports - b.ports)


def _merge_groups(groups: list[_Group], budget: int) -> list[_Group]:
    """Merge the pair that accepts the fewest unobserved combinations, until the rules fit
    (a heap of pair costs: quadratic in the groups, not cubic)."""
    alive = dict(enumerate(groups))
    heap = [(_merge_cost(a, b), i, j) for i, a in alive.items() for j, b in alive.items()
            if i < j]
    heapify(heap)
    rules = sum(g.rules() for g in groups)
    next_id = len(groups)
    while rules > budget and len(alive) > 1:
        _, i, j = heappop(heap)
        if i not in alive or j not in alive:
            continue
        a, b = alive.pop(i), alive.pop(j)
        merged = _Group(a.peers | b.peers, a.ports | b.ports, a.observations + b.observations)
        rules += merged.rules() - a.rules() - b.rules()
        for k, other in alive.items():
            heappush(heap, (_merge_cost(other, merged), k, next_id))
        alive[next_id] = merged
        next_id += 1
    return sorted(alive.values(), key=_Group.sort_key)


def _as_ranges(ports: set[PortRange], most: int) -> set[PortRange]:
    """At most `most` entries: the two nearest entries of one protocol joined, repeatedly."""
    ranges = sorted(ports, key=lambda p: (p[0], p[1]))
    while len(ranges) > most:
        gaps = [(b[1] - a[2], i) for i, (a, b) in enumerate(pairwise(ranges))
                if a[0] == b[0]]
        if not gaps:  # one entry per protocol is left: at most three
            break
        _, i = min(gaps)
        a, b = ranges[i], ranges[i + 1]
        ranges[i: i + 2] = [(a[0], a[1], max(a[2], b[2]))]
    return set(ranges)


def _protocol_manifest(port: PortRange) -> dict[str, Any]:
    protocol, first, last = port
    where = {"number": first} if first == last else {"range": {"start": first, "end": last}}
    return {protocol.lower(): {"destinationPort": where}}


def _namespaces_peer(names: Sequence[str]) -> dict[str, Any]:
    if len(names) == 1:
        return {"namespaces": {"matchLabels": {NAMESPACE_NAME_LABEL: names[0]}}}
    return {"namespaces": {"matchExpressions": [
        {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": list(names)}]}}


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i: i + size] for i in range(0, len(items), size)] or [items]


def _rule_name(direction: str, peers: Sequence[str], part: str) -> str:
    """`accept-from-a,b,+3`: as many peers as fit the schema's 100 characters."""
    head = f"accept-{'from' if direction == INGRESS else 'to'}-"
    for shown in range(len(peers), 0, -1):
        more = f",+{len(peers) - shown}" if shown < len(peers) else ""
        name = head + ",".join(peers[:shown]) + more + part
        if len(name) <= RULE_NAME_MAX:
            return name
    return f"{head}{len(peers)}-peers{part}"


class BaselineBuilder:
    def __init__(self, state: ClusterState, prefixes: Prefixes) -> None:
        self._state = state
        self._prefixes = prefixes
        self._pod_ips = [ip for key in state.endpoint_keys() for ip in state.pods[key].ips]

    def groups(self, direction: str, observations: Sequence[Observation]) -> list[_Group]:
        ports: dict[Peer, set[PortRange]] = defaultdict(set)
        flows: dict[Peer, list[Observation]] = defaultdict(list)
        for o in observations:
            remote = o.source if direction == INGRESS else o.destination
            peer: Peer = (remote.workload.namespace if remote.workload is not None
                          else self._prefixes.network_of(remote))
            ports[peer].update(_ports_of(o))
            flows[peer].append(o)
        by_ports: dict[frozenset[PortRange], _Group] = {}
        for peer in sorted(ports, key=_peer_key):
            key = frozenset(ports[peer])
            group = by_ports.setdefault(key, _Group(set(), set(key), []))
            group.peers.add(peer)
            group.observations += flows[peer]
        return sorted(by_ports.values(), key=_Group.sort_key)

    def fit(self, namespace: str, direction: str, groups: list[_Group],
            notes: list[str]) -> list[_Group]:
        """Within the schema's limits; every widening said in `notes`."""
        needed = sum(g.rules() for g in groups)
        if needed <= ACCEPT_RULES_MAX:
            return groups
        where = f"{direction} of namespace {namespace}"
        notes.append(
            f"{where}: the observations need {needed} Accept rules, more than the "
            f"{ACCEPT_RULES_MAX} a Baseline policy holds beside its Deny ({RULES_MAX} rules per "
            "direction): peers merged into sets sharing their ports")
        before = {p: set(g.ports) for g in groups for p in g.peers}
        groups = _merge_groups(groups, ACCEPT_RULES_MAX)
        for g in groups:
            if g.peer_items() > LIST_MAX * ACCEPT_RULES_MAX:
                networks = {p for p in g.peers if not isinstance(p, str)}
                g.peers = (g.peers - networks) | {ip_network(a) for a in EVERY_ADDRESS}
                notes.append(f"{where}: {len(networks)} address blocks are more than the rules "
                             "can hold: every address is accepted on their ports")
            most = (ACCEPT_RULES_MAX // ceil(g.peer_items() / LIST_MAX)) * LIST_MAX
            if len(g.ports) > most:
                g.ports = _as_ranges(g.ports, most)
                notes.append(f"{where}: {len(g.peers)} peers need more ports than the rules "
                             f"hold: the nearest ports joined into ranges "
                             f"({describe_ports(sorted(g.ports, key=_port_key))})")
        for g in groups:
            if len(g.peers) < 2:
                continue
            extra = sorted(
                (p for p in g.peers if isinstance(p, str) and before.get(p, g.ports) != g.ports),
                key=_peer_key)
            for peer in extra:
                added = sorted(g.ports - before[peer], key=_port_key)
                if added:
                    notes.append(f"{where}: {peer} also accepted on {describe_ports(added)} "
                                 "(merged, not observed)")
            nets = [p for p in g.peers if not isinstance(p, str) and p in before
                    and before[p] != g.ports]
            if nets:
                notes.append(f"{where}: {len(nets)} address block(s) accepted on ports they "
                             "were not observed on (merged)")
        return groups

    def accept_rules(self, direction: str, group: _Group) -> list[BaselineRule]:
        names = sorted((p for p in group.peers if isinstance(p, str)), key=_peer_key)
        nets = [n for n in group.peers if not isinstance(n, str)]
        networks: list[IPNetwork] = [
            n for version in (4, 6)
            for n in collapse_addresses(sorted(m for m in nets if m.version == version))]
        items: list[tuple[dict[str, Any], tuple[str, ...], tuple[IPNetwork, ...]]] = []
        if names:
            items.append((_namespaces_peer(names), tuple(names), ()))
        for chunk in _chunks(networks, LIST_MAX) if networks else []:
            items.append(({"networks": [str(n) for n in chunk]}, (), tuple(chunk)))
        ports = sorted(group.ports, key=_port_key)
        peer_chunks, port_chunks = _chunks(items, LIST_MAX), _chunks(ports, LIST_MAX)
        observations = tuple(sorted(group.observations,
                                    key=lambda o: (-o.last_seen, o.describe())))
        rules = []
        for i, peer_chunk in enumerate(peer_chunks):
            for j, port_chunk in enumerate(port_chunks):
                part = "" if len(peer_chunks) * len(port_chunks) == 1 else \
                    f"-{i * len(port_chunks) + j + 1}"
                peer_names = [n for _, ns, nw in peer_chunk for n in (*ns, *map(str, nw))]
                manifest = {
                    "name": _rule_name(direction, peer_names, part),
                    "action": ACCEPT,
                    PEERS_KEY[direction]: [doc for doc, _, _ in peer_chunk],
                    "protocols": [_protocol_manifest(p) for p in port_chunk],
                }
                rules.append(BaselineRule(
                    ACCEPT,
                    tuple(n for _, ns, _ in peer_chunk for n in ns),
                    tuple(n for _, _, nw in peer_chunk for n in nw),
                    tuple(port_chunk), observations, manifest))
        covering = [n for n in networks if n.prefixlen < n.max_prefixlen
                    and any(ip.version == n.version and ip in n for ip in self._pod_ips)]
        for n in covering:
            for rule in rules:
                if n in rule.networks:
                    rule.notes.append(f"warning: {n} holds pods' addresses too: it accepts "
                                      "egress to those pods on these ports")
        return rules

    def deny_rule(self, direction: str) -> BaselineRule:
        peers: list[dict[str, Any]] = [{"namespaces": {}}]
        if direction == EGRESS:
            peers.append({"networks": list(EVERY_ADDRESS)})
        manifest = {"name": DENY_RULE, "action": DENY, PEERS_KEY[direction]: peers}
        return BaselineRule(DENY, (), tuple(ip_network(a) for a in EVERY_ADDRESS)
                            if direction == EGRESS else (), None, (), manifest)

    def direction_rules(self, namespace: str, direction: str,
                        observations: Sequence[Observation], notes: list[str]
                        ) -> list[BaselineRule]:
        groups = self.fit(namespace, direction, self.groups(direction, observations), notes)
        rules = [r for g in groups for r in self.accept_rules(direction, g)]
        return [*rules, self.deny_rule(direction)]

    def policy(self, namespace: str, inbound: Sequence[Observation],
               outbound: Sequence[Observation], ingress_only: bool) -> BaselinePolicy:
        notes: list[str] = []
        named = [o for o in inbound if o.source.workload is not None]
        ingress = self.direction_rules(namespace, INGRESS, named, notes)
        egress = None if ingress_only else self.direction_rules(
            namespace, EGRESS, outbound, notes)
        spec: dict[str, Any] = {
            "tier": BASELINE,
            "priority": PRIORITY,
            "subject": {"namespaces": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}},
            "ingress": [r.manifest for r in ingress],
        }
        if egress is not None:
            spec["egress"] = [r.manifest for r in egress]
        manifest = {
            "apiVersion": V1ALPHA2,
            "kind": KIND_CLUSTER_NETWORK_POLICY,
            "metadata": {"name": policy_name(namespace)},
            "spec": spec,
        }
        pods = tuple(k for k in self._state.endpoint_keys()
                     if self._state.pods[k].namespace == namespace)
        return BaselinePolicy(namespace, manifest, ingress, egress, pods,
                              [f"warning: {n}" for n in notes], len(inbound) - len(named))


def shadowed(state: ClusterState, policies: Sequence[BaselinePolicy]) -> list[str]:
    """Existing Baseline-tier policies that the advised ones' final Deny would hide, and
    existing policies the advised ones would replace (same kind and name)."""
    ours = {p.key: p for p in policies}
    warnings = []
    for existing in sorted(state.cluster_policies.values(), key=ClusterPolicy.sort_key):
        if existing.key in ours:
            warnings.append(f"{existing.describe()} exists: the advised "
                            f"{ours[existing.key].name} replaces it")
            continue
        if existing.tier != BASELINE:
            continue
        hidden = sorted({
            p.name for p in policies for key in p.pods
            if selects(state, existing, state.pods[key])
            and existing.sort_key() > (PRIORITY, p.name, 0)
        })
        if hidden:
            warnings.append(
                f"{existing.describe()} comes after {', '.join(hidden)} in the Baseline tier: "
                "their final Deny decides first for the namespaces they select, so it is "
                "shadowed there")
    return warnings


def build_baseline(
    state: ClusterState,
    observations: Sequence[Observation],
    prefixes: Prefixes,
    namespaces: frozenset[str] = frozenset(),
    ingress_only: bool = False,
) -> tuple[list[BaselinePolicy], list[str]]:
    """One Baseline-tier policy per namespace with a workload in a learned flow (and among
    `namespaces` when given), sorted by namespace; and warnings."""
    inbound: dict[str, list[Observation]] = defaultdict(list)
    outbound: dict[str, list[Observation]] = defaultdict(list)
    for o in observations:
        if o.destination.workload is not None:
            inbound[o.destination.workload.namespace].append(o)
        if o.source.workload is not None:
            outbound[o.source.workload.namespace].append(o)
    scope = sorted(ns for ns in set(inbound) | set(outbound)
                   if not namespaces or ns in namespaces)
    builder = BaselineBuilder(state, prefixes)
    policies = [builder.policy(ns, inbound[ns], outbound[ns], ingress_only) for ns in scope]
    warnings = [n.removeprefix("warning: ") for p in policies
                for n in (*p.notes, *(n for d in (INGRESS, EGRESS) for r in p.rules(d)
                                      for n in r.notes))]
    system = [p.namespace for p in policies if p.namespace.startswith("kube-")]
    if system:
        warnings.append(
            f"{', '.join(system)} get a default too: system components reach the API server "
            "and the nodes, traffic flows rarely show; --namespace leaves them out")
    return policies, [*warnings, *shadowed(state, policies)]
