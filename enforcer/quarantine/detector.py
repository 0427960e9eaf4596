"""When a pod should be quarantined, judged from the kernel's drop events. Pure: no clock of
its own, no agent, no kernel; times are given.

Two triggers, each about the pod that sent the packets:

- a spoofed source (DropReason.SPOOFED_SOURCE at the pod's own hook): the pod sent from an
  address that is not its own. That is never an accident of policy, so one is enough.
- a scan: policy denied new flows from the pod toward more than `max_targets` distinct
  (destination, protocol, port) within `window` seconds. A denial counts against the sender,
  wherever it was judged: at the sender's own egress, or at a local destination's ingress (the
  source address then names the sender: a local pod's address passed its own hook's source
  check on the way). Only new flows count: a TCP segment that is not a bare SYN is an
  established flow cut by a narrowing policy, not a probe. Retries toward the same target
  (SYN retransmits) count once.

Below the threshold nothing happens, however long it goes on: a pod with a few denied targets
(a misconfigured client retrying) is a policy problem, not an attack.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from enforcer.datapath.types import DropReason

DEFAULT_MAX_TARGETS = 20  # more distinct (destination, port) than this ...
DEFAULT_WINDOW = 10.0  # ... within this many seconds is a scan

TCP = 6
TCP_SYN, TCP_ACK = 0x02, 0x10
PROTOCOL_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}
_PORTED = {6, 17, 132}

Target = tuple[str, int, int]  # (destination address, IP protocol, port; 0 without ports)


@dataclass(frozen=True)
class Denial:
    """One drop event, as the detector needs it: which pod sent the packet (its key
    NS/NAME), why it was dropped, and toward what."""

    pod: str
    reason: DropReason
    src: str
    dst: str
    protocol: int
    dport: int
    tcp_flags: int = 0


@dataclass(frozen=True)
class Trigger:
    pod: str
    kind: str  # "spoofed-source" | "scan"
    reason: str  # in words, for the annotation, the Event and the log

    def annotation(self) -> str:
        return f"auto: {self.reason}"


@dataclass
class _Window:
    seen: OrderedDict[Target, float] = field(default_factory=OrderedDict)  # by last time seen


def target_text(target: Target) -> str:
    dst, proto, port = target
    name = PROTOCOL_NAMES.get(proto, f"proto {proto}")
    host = f"[{dst}]" if ":" in dst else dst
    return f"{host}:{port}/{name}" if proto in _PORTED else f"{dst} {name}"


class Detector:
    """Feed it denials in time order (`observe`); it answers a Trigger once per pod, then
    forgets that pod's window (the caller stops feeding a quarantined pod, and `forget`s a pod
    that is gone). Memory: at most max_targets + 1 targets per pod that sent denied flows in
    the last window."""

    def __init__(self, max_targets: int = DEFAULT_MAX_TARGETS,
                 window: float = DEFAULT_WINDOW) -> None:
        if max_targets < 1:
            raise ValueError(f"max_targets must be at least 1, got {max_targets}")
        if window <= 0:
            raise ValueError(f"window must be positive, got {window}")
        self.max_targets = max_targets
        self.window = window
        self._windows: dict[str, _Window] = {}

    def observe(self, denial: Denial, now: float) -> Trigger | None:
        if denial.reason is DropReason.SPOOFED_SOURCE:
            self._windows.pop(denial.pod, None)
            return Trigger(denial.pod, "spoofed-source",
                           f"spoofed source: sent from {denial.src}, not its own address")
        if denial.reason is not DropReason.POLICY_DENIED:
            return None
        if denial.protocol == TCP and (denial.tcp_flags & (TCP_SYN | TCP_ACK)) != TCP_SYN:
            return None  # not a new flow: an established one cut, or a stray segment
        port = denial.dport if denial.protocol in _PORTED else 0
        target = (denial.dst, denial.protocol, port)
        w = self._windows.setdefault(denial.pod, _Window())
        w.seen[target] = now
        w.seen.move_to_end(target)
        self._expire(w, now)
        if len(w.seen) <= self.max_targets:
            return None
        del self._windows[denial.pod]
        first = min(w.seen.values())
        sample = ", ".join(target_text(t) for t in list(w.seen)[:5])
        more = len(w.seen) - 5
        return Trigger(
            denial.pod, "scan",
            f"scan: denied new flows toward {len(w.seen)} distinct destinations or ports "
            f"within {now - first:.1f} s (more than {self.max_targets} in {self.window:g} s): "
            f"{sample}{f' and {more} more' if more > 0 else ''}",
        )

    def _expire(self, w: _Window, now: float) -> None:
        while w.seen:
            target, last = next(iter(w.seen.items()))
            if now - last <= self.window:
                break
            del w.seen[target]

    def forget(self, pod: str) -> None:
        self._windows.pop(pod, None)

    def sweep(self, now: float) -> None:
        """Drop windows with nothing left in them (pods that stopped sending)."""
        for pod in list(self._windows):
            w = self._windows[pod]
            self._expire(w, now)
            if not w.seen:
                del self._windows[pod]

    def tracked(self) -> int:
        return len(self._windows)
