"""The batched key dump that conntrack flushes use returns exactly the keys of the map."""

from __future__ import annotations

import struct

import pytest

from enforcer.datapath import bpfsys

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("map_type", [bpfsys.MAP_TYPE_HASH, bpfsys.MAP_TYPE_LRU_HASH])
@pytest.mark.parametrize("count", [0, 1, 4095, 4096, 10000])
def test_keys_batched_equals_key_walk(map_type: int, count: int) -> None:
    fd = bpfsys.map_create(map_type, 12, 16, 16384, 0, "enf_test_batch")
    m = bpfsys.Map(fd, 12, 16)
    try:
        for i in range(count):
            m.update(struct.pack("<III", i, i * 7, 3), b"v" * 16)
        batched = m.keys_batched()
        assert len(batched) == len(set(batched)) == count
        assert set(batched) == set(m.keys())
    finally:
        m.close()


def test_keys_naming_matches_address_and_family_only() -> None:
    from ipaddress import ip_address

    from enforcer.datapath.layout import CT_KEY, FLOW, addr_bytes
    from enforcer.datapath.writer import _keys_naming

    def key(src: str, dst: str) -> bytes:
        s, d = ip_address(src), ip_address(dst)
        flow = FLOW.pack(addr_bytes(s), addr_bytes(d), b"\0\1", b"\0\2", 6, s.version)
        return CT_KEY.pack(flow, 7, 1)

    keys = [key("198.18.1.2", "198.18.1.3"), key("198.18.1.3", "198.18.1.9"),
            key("c612:102::", "2001:2::1"), key("198.18.1.4", "198.18.1.5")]
    wanted = {addr_bytes(ip_address("198.18.1.3")): 4, addr_bytes(ip_address("c612:102::")): 4}
    # The v6 key starts with the same bytes as 198.18.1.2 but is family 6: no match for it.
    assert _keys_naming(b"".join(keys), CT_KEY.size, wanted, (0, 16), 37) == keys[:2]


def test_update_batch_writes_every_element_and_reports_how_far_it_got() -> None:
    fd = bpfsys.map_create(bpfsys.MAP_TYPE_HASH, 4, 8, 4, 0, "enf_test_upd")
    m = bpfsys.Map(fd, 4, 8)
    try:
        m.update_batch([(struct.pack("<I", i), struct.pack("<Q", i * 3)) for i in range(3)])
        assert {k: m.lookup(k) for k in m.keys()} == {
            struct.pack("<I", i): struct.pack("<Q", i * 3) for i in range(3)}
        # Room for one more: the batch stops at the fifth key (the map's max is 4).
        with pytest.raises(OSError) as err:
            m.update_batch([(struct.pack("<I", i), struct.pack("<Q", 7)) for i in range(2, 6)])
        assert err.value.processed == 2  # type: ignore[attr-defined]
        assert m.lookup(struct.pack("<I", 3)) == struct.pack("<Q", 7)
        assert m.lookup(struct.pack("<I", 4)) is None
    finally:
        m.close()


def test_delete_batch_skips_missing_keys() -> None:
    fd = bpfsys.map_create(bpfsys.MAP_TYPE_HASH, 4, 8, 16, 0, "enf_test_del")
    m = bpfsys.Map(fd, 4, 8)
    try:
        for i in range(6):
            m.update(struct.pack("<I", i), bytes(8))
        wanted = [struct.pack("<I", i) for i in (0, 9, 2, 3, 11)]  # 9 and 11 are not there
        assert m.delete_batch(wanted) == 3
        assert sorted(struct.unpack("<I", k)[0] for k in m.keys()) == [1, 4, 5]
    finally:
        m.close()
