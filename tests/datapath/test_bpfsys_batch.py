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
