"""The pinned-map layout: what the C structures look like from Python, and the check that a
pin left by an earlier run has exactly the layout this program expects.

bcc reuses a pinned map by path without comparing anything (a 16-byte key program runs
against a 12-byte-key map), so we compare type, key size, value size and max entries before
compiling. A mismatch is an error: we never silently reuse, and never delete state.
Bump LAYOUT_VERSION with any change to bpf/lib/maps.h structures that the old or the new
program would misread; pins live under v<N>/. (A field carved out of bytes the earlier program
always wrote as zero, and ignores, is no such change: ct_val.counter_slot.)
"""

from __future__ import annotations

import os
import struct
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from pathlib import Path

from enforcer.datapath import bpfsys
from enforcer.datapath.types import IPAddress

LAYOUT_VERSION = 5
DEFAULT_PIN_ROOT = Path("/sys/fs/bpf/enforcer")


MAP_SIZE_FIELDS = ("max_endpoints", "max_identities", "max_policy_entries", "max_conntrack",
                   "max_fragments", "max_counters", "max_service_frontends")


@dataclass(frozen=True)
class DatapathConfig:
    """Map sizes (fixed per pin layout) and runtime settings (written to the config map)."""

    max_endpoints: int = 4096
    max_identities: int = 65536  # per address family
    max_policy_entries: int = 16384  # per endpoint generation (Cilium's default)
    max_conntrack: int = 262144
    max_fragments: int = 8192
    max_counters: int = 16384
    max_service_frontends: int = 65536  # Service frontends (address, port, protocol)
    event_pages: int = 64  # ring buffer size in pages (a power of two)
    unknown_endpoint_allow: bool = False
    events_per_second: int = 1000  # per CPU, for the node; 0 disables events
    event_burst: int = 2000
    # Each endpoint's own share (per CPU), so one pod opening flows as fast as it can uses up
    # its own events, not the other pods' (0: no per-endpoint limit).
    endpoint_events_per_second: int = 100
    endpoint_event_burst: int = 200
    # New flows a pod may open per second (per CPU) and at once: past them its new flows drop
    # as flow_budget, so it cannot churn the shared conntrack table into evicting the entries
    # other pods' quiet flows live on (0: no budget). See README, "Budgets".
    pod_flows_per_second: int = 5000
    pod_flow_burst: int = 10000
    events_for_allowed_flows: bool = False
    # How the program is attached: "tcx" (kernel 6.6+; cheaper hooks), "tc" (clsact filters
    # at tc_prio/tc_handle), or "auto": tcx where the kernel has it, else tc.
    attach_mode: str = "auto"
    tc_prio: int = 1
    tc_handle: int = 0xE0F

    def __post_init__(self) -> None:
        """Refuse here what the kernel would refuse later, half-way through making the maps
        (attach_mode is checked by Datapath.open, against what the kernel has)."""
        for name in MAP_SIZE_FIELDS:
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"DatapathConfig.{name}: must be at least 1, got {value}")
        if self.event_pages < 1 or self.event_pages & (self.event_pages - 1):
            raise ValueError(
                f"DatapathConfig.event_pages: must be a power of two, got {self.event_pages}")
        for name in ("events_per_second", "event_burst", "endpoint_events_per_second",
                     "endpoint_event_burst", "pod_flows_per_second", "pod_flow_burst"):
            if getattr(self, name) < 0:
                raise ValueError(f"DatapathConfig.{name}: must not be negative, "
                                 f"got {getattr(self, name)}")

    def cflags(self, pin_dir: Path) -> list[str]:
        return [
            f'-DPIN_DIR="{pin_dir}"',
            f"-DEP_MAX={self.max_endpoints}",
            f"-DIDENT_MAX={self.max_identities}",
            f"-DPOLICY_MAX={self.max_policy_entries}",
            f"-DCT_MAX={self.max_conntrack}",
            f"-DFRAG_MAX={self.max_fragments}",
            f"-DCOUNTER_MAX={self.max_counters}",
            f"-DSVC_MAX={self.max_service_frontends}",
            f"-DEVENT_PAGES={self.event_pages}",
        ]


