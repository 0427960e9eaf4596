"""The agent's control loop: one thread owns the state; everything else feeds it a queue.

    source thread ──SourceEvent──┐
    netlink thread ──link event──┼─> queue ─> Agent.step(): parse, state, compiler, datapath
    ring-buffer thread ──────────┘ (drop events go straight to the EventHub, not the queue)

Only the loop thread mutates the cluster state, the compiler and the maps, so no locks are
needed around them; readers (/status, metrics) get snapshots built by the loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from itertools import islice
from typing import Any, Protocol

from enforcer import log
from enforcer.agent.coalesce import is_object_event, latest, runs
from enforcer.agent.http import EventHub
from enforcer.agent.intake import Intake, ObjectChange
from enforcer.agent.interfaces import Interface, InterfaceDiscovery
from enforcer.agent.metrics import AgentMetrics
from enforcer.agent.services import (
    DEFAULT_NODE_INTERFACE_PATTERN,
    desired_maps,
    local_addresses,
    may_change_maps,
    node_interfaces,
)
from enforcer.agent.upgrade import LayoutUpgrade
from enforcer.compiler import (
    CompileDelta,
    Compiler,
    FlushConntrack,
    RemoveEndpoint,
    WriteIdentity,
    WritePolicy,
    WriteStep,
    plan_writes,
)
from enforcer.datapath.types import (
    FIRST_IDENTITY,
    IDENTITY_ANY,
    DropEvent,
    EndpointPolicy,
    IPAddress,
)
from enforcer.model.cluster import ClusterState
from enforcer.model.services import EndpointSlice, Service
from enforcer.sources.base import EventType, Source, SourceEvent
from enforcer.sources.gcpause import gc_paused


class DatapathWriter(Protocol):
    """What the loop needs of enforcer.datapath (kept narrow so tests can read it at a glance)."""

    def attach(self, ifindex: int, netns: str | None = None) -> None: ...
    def set_endpoints(
        self, items: Sequence[tuple[int, int, EndpointPolicy]]
    ) -> dict[int, int | Exception]: ...
    def remove_endpoints(self, ifindexes: Iterable[int]) -> None: ...
    def set_identities(self, changes: Mapping[Any, int | None]) -> None: ...
    def flush_conntrack(self, ip: Any) -> int: ...
    def flush_conntrack_many(self, ips: Any) -> int: ...
    def endpoints(self) -> Mapping[int, Any]: ...
    def set_services(self, desired: Any) -> int: ...
    def add_local_endpoints(self, addresses: Mapping[Any, tuple[int, int]]) -> int: ...
    def attach_node_interface(self, ifindex: int, netns: str | None = None) -> None: ...


@dataclass
class LinkEvent:
    """An interface appeared (new), vanished (gone), or routes/neighbours changed (neither)."""

    new: Interface | None = None
    gone: int | None = None


@dataclass
class QuarantineRequest:
    """Quarantine a local pod in this agent's state at once (enforcer.quarantine.auto): it
    is applied as a watch event carrying the annotation would be."""

    pod: str
    reason: str


@dataclass
class EndpointRecord:
    pod: str
    ifindex: int | None = None
    endpoint_id: int = 0
    generation: int = 0
    policy: EndpointPolicy | None = None
    error: str | None = None
    locate_after: float = 0.0  # backoff for pods whose interface has not appeared
    locate_delay: float = 0.01


class EarlyCompile:
    """The first full compile, run where the first full sync arrives (PrelistFeed.on_synced),
    which is usually while bcc still compiles the datapath. It numbers identities from
    FIRST_IDENTITY: the agent uses it only if no pinned state names identities (a cold start;
    after a restart it compiles again, above the pinned numbers)."""

    def __init__(
        self, state: ClusterState, node_name: str | None, policy_mode: str = "enforce"
    ) -> None:
        self.compiler: Compiler | None = Compiler(
            state, node_name, FIRST_IDENTITY, policy_mode=policy_mode
        )
        self.delta: CompileDelta | None = None

    def __call__(self) -> None:
        compiler = self.compiler
        if compiler is None:
            return  # not wanted (cancelled)
        delta = compiler.full()
        if self.compiler is compiler:
            self.delta = delta

    def cancel(self) -> None:
        """Not used (pinned state, or done): hold no compiler state (a cluster's worth)."""
        self.compiler = None
        self.delta = None


@dataclass
class AgentStatus:
    ready: bool = False  # the first full sync is written to the maps (enforced)
    synced_once: bool = False  # the first full sync arrived (compiling starts there)
    map_full: int = 0
    last_error: str | None = None
    compiles: int = 0  # incremental compiles: one per run of queued object events
    pin_fault: str | None = None  # the pins' bpffs went (enforcer.datapath.pinguard)


class Agent:
    def __init__(
        self,
        node_name: str | None,
        source: Source,
        datapath: DatapathWriter,
        discovery: InterfaceDiscovery,
        metrics: AgentMetrics,
        events: EventHub,
        started_queue: queue.Queue[tuple[float, SourceEvent | LinkEvent]] | None = None,
        node_interface_pattern: str = DEFAULT_NODE_INTERFACE_PATTERN,
        intake: Intake | None = None,
        early: EarlyCompile | None = None,
        policy_mode: str = "enforce",
        pin_check: Callable[[], str | None] | None = None,
        upgrade: LayoutUpgrade | None = None,
    ) -> None:
        """started_queue: the source already runs and feeds this queue (it was started
        before the datapath's compile, so listing the cluster and compiling overlap);
        intake: the objects it has delivered so far (see enforcer.agent.intake.PrelistFeed);
        early: the first full compile, done by the time the first SYNCED is queued;
        policy_mode: the node's default, enforce or audit (Compiler);
        pin_check: None while the pinned maps are in place (enforcer.datapath.pinguard), else
        what is wrong: the agent is not ready meanwhile, and /status says why;
        upgrade: an older layout's build to take over from (enforcer.agent.upgrade): its
        program keeps the interfaces it holds until the first full sync is in the maps."""
        self.node_name = node_name
        self.policy_mode = policy_mode
        self.source = source
        self.datapath = datapath
        self.discovery = discovery
        self.metrics = metrics
        self.events = events
        self.log = log.get("agent")
        self.intake = intake or Intake(source.describe, self._count_invalid)
        self.state: ClusterState = self.intake.state
        # Number identities above any that pinned tables from a previous run name: a number
        # that meant another class then must not mean this one while old tables are in force.
        first_identity = self._first_free_identity()
        self._early: EarlyCompile | None = None
        if early is not None and early.compiler is not None and first_identity == FIRST_IDENTITY:
            self._early = early
            self.compiler = early.compiler
        else:
            if early is not None:
                early.cancel()
            self.compiler = Compiler(self.state, node_name, first_identity, policy_mode)
        self.queue: queue.Queue[tuple[float, SourceEvent | LinkEvent]] = (
            started_queue if started_queue is not None else queue.Queue()
        )
        self._source_running = started_queue is not None
        self.endpoints: dict[str, EndpointRecord] = {}
        self.pod_of_ifindex: dict[int, str] = {}
        self.attached: set[int] = set()
        self.status = AgentStatus()
        self._next_endpoint_id = 1
        self._adopted: dict[int, int] = {}  # ifindex -> endpoint id
        self._lock = threading.Lock()  # held by step(); readers take it for snapshots
        # Services (bpf/lib/services.h): rewritten after batches that touched them.
        self.node_interface_pattern = node_interface_pattern
        self.node_interfaces: set[int] = set()
        self.node_addresses: set[Any] = set()  # backends here are not deferred to
        self._services_dirty = True
        self._services_local: dict[str, tuple[object, ...]] = {}  # as last written
        self._next_node_scan = 0.0
        self._pin_check = pin_check
        self.upgrade = upgrade
        self._next_pin_check = 0.0
        self._adopt_endpoint_ids()

    # -- threads feeding the queue ------------------------------------------------------------

    def _emit(self, event: SourceEvent) -> None:
        self.queue.put((time.monotonic(), event))

    def run(self, stop: threading.Event) -> None:
        threads = [
            threading.Thread(
                target=self.discovery.watch,
                args=(self._on_link_new, self._on_link_gone, stop, self._on_routing_change),
                name="netlink",
                daemon=True,
            ),
        ]
        if not self._source_running:
            threads.append(
                threading.Thread(
                    target=self.source.run, args=(self._emit, stop), name="source", daemon=True
                )
            )
        for t in threads:
            t.start()
        # Interfaces that exist already: attach now (replace in place, never detach first).
        for iface in self.discovery.list_interfaces():
            self.queue.put((time.monotonic(), LinkEvent(new=iface)))
        while not stop.is_set():
            # Poll faster while some local pod still waits for its interface to show up.
            unbound = any(r.ifindex is None for r in self.endpoints.values())
            try:
                item = self.queue.get(timeout=0.02 if unbound else 0.2)
            except queue.Empty:
                if unbound:
                    with self._lock:
                        self._bind_unbound()
                        self._sync_services()
                self._scan_node_interfaces()
                self._refresh_health()
                continue
            batch = [item]
            while True:  # drain what is already queued: one write pass for a burst
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            with self._lock:
                self.step(batch)
                self._sync_services()
            self._scan_node_interfaces()
            self._refresh_health()

    def _sync_services(self) -> None:
        """Rewrite the Service maps if what they are made of changed: a service-relevant
        object (see may_change_maps), the node's addresses, or a local endpoint's
        interface, id, addresses or first generation. The writer writes only the difference,
        but desired_maps walks every Service, so batches that cannot change it skip it."""
        if not self.status.synced_once:
            return
        local = self._local_endpoint_signature()
        if not self._services_dirty and local == self._services_local:
            return
        self._services_dirty = False
        self._services_local = local
        try:
            self.datapath.set_services(
                desired_maps(self.state, self.endpoints.values(), self.node_addresses)
            )
        except Exception as exc:  # map full: the previous frontends stay (see writer)
            self.status.last_error = str(exc)
            self.log.error("service maps not written", error=str(exc))

    def _local_endpoint_signature(self) -> dict[str, tuple[object, ...]]:
        """What desired_maps reads of each local endpoint."""
        out: dict[str, tuple[object, ...]] = {}
        for key, r in self.endpoints.items():
            pod = self.state.pods.get(key)
            out[key] = (r.ifindex, r.endpoint_id, bool(r.generation), pod.ips if pod else None)
        return out

    def _scan_node_interfaces(self) -> None:
        """Attach the node-egress hook to uplinks and tunnels, including ones that appear
        later (a CNI creates its tunnel device after the agent starts); follow the node's
        own addresses (see enforcer.agent.services)."""
        now = time.monotonic()
        if now < self._next_node_scan:
            return
        self._next_node_scan = now + 2.0
        try:
            found = node_interfaces(self.node_interface_pattern)
            addresses = local_addresses()
        except OSError:
            return
        if addresses != self.node_addresses:
            with self._lock:
                self.node_addresses = addresses
                self._services_dirty = True
                self._sync_services()
        for ifindex, name in found.items():
            if ifindex not in self.node_interfaces:
                if not (self.upgrade and self.upgrade.defer(
                        ifindex, self.datapath.attach_node_interface)):
                    self.datapath.attach_node_interface(ifindex)
                self.node_interfaces.add(ifindex)
                self.log.info("node interface attached", ifname=name, ifindex=ifindex)
        self.node_interfaces &= set(found)

    def _on_link_new(self, iface: Interface) -> None:
        self.queue.put((time.monotonic(), LinkEvent(new=iface)))

    def _on_link_gone(self, ifindex: int) -> None:
        self.queue.put((time.monotonic(), LinkEvent(gone=ifindex)))

    def _on_routing_change(self) -> None:
        # Runs on the netlink thread: only enqueue (the loop owns self.endpoints).
        self.queue.put((time.monotonic(), LinkEvent()))

    def _refresh_health(self) -> None:
        now = time.monotonic()
        if self._pin_check is not None and now >= self._next_pin_check:
            self._next_pin_check = now + 2.0
            self.status.pin_fault = self._pin_check()
            self.metrics.node_faults.labels("bpffs").set(1 if self.status.pin_fault else 0)
        self.metrics.source_healthy.set(1 if getattr(self.source, "healthy", True) else 0)
        self.metrics.ready.set(1 if self.is_ready() else 0)

    def is_ready(self) -> bool:
        return (self.status.ready and bool(getattr(self.source, "healthy", True))
                and self.status.pin_fault is None)

    # -- the loop -----------------------------------------------------------------------------

    def step(self, batch: list[tuple[float, SourceEvent | LinkEvent]]) -> None:
        """Apply queued events in order. Runs of object events are compiled as one step and
        written as one delta (enforcer.agent.coalesce: a watch storm costs a few write passes);
        the compiler's deltas are relative to its previous step, and plan_writes orders one
        delta's writes so that no packet sees more than the old or the new state."""
        for run in runs(batch):
            received, item = run[0]
            if is_object_event(item):
                self._apply_run(run)
                continue
            if isinstance(item, LinkEvent):
                self._handle_link(item)
                continue
            if isinstance(item, QuarantineRequest):
                self._quarantine(item, received)
                continue
            cpu = time.thread_time()
            if item.type is EventType.SYNCED:
                first = not self.status.synced_once
                # The first full compile allocates tens of thousands of long-lived objects:
                # no collection walks the whole state meanwhile (_first_enforced freezes it).
                with gc_paused() if first else contextlib.nullcontext():
                    self._handle_synced()
                    self._write(self._full_delta(first), adopt=first)
                if first:
                    self._first_enforced()
            elif item.type is EventType.RESET:
                if item.kind:
                    self.intake.begin_relist(item.kind)
                continue
            self.metrics.policy_delay.observe(time.monotonic() - received)
            self.metrics.policy_cpu.observe(time.thread_time() - cpu)

    def _apply_run(self, run: list[tuple[float, SourceEvent | LinkEvent]]) -> None:
        """One run of object events: applied to the state in order, compiled once, written
        once. Each event's delay is observed (its latest version is what was written); the
        loop's CPU time is shared out among them."""
        cpu = time.thread_time()
        changes: dict[Any, tuple[Any, Any]] = {}  # key -> (old before the run, new after it)
        for _, event in latest(run):
            assert isinstance(event, SourceEvent)
            change = self.intake.apply(event)
            if change is None:
                continue
            self._note_services(change)
            before = changes.get(change.key)
            changes[change.key] = (before[0] if before else change.old, change.new)
        if not self.status.synced_once:
            return  # the first full sync compiles everything at once
        policy = [(old, new) for old, new in changes.values()
                  if not isinstance(new if new is not None else old, Service | EndpointSlice)]
        if not policy:
            return
        self.status.compiles += 1
        self.metrics.compiles.inc()
        delta = self.compiler.on_changes(policy)
        if delta.is_empty():
            return
        self._write(delta)
        done = time.monotonic()
        share = (time.thread_time() - cpu) / len(run)
        for received, _ in run:
            self.metrics.policy_delay.observe(done - received)
            self.metrics.policy_cpu.observe(share)

    def quarantine_local(self, pod: str, reason: str) -> None:
        """From any thread: quarantine a local pod in this agent now, without waiting for the
        API (the caller writes the annotation there too)."""
        self.queue.put((time.monotonic(), QuarantineRequest(pod, reason)))  # type: ignore[arg-type]

    def _quarantine(self, request: QuarantineRequest, received: float) -> None:
        change = self.intake.quarantine_locally(request.pod, request.reason)
        if change is None or not self.status.synced_once:
            return
        delta = self.compiler.on_changes([(change.old, change.new)])
        if not delta.is_empty():
            self._write(delta)
        self.metrics.policy_delay.observe(time.monotonic() - received)
        self.log.warning("pod quarantined by this agent", pod=request.pod,
                         reason=request.reason)

    def _count_invalid(self, kind: str) -> None:
        self.metrics.invalid_objects.labels(kind=kind).inc()

    def _full_delta(self, first: bool) -> CompileDelta:
        early, self._early = self._early, None
        if first and early is not None and early.delta is not None:
            # The state has not changed since (see PrelistFeed). Not kept: the first delta
            # names every address of the cluster.
            delta = early.delta
            early.cancel()
        elif first and early is not None:  # it failed part way: start from a fresh compiler
            early.cancel()
            self.compiler = Compiler(self.state, self.node_name, FIRST_IDENTITY,
                                     self.policy_mode)
            delta = self.compiler.full()
        else:
            delta = self.compiler.full()
        if first:
            # Pinned state from a previous run: its identity numbers mean other classes than
            # ours (we number above them), so its prefixes are deleted once the new tables
            # are in, and its numbers count as dying for plan_writes' transition tables.
            pinned = self.datapath.identities()
            current = self.compiler.identities()
            for prefix in pinned:
                if prefix not in current:
                    delta.identity_changes[prefix] = None
            dead = set(pinned.values())
            for ep in self.datapath.endpoints().values():
                dead |= {e.peer for e in ep.policy.entries}
            dead.discard(IDENTITY_ANY)
            delta.dead_identities = frozenset(dead)
        return delta

    def _handle_synced(self) -> None:
        for change in self.intake.finish_relist():
            delta = self._compile(change)
            if delta is not None and not delta.is_empty():
                self._write(delta)
        first = not self.status.synced_once
        self.status.synced_once = True
        self.metrics.last_sync.set(time.time())
        if first:
            self.log.info("first full sync", objects=len(self.intake.objects))

    def _first_enforced(self) -> None:
        """The first full sync is in the maps: from now on the agent is ready."""
        self._sync_services()
        if self.upgrade is not None:
            self.upgrade.complete()  # the older build's interfaces, and its flows
        self.status.ready = True
        self.log.info(
            "first full sync enforced",
            endpoints=sum(1 for r in self.endpoints.values() if r.generation),
        )
        # The cluster state is long-lived: keep the cyclic GC from walking all of it on
        # every later collection (otherwise multi-ms pauses land on single events). No
        # collection first: it would hold the GIL (and /readyz) for a quarter second at 10,000
        # pods to free about a thousand objects of cyclic garbage (measured).
        gc.freeze()
        threading.Thread(target=self._release_free_heap, name="trim", daemon=True).start()

    def _note_services(self, change: ObjectChange) -> None:
        if may_change_maps(self.state, change.old, change.new, self.endpoints, self.node_addresses):
            self._services_dirty = True

    def _compile(self, change: ObjectChange | None) -> CompileDelta | None:
        """The compiler's delta for an applied change (None before the first full sync,
        which compiles everything at once, and for Services, which are no policy)."""
        if change is None:
            return None
        self._note_services(change)
        obj = change.new if change.new is not None else change.old
        if not self.status.synced_once or isinstance(obj, Service | EndpointSlice):
            return None  # Services are kube-proxy's frontends, not policy: see _sync_services
        if change.new is None:
            return self.compiler.on_remove(change.old)
        return self.compiler.on_upsert(change.new)

    def _release_free_heap(self) -> None:
        """Give the C heap's free memory back to the system (glibc's malloc_trim): bcc's
        compiler freed much of what it used while the cluster was parsed and compiled beside
        it, and the long-lived objects allocated meanwhile keep that memory mapped otherwise.
        On its own thread (ctypes lets go of the GIL): it takes tens of milliseconds, which
        the first events after readiness must not wait for."""
        began = time.monotonic()
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (AttributeError, OSError):  # not glibc
            return
        self.log.info("free heap returned", ms=round((time.monotonic() - began) * 1000, 1))

    # -- endpoints and interfaces -------------------------------------------------------------

    def _first_free_identity(self) -> int:
        used = set(self.datapath.identities().values())
        for ep in self.datapath.endpoints().values():
            used |= {e.peer for e in ep.policy.entries}
        return max([FIRST_IDENTITY - 1, *used]) + 1

    def _adopt_endpoint_ids(self) -> None:
        """Keep endpoint ids from pinned state, so a restart rewrites rather than renumbers."""
        for ifindex, ep in self.datapath.endpoints().items():
            eid = int(getattr(ep, "endpoint_id", 0))
            self._next_endpoint_id = max(self._next_endpoint_id, eid + 1)
            self._adopted[ifindex] = eid

    def _endpoint_id_for(self, ifindex: int) -> int:
        eid = self._adopted.get(ifindex)
        if eid is None:
            eid = self._next_endpoint_id
            self._next_endpoint_id += 1
            self._adopted[ifindex] = eid
        return eid

    def _handle_link(self, event: LinkEvent) -> None:
        if event.new is None and event.gone is None:  # routes or neighbours changed
            for record in self.endpoints.values():
                if record.ifindex is None:
                    record.locate_after = 0.0
                    record.locate_delay = 0.01
            self._bind_unbound()
            return
        if event.gone is not None:
            pod = self.pod_of_ifindex.pop(event.gone, None)
            self.attached.discard(event.gone)
            self._adopted.pop(event.gone, None)
            if pod and pod in self.endpoints:
                self.endpoints[pod].ifindex = None
            return
        iface = event.new
        assert iface is not None
        if iface.ifindex not in self.attached:
            # Attach first: until its pod is known the interface gets the unknown verdict.
            self._attach(iface.ifindex)
            self.log.info("interface attached", ifname=iface.name, ifindex=iface.ifindex)
        for addr in self.discovery.addresses_behind(iface):
            pod = self.state.pods_by_ip(addr)
            if pod and pod in self.endpoints:
                self._bind(pod, iface.ifindex)

    def _bind_unbound(self) -> None:
        """Find interfaces for local pods that have a policy but no interface yet.

        A pod's addresses and routes may appear after its veth does (CNIs configure the veth
        once it exists), so neither the link event nor the pod event is guaranteed to find
        it; until then the interface has the unknown-endpoint verdict (deny by default).
        """
        now = time.monotonic()
        for key, record in self.endpoints.items():
            if record.ifindex is None and now >= record.locate_after:
                found = self._locate(key)
                if found is not None:
                    self._bind(key, found)
                else:
                    record.locate_after = now + record.locate_delay
                    record.locate_delay = min(record.locate_delay * 2, 0.25)

    def _bind(self, pod: str, ifindex: int, write: bool = True) -> None:
        record = self.endpoints[pod]
        if record.ifindex == ifindex and record.generation:
            return
        if ifindex not in self.attached:
            self._attach(ifindex)
        record.ifindex = ifindex
        self.pod_of_ifindex[ifindex] = pod
        if write and record.policy is not None:
            self._write_endpoint(record)

    def _attach(self, ifindex: int) -> None:
        """Attach (replacing an older program in place), unless an older layout's program
        holds the interface until the first full sync (enforcer.agent.upgrade)."""
        if not (self.upgrade and self.upgrade.defer(ifindex, self.datapath.attach)):
            self.datapath.attach(ifindex)
        self.attached.add(ifindex)

    def _locate(self, pod_key: str) -> int | None:
        pod = self.state.pods.get(pod_key)
        if pod is None:
            return None
        for ip in pod.ips:
            found = self.discovery.interface_for_ip(ip)
            if found is not None:
                return found
        return None

    def _write_endpoint(self, record: EndpointRecord, table: EndpointPolicy | None = None) -> None:
        self._write_endpoints([(record, table or record.policy)])

    def _write_endpoints(
        self, writes: Sequence[tuple[EndpointRecord, EndpointPolicy | None]]
    ) -> None:
        """Swap in each record's table together (one kernel wait for running programs, not one
        per endpoint). A table that cannot be written keeps that endpoint's previous one."""
        items = []
        addresses: dict[IPAddress, tuple[int, int]] = {}
        for record, table in writes:
            assert record.ifindex is not None and table is not None
            record.endpoint_id = self._endpoint_id_for(record.ifindex)
            items.append((record.ifindex, record.endpoint_id, table))
            pod = self.state.pods.get(record.pod)
            for ip in pod.ips if pod else ():
                addresses[ip] = (record.endpoint_id, record.ifindex)
        # Its addresses before its first policy: a pod's packets pass only from them
        # (bpf/lib/source.h). Only what differs is written; _sync_services removes the rest.
        try:
            self.datapath.add_local_endpoints(addresses)
        except Exception as exc:  # map full: those pods' packets drop as spoofed (closed)
            self.status.last_error = str(exc)
            self.log.error("local endpoint addresses not written", error=str(exc))
        results = self.datapath.set_endpoints(items)
        for record, _ in writes:
            result = results[record.ifindex]  # type: ignore[index]
            if isinstance(result, Exception):  # map full or kernel error
                self.status.map_full += 1
                self.metrics.map_full.inc()
                record.error = str(result)
                self.status.last_error = str(result)
                self.log.error("endpoint policy not written", pod=record.pod, error=str(result))
            else:
                record.generation = result
                record.error = None

    # -- writing a compile delta --------------------------------------------------------------

    def _write(self, delta: CompileDelta, adopt: bool = False) -> None:
        for pod_key in delta.endpoints:
            record = self.endpoints.setdefault(pod_key, EndpointRecord(pod=pod_key))
            if record.ifindex is None:
                found = self._locate(pod_key)
                if found is not None:
                    self._bind(pod_key, found, write=False)
        # What is in force for the endpoints the delta changes or whose addresses it moves
        # (all plan_writes reads).
        previous: dict[str, EndpointPolicy] = {}
        adopted = self.datapath.endpoints() if adopt else {}
        moved = {m.pod_key for m in delta.address_moves.values()} & self.endpoints.keys()
        for key in delta.endpoints.keys() | moved:
            record = self.endpoints[key]
            if record.policy is not None and record.generation:
                previous[key] = record.policy
            elif record.ifindex in adopted:
                pinned = adopted[record.ifindex]  # in force since the last run
                previous[key] = pinned.policy
                # And stays in force if plan_writes finds nothing to change: the record
                # must say so (its addresses, status and metrics follow from it).
                record.policy, record.generation = pinned.policy, pinned.generation
                record.endpoint_id = pinned.endpoint_id
        ifindex_of = {
            k: self.endpoints[k].ifindex for k in delta.removed_endpoints if k in self.endpoints
        }
        for step in _runs(plan_writes(delta, previous)):
            if isinstance(step, dict):
                self.datapath.set_identities(step)
            elif isinstance(step, list) and isinstance(step[0], RemoveEndpoint):
                gone = []
                for removal in step:
                    record = self.endpoints.pop(removal.pod_key, None)
                    ifindex = ifindex_of.get(removal.pod_key)
                    if record is None or ifindex is None:
                        continue
                    # Another pod was bound to this interface in this delta (it took the
                    # removed pod's address on the same veth: a pod re-created under a new
                    # UID, say): the entry is that pod's now, and stays.
                    if self.pod_of_ifindex.get(ifindex, removal.pod_key) != removal.pod_key:
                        continue
                    gone.append(ifindex)
                    self.pod_of_ifindex.pop(ifindex, None)
                # If an interface lingers, it falls back to the unknown-endpoint verdict.
                self.datapath.remove_endpoints(gone)
            elif isinstance(step, list):
                writes = []
                for write in step:
                    record = self.endpoints[write.pod_key]
                    # What is in force now (a transition table may also be the final one:
                    # plan_writes then emits no second write for it).
                    record.policy = write.policy
                    if record.ifindex is not None:
                        writes.append((record, write.policy))
                if writes:
                    self._write_endpoints(writes)
            elif isinstance(step, FlushConntrack):
                flushed = self.datapath.flush_conntrack_many(step.ips)
                # One line per change, not per address: a full sync changes thousands.
                self.log.info(
                    "addresses changed owner, conntrack flushed",
                    addresses=len(step.ips),
                    sample=sorted(str(ip) for ip in islice(step.ips, 5)),
                    entries=flushed,
                )
        if adopt:
            self._reconcile_pinned()
        self.metrics.endpoints.set(sum(1 for r in self.endpoints.values() if r.generation))
        self.metrics.quarantined.set(len(self._quarantined()))

    def _quarantined(self) -> dict[str, str]:
        """Local pods under quarantine -> the reason."""
        out = {}
        for key in self.endpoints:
            pod = self.state.pods.get(key)
            if pod is not None and pod.quarantine is not None:
                out[key] = pod.quarantine
        return out

    def _reconcile_pinned(self) -> None:
        """Drop pinned endpoint entries that no current pod owns (state adopted from before)."""
        owned = {r.ifindex for r in self.endpoints.values() if r.ifindex is not None}
        self.datapath.remove_endpoints(i for i in self.datapath.endpoints() if i not in owned)

    # -- observability ------------------------------------------------------------------------

    def pod_for_ifindex(self, ifindex: int) -> str | None:
        return self.pod_of_ifindex.get(ifindex)

    def is_local(self, pod: str) -> bool:
        return pod in self.endpoints

    def quarantine_of(self, pod: str) -> str | None:
        """The reason a pod is quarantined (by this agent, or its annotation); None: it is
        not. Any thread (dict lookups)."""
        held = self.intake.quarantines.get(pod)
        if held is not None:
            return held[1]
        found = self.state.pods.get(pod)
        return found.quarantine if found is not None else None

    def pod_for_ip(self, ip: str) -> str | None:
        try:
            return self.state.pods_by_ip(ip_address(ip))
        except ValueError:
            return None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        eps = []
        for key, r in sorted(self.endpoints.items()):
            pod = self.state.pods.get(key)
            policies = [p.key for p in self.state.policies_selecting(key)] if pod else []
            eps.append(
                {
                    "pod": key,
                    "ifindex": r.ifindex,
                    "endpoint_id": r.endpoint_id,
                    "ips": [str(ip) for ip in pod.ips] if pod else [],
                    "ingress_isolated": bool(r.policy and r.policy.ingress_isolated),
                    "egress_isolated": bool(r.policy and r.policy.egress_isolated),
                    "entries": len(r.policy.entries) if r.policy else 0,
                    "policies": policies,
                    "quarantine": pod.quarantine if pod else None,
                    "generation": r.generation,
                    "error": r.error,
                }
            )
        return {
            "node": self.node_name,
            "ready": self.is_ready(),
            "source": self.source.describe(),
            "source_healthy": bool(getattr(self.source, "healthy", True)),
            "map_full": self.status.map_full,
            "objects": len(self.intake.objects),
            "digest": f"{self.intake.digest:016x}",
            "invalid_objects": self.intake.invalid[-10:],
            # Judged in a shadow, never enforced (namespace/name).
            "staged_policies": self.intake.shadow.names(),
            # Local pods isolated completely (enforcer quarantine): by the pod's annotation,
            # or by this agent alone until the API's version of the pod carries it.
            "quarantined": [
                {"pod": key, "reason": reason,
                 "by": "agent" if key in self.intake.quarantines else "annotation"}
                for key, reason in sorted(self._quarantined().items())
            ],
            "faults": [{"fault": "bpffs", "message": self.status.pin_fault}]
            if self.status.pin_fault else [],
            "endpoints": eps,
        }

    def describe_drop(self, event: DropEvent) -> dict[str, Any]:
        src, dst = str(event.src), str(event.dst)
        return {
            "time": time.time(),
            "node": self.node_name,
            "pod": self.pod_for_ifindex(event.ifindex),
            "direction": event.direction.name.lower(),
            "reason": event.reason.label if event.reason is not None else "forwarded",
            "protocol": event.protocol,
            "src": src,
            "src_port": event.sport,
            "src_pod": self.pod_for_ip(src),
            "dst": dst,
            "dst_port": event.dport,
            "dst_pod": self.pod_for_ip(dst),
            "peer_identity": event.peer_identity,
        }


def _runs(
    steps: Iterable[WriteStep],
) -> Iterator[FlushConntrack | dict[Any, int | None] | list[WritePolicy] | list[RemoveEndpoint]]:
    """The plan with its runs of consecutive writes of one kind batched, in the plan's order:
    - identity upserts (or deletes) as one mapping: one set_identities call per run instead of
      one per prefix (a full sync writes tens of thousands). Upserts and deletes are never
      merged: the writer applies a mapping's deletes first, which would reorder the phases;
    - table writes of one phase (transitional or final) as one list: swapped in with one
      set_endpoints call, so the kernel waits for running programs once per phase, as the
      phases need, rather than once per endpoint; endpoint removals likewise."""
    identities: dict[Any, int | None] = {}
    batch: list[Any] = []  # WritePolicy of one phase, or RemoveEndpoint
    for step in steps:
        if identities and not (
            isinstance(step, WriteIdentity)
            and (step.identity is None) == (next(iter(identities.values())) is None)
        ):
            yield identities
            identities = {}
        if batch and not _same_batch(batch[0], step):
            yield batch
            batch = []
        if isinstance(step, WriteIdentity):
            identities[step.prefix] = step.identity
        elif isinstance(step, WritePolicy | RemoveEndpoint):
            batch.append(step)
        else:
            yield step
    if identities:
        yield identities
    if batch:
        yield batch


def _same_batch(first: WriteStep, step: WriteStep) -> bool:
    if isinstance(first, WritePolicy):
        return isinstance(step, WritePolicy) and step.transitional == first.transitional
    return isinstance(first, RemoveEndpoint) and isinstance(step, RemoveEndpoint)
