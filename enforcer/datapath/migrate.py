"""Upgrades across pinned layouts: the established flows an older layout's conntrack holds,
carried into this layout's.

A build whose pinned-map layout differs (layout.LAYOUT_VERSION) pins fresh maps under its own
v<N>/, next to the older build's, whose program keeps enforcing until it is replaced. The agent
then rebuilds identities and every local pod's table from the cluster state before the new
program replaces the old on any interface (agent/upgrade.py), and adopts the older layout's
conntrack entries through the converter below: without them, every established flow's next
reply would be judged as a new flow the other way, and dropped where that direction is
isolated.

An adopted entry keeps what the flow is (its tuple, which way it was established, whether it is
a Service flow deferred to its backend, a hairpin, the node's own) but not what it was checked
under: generation and policy epoch 0, never current, so its next packet in the establishing
direction is judged by the new tables, like any flow after a policy change; its replies pass.

One converter per older layout still met in the field; a layout without one starts over (its
flows' replies judged as new flows), said in the log.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from pathlib import Path

from enforcer.datapath import bpfsys
from enforcer.datapath.layout import CT_KEY, CT_VAL, LAYOUT_VERSION

log = logging.getLogger(__name__)

# bpf/lib/maps.h (this layout)
CT_F_KNOWN = 0x0F  # HOST, DEFERRED, POSTNAT, SELF: the same bits since layout v3
CT_F_SWAPPED = 16

Entry = tuple[bytes, bytes]
Converter = Callable[[bytes, bytes], Entry]

# Layout v3 (commit 55d2bac): one entry per flow and interface, keyed by the establishing
# packet's own tuple and direction (its replies looked up with the tuple reversed).
V3_CT_KEY = struct.Struct("<40sIB3x")  # flow, ifindex, direction
V3_CT_VAL = struct.Struct("<IIQ")  # generation, flags, identity epoch


def _reversed(flow: bytes) -> bytes:
    """struct flow {saddr[16], daddr[16], sport, dport, proto, family, pad[2]}, reversed."""
    return flow[16:32] + flow[0:16] + flow[34:36] + flow[32:34] + flow[36:38] + b"\0\0"


def flow_swapped(flow: bytes) -> bool:
    """bpf/lib/conntrack.h flow_swapped: the addresses compared as two native (little-endian)
    u64 each, then the ports as native u16 of their network-order bytes."""

    def u64(off: int) -> int:
        return int.from_bytes(flow[off : off + 8], "little")

    for s, d in ((u64(0), u64(16)), (u64(8), u64(24))):
        if s != d:
            return s > d
    return int.from_bytes(flow[32:34], "little") > int.from_bytes(flow[34:36], "little")


def _ct_from_v3(key: bytes, value: bytes) -> Entry:
    flow, ifindex, direction = V3_CT_KEY.unpack(key)
    _generation, flags, _epoch = V3_CT_VAL.unpack(value)
    swapped = flow_swapped(flow)
    canonical = _reversed(flow) if swapped else flow
    flags = (flags & CT_F_KNOWN) | (CT_F_SWAPPED if swapped else 0)
    return (CT_KEY.pack(canonical, ifindex, direction ^ int(swapped)),
            CT_VAL.pack(0, flags, 0, 0))


def _ct_from_v4(key: bytes, value: bytes) -> Entry:
    """Layout v4 (before policy entries could deny) has this layout's conntrack: the entry as
    it is, its generation and epoch 0 so the flow's next establishing packet is judged again
    against this build's tables."""
    _generation, flags, slot, _epoch = CT_VAL.unpack(value)
    return key, CT_VAL.pack(0, flags, slot, 0)


CONVERTERS: dict[int, Converter] = {3: _ct_from_v3, 4: _ct_from_v4}


def older_layouts(pin_root: Path) -> list[Path]:
    """The pin folders of older layouts under `pin_root` that hold a conntrack table, newest
    first."""
    found = []
    for path in pin_root.glob("v*"):
        number = path.name[1:]
        if number.isdigit() and int(number) < LAYOUT_VERSION and (path / "ct").exists():
            found.append((int(number), path))
    return [path for _, path in sorted(found, reverse=True)]


def layout_version(pin_dir: Path) -> int:
    return int(pin_dir.name[1:])


def adoptable(pin_dir: Path) -> bool:
    return layout_version(pin_dir) in CONVERTERS


def conntrack_entries(pin_dir: Path) -> list[Entry]:
    """An older layout's conntrack entries, converted to this layout's (none if no converter
    knows that layout)."""
    convert = CONVERTERS.get(layout_version(pin_dir))
    if convert is None:
        return []
    fd = bpfsys.obj_get(str(pin_dir / "ct"))
    info = bpfsys.map_info(fd)
    table = bpfsys.Map(fd, info.key_size, info.value_size, "old-ct")
    try:
        keys, values = table.items_raw()
    finally:
        table.close()
    ks, vs = info.key_size, info.value_size
    return [convert(keys[i * ks : (i + 1) * ks], values[i * vs : (i + 1) * vs])
            for i in range(len(keys) // ks)]