# Struct formats mirroring bpf/lib/*.h (little-endian host; big-endian fields as raw bytes).
FLOW = struct.Struct("<16s16s2s2sBB2x")
EP_CONFIG = struct.Struct("<IIII")  # endpoint id, generation, flags, counter slot
EP_F_OPEN = 1  # shifted by Direction: the generation allows everything that way (common.h)
EP_F_AUDIT = 4  # what policy denies passes, reported as audit (common.h)
IDENT4_KEY = struct.Struct("<I4s")
IDENT6_KEY = struct.Struct("<I16s")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
POL_KEY = struct.Struct("<IB3x4sBx2s")
POL_VAL = struct.Struct("<HHIB3x")  # port_lo, port_hi, rule_set, deny
CT_KEY = struct.Struct("<40sIB3x")  # flow, ifindex, direction
CT_IFINDEX_OFFSET = 40
CT_VAL = struct.Struct("<IHHQ")  # generation, flags, counter slot, epoch
FRAG_KEY = struct.Struct("<16s16sIBB2x")
FRAG_VAL = struct.Struct("<2s2sHBx")
COUNTER_KEY = struct.Struct("<IBBH")
COUNTER_VAL = struct.Struct("<QQ")
EVENT = struct.Struct("<QIIIBBBB40sI4x")  # ... flow, rule set
SVC_KEY = struct.Struct("<16s2sBB")  # frontend address, port (network order), proto, family
SVC_VAL = struct.Struct("<I")  # flags
LEP_KEY = struct.Struct("<16sB3x")  # local endpoint address, family
LEP_VAL = struct.Struct("<II")  # endpoint id, host veth ifindex
SELF_KEY = struct.Struct("<20sI")  # an SVC_KEY, endpoint id
SELF_VAL = struct.Struct("<2s6x")  # target port (network order)

CFG_UNKNOWN_ALLOW = 0
CFG_EVENT_COST_NS = 1
CFG_EVENT_BURST_NS = 2
CFG_EVENT_ALLOWED = 3
CFG_EP_EVENT_COST_NS = 5
CFG_EP_EVENT_BURST_NS = 6
CFG_POLICY_EPOCH = 4
CFG_FLOW_BUDGET = 7  # ns a new flow costs (low 32 bits), flows at once (high 32 bits)
CFG_SLOTS = 8


@dataclass(frozen=True)
class MapSpec:
    name: str
    type: int
    key_size: int
    value_size: int  # as the kernel reports it (per CPU for per-CPU maps)
    max_entries: int


def map_specs(cfg: DatapathConfig) -> dict[str, MapSpec]:
    specs = [
        MapSpec("ep_config", bpfsys.MAP_TYPE_HASH, 4, EP_CONFIG.size, cfg.max_endpoints),
        MapSpec("ident4", bpfsys.MAP_TYPE_LPM_TRIE, IDENT4_KEY.size, 4, cfg.max_identities),
        MapSpec("ident6", bpfsys.MAP_TYPE_LPM_TRIE, IDENT6_KEY.size, 4, cfg.max_identities),
        MapSpec("pol_outer", bpfsys.MAP_TYPE_HASH_OF_MAPS, 4, 4, cfg.max_endpoints),
        MapSpec("ct", bpfsys.MAP_TYPE_LRU_HASH, CT_KEY.size, CT_VAL.size, cfg.max_conntrack),
        MapSpec("frags", bpfsys.MAP_TYPE_LRU_HASH, FRAG_KEY.size, FRAG_VAL.size,
                cfg.max_fragments),
        MapSpec("counters", bpfsys.MAP_TYPE_LRU_PERCPU_HASH, COUNTER_KEY.size,
                COUNTER_VAL.size, cfg.max_counters),
        MapSpec("fwd_counters", bpfsys.MAP_TYPE_PERCPU_ARRAY, 4, COUNTER_VAL.size,
                cfg.max_endpoints * 2),
        MapSpec("config", bpfsys.MAP_TYPE_ARRAY, 4, 8, CFG_SLOTS),
        MapSpec("svc_frontends", bpfsys.MAP_TYPE_HASH, SVC_KEY.size, SVC_VAL.size,
                cfg.max_service_frontends),
        MapSpec("local_eps", bpfsys.MAP_TYPE_HASH, LEP_KEY.size, LEP_VAL.size,
                cfg.max_endpoints),
        MapSpec("self_backends", bpfsys.MAP_TYPE_HASH, SELF_KEY.size, SELF_VAL.size,
                cfg.max_service_frontends),
    ]
    return {s.name: s for s in specs}


PER_CPU_TYPES = frozenset({bpfsys.MAP_TYPE_LRU_PERCPU_HASH, bpfsys.MAP_TYPE_PERCPU_ARRAY})


