"""The maps the agent writes from Services and local pods: frontends and hairpin backends
(bpf/lib/services.h) and local endpoints by address (bpf/lib/source.h: who may speak from
an address, and who sent a packet seen after DNAT). The agent hands over the complete
desired content; only the difference is written, additions before deletions so a frontend
never passes through a moment where its flows are judged at the ClusterIP."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from enforcer.datapath import bpfsys, layout
from enforcer.datapath.layout import LEP_KEY, LEP_VAL, SELF_KEY, SELF_VAL, SVC_KEY, SVC_VAL
from enforcer.datapath.types import IPAddress

PROTOCOL_NUMBERS = {"TCP": 6, "UDP": 17, "SCTP": 132}

Frontend = tuple[IPAddress, int, str]  # address, port, protocol name
SVC_F_MASQ = 1  # bpf/lib/services.h: note new flows, a NAT after the DNAT may masquerade them


@dataclass
class ServiceMaps:
    """Desired content of the three maps."""

    frontends: set[Frontend] = field(default_factory=set)
    # Frontends whose flows may be masqueraded after the DNAT: a backend outside the cluster,
    # an external or load-balancer IP with externalTrafficPolicy Cluster (agent/services.py).
    masqueraded: set[Frontend] = field(default_factory=set)
    local_endpoints: dict[IPAddress, tuple[int, int]] = field(default_factory=dict)  # id, ifindex
    self_backends: dict[tuple[Frontend, int], int] = field(default_factory=dict)  # -> target


def frontend_key(fe: Frontend) -> bytes:
    ip, port, protocol = fe
    return SVC_KEY.pack(
        layout.addr_bytes(ip), port.to_bytes(2, "big"), PROTOCOL_NUMBERS[protocol], ip.version
    )


def local_endpoint_entries(
    local_endpoints: Mapping[IPAddress, tuple[int, int]],
) -> dict[bytes, bytes]:
    return {
        LEP_KEY.pack(layout.addr_bytes(ip), ip.version): LEP_VAL.pack(eid, ifindex)
        for ip, (eid, ifindex) in local_endpoints.items()
    }


def encode(desired: ServiceMaps) -> dict[str, dict[bytes, bytes]]:
    return {
        "svc_frontends": {
            frontend_key(fe): SVC_VAL.pack(SVC_F_MASQ if fe in desired.masqueraded else 0)
            for fe in desired.frontends
        },
        "local_eps": local_endpoint_entries(desired.local_endpoints),
        "self_backends": {
            SELF_KEY.pack(frontend_key(fe), eid): SELF_VAL.pack(target.to_bytes(2, "big"))
            for (fe, eid), target in desired.self_backends.items()
        },
    }


def sync(
    maps: Mapping[str, bpfsys.Map],
    desired: ServiceMaps,
    written: dict[str, dict[bytes, bytes]] | None = None,
) -> int:
    """Write the difference; returns the number of map operations.

    `written` caches what the maps hold (filled from the maps on first use, then kept up to
    date here), so a sync after a pod event costs a comparison, not a read of every entry."""
    cache = written if written is not None else {}
    return sum(
        _write(maps[name], _cached(maps[name], name, cache), want, delete=True)
        for name, want in encode(desired).items()
    )


def add_local_endpoints(
    maps: Mapping[str, bpfsys.Map],
    local_endpoints: Mapping[IPAddress, tuple[int, int]],
    written: dict[str, dict[bytes, bytes]],
) -> int:
    """Write these addresses' owners, leaving every other entry alone: a pod's addresses must
    be in place before its first policy is, or its first packets would not be its own
    (bpf/lib/source.h). The next sync deletes what the cluster no longer has."""
    m = maps["local_eps"]
    return _write(m, _cached(m, "local_eps", written),
                  local_endpoint_entries(local_endpoints), delete=False)


def _cached(m: bpfsys.Map, name: str, cache: dict[str, dict[bytes, bytes]]) -> dict[bytes, bytes]:
    if name not in cache:
        cache[name] = dict(m.items())
    return cache[name]


def _write(m: bpfsys.Map, have: dict[bytes, bytes], want: Mapping[bytes, bytes],
           delete: bool) -> int:
    ops = 0
    for key, value in want.items():
        if have.get(key) != value:
            m.update(key, value)
            have[key] = value
            ops += 1
    if delete:
        for key in have.keys() - want.keys():
            m.delete(key)
            del have[key]
            ops += 1
    return ops
