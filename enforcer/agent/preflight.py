"""What the agent needs of the node before it can compile and pin anything: a bpffs under the
pin root and kernel headers for bcc.

Either missing is the node's problem, not the agent's, and restarting does not fix it. So the
agent does not exit on it: it serves /healthz (alive), /readyz 503 and /status naming the fault
and the fix, logs the fault once, and checks again every few seconds, going on the moment the
node is fixed. Exiting would be safe (nothing is ever detached or unpinned on exit), but
kubelet's CrashLoopBackOff would then delay the recovery by up to five minutes and hide the
reason behind a restart count. Nothing is attached or pinned before the checks pass, and a
previous agent's programs and pins (an upgrade) stay in force meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enforcer.datapath.layout import BpffsMissing, ensure_bpffs
from enforcer.kheaders import HeaderChoice, HeadersMissing, configure_bcc_headers

RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Fault:
    name: str  # "bpffs" or "kernel_headers"
    message: str  # what is wrong and what to do, one line


def check(pin_root: Path) -> tuple[list[Fault], HeaderChoice | None]:
    """The node's faults (none: go on), and the headers chosen (bcc is pointed at them)."""
    faults = []
    try:
        ensure_bpffs(pin_root)
    except BpffsMissing as exc:
        faults.append(Fault("bpffs", str(exc)))
    headers = None
    try:
        headers = configure_bcc_headers()
    except HeadersMissing as exc:
        faults.append(Fault("kernel_headers", str(exc)))
    return faults, headers


class Preflight:
    """Waits until the node has what the agent needs; /readyz and /status read it meanwhile."""

    def __init__(self, pin_root: Path, log: Any, retry: float = RETRY_SECONDS,
                 on_faults: Callable[[list[Fault]], None] = lambda faults: None) -> None:
        self.pin_root = pin_root
        self.log = log
        self.retry = retry
        self.on_faults = on_faults  # metrics: which faults hold the agent back
        self.faults: list[Fault] = []

    def wait(self, stop: threading.Event) -> HeaderChoice | None:
        """The headers once every check passes; None if stopped first."""
        said: list[Fault] = []
        while True:
            self.faults, headers = check(self.pin_root)
            self.on_faults(self.faults)
            if not self.faults:
                if said:
                    self.log.info("node fixed, starting")
                return headers
            if self.faults != said:  # once per fault, not every retry
                for fault in self.faults:
                    self.log.error(f"cannot start: {fault.message}", fault=fault.name)
                said = self.faults
            if stop.wait(self.retry):
                return None

    def status(self, node: str | None, source: str) -> dict[str, Any]:
        """/status while waiting: not ready, and why."""
        return {
            "node": node,
            "source": source,
            "map_full": 0,
            "ready": False,
            "starting": True,
            "faults": [{"fault": f.name, "message": f.message} for f in self.faults],
            "endpoints": [],
        }
