"""Prometheus metrics of the agent. Datapath counters are read from the kernel at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from enforcer.datapath.types import Direction, DropReason

DELAY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _reason_label(reason: int) -> str:
    try:
        return DropReason(reason).label
    except ValueError:
        return f"code_{reason}"


class DatapathCollector(Collector):
    """Drops and forwards per pod, direction and reason; map pressure; from the live maps."""

    def __init__(
        self,
        counters: Callable[[], Iterable[Any]],
        pod_of_ifindex: Callable[[int], str | None],
        map_pressure: Callable[[], Mapping[str, float]],
    ) -> None:
        self._counters = counters
        self._pod_of = pod_of_ifindex
        self._pressure = map_pressure

    def collect(self) -> Iterable[Any]:
        drops = CounterMetricFamily(
            "enforcer_drop_count",
            "Packets dropped by the datapath",
            labels=["namespace", "pod", "direction", "reason"],
        )
        drop_bytes = CounterMetricFamily(
            "enforcer_drop_bytes",
            "Bytes dropped by the datapath",
            labels=["namespace", "pod", "direction", "reason"],
        )
        forwards = CounterMetricFamily(
            "enforcer_forward_count",
            "Packets the datapath let through",
            labels=["namespace", "pod", "direction"],
        )
        totals: dict[tuple[str, ...], list[int]] = {}
        for row in self._counters():
            pod = self._pod_of(row.ifindex)
            namespace, name = pod.split("/", 1) if pod else ("", "")
            direction = Direction(row.direction).name.lower()
            reason = "" if row.reason is None else _reason_label(int(row.reason))
            acc = totals.setdefault((namespace, name, direction, reason), [0, 0])
            acc[0] += row.packets
            acc[1] += row.bytes
        for (namespace, name, direction, reason), (packets, nbytes) in sorted(totals.items()):
            if reason:
                drops.add_metric([namespace, name, direction, reason], packets)
                drop_bytes.add_metric([namespace, name, direction, reason], nbytes)
            else:
                forwards.add_metric([namespace, name, direction], packets)
        pressure = GaugeMetricFamily(
            "enforcer_bpf_map_pressure", "Fill level of each BPF map (0..1)", labels=["map_name"]
        )
        for name, level in sorted(self._pressure().items()):
            pressure.add_metric([name], level)
        yield from (drops, drop_bytes, forwards, pressure)


class SourceCollector(Collector):
    """Watch restarts and resource versions, read from the source at scrape time."""

    def __init__(self, source: Any) -> None:
        self._source = source

    def collect(self) -> Iterable[Any]:
        restarts = CounterMetricFamily(
            "enforcer_watch_restarts",
            "Watches restarted per resource (dropped streams, expiry, errors)",
            labels=["resource"],
        )
        for kind, n in sorted(getattr(self._source, "watch_restarts", {}).items()):
            restarts.add_metric([kind], n)
        revision = GaugeMetricFamily(
            "enforcer_source_resource_version",
            "Last resourceVersion seen per resource (numeric where the API gives numbers)",
            labels=["resource"],
        )
        for kind, rv in sorted(getattr(self._source, "resource_versions", {}).items()):
            if rv is not None and str(rv).isdigit():
                revision.add_metric([kind], float(rv))
        rejected = CounterMetricFamily(
            "enforcer_source_rejected",
            "Objects and lines from the API refused as garbage or past a sane limit "
            "(enforcer/sources/limits.py), per resource and reason",
            labels=["resource", "reason"],
        )
        for (kind, reason), n in sorted(dict(getattr(self._source, "rejected", {})).items()):
            rejected.add_metric([kind, reason], n)
        yield from (restarts, revision, rejected)


class FlowsCollector(Collector):
    """Flow events the kernel could not deliver, and the flow store's size and evictions."""

    def __init__(self, events_lost: Callable[[], Mapping[str, int]],
                 store_stats: Callable[[], Any]) -> None:
        self._lost = events_lost
        self._stats = store_stats

    def collect(self) -> Iterable[Any]:
        lost = CounterMetricFamily(
            "enforcer_flow_events_lost",
            "Flow and drop events the datapath did not deliver: refused by the node's or an "
            "endpoint's rate limit, or no room in the ring",
            labels=["reason"],
        )
        for reason, n in sorted(self._lost().items()):
            lost.add_metric([reason], n)
        stats = self._stats()
        size = GaugeMetricFamily("enforcer_flow_store_bytes",
                                 "Estimated memory of the agent's flow store")
        size.add_metric([], stats.bytes)
        records = GaugeMetricFamily("enforcer_flow_store_records",
                                    "Aggregated flows held by the agent's flow store")
        records.add_metric([], stats.records)
        evicted = CounterMetricFamily(
            "enforcer_flow_store_evicted",
            "Aggregated flows evicted from the flow store (oldest first, to stay under its cap)")
        evicted.add_metric([], stats.evicted_records)
        yield from (lost, size, records, evicted)


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.policy_delay = Histogram(
            "enforcer_policy_implementation_delay_seconds",
            "Time from receiving a change until the datapath maps reflect it",
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.policy_cpu = Histogram(
            "enforcer_policy_implementation_cpu_seconds",
            "CPU time the agent's loop spent on a change, parsing to maps written (the delay "
            "also holds kernel waits, such as an RCU grace period per policy map swap)",
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.map_full = Counter(
            "enforcer_map_full", "Writes refused because a BPF map was full", registry=r
        )
        self.invalid_objects = Counter(
            "enforcer_invalid_objects", "Objects rejected by validation", ["kind"], registry=r
        )
        self.ready = Gauge("enforcer_ready", "1 once the first full sync is enforced", registry=r)
        self.endpoints = Gauge(
            "enforcer_endpoints", "Local endpoints under enforcement", registry=r
        )
        self.last_sync = Gauge(
            "enforcer_last_sync_timestamp_seconds",
            "Unix time of the last complete sync with the source",
            registry=r,
        )
        self.source_healthy = Gauge(
            "enforcer_source_healthy", "1 while the object source is reachable", registry=r
        )
        self.events_lost = Counter(
            "enforcer_monitor_events_dropped",
            "Drop events not delivered to a slow monitor",
            registry=r,
        )
        # Bounded: the policies that select this node's pods (plus "" for no policy).
        self.policy_verdicts = Counter(
            "enforcer_policy_verdicts",
            "New flows by the policy that decided them (for a deny: each policy isolating the "
            "pod), verdict (allowed, denied, audit; would-deny and would-allow for staged "
            "policies) and direction",
            ["namespace", "policy", "verdict", "direction"],
            registry=r,
        )

        self.compiles = Counter(
            "enforcer_policy_compiles",
            "Incremental compiles: one per run of queued object changes (a burst of watch "
            "events is compiled and written together, enforcer/agent/coalesce.py)",
            registry=r,
        )
        self.quarantined = Gauge(
            "enforcer_quarantined_pods",
            "Local pods under quarantine (isolated completely: the pod's "
            "policy.enforcer.dev/quarantine annotation, or this agent's automatic quarantine)",
            registry=r,
        )
        self.auto_quarantines = Counter(
            "enforcer_auto_quarantines",
            "Local pods this agent quarantined by itself (--auto-quarantine), by trigger "
            "(spoofed-source, scan)",
            ["trigger"],
            registry=r,
        )
        self.node_faults = Gauge(
            "enforcer_node_fault",
            "1 while the node lacks what the agent needs to start (bpffs under the pin root, "
            "kernel headers): the agent waits, not ready, and /status says what to do",
            ["fault"],
            registry=r,
        )

    def set_faults(self, faults: Any) -> None:
        """enforcer.agent.preflight's faults now (each known fault 0 or 1)."""
        now = {f.name for f in faults}
        for name in ("bpffs", "kernel_headers"):
            self.node_faults.labels(name).set(1 if name in now else 0)

    def count_verdicts(self, record: Any) -> None:
        """One flow record's verdict, per deciding policy (and its staged verdict)."""
        for key in record.policies or ("/",):
            # A namespaced policy NS/NAME, or what has no namespace (a cluster-scoped policy,
            # "quarantine"): namespace "".
            namespace, _, name = key.partition("/") if "/" in key else ("", "", key)
            self.policy_verdicts.labels(namespace, name, record.verdict, record.direction).inc()
        if record.staged is not None:
            for key in record.staged.policies:
                namespace, _, name = key.partition("/")
                self.policy_verdicts.labels(
                    namespace, name, record.staged.verdict, record.direction).inc()

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)
