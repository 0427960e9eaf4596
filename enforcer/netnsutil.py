"""Run a function inside another network namespace from a short-lived thread.

setns(CLONE_NEWNET) changes only the calling thread, so a helper thread can open sockets
(netlink or TCP) in a pod's or node's namespace while the rest of the process stays put.
Python 3.11 has no os.setns, hence ctypes.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

CLONE_NEWNET = 0x40000000
NETNS_DIRS = (Path("/run/netns"), Path("/var/run/netns"))

_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def netns_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    return p if p.is_absolute() else Path("/run/netns") / name_or_path


def run_in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """Call fn() in a thread that has entered `netns` (a name under /run/netns or a path);
    with None, right here in the caller's namespace."""
    if netns is None:
        return fn()
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(netns_path(netns), os.O_RDONLY)
        except OSError as exc:  # no such namespace: the caller's error, not the thread's
            error.append(exc)
            return
        try:
            _setns(fd)
            result.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)
        finally:
            os.close(fd)

    # The thread dies with its namespace: it is never reused for anything else.
    t = threading.Thread(target=target, name=f"netns:{netns}", daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


def enter_netns(netns: str) -> None:
    """Move the calling thread (the whole process if it has only one) into `netns`."""
    fd = os.open(netns_path(netns), os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)
