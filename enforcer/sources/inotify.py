"""Wake-ups for the directory source: inotify (Linux) on the folders it reads, so a finished
write or a rename is picked up at once instead of at the next poll.

Only a hint: the source still polls (a full scan compares stat and content hashes), so a
missed event, a watch limit reached or a kernel without inotify only costs the poll interval.
No IN_MODIFY or IN_CREATE: a file that is still being written would wake the source to read it
half-written; IN_CLOSE_WRITE and renames mark a file as complete.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
from collections.abc import Iterable
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_DELETE = 0x00000200
IN_IGNORED = 0x00008000  # the watch is gone (its folder was removed)
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
MASK = IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (a name of `len` bytes follows)

_libc = ctypes.CDLL(None, use_errno=True)


class FolderWatch:
    """inotify watches on a set of folders; `wait` blocks until one reports a change."""

    def __init__(self) -> None:
        fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        self.fd: int | None = fd if fd >= 0 else None
        self._watched: dict[str, int] = {}  # folder -> watch descriptor
        self._folder_of: dict[int, str] = {}

    @property
    def active(self) -> bool:
        return self.fd is not None

    def watch(self, folders: Iterable[Path]) -> None:
        """Add watches for folders not watched yet (failures leave that folder to polling)."""
        if self.fd is None:
            return
        for folder in folders:
            name = str(folder)
            if name in self._watched:
                continue
            wd = _libc.inotify_add_watch(self.fd, os.fsencode(name), MASK)
            if wd >= 0:
                self._watched[name] = wd
                self._folder_of[wd] = name

    def wait(self, timeout: float) -> bool:
        """True if a change was reported within `timeout` seconds (all pending events read)."""
        if self.fd is None:
            return False
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        changed = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return changed
            offset = 0
            while offset < len(data):
                wd, mask, _, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + length
                if mask & IN_IGNORED:
                    self._watched.pop(self._folder_of.pop(wd, ""), None)
                else:
                    changed = True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
