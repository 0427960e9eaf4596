"""The pins outlive the agent only while they are on a bpffs: watch that while the agent runs.

If the bpffs under the pin root is unmounted (or the pins are removed) while the agent runs,
nothing breaks at once: the attached programs hold their maps and the agent its fds. But the
next agent would find no pins and start from empty maps, tables and conntrack (a gap for
every pod). So the agent checks every few seconds: pins missing on a bpffs (a fresh mount) are
pinned again from its open fds, the same maps; no bpffs at all is a fault (not ready, said in
/status) until one is mounted again, and then the maps are pinned again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from enforcer import log
from enforcer.datapath import bpfsys
from enforcer.datapath.layout import on_bpffs


class PinGuard:
    def __init__(self, pin_dir: Path, fds: Callable[[], Mapping[str, int]]) -> None:
        """pin_dir: where the maps are pinned (below the pin root); fds: each pinned map's
        open fd by its pin name (Datapath.pinned_fds)."""
        self.pin_dir = pin_dir
        self.fds = fds
        self.log = log.get("datapath")
        self.fault: str | None = None

    def check(self) -> str | None:
        """None when every map is pinned (pinning again what went); else what is wrong."""
        fault = self._check()
        if fault != self.fault:
            if fault:
                self.log.error(fault)
            else:
                self.log.info("pins in place again", pin_dir=str(self.pin_dir))
        self.fault = fault
        return fault

    def _check(self) -> str | None:
        if not on_bpffs(self.pin_dir):
            return (f"bpffs under {self.pin_dir} was unmounted: enforcement goes on, but a "
                    "restart would start from empty maps; mount it again (mount -t bpf bpf "
                    "/sys/fs/bpf) and the agent pins its maps again")
        missing = {n: fd for n, fd in self.fds().items() if not (self.pin_dir / n).exists()}
        if not missing:
            return None
        try:
            self.pin_dir.mkdir(parents=True, exist_ok=True)
            for name, fd in missing.items():
                bpfsys.obj_pin(fd, str(self.pin_dir / name))
        except OSError as exc:
            return f"pinned maps under {self.pin_dir} are gone and pinning them again failed: {exc}"
        self.log.warning("pins were gone, pinned the maps again", pins=sorted(missing))
        return None
