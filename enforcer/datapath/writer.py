"""The datapath writer: the one place that touches the kernel's policy state.

Datapath.open compiles the program once (bcc), adopting maps pinned by an earlier run after
checking their layout. Policy changes are map writes only:
- an endpoint's complete policy is a fresh inner LPM map swapped into pol_outer with one
  update (atomic: a packet sees the old generation or the new, never a mix);
- its ep_config entry then records the generation, which conntrack compares to re-check
  established flows (the window between the two writes only delays a revocation by
  microseconds; it never allows what neither generation allows);
- nothing is flushed or detached on open or close.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any

from enforcer.datapath import bpfsys, layout, policykeys, services, tc, tcx
from enforcer.datapath.layout import (
    CFG_EP_EVENT_BURST_NS,
    CFG_EP_EVENT_COST_NS,
    CFG_EVENT_ALLOWED,
    CFG_EVENT_BURST_NS,
    CFG_EVENT_COST_NS,
    CFG_FLOW_BUDGET,
    CFG_POLICY_EPOCH,
    CFG_UNKNOWN_ALLOW,
    COUNTER_KEY,
    COUNTER_VAL,
    CT_IFINDEX_OFFSET,
    CT_KEY,
    EP_CONFIG,
    EP_F_AUDIT,
    EP_F_OPEN,
    EVENT,
    FLOW,
    FRAG_KEY,
    IDENT4_KEY,
    IDENT6_KEY,
    U32,
    U64,
    DatapathConfig,
)
from enforcer.datapath.loader import (
    FROM_POD_FUNC,
    NODE_EGRESS_FUNC,
    TO_POD_FUNC,
    LoadedProgram,
    compile_program,
)
from enforcer.datapath.types import (
    CounterRow,
    Direction,
    DropEvent,
    DropReason,
    EndpointPolicy,
    EndpointState,
    IPAddress,
    IPNetwork,
    RuleOrigin,
)

log = logging.getLogger(__name__)


class MapFullError(RuntimeError):
    """A write did not fit its map; the previous state was kept (fail closed)."""

    def __init__(self, map_name: str, detail: str) -> None:
        super().__init__(f"{map_name} is full: {detail}")
        self.map_name = map_name


def _sum_per_cpu(value: bytes) -> list[int]:
    """[packets, bytes] of a per-CPU counter value, summed over the CPUs."""
    packets = nbytes = 0
    for p, b in COUNTER_VAL.iter_unpack(value):
        packets += p
        nbytes += b
    return [packets, nbytes]


def _reason(code: int) -> DropReason | None:
    return None if code == 0 else DropReason(code)


class Datapath:
    def __init__(self, pin_dir: Path, cfg: DatapathConfig, program: LoadedProgram,
                 maps: dict[str, bpfsys.Map], adopted: list[str]) -> None:
        self.pin_dir = pin_dir
        self.config = cfg
        self.program = program
        self.adopted = adopted  # names of pinned maps found at open (state kept)
        self.map_full_total = 0  # generation or identity writes refused for lack of room
        self._maps = maps
        self._ring_open = False
        # (address, port, protocol name) of the Service frontends last written: flows judge
        # traffic to them after DNAT (enforcer.flows.attribute reads it).
        self.service_frontends: frozenset[services.Frontend] = frozenset()
        # Rule set id -> rules, for every id a generation written by this agent carries.
        self.rule_sets: dict[int, frozenset[RuleOrigin]] = {}
        self._event_callback: Callable[[DropEvent], None] | None = None
        self._lock = threading.Lock()  # writers may be called from several threads
        self._generation = 0
        self._counter_slots: dict[int, int] = {}  # ifindex -> row pair in fwd_counters
        self._interfaces_of: dict[int, set[int]] = {}  # endpoint id -> ifindexes (ep_config)
        self._services_written: dict[str, dict[bytes, bytes]] = {}  # see services.sync
        for key, value in maps["ep_config"].items():
            endpoint_id, generation, _, slot = EP_CONFIG.unpack(value)
            self._interfaces_of.setdefault(endpoint_id, set()).add(U32.unpack(key)[0])
            self._generation = max(self._generation, generation)
            if slot:
                self._counter_slots[U32.unpack(key)[0]] = slot

    # -- lifecycle -------------------------------------------------------------------------

    attach_mode = "tc"  # resolved from config.attach_mode by open()

    @classmethod
    def open(cls, pin_root: Path = layout.DEFAULT_PIN_ROOT,
             config: DatapathConfig | None = None) -> Datapath:
        """Compile the program and pin (or adopt, after a layout check) its maps."""
        cfg = config or DatapathConfig()
        attach_mode = tcx.resolve_attach_mode(cfg.attach_mode)
        layout.ensure_bpffs(pin_root)
        pin_dir = pin_root / f"v{layout.LAYOUT_VERSION}"
        fresh = not pin_dir.exists()
        pin_dir.mkdir(parents=True, exist_ok=True)
        try:
            adopted = layout.check_pins(pin_dir, cfg)
            program = compile_program(cfg, pin_dir)
        except BaseException:
            if fresh:
                # bcc pins maps before the verifier sees the program. Pins this call made
                # hold nothing and serve no program: leave no half-made layout behind.
                shutil.rmtree(pin_dir, ignore_errors=True)
            raise
        log.info("compiled datapath in %.2fs (headers: %s), adopted pins: %s, attach: %s",
                 program.compile_seconds, program.headers.how, adopted or "none", attach_mode)
        ncpu = bpfsys.possible_cpus()
        maps = {}
        for name, spec in layout.map_specs(cfg).items():
            vsize = spec.value_size * ncpu if spec.type in layout.PER_CPU_TYPES \
                else spec.value_size
            maps[name] = bpfsys.Map(bpfsys.obj_get(str(pin_dir / name)), spec.key_size, vsize,
                                    name)
        dp = cls(pin_dir, cfg, program, maps, adopted)
        dp.attach_mode = attach_mode
        dp._write_config()
        return dp

    def pinned_fds(self) -> dict[str, int]:
        """Each pinned map's open fd, by pin name (enforcer.datapath.pinguard pins them again
        if their pins go)."""
        return {name: m.fd for name, m in self._maps.items()}

    def close(self) -> None:
        """Release fds. Filters, programs and pinned maps stay: enforcement continues."""
        for m in self._maps.values():
            m.close()
        self._maps = {}
        self.program.bpf.cleanup()

    def __enter__(self) -> Datapath:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_config(self) -> None:
        cfg = self.config
        self.set_unknown_verdict(cfg.unknown_endpoint_allow)
        self.set_event_rate(cfg.events_per_second, cfg.event_burst,
                            cfg.endpoint_events_per_second, cfg.endpoint_event_burst)
        self.set_flow_events(cfg.events_for_allowed_flows)
        self.set_flow_budget(cfg.pod_flows_per_second, cfg.pod_flow_burst)

    def _set_slot(self, slot: int, value: int) -> None:
        self._maps["config"].update(U32.pack(slot), U64.pack(value))

    def set_event_rate(self, per_second: int, burst: int, endpoint_per_second: int = 0,
                       endpoint_burst: int = 0) -> None:
        """Kernel-side token buckets per CPU: at most `per_second` events a second after a
        burst of `burst` for the node (0 disables events), and as many for each endpoint
        with `endpoint_*` (0: no per-endpoint limit)."""
        ep_cost = 10**9 // endpoint_per_second if endpoint_per_second > 0 else 0
        self._set_slot(CFG_EP_EVENT_BURST_NS, ep_cost * max(endpoint_burst, 1))
        self._set_slot(CFG_EP_EVENT_COST_NS, ep_cost)
        cost = 10**9 // per_second if per_second > 0 else 0
        self._set_slot(CFG_EVENT_BURST_NS, cost * max(burst, 1))
        self._set_slot(CFG_EVENT_COST_NS, cost)

    def set_flow_budget(self, per_second: int, burst: int) -> None:
        """Each pod may open `per_second` new flows a second (per CPU) after a burst of
        `burst`; past that its new flows drop as DropReason.FLOW_BUDGET (0: no budget)."""
        cost = min(10**9 // per_second, 0xFFFFFFFF) if per_second > 0 else 0
        self._set_slot(CFG_FLOW_BUDGET, (min(max(burst, 1), 0xFFFFFFFF) << 32) | cost)

    def set_flow_events(self, enabled: bool) -> None:
        """Also report each allowed new flow (reason None) on the event stream."""
        self._set_slot(CFG_EVENT_ALLOWED, int(enabled))

    # -- attach ----------------------------------------------------------------------------

    def attach(self, ifindex: int, netns: str | None = None) -> None:
        """Both hooks of a host-side veth; idempotent, replaces an older program in place."""
        p = self.program
        self._attach(ifindex, [("egress", p.to_pod_fd, p.to_pod_name),
                               ("ingress", p.from_pod_fd, p.from_pod_name)], netns)

    def attach_node_interface(self, ifindex: int, netns: str | None = None) -> None:
        """tc egress of a node interface that is no pod's (uplink, tunnel): local pods'
        traffic leaving the node is judged there after DNAT (bpf/lib/services.h)."""
        p = self.program
        self._attach(ifindex, [("egress", p.node_egress_fd, p.node_egress_name)], netns)

    def _attach(self, ifindex: int, hooks: list[tuple[str, int, str]],
                netns: str | None) -> None:
        """To-pod first: an interface is never left filtered in one direction only for long.
        Switching between TCX and clsact attaches the new way first, then removes the old
        (both judge alike meanwhile): no gap."""
        names = {name for _, _, name in hooks}
        cfg = self.config
        if self.attach_mode == "tcx":
            tcx.attach(ifindex, [(hook, fd) for hook, fd, _ in hooks], netns)
            tc.detach_named(ifindex, names, cfg.tc_prio, cfg.tc_handle, netns)
            return
        parent = {"egress": tc.PARENT_EGRESS, "ingress": tc.PARENT_INGRESS}
        tc.attach_hooks(ifindex, [(parent[hook], fd, name) for hook, fd, name in hooks],
                        cfg.tc_prio, cfg.tc_handle, netns)
        if tcx.supported():
            tcx.detach_named(ifindex, {bpfsys.prog_id_and_name(fd)[1] for _, fd, _ in hooks},
                             netns)

    def enforcing(self, ifindex: int, netns: str | None = None) -> bool:
        """Whether a program of ours (this build's or an older one's: the same names) is on
        the interface, as TCX program or clsact filter."""
        p = self.program
        # A clsact filter carries the name we gave it; a TCX program is known by the kernel's
        # program name, the C function's (the names of TCX-attached builds were missed here,
        # and their interfaces taken over before this build's tables were written).
        filter_names = {p.to_pod_name, p.from_pod_name, p.node_egress_name}
        program_names = {FROM_POD_FUNC, TO_POD_FUNC, NODE_EGRESS_FUNC}
        if tcx.supported() and program_names & {n for _, n in tcx.programs(ifindex, netns)}:
            return True
        return bool(filter_names & {name for _, _, name in tc.filters(ifindex, netns)})

    def adopt_conntrack(self, entries: Iterable[tuple[bytes, bytes]]) -> int:
        """Write conntrack entries carried over from an older layout (datapath/migrate.py)
        that the table does not hold yet; returns how many were written."""
        ct = self._maps["ct"]
        with self._lock:
            raw = ct.keys_raw()
            size = CT_KEY.size
            have = {raw[i : i + size] for i in range(0, len(raw), size)}
            new = [(k, v) for k, v in entries if k not in have]
            for start in range(0, len(new), 4096):
                ct.update_batch(new[start : start + 4096])
        return len(new)

    def set_services(self, desired: services.ServiceMaps) -> int:
        """Service frontends, local endpoint addresses and hairpin backends, as a whole."""
        written = self._write_services(
            lambda: services.sync(self._maps, desired, self._services_written))
        self.service_frontends = frozenset(desired.frontends)
        return written

    def add_local_endpoints(self, addresses: Mapping[IPAddress, tuple[int, int]]) -> int:
        """Address -> (endpoint id, host veth ifindex) for these addresses, before their
        endpoint's first policy: a pod's packets pass only from its own addresses, and are
        tracked only to them (bpf/lib/source.h). Leaves every other address alone; the next
        set_services replaces the whole."""
        return self._write_services(
            lambda: services.add_local_endpoints(self._maps, addresses, self._services_written))

    def _write_services(self, write: Callable[[], int]) -> int:
        with self._lock:
            try:
                ops = write()
                if ops:
                    self._bump_epoch()
                return ops
            except OSError as exc:
                self._services_written.clear()  # read back next time: partly written
                self._bump_epoch()  # some of it may be written
                if exc.errno in bpfsys.FULL_ERRNOS:
                    self.map_full_total += 1
                    raise MapFullError("services", str(exc)) from exc
                raise

    # -- policy ----------------------------------------------------------------------------

    def set_endpoint(self, ifindex: int, endpoint_id: int, policy: EndpointPolicy) -> int:
        """Install a complete policy generation for an endpoint; returns its generation.
        Raises MapFullError (and keeps the previous generation) when it does not fit."""
        result = self.set_endpoints([(ifindex, endpoint_id, policy)])[ifindex]
        if isinstance(result, Exception):
            raise result
        return result

    def set_endpoints(
        self, items: Sequence[tuple[int, int, EndpointPolicy]]
    ) -> dict[int, int | Exception]:
        """Install a generation for each (ifindex, endpoint id, policy), swapped in together
        with one batch write (the kernel's wait for running programs once, not per endpoint).
        Returns each ifindex's new generation, or the error that kept its previous one
        (MapFullError when its table does not fit). Each endpoint is still all old or all
        new; the endpoints among themselves switch in order, within microseconds."""
        with self._lock:
            out: dict[int, int | Exception] = {}
            if len({eid for _, eid, _ in items}) < len(items):
                # One table per endpoint id per swap: a repeated id is written in turn.
                for item in items:
                    out.update(self._set_endpoints([item]))
                return out
            return self._set_endpoints(items)

    def _set_endpoints(
        self, items: Sequence[tuple[int, int, EndpointPolicy]]
    ) -> dict[int, int | Exception]:
        out: dict[int, int | Exception] = {}
        tables: list[tuple[int, int, EndpointPolicy, int]] = []
        try:
            for ifindex, endpoint_id, policy in items:
                try:
                    tables.append((ifindex, endpoint_id, policy,
                                   self._fill_generation(endpoint_id, policy)))
                except (MapFullError, OSError) as exc:
                    out[ifindex] = exc
            try:
                self._maps["pol_outer"].update_batch(
                    [(U32.pack(eid), U32.pack(fd)) for _, eid, _, fd in tables])
                swapped = len(tables)
            except OSError as exc:
                swapped = getattr(exc, "processed", 0)
                error: Exception = exc
                if exc.errno in bpfsys.FULL_ERRNOS:
                    self.map_full_total += 1
                    error = MapFullError("pol_outer", str(exc))
                for ifindex, *_ in tables[swapped:]:
                    out[ifindex] = error
        finally:
            for *_, fd in tables:
                os.close(fd)  # the outer map holds the reference of those swapped in
        try:
            for ifindex, endpoint_id, policy, _ in tables[:swapped]:
                try:
                    out[ifindex] = self._publish_generation(ifindex, endpoint_id, policy)
                except MapFullError as exc:  # a new interface: it keeps the unknown verdict
                    out[ifindex] = exc
        finally:
            if swapped:
                # Others' flows to or from these endpoints were judged by their old tables
                # (Services: an egress is checked at the peer's hook too).
                self._bump_epoch()
        return out

    def _fill_generation(self, endpoint_id: int, policy: EndpointPolicy) -> int:
        """A new inner table holding the whole policy; returns its fd (the caller closes it)."""
        pairs = policykeys.encode(policy, self.rule_sets)
        spec = layout.inner_policy_spec(self.config)
        if len(pairs) > spec.max_entries:
            self.map_full_total += 1
            raise MapFullError("policy", f"endpoint {endpoint_id} needs {len(pairs)} entries, "
                               f"a generation holds {spec.max_entries}")
        inner_fd = bpfsys.map_create(spec.type, spec.key_size, spec.value_size,
                                     spec.max_entries, bpfsys.BPF_F_NO_PREALLOC,
                                     f"enf_pol_{endpoint_id}")
        try:
            inner = bpfsys.Map(inner_fd, spec.key_size, spec.value_size)
            for key, value in pairs:
                inner.update(key, value)
        except OSError as exc:
            os.close(inner_fd)
            if exc.errno in bpfsys.FULL_ERRNOS:
                self.map_full_total += 1
                raise MapFullError("policy", f"endpoint {endpoint_id}: {exc}") from exc
            raise
        return inner_fd

    def _publish_generation(self, ifindex: int, endpoint_id: int, policy: EndpointPolicy) -> int:
        """The endpoint's config after its table swap: generation number, flags, counter row."""
        # Monotonic per interface even if another process (an older agent) wrote meanwhile:
        # a reused number would make stale conntrack entries look current.
        current = self._maps["ep_config"].lookup(U32.pack(ifindex))
        if current:
            previous_id, previous_generation, _, _ = EP_CONFIG.unpack(current)
            self._generation = max(self._generation, previous_generation)
            if previous_id != endpoint_id:  # the interface moved to another table
                self._interfaces_of.get(previous_id, set()).discard(ifindex)
        self._generation += 1
        generation = self._generation
        slot = self._counter_slot(ifindex)
        audit = EP_F_AUDIT if policy.audit else 0
        flags = audit | sum(EP_F_OPEN << d for d in policykeys.open_directions(policy))
        sharing = self._interfaces_of.setdefault(endpoint_id, set())
        sharing.add(ifindex)
        if len(sharing) > 1:
            # Interfaces sharing one table: a flag kept on another would outlive its table.
            flags = audit
            for other in sharing - {ifindex}:
                raw = self._maps["ep_config"].lookup(U32.pack(other))
                if raw is not None:
                    eid, gen, _, other_slot = EP_CONFIG.unpack(raw)
                    self._put("ep_config", U32.pack(other),
                              EP_CONFIG.pack(eid, gen, audit, other_slot))
        self._put("ep_config", U32.pack(ifindex),
                  EP_CONFIG.pack(endpoint_id, generation, flags, slot))
        return generation

    def _counter_slot(self, ifindex: int) -> int:
        """The endpoint's forwarded-packet counter rows: kept for its life, a free one
        (zeroed: it may have counted for an endpoint gone since) for a new interface, or 0
        (counted in the hash, slower) when every slot is taken."""
        slot = self._counter_slots.get(ifindex)
        if slot is not None:
            return slot
        taken = set(self._counter_slots.values())
        slot = next((i for i in range(1, self.config.max_endpoints) if i not in taken), 0)
        if slot:
            rows = self._maps["fwd_counters"]
            for row in (slot * 2, slot * 2 + 1):
                rows.update(U32.pack(row), bytes(rows.value_size))
            self._counter_slots[ifindex] = slot
        return slot

    def remove_endpoint(self, ifindex: int) -> None:
        """Forget an interface's endpoint: its packets get the unknown-endpoint verdict."""
        self.remove_endpoints([ifindex])

    def remove_endpoints(self, ifindexes: Iterable[int]) -> None:
        """Forget several interfaces' endpoints together: their tables go in one batch (one
        kernel wait for running programs) and conntrack is read once for all of them."""
        with self._lock:
            gone: list[int] = []
            tables: list[bytes] = []
            for ifindex in ifindexes:
                raw = self._maps["ep_config"].lookup(U32.pack(ifindex))
                if raw is None:
                    continue
                endpoint_id = EP_CONFIG.unpack(raw)[0]
                self._maps["ep_config"].delete(U32.pack(ifindex))
                self._counter_slots.pop(ifindex, None)
                sharing = self._interfaces_of.get(endpoint_id, set())
                sharing.discard(ifindex)
                if not sharing:
                    tables.append(U32.pack(endpoint_id))
                gone.append(ifindex)
            if not gone:
                return
            self._bump_epoch()
            self._maps["pol_outer"].delete_batch(tables)
            # A later veth may reuse an ifindex: it must not inherit the removed one's flows.
            ct = self._maps["ct"]
            raw = ct.keys_raw()
            for ifindex in gone:
                for index in _key_indexes(raw, CT_KEY.size, U32.pack(ifindex),
                                          (CT_IFINDEX_OFFSET,)):
                    ct.delete(raw[index * CT_KEY.size : (index + 1) * CT_KEY.size])

    def _put(self, name: str, key: bytes, value: bytes) -> None:
        try:
            self._maps[name].update(key, value)
        except OSError as exc:
            if exc.errno in bpfsys.FULL_ERRNOS:
                self.map_full_total += 1
                raise MapFullError(name, str(exc)) from exc
            raise

    def set_identities(self, changes: Mapping[IPNetwork, int | None]) -> None:
        """Set (or with None delete) the peer identity of IP prefixes. Deletions go first so
        a batch that replaces prefixes needs no extra room."""
        with self._lock:
            self._set_identities(changes)

    def _set_identities(self, changes: Mapping[IPNetwork, int | None]) -> None:
        try:
            for net, ident in sorted(changes.items(), key=lambda kv: kv[1] is not None):
                name, key = self._ident_key(net)
                if ident is None:
                    self._maps[name].delete(key)
                else:
                    self._put(name, key, U32.pack(ident))
        finally:
            if changes:
                # A peer that lost the identity a policy allowed loses its flows too.
                self._bump_epoch()

    def _bump_epoch(self) -> None:
        """Every established flow is re-checked at its next packet (bpf/enforcer.c): called
        after any change of identities, endpoint policy or Service maps, so the kernel's fast
        path may trust a flow checked under the current epoch without looking further."""
        raw = self._maps["config"].lookup(U32.pack(CFG_POLICY_EPOCH))
        epoch = U64.unpack(raw)[0] if raw else 0
        self._set_slot(CFG_POLICY_EPOCH, epoch + 1)

    def identities(self) -> dict[IPNetwork, int]:
        """prefix -> identity as the kernel holds it (for reconcile after a restart)."""
        out: dict[IPNetwork, int] = {}
        for name, fmt, net_type in (
            ("ident4", IDENT4_KEY, IPv4Network),
            ("ident6", IDENT6_KEY, IPv6Network),
        ):
            for key, value in self._maps[name].items():
                plen, addr = fmt.unpack(key)
                out[net_type((addr, plen))] = U32.unpack(value)[0]
        return out

    @staticmethod
    def _ident_key(net: IPNetwork) -> tuple[str, bytes]:
        if net.version == 4:
            return "ident4", IDENT4_KEY.pack(net.prefixlen, net.network_address.packed)
        return "ident6", IDENT6_KEY.pack(net.prefixlen, net.network_address.packed)

    def set_unknown_verdict(self, allow: bool) -> None:
        """Verdict for attached interfaces without endpoint config (deny by default)."""
        self._set_slot(CFG_UNKNOWN_ALLOW, int(allow))

    def flush_conntrack(self, ip: IPAddress) -> int:
        """Delete every conntrack and fragment entry naming `ip` (its owner changed)."""
        return self.flush_conntrack_many([ip])

    def flush_conntrack_many(self, ips: Iterable[IPAddress]) -> int:
        """The same for many addresses in one pass over each map (a full sync can change
        the owner of every address at once). The maps' keys are searched as one buffer, so
        a conntrack table of 250,000 flows costs milliseconds, not a Python loop."""
        wanted = {layout.addr_bytes(ip): layout.family_of(ip) for ip in ips}
        if not wanted:
            return 0
        removed = 0
        ct = self._maps["ct"]
        with self._lock:
            for key in _keys_naming(ct.keys_raw(), CT_KEY.size, wanted, (0, 16), 37):
                removed += ct.delete(key)
            # The kernel may remember these flows as current (bpf/lib/flowcache.h), even
            # one whose entry the LRU already evicted: a new epoch makes their next packets
            # take the lookup.
            self._bump_epoch()
        frags = self._maps["frags"]
        for key in _keys_naming(frags.keys_raw(), FRAG_KEY.size, wanted, (0, 16), 37):
            frags.delete(key)
        return removed

    # -- read back -------------------------------------------------------------------------

    def counters(self) -> list[CounterRow]:
        totals: dict[tuple[int, int, int], list[int]] = {}
        for key, value in self._maps["counters"].items():
            ifindex, direction, reason, _ = COUNTER_KEY.unpack(key)
            totals[(ifindex, direction, reason)] = _sum_per_cpu(value)
        rows = self._maps["fwd_counters"]
        for ifindex, slot in self._counter_slots.items():
            for direction in (0, 1):
                value = rows.lookup(U32.pack(slot * 2 + direction))
                if value is None:
                    continue
                packets, nbytes = _sum_per_cpu(value)
                total = totals.setdefault((ifindex, direction, 0), [0, 0])
                total[0] += packets
                total[1] += nbytes
        return [CounterRow(ifindex, Direction(direction), _reason(reason), packets, nbytes)
                for (ifindex, direction, reason), (packets, nbytes) in totals.items()
                if packets or nbytes]

    def poll_events(self, timeout_ms: int, callback: Callable[[DropEvent], None]) -> None:
        """Deliver pending events (waits up to timeout_ms for the first)."""
        bpf = self.program.bpf
        self._event_callback = callback
        if not self._ring_open:
            def on_event(_ctx: Any, data: Any, size: int) -> None:
                raw = ctypes.string_at(data, min(size, EVENT.size))
                if self._event_callback is not None:
                    self._event_callback(_decode_event(raw))

            bpf[b"events"].open_ring_buffer(on_event)
            self._ring_open = True
        bpf.ring_buffer_poll(timeout_ms)

    def events_lost(self) -> dict[str, int]:
        """Events this program could not deliver since it was loaded: refused by the rate
        limit, or with no room in the ring (bpf/lib/events.h event_lost)."""
        table = self.program.bpf[b"event_lost"]
        out = {}
        for slot, name in ((0, "rate_limit"), (1, "ring_full"), (2, "endpoint_limit")):
            out[name] = sum(int(v) for v in table.getvalue(table.Key(slot)))
        return out

    def rule_set(self, ident: int) -> frozenset[RuleOrigin] | None:
        """The rules an event's rule set id names (None: not written by this agent)."""
        return self.rule_sets.get(ident)

    def endpoints(self) -> dict[int, EndpointState]:
        """ifindex -> endpoint as the kernel holds it."""
        out = {}
        spec = layout.inner_policy_spec(self.config)
        for key, value in self._maps["ep_config"].items():
            ifindex = U32.unpack(key)[0]
            endpoint_id, generation, _, _ = EP_CONFIG.unpack(value)
            inner_id = self._maps["pol_outer"].lookup(U32.pack(endpoint_id))
            pairs: list[tuple[bytes, bytes]] = []
            if inner_id is not None:
                fd = bpfsys.map_fd_by_id(U32.unpack(inner_id)[0])
                try:
                    pairs = list(bpfsys.Map(fd, spec.key_size, spec.value_size).items())
                finally:
                    os.close(fd)
            out[ifindex] = EndpointState(ifindex, endpoint_id, generation,
                                         policykeys.decode(pairs))
        return out

    def map_pressure(self) -> dict[str, float]:
        """Fill ratio of each fixed-size map (LRU maps evict instead of failing)."""
        out = {}
        for name, spec in layout.map_specs(self.config).items():
            if name == "config":
                continue
            out[name] = sum(1 for _ in self._maps[name].keys()) / spec.max_entries
        return out


def _key_indexes(raw: bytes, size: int, pattern: bytes, at: tuple[int, ...]) -> Iterator[int]:
    """Indexes of the keys (fixed `size`, concatenated in `raw`) holding `pattern` at one of
    the offsets `at`: a C-speed search of the whole buffer, not a loop over its keys."""
    start = raw.find(pattern)
    while start != -1:
        index, within = divmod(start, size)
        if within in at:
            yield index
        start = raw.find(pattern, start + 1)


def _keys_naming(
    raw: bytes, size: int, wanted: Mapping[bytes, int], at: tuple[int, ...], family_at: int
) -> list[bytes]:
    """Keys holding one of the `wanted` 16-byte addresses at one of the offsets `at`, with
    that address's family at `family_at`."""
    hits = {index for pattern, family in wanted.items()
            for index in _key_indexes(raw, size, pattern, at)
            if raw[index * size + family_at] == family}
    return [raw[i * size : (i + 1) * size] for i in sorted(hits)]


def _decode_event(raw: bytes) -> DropEvent:
    (ts, ifindex, endpoint_id, identity, direction, reason, tcp_flags, _, flow_raw,
     rule_set) = EVENT.unpack(raw)
    saddr, daddr, sport, dport, proto, family = FLOW.unpack(flow_raw)
    return DropEvent(
        timestamp_ns=ts, ifindex=ifindex, endpoint_id=endpoint_id,
        direction=Direction(direction), reason=_reason(reason), peer_identity=identity,
        protocol=proto, src=layout.addr_from(saddr, family), dst=layout.addr_from(daddr, family),
        sport=int.from_bytes(sport, "big"), dport=int.from_bytes(dport, "big"),
        tcp_flags=tcp_flags, rule_set=rule_set,
    )


__all__ = ["Datapath", "DatapathConfig", "MapFullError"]
