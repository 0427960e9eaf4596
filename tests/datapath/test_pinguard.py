"""The bpffs under the pins unmounted while the agent runs (issue 22, faults): a fault while
it is gone; once one is mounted again, the same maps are pinned again from the agent's fds, so
a restart adopts them. On a bpffs instance of the test's own (never /sys/fs/bpf)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from enforcer.datapath import bpfsys
from enforcer.datapath.pinguard import PinGuard

pytestmark = pytest.mark.kernel


def test_pins_gone_with_their_bpffs_are_pinned_again(tmp_path: Path) -> None:
    root = tmp_path / "bpffs"
    root.mkdir()
    pin_dir = root / "v4"
    fd = bpfsys.map_create(bpfsys.MAP_TYPE_HASH, 4, 4, 8, 0, "enf_guard")
    try:
        m = bpfsys.Map(fd, 4, 4)
        m.update(b"\1\0\0\0", b"\7\0\0\0")
        map_id = bpfsys.map_info(fd).id
        subprocess.run(["mount", "-t", "bpf", "bpf", str(root)], check=True)
        pin_dir.mkdir()
        bpfsys.obj_pin(fd, str(pin_dir / "ct"))
        guard = PinGuard(pin_dir, lambda: {"ct": fd})
        assert guard.check() is None

        subprocess.run(["umount", str(root)], check=True)
        fault = guard.check()
        assert fault is not None and "unmounted" in fault and "mount -t bpf" in fault

        subprocess.run(["mount", "-t", "bpf", "bpf", str(root)], check=True)  # empty again
        assert guard.check() is None
        again = bpfsys.obj_get(str(pin_dir / "ct"))
        try:  # the same map, with what it held
            assert bpfsys.map_info(again).id == map_id
            assert bpfsys.Map(again, 4, 4).lookup(b"\1\0\0\0") == b"\7\0\0\0"
        finally:
            os.close(again)
    finally:
        subprocess.run(["umount", str(root)], check=False)
        os.close(fd)
