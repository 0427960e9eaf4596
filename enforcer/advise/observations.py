"""Flow records -> observations: what talked to what, once per flow, resolved to workloads.

One flow between two pods is usually recorded twice: at the source's egress (its node) and at
the destination's ingress (the other node). Records are grouped by (source, destination, port,
protocol) into one observation; its count is the larger of the two sides' counts, not their
sum.

What is learned: a flow is kept when every side that recorded it let it through at least once
(verdict `allowed`, or `audit`: it would have been denied but was let through). A flow some
side only ever denied did not work, so it is not what anyone relies on: it is learned only with
`include_denied`, and then only policy denials (a spoofed source or a malformed packet says
nothing about who should talk to whom). ICMP is not learned: NetworkPolicy cannot express it.

Endpoints: `namespace/pod` must name an endpoint pod of the cluster; a pod that is gone (pods
come and go over an observation window) is taken as its workload, when the record names one
that still has pods. An address that belongs to a pod is that pod (as the model evaluates it);
any other address is outside the cluster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address

from enforcer.flows.record import FlowRecord
from enforcer.model.cluster import ClusterState
from enforcer.model.objects import PROTOCOLS, IPAddress, Pod
from enforcer.model.workloads import Workload, workload_of

LEARNED_VERDICTS = frozenset({"allowed", "audit"})
POLICY_DENIAL_REASONS = frozenset({"", "policy_denied"})
DNS_PORT = 53
DNS_PROTOCOLS = ("UDP", "TCP")


@dataclass(frozen=True)
class Endpoint:
    """One end of an observed flow: pods of a workload, or an address outside the cluster."""

    name: str  # namespace/pod (as recorded, or the pod owning a recorded address), or an address
    workload: Workload | None = None  # None: outside the cluster
    pods: tuple[str, ...] = ()  # the pods the flow is proven for (the workload's, pod gone)
    address: IPAddress | None = None  # outside the cluster only


@dataclass(frozen=True)
class Observation:
    """One flow (source, destination, destination port, protocol), however often recorded."""

    source: Endpoint
    destination: Endpoint
    port: int
    protocol: str
    count: int
    first_seen: float
    last_seen: float
    verdicts: frozenset[str]

    @property
    def is_dns(self) -> bool:
        return self.port == DNS_PORT and self.protocol in DNS_PROTOCOLS

    def describe(self) -> str:
        return f"{self.source.name} -> {self.destination.name} {self.protocol}/{self.port}"


@dataclass
class Learned:
    observations: list[Observation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not learned, and why
    # Workloads seen resolving names whose DNS flows were denied and not learned.
    denied_dns: dict[Workload, list[str]] = field(default_factory=dict)


def workload_pods(state: ClusterState) -> dict[Workload, tuple[Pod, ...]]:
    """Every workload with endpoint pods, and those pods (sorted by key)."""
    found: dict[Workload, list[Pod]] = defaultdict(list)
    for key in state.endpoint_keys():
        pod = state.pods[key]
        found[workload_of(pod)].append(pod)
    return {w: tuple(pods) for w, pods in sorted(found.items())}


class _Resolver:
    def __init__(self, state: ClusterState, workloads: Mapping[Workload, tuple[Pod, ...]]):
        self._state = state
        self._by_key = {w.key: w for w in workloads}
        self._pods = workloads

    def endpoint(self, name: str, recorded_workload: str) -> Endpoint | str:
        """The endpoint, or why it cannot be resolved."""
        try:
            address = ip_address(name)
        except ValueError:
            address = None
        if address is not None:
            owner = self._state.pods_by_ip(address)
            if owner is None:
                return Endpoint(name=str(address), address=address)
            return self._pod_endpoint(owner, owner)
        pod = self._state.pods.get(name)
        if pod is not None and self._state.is_endpoint(pod):
            return self._pod_endpoint(name, name)
        workload = self._by_key.get(recorded_workload)
        if workload is not None:
            return Endpoint(name=name, workload=workload,
                            pods=tuple(p.key for p in self._pods[workload]))
        if pod is not None:
            return f"pod {name} is not an endpoint (hostNetwork, Succeeded or Failed)"
        return f"unknown pod {name}"

    def _pod_endpoint(self, name: str, key: str) -> Endpoint:
        return Endpoint(name=name, workload=workload_of(self._state.pods[key]), pods=(key,))


def _side_lets_through(records: list[FlowRecord], include_denied: bool) -> bool:
    return any(
        r.verdict in LEARNED_VERDICTS
        or (include_denied and r.verdict == "denied" and r.reason in POLICY_DENIAL_REASONS)
        for r in records
    )


def learn(
    state: ClusterState,
    records: Iterable[FlowRecord],
    include_denied: bool = False,
    workloads: Mapping[Workload, tuple[Pod, ...]] | None = None,
) -> Learned:
    workloads = workloads if workloads is not None else workload_pods(state)
    resolver = _Resolver(state, workloads)
    grouped: dict[tuple[str, str, int, str], list[FlowRecord]] = defaultdict(list)
    out = Learned()
    not_policy = 0
    for record in records:
        if record.protocol not in PROTOCOLS or record.port == 0:
            not_policy += 1
            continue
        grouped[(record.source, record.destination, record.port, record.protocol)].append(record)
    if not_policy:
        out.notes.append(f"{not_policy} record(s) of ICMP or port 0 not learned: "
                         "NetworkPolicy cannot name them")
    unresolved: dict[str, int] = defaultdict(int)
    denied = 0
    for (src, dst, port, protocol), group in sorted(grouped.items()):
        by_side: dict[str, list[FlowRecord]] = defaultdict(list)
        for r in group:
            by_side[r.direction].append(r)
        source = resolver.endpoint(src, group[0].source_workload)
        destination = resolver.endpoint(dst, group[0].destination_workload)
        problems = [e for e in (source, destination) if isinstance(e, str)]
        if problems:
            for problem in problems:
                unresolved[problem] += 1
            continue
        assert isinstance(source, Endpoint) and isinstance(destination, Endpoint)
        if source.address is not None and destination.address is not None:
            unresolved[f"neither end of {src} -> {dst} is a pod"] += 1
            continue
        if source.pods and source.pods == destination.pods and len(source.pods) == 1:
            continue  # a pod may always reach itself: no rule needed, none learned
        if not all(_side_lets_through(rs, include_denied) for rs in by_side.values()):
            denied += 1
            if port == DNS_PORT and protocol in DNS_PROTOCOLS and source.workload is not None:
                out.denied_dns.setdefault(source.workload, []).append(f"{dst} {protocol}/{port}")
            continue
        out.observations.append(Observation(
            source=source,
            destination=destination,
            port=port,
            protocol=protocol,
            count=max(sum(r.count for r in rs) for rs in by_side.values()),
            first_seen=min(r.first_seen for r in group),
            last_seen=max(r.last_seen for r in group),
            verdicts=frozenset(r.verdict for r in group),
        ))
    for problem, n in sorted(unresolved.items()):
        out.notes.append(f"{problem}: {n} flow(s) skipped")
    if denied:
        out.notes.append(f"{denied} denied flow(s) not learned (--include-denied learns them)")
    return out
