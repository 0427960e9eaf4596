"""Observations -> one NetworkPolicy per workload and direction, each rule with its reasons.

Every workload that took part in a learned flow (and is in the chosen namespaces) gets an
ingress policy and, unless ingress only, an egress policy, both with `policyTypes` written out.
A direction in which nothing was observed gets a policy without rules: it denies everything,
which is what least privilege means for a workload that was seen and never did that.

Rules: one per peer (a workload, by its namespace and stable labels; or an address block),
listing every observed port of that peer, sorted. DNS (UDP or TCP 53) is special: a workload
seen resolving names gets one egress rule for UDP and TCP 53 to the DNS peers it used, and a
DNS server's ingress rules allow both protocols too, since a resolver falls back to TCP for
answers too long for UDP whether or not that happened while we watched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, collapse_addresses, ip_network
from typing import Any

from enforcer.advise.observations import DNS_PORT, DNS_PROTOCOLS, Endpoint, Observation
from enforcer.advise.selectors import pods_matching, selector_manifest, stable_labels
from enforcer.model.cluster import ClusterState
from enforcer.model.objects import NAMESPACE_NAME_LABEL, IPNetwork, Pod
from enforcer.model.parse import NETWORK_POLICY_API
from enforcer.model.workloads import Workload

INGRESS = "ingress"
EGRESS = "egress"
POLICY_TYPE = {INGRESS: "Ingress", EGRESS: "Egress"}
PEERS_KEY = {INGRESS: "from", EGRESS: "to"}
MAX_NAME = 253

Peer = Workload | IPv4Network | IPv6Network
PortKey = tuple[int, str]  # (number, protocol)


@dataclass(frozen=True)
class Prefixes:
    """How far addresses outside the cluster are aggregated, per IP version."""

    v4: int = 32
    v6: int = 128

    def network_of(self, endpoint: Endpoint) -> IPNetwork:
        assert endpoint.address is not None
        length = self.v4 if endpoint.address.version == 4 else self.v6
        return ip_network(f"{endpoint.address}/{length}", strict=False)


@dataclass
class AdvisedRule:
    peers: tuple[Peer, ...]
    ports: tuple[PortKey, ...]
    observations: tuple[Observation, ...]  # the flows that justify the rule
    dns: bool
    manifest: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # peer selector warnings, as comments


@dataclass
class AdvisedPolicy:
    workload: Workload
    direction: str  # ingress | egress
    manifest: dict[str, Any]
    rules: list[AdvisedRule]
    notes: list[str] = field(default_factory=list)  # selector warnings, printed as comments
    pods: tuple[str, ...] = ()  # the pods its podSelector selects

    @property
    def key(self) -> str:
        meta = self.manifest["metadata"]
        return f"{meta['namespace']}/{meta['name']}"


def peer_sort_key(peer: Peer) -> tuple[Any, ...]:
    if isinstance(peer, Workload):
        return (0, peer.namespace, peer.name, peer.kind)
    return (1, peer.version, int(peer.network_address), peer.prefixlen)


def describe_peer(peer: Peer) -> str:
    return peer.key if isinstance(peer, Workload) else str(peer)


class PolicyBuilder:
    """Builds the policies of one advice; caches each workload's labels and selected pods."""

    def __init__(
        self,
        state: ClusterState,
        workloads: Mapping[Workload, Sequence[Pod]],
        prefixes: Prefixes,
    ) -> None:
        self._state = state
        self._workloads = workloads
        self._prefixes = prefixes
        self._labels: dict[Workload, dict[str, str]] = {}
        self._selected: dict[Workload, set[str]] = {}
        self._pod_ips = [
            ip for key in state.endpoint_keys() for ip in state.pods[key].ips
        ]

    # --- selectors ------------------------------------------------------------------------

    def labels(self, workload: Workload) -> dict[str, str]:
        if workload not in self._labels:
            self._labels[workload] = stable_labels(self._workloads[workload])
        return self._labels[workload]

    def selected(self, workload: Workload) -> set[str]:
        """Pods the workload's selector selects in its namespace (its own, and any others)."""
        if workload not in self._selected:
            self._selected[workload] = pods_matching(
                self._state, workload.namespace, self.labels(workload))
        return self._selected[workload]

    def selector_warning(self, workload: Workload) -> str | None:
        own = {p.key for p in self._workloads[workload]}
        others = sorted(self.selected(workload) - own)
        if not others:
            return None
        labels = self.labels(workload)
        what = ", ".join(f"{k}={v}" for k, v in labels.items()) or "no labels (every pod)"
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        return (f"the stable labels of {workload.key} ({what}) also select {shown}: "
                "rules naming it apply to those pods too")

    # --- peers and ports --------------------------------------------------------------------

    def peer_of(self, endpoint: Endpoint) -> Peer:
        if endpoint.workload is not None:
            return endpoint.workload
        return self._prefixes.network_of(endpoint)

    def peer_manifest(self, peer: Peer, namespace: str) -> dict[str, Any]:
        if isinstance(peer, Workload):
            doc: dict[str, Any] = {}
            if peer.namespace != namespace:
                doc["namespaceSelector"] = {"matchLabels": {NAMESPACE_NAME_LABEL: peer.namespace}}
            doc["podSelector"] = selector_manifest(self.labels(peer))
            return doc
        block: dict[str, Any] = {"cidr": str(peer)}
        # An aggregate never covers a pod: pods are named by their labels, not by address.
        inside = [ip for ip in self._pod_ips if ip.version == peer.version and ip in peer]
        if inside:
            block["except"] = [str(n) for n in collapse_addresses(
                ip_network(ip) for ip in inside)]
        return {"ipBlock": block}

    def port_manifest(self, port: int, protocol: str, pods: Sequence[str]) -> dict[str, Any]:
        """The port by name when every destination pod declares it under that one name."""
        names = set()
        for key in pods:
            pod = self._state.pods[key]
            declared = {p.name for p in pod.ports if p.port == port and p.protocol == protocol}
            if len(declared) != 1 or None in declared:
                names = set()
                break
            (name,) = declared
            if pod.resolve_named_port(name, protocol) != (port,):
                names = set()
                break
            names.add(name)
        if pods and len(names) == 1:
            return {"port": names.pop(), "protocol": protocol}
        return {"port": port, "protocol": protocol}

    def destination_pods(self, direction: str, workload: Workload, peer: Peer) -> list[str]:
        if direction == INGRESS:
            return sorted(self.selected(workload))
        return sorted(self.selected(peer)) if isinstance(peer, Workload) else []

    # --- rules and policies ---------------------------------------------------------------

    def rule(
        self,
        workload: Workload,
        direction: str,
        peers: Sequence[Peer],
        ports: set[PortKey],
        observations: Sequence[Observation],
        dns: bool = False,
    ) -> AdvisedRule:
        ordered_peers = tuple(sorted(set(peers), key=peer_sort_key))
        ordered_ports = tuple(sorted(ports))
        if dns:  # numbers: a DNS server need not name its ports, or name them alike
            port_docs = [{"port": p, "protocol": proto} for p, proto in ordered_ports]
        else:
            (peer,) = ordered_peers
            dst = self.destination_pods(direction, workload, peer)
            port_docs = [self.port_manifest(p, proto, dst) for p, proto in ordered_ports]
        manifest = {
            PEERS_KEY[direction]: [self.peer_manifest(p, workload.namespace)
                                   for p in ordered_peers],
            "ports": port_docs,
        }
        obs = tuple(sorted(observations, key=lambda o: (-o.last_seen, o.describe())))
        notes = [
            f"warning: {warning}"
            for peer in ordered_peers
            if isinstance(peer, Workload) and (warning := self.selector_warning(peer))
        ]
        return AdvisedRule(ordered_peers, ordered_ports, obs, dns, manifest, notes)

    def rules(
        self, workload: Workload, direction: str, observations: Sequence[Observation]
    ) -> list[AdvisedRule]:
        rules: list[AdvisedRule] = []
        by_peer: dict[Peer, list[Observation]] = defaultdict(list)
        dns: list[Observation] = []
        for o in observations:
            if direction == EGRESS and o.is_dns:
                dns.append(o)
            else:
                by_peer[self.peer_of(o.source if direction == INGRESS else o.destination)].append(o)
        if dns:
            rules.append(self.rule(
                workload, direction, [self.peer_of(o.destination) for o in dns],
                {(DNS_PORT, p) for p in DNS_PROTOCOLS}, dns, dns=True))
        for peer in sorted(by_peer, key=peer_sort_key):
            ports: set[PortKey] = set()
            for o in by_peer[peer]:
                ports.update(_ports_of(o))
            rules.append(self.rule(workload, direction, [peer], ports, by_peer[peer]))
        return rules

    def policy(
        self, workload: Workload, direction: str, name: str, observations: Sequence[Observation]
    ) -> AdvisedPolicy:
        rules = self.rules(workload, direction, observations)
        manifest = {
            "apiVersion": NETWORK_POLICY_API,
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": workload.namespace},
            "spec": {
                "podSelector": selector_manifest(self.labels(workload)),
                "policyTypes": [POLICY_TYPE[direction]],
                direction: [r.manifest for r in rules],
            },
        }
        policy = AdvisedPolicy(workload, direction, manifest, rules,
                               pods=tuple(sorted(self.selected(workload))))
        if (warning := self.selector_warning(workload)) is not None:
            policy.notes.append(f"warning: {warning}")
        return policy


