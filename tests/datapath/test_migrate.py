"""Converting an older layout's conntrack entries (pure: bytes in, bytes out)."""

from __future__ import annotations

from ipaddress import ip_address

from enforcer.datapath import layout
from enforcer.datapath.migrate import V3_CT_KEY, V3_CT_VAL, _ct_from_v3, flow_swapped


def _flow(src: str, sport: int, dst: str, dport: int, proto: int = 6) -> bytes:
    return (layout.addr_bytes(ip_address(src)) + layout.addr_bytes(ip_address(dst))
            + sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + bytes([proto, 4, 0, 0]))


def test_a_v3_entry_becomes_the_canonical_entry_of_its_flow() -> None:
    forward = _flow("10.0.0.2", 40000, "10.0.0.1", 80)
    backward = _flow("10.0.0.1", 80, "10.0.0.2", 40000)
    assert flow_swapped(forward) != flow_swapped(backward)
    # The same flow established either way: one key, the direction telling them apart.
    from_client = _ct_from_v3(V3_CT_KEY.pack(forward, 7, 1), V3_CT_VAL.pack(5, 2, 9))
    from_server = _ct_from_v3(V3_CT_KEY.pack(backward, 7, 0), V3_CT_VAL.pack(5, 2, 9))
    assert from_client[0] == from_server[0]
    flow, ifindex, _direction = layout.CT_KEY.unpack(from_client[0])
    assert ifindex == 7 and not flow_swapped(flow)
    # What was checked under is dropped (re-judged at the next establishing packet); the flow's
    # kind (DEFERRED here) is kept, and SWAPPED says which way it was established.
    generation, flags, slot, epoch = layout.CT_VAL.unpack(from_client[1])
    assert (generation, slot, epoch) == (0, 0, 0)
    assert flags & 0x0F == 2
    assert bool(flags & 16) == flow_swapped(forward)
    assert bool(layout.CT_VAL.unpack(from_server[1])[1] & 16) == flow_swapped(backward)
