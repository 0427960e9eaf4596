"""When does a pod-to-pod verdict flip? Fresh TCP connections every few milliseconds.

From inside the source pod's network namespace a new non-blocking connection starts every
`interval`; each one is "allowed" when it connects and "denied" when it has not after `timeout`
(a dropped SYN is retransmitted only after a second, so each attempt tests the verdict at the
moment it was sent). After the old verdict is confirmed, `change()` runs (the benchmark renames
a manifest into the agent's folder), and the flip time is when the first attempt of a run of
`confirm` attempts with the new verdict was sent. The resolution is `interval`.
"""

from __future__ import annotations

import selectors
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from enforcer.netnsutil import run_in_netns

IPAddress = IPv4Address | IPv6Address
LINGER_RESET = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT pile-up at 500/s


@dataclass
class Attempt:
    sent: float
    ok: bool | None = None


def flip_time(attempts: list[Attempt], since: float, want: bool, confirm: int) -> float | None:
    """Send time of the first attempt after `since` that starts `confirm` attempts all with
    verdict `want`, once every earlier attempt is resolved; None while undecided."""
    after = [a for a in attempts if a.sent >= since]
    for i, a in enumerate(after):
        if a.ok is None:
            return None  # an earlier attempt could still turn out to be the flip
        window = after[i : i + confirm]
        if a.ok == want and len(window) == confirm and all(w.ok is not None for w in window):
            if all(w.ok == want for w in window):
                return a.sent
    return None


def settled(attempts: list[Attempt], want: bool, confirm: int) -> bool:
    """The last `confirm` attempts with every earlier one resolved all have verdict `want`."""
    resolved = []
    for a in attempts:
        if a.ok is None:
            break
        resolved.append(a.ok)
    return len(resolved) >= confirm and all(v == want for v in resolved[-confirm:])


class FlipProbe:
    def __init__(
        self,
        netns: str,
        dst: IPAddress,
        port: int,
        interval: float = 0.002,
        timeout: float = 0.1,
        confirm: int = 3,
    ) -> None:
        self.netns, self.dst, self.port = netns, dst, port
        self.interval, self.timeout, self.confirm = interval, timeout, confirm

    def measure(self, want: bool, change: Callable[[], None], limit: float = 10.0) -> float:
        """Seconds from `change()` until the verdict is `want` (it must be `not want` first)."""
        return run_in_netns(self.netns, lambda: self._measure(want, change, limit))

    def wait_for(self, want: bool, limit: float = 10.0) -> float:
        """Seconds until the verdict is `want` (settled), without changing anything."""
        return run_in_netns(self.netns, lambda: self._measure(want, None, limit))

    def _start(self, sel: selectors.BaseSelector, now: float) -> Attempt:
        family = socket.AF_INET if self.dst.version == 4 else socket.AF_INET6
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        s.setblocking(False)
        attempt = Attempt(now)
        s.connect_ex((str(self.dst), self.port))
        sel.register(s, selectors.EVENT_WRITE, attempt)
        return attempt

    def _measure(self, want: bool, change: Callable[[], None] | None, limit: float) -> float:
        sel = selectors.DefaultSelector()
        attempts: list[Attempt] = []
        start = time.perf_counter()
        changed_at: float | None = None if change else start
        next_send = start
        try:
            while True:
                now = time.perf_counter()
                if now >= next_send:
                    attempts.append(self._start(sel, now))
                    next_send = max(next_send + self.interval, now)
                for key, _ in sel.select(max(0.0, next_send - time.perf_counter())):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    key.data.ok = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                    sel.unregister(sock)
                    sock.close()
                now = time.perf_counter()
                for key in list(sel.get_map().values()):
                    if now - key.data.sent > self.timeout:
                        key.data.ok = False
                        sel.unregister(key.fileobj)
                        key.fileobj.close()  # type: ignore[union-attr]
                if changed_at is None:
                    if settled(attempts, not want, self.confirm):
                        changed_at = time.perf_counter()
                        assert change is not None
                        change()
                    elif now - start > limit:
                        raise TimeoutError(f"verdict never settled on {not want} before the change")
                    continue
                flipped = flip_time(attempts, changed_at, want, self.confirm)
                if flipped is not None:
                    return max(0.0, flipped - changed_at)
                if now - changed_at > limit:
                    raise TimeoutError(f"verdict did not become {want} within {limit:g} s")
        finally:
            for key in list(sel.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            sel.close()