def inner_policy_spec(cfg: DatapathConfig) -> MapSpec:
    return MapSpec("pol_inner", bpfsys.MAP_TYPE_LPM_TRIE, POL_KEY.size, POL_VAL.size,
                   cfg.max_policy_entries)


class LayoutMismatchError(RuntimeError):
    """A pinned map exists with another layout than this program needs."""


def _compare(path: Path, spec: MapSpec, info: bpfsys.MapInfo) -> None:
    have = (info.type, info.key_size, info.value_size, info.max_entries)
    want = (spec.type, spec.key_size, spec.value_size, spec.max_entries)
    if have != want:
        raise LayoutMismatchError(
            f"pinned map {path} has (type, key size, value size, max entries) {have}, "
            f"this program needs {want}: remove the pin deliberately or use another pin root "
            f"(layout v{LAYOUT_VERSION})"
        )


def check_pins(pin_dir: Path, cfg: DatapathConfig) -> list[str]:
    """Raise LayoutMismatchError on any pinned map that does not fit; returns the names of
    the pins found (adopted state)."""
    found = []
    for name, spec in map_specs(cfg).items():
        path = pin_dir / name
        if not path.exists():
            continue
        fd = bpfsys.obj_get(str(path))
        try:
            _compare(path, spec, bpfsys.map_info(fd))
            if name == "pol_outer":
                _check_inner_maps(fd, path, cfg)
        finally:
            os.close(fd)
        found.append(name)
    return found


def _check_inner_maps(outer_fd: int, path: Path, cfg: DatapathConfig) -> None:
    """The kernel holds the inner map shape of an outer map; we check a live inner one."""
    outer = bpfsys.Map(outer_fd, 4, 4)
    for _key, value in outer.items():
        inner_fd = bpfsys.map_fd_by_id(U32.unpack(value)[0])
        try:
            _compare(path.with_name("pol_outer[inner]"), inner_policy_spec(cfg),
                     bpfsys.map_info(inner_fd))
        finally:
            os.close(inner_fd)
        return


class BpffsMissing(RuntimeError):
    """The pin root is not on a bpffs: pins there would not outlive the agent (or cannot be
    made at all). The message says what to do."""


def _bpf_mounts() -> list[str]:
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    return [line.split()[1] for line in mounts if line.split()[2] == "bpf"]


def on_bpffs(path: Path) -> bool:
    """Whether `path` is on a bpffs mount (at or below one)."""
    root = os.path.abspath(path)
    return any(root == m or root.startswith(m.rstrip("/") + "/") for m in _bpf_mounts())


def ensure_bpffs(pin_root: Path) -> None:
    """Mount bpffs on /sys/fs/bpf when absent (Cilium #13254: unpinned state dies); raise
    BpffsMissing when the pin root is still not on one."""
    root = os.path.abspath(pin_root)
    if on_bpffs(pin_root):
        return
    if root.startswith("/sys/fs/bpf/") and "/sys/fs/bpf" not in _bpf_mounts():
        try:
            done = subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"],
                                  capture_output=True, text=True, check=False)
            failed = done.stderr.strip() if done.returncode else ""
        except OSError as exc:  # no mount(8) in the image
            failed = str(exc)
        if failed:
            raise BpffsMissing(
                f"no bpffs at /sys/fs/bpf and mounting one failed ({failed}): "
                "mount it on the node (mount -t bpf bpf /sys/fs/bpf); the DaemonSet's "
                "mount-bpffs init container does it, with /sys/fs/bpf a hostPath volume")
    if not on_bpffs(pin_root):
        raise BpffsMissing(
            f"pin root {pin_root} is not on a bpffs (no bpf mount at or above it): pinned "
            "maps and programs would not outlive the agent; mount bpffs at /sys/fs/bpf "
            "(mount -t bpf bpf /sys/fs/bpf; the DaemonSet's mount-bpffs init container does "
            "it) and keep --pin-dir below it")


def addr_bytes(ip: IPAddress) -> bytes:
    """16 bytes as the kernel's struct flow holds them (IPv4 in the first 4)."""
    return ip.packed.ljust(16, b"\0")


def addr_from(raw: bytes, family: int) -> IPAddress:
    return ip_address(raw[:4]) if family == 4 else ip_address(raw[:16])


def family_of(ip: IPAddress) -> int:
    return 4 if isinstance(ip, IPv4Address) else 6