def _ports_of(observation: Observation) -> set[PortKey]:
    if observation.is_dns:  # both protocols, as a resolver uses both (see the module doc)
        return {(DNS_PORT, p) for p in DNS_PROTOCOLS}
    return {(observation.port, observation.protocol)}


def policy_names(workloads: Sequence[Workload]) -> dict[Workload, str]:
    """`<workload>` per workload, with its kind when two kinds share a name in a namespace."""
    seen: dict[tuple[str, str], int] = defaultdict(int)
    for w in workloads:
        seen[(w.namespace, w.name)] += 1
    return {
        w: w.name if seen[(w.namespace, w.name)] == 1 else f"{w.name}-{w.kind.lower()}"
        for w in workloads
    }


def policy_name(base: str, direction: str) -> str:
    suffix = f"-{direction}"
    return base[: MAX_NAME - len(suffix)].rstrip("-.") + suffix


def build_policies(
    state: ClusterState,
    observations: Sequence[Observation],
    workloads: Mapping[Workload, Sequence[Pod]],
    prefixes: Prefixes,
    namespaces: frozenset[str] = frozenset(),
    ingress_only: bool = False,
) -> tuple[list[AdvisedPolicy], list[str]]:
    """The advised policies (by namespace, workload, direction) and warnings."""
    builder = PolicyBuilder(state, workloads, prefixes)
    inbound: dict[Workload, list[Observation]] = defaultdict(list)
    outbound: dict[Workload, list[Observation]] = defaultdict(list)
    for o in observations:
        if o.destination.workload is not None:
            inbound[o.destination.workload].append(o)
        if o.source.workload is not None:
            outbound[o.source.workload].append(o)
    scope = sorted(
        w for w in set(inbound) | set(outbound) if not namespaces or w.namespace in namespaces
    )
    names = policy_names(scope)
    policies = []
    for workload in scope:
        policies.append(builder.policy(
            workload, INGRESS, policy_name(names[workload], INGRESS), inbound[workload]))
        if not ingress_only:
            policies.append(builder.policy(
                workload, EGRESS, policy_name(names[workload], EGRESS), outbound[workload]))
    notes = [n for p in policies for n in (*p.notes, *(n for r in p.rules for n in r.notes))]
    return policies, sorted({n.removeprefix("warning: ") for n in notes})
