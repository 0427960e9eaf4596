"""Taking over from an older build whose pinned-map layout differs, without a gap.

The older build's program stays attached, with its own maps, until this build's replaces it.
So: while this build's fresh tables are still empty, an interface the older program enforces
on is left to it (not attached); once the first full sync is in the maps, the older layout's
established flows are adopted (enforcer/datapath/migrate.py), the older program is replaced on
every interface it held, what it tracked meanwhile is adopted too, and the older layout's pins
are removed. An interface nothing enforces on yet (a pod that appeared meanwhile) is attached
at once, as always: unknown until its pod is known, so denied.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from enforcer.datapath import migrate


class UpgradeDatapath(Protocol):
    def enforcing(self, ifindex: int, netns: str | None = ...) -> bool: ...

    def adopt_conntrack(self, entries: Any) -> int: ...

    def attach(self, ifindex: int, netns: str | None = ...) -> None: ...

    def attach_node_interface(self, ifindex: int, netns: str | None = ...) -> None: ...


class LayoutUpgrade:
    def __init__(self, datapath: UpgradeDatapath, older: list[Path], log: Any) -> None:
        self.datapath = datapath
        self.older = older  # pin folders of older layouts, newest first
        self.log = log
        self.pending: list[tuple[int, Callable[[int], None]]] = []  # ifindex, how to attach
        self.done = False

    @classmethod
    def detect(cls, datapath: UpgradeDatapath, pin_root: Path, log: Any) -> LayoutUpgrade | None:
        """An upgrade to take over, if an older layout's pins are under `pin_root`."""
        older = migrate.older_layouts(pin_root)
        if not older:
            return None
        log.info("taking over from an older layout",
                 layouts=[p.name for p in older],
                 adopting_flows=[p.name for p in older if migrate.adoptable(p)])
        return cls(datapath, older, log)

    def defer(self, ifindex: int, attach: Callable[[int], None]) -> bool:
        """Whether attaching to `ifindex` waits for the first full sync (an older program
        enforces there meanwhile); attach(ifindex) is called then."""
        if self.done or not self.datapath.enforcing(ifindex):
            return False
        self.pending.append((ifindex, attach))
        return True

    def complete(self) -> None:
        """Called once the first full sync is in this build's maps."""
        if self.done:
            return
        self.done = True
        adopted = self._adopt_flows()
        for ifindex, attach in self.pending:
            try:
                attach(ifindex)
            except OSError as exc:  # gone meanwhile: its netlink event follows
                self.log.warning("attach after upgrade failed", ifindex=ifindex, error=str(exc))
        # Flows the older program admitted between the first adoption and its replacement.
        adopted += self._adopt_flows()
        for path in self.older:
            shutil.rmtree(path, ignore_errors=True)
        self.log.info("took over from the older layout", interfaces=len(self.pending),
                      flows_adopted=adopted, removed=[p.name for p in self.older])
        self.pending = []

    def _adopt_flows(self) -> int:
        total = 0
        for path in self.older:
            try:
                total += self.datapath.adopt_conntrack(migrate.conntrack_entries(path))
            except OSError as exc:
                self.log.warning("adopting the older layout's flows failed", layout=path.name,
                                 error=str(exc))
        return total
