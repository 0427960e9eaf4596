"""The few bpf(2) commands the writer needs, through ctypes.

bcc's Python tables exist only in the process that compiled the program and cannot create a
map-in-map generation or read a pin's layout, so map access goes through the syscall
directly: on pinned fds, on inner maps created here, and on inner maps reached by id.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from collections.abc import Iterator
from dataclasses import dataclass

_SYS_BPF = {"x86_64": 321, "aarch64": 280}[platform.machine()]
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

MAP_CREATE = 0
MAP_LOOKUP_ELEM = 1
MAP_UPDATE_ELEM = 2
MAP_DELETE_ELEM = 3
MAP_GET_NEXT_KEY = 4
OBJ_PIN = 6
OBJ_GET = 7
MAP_GET_FD_BY_ID = 14
MAP_LOOKUP_BATCH = 24
MAP_UPDATE_BATCH = 26
MAP_DELETE_BATCH = 27
ENOTSUPP = 524  # the kernel's own errno for unsupported operations (not in errno)
OBJ_GET_INFO_BY_FD = 15

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_F_NO_PREALLOC = 1

MAP_TYPE_HASH = 1
MAP_TYPE_ARRAY = 2
MAP_TYPE_PERCPU_ARRAY = 6
MAP_TYPE_LRU_HASH = 9
MAP_TYPE_LRU_PERCPU_HASH = 10
MAP_TYPE_LPM_TRIE = 11
MAP_TYPE_HASH_OF_MAPS = 13

# Errors that mean "the map is full" when creating an element.
FULL_ERRNOS = frozenset({errno.E2BIG, errno.ENOSPC, errno.ENOMEM})

_ATTR_SIZE = 128


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    ret = _libc.syscall(_SYS_BPF, cmd, attr, _ATTR_SIZE)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


def _attr(fmt: str, *values: object) -> ctypes.Array[ctypes.c_char]:
    buf = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into(fmt, buf, 0, *values)
    return buf


def _addr(buf: ctypes.Array[ctypes.c_char] | None) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


@dataclass(frozen=True)
class MapInfo:
    type: int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str


def obj_get(path: str) -> int:
    p = ctypes.create_string_buffer(path.encode())
    return _bpf(OBJ_GET, _attr("<QII", _addr(p), 0, 0))


def obj_pin(fd: int, path: str) -> None:
    p = ctypes.create_string_buffer(path.encode())
    _bpf(OBJ_PIN, _attr("<QII", _addr(p), fd, 0))


def map_info(fd: int) -> MapInfo:
    info = ctypes.create_string_buffer(88)
    _bpf(OBJ_GET_INFO_BY_FD, _attr("<IIQ", fd, len(info), _addr(info)))
    mtype, mid, ksz, vsz, maxe, flags = struct.unpack_from("<6I", info, 0)
    name = info.raw[24:40].split(b"\0", 1)[0].decode()
    return MapInfo(mtype, mid, ksz, vsz, maxe, flags, name)


def map_fd_by_id(map_id: int) -> int:
    return _bpf(MAP_GET_FD_BY_ID, _attr("<III", map_id, 0, 0))


def map_create(
    map_type: int, key_size: int, value_size: int, max_entries: int, flags: int, name: str
) -> int:
    return _bpf(
        MAP_CREATE,
        _attr(
            "<7I16s", map_type, key_size, value_size, max_entries, flags, 0, 0,
            name.encode()[:15],
        ),
    )


class Map:
    """An open map fd with fixed key and value sizes (value_size: the whole value as read,
    i.e. all CPUs for per-CPU maps)."""

    def __init__(self, fd: int, key_size: int, value_size: int, name: str = "") -> None:
        self.fd = fd
        self.key_size = key_size
        self.value_size = value_size
        self.name = name

    def lookup(self, key: bytes) -> bytes | None:
        k = ctypes.create_string_buffer(key, self.key_size)
        v = ctypes.create_string_buffer(self.value_size)
        try:
            _bpf(MAP_LOOKUP_ELEM, _attr("<IIQQQ", self.fd, 0, _addr(k), _addr(v), 0))
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return v.raw

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        k = ctypes.create_string_buffer(key, self.key_size)
        v = ctypes.create_string_buffer(value, max(self.value_size, len(value)))
        _bpf(MAP_UPDATE_ELEM, _attr("<IIQQQ", self.fd, 0, _addr(k), _addr(v), flags))

    def update_batch(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """Write several elements in one BPF_MAP_UPDATE_BATCH call. For a map of maps this is
        what makes several swaps cheap: the kernel waits for running programs (an RCU grace
        period, milliseconds) once per call, not once per element. Falls back to one update
        per element where the kernel or the map type has no batch update. On an error,
        `processed` on the OSError says how many elements (in order) were written."""
        if not pairs:
            return
        keys = ctypes.create_string_buffer(b"".join(k for k, _ in pairs))
        values = ctypes.create_string_buffer(b"".join(v for _, v in pairs))
        attr = _attr("<QQQQIIQQ", 0, 0, _addr(keys), _addr(values), len(pairs), self.fd, 0, 0)
        try:
            _bpf(MAP_UPDATE_BATCH, attr)
        except OSError as exc:
            processed = struct.unpack_from("<I", attr, 32)[0]
            if exc.errno in (errno.EINVAL, ENOTSUPP) and processed == 0:
                for key, value in pairs:
                    self.update(key, value)
                return
            exc.processed = processed  # type: ignore[attr-defined]
            raise

    def delete_batch(self, keys: list[bytes]) -> int:
        """Delete several keys with as few BPF_MAP_DELETE_BATCH calls as possible (one kernel
        wait for running programs per call in a map of maps); missing keys are skipped.
        Returns how many were deleted."""
        deleted = 0
        while keys:
            buf = ctypes.create_string_buffer(b"".join(keys))
            attr = _attr("<QQQQIIQQ", 0, 0, _addr(buf), 0, len(keys), self.fd, 0, 0)
            try:
                _bpf(MAP_DELETE_BATCH, attr)
                return deleted + len(keys)
            except OSError as exc:
                processed = struct.unpack_from("<I", attr, 32)[0]
                if exc.errno in (errno.EINVAL, ENOTSUPP) and processed == 0 and not deleted:
                    return sum(self.delete(k) for k in keys)
                if exc.errno != errno.ENOENT:
                    raise
                deleted += processed
                keys = keys[processed + 1 :]  # the missing one skipped
        return deleted

    def delete(self, key: bytes) -> bool:
        k = ctypes.create_string_buffer(key, self.key_size)
        try:
            _bpf(MAP_DELETE_ELEM, _attr("<IIQQQ", self.fd, 0, _addr(k), 0, 0))
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def keys(self) -> Iterator[bytes]:
        """All keys (a snapshot walk: entries added meanwhile may or may not show)."""
        nxt = ctypes.create_string_buffer(self.key_size)
        cur: ctypes.Array[ctypes.c_char] | None = None
        while True:
            try:
                _bpf(MAP_GET_NEXT_KEY, _attr("<IIQQ", self.fd, 0, _addr(cur), _addr(nxt)))
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return
                raise
            key = nxt.raw[: self.key_size]
            yield key
            cur = ctypes.create_string_buffer(key, self.key_size)

    def keys_batched(self, chunk: int = 4096) -> list[bytes]:
        """All keys of a hash map in a few BPF_MAP_LOOKUP_BATCH calls instead of one
        syscall per key (conntrack flushes walk maps of many thousand entries)."""
        raw = self.keys_raw(chunk)
        n = self.key_size
        return [raw[i : i + n] for i in range(0, len(raw), n)]

    def keys_raw(self, chunk: int = 4096) -> bytes:
        """All keys concatenated (searchable at C speed with bytes.find). Falls back to the
        key walk where the kernel or the map type has no batch lookup."""
        return self.items_raw(chunk, values=False)[0]

    def items_raw(self, chunk: int = 4096, values: bool = True) -> tuple[bytes, bytes]:
        """All keys and their values, each concatenated in the same order, in a few
        BPF_MAP_LOOKUP_BATCH calls. Falls back to a key walk where the kernel or the map
        type has no batch lookup (an entry gone between the walk and its lookup is left out).
        values=False: the keys only (the values come back empty)."""
        parts: list[bytes] = []
        value_parts: list[bytes] = []
        keys = ctypes.create_string_buffer(self.key_size * chunk)
        value_buf = ctypes.create_string_buffer(self.value_size * chunk)
        in_batch: ctypes.Array[ctypes.c_char] | None = None
        out_batch = ctypes.create_string_buffer(max(self.key_size, 8))
        while True:
            attr = _attr("<QQQQIIQQ", _addr(in_batch), _addr(out_batch), _addr(keys),
                         _addr(value_buf), chunk, self.fd, 0, 0)
            done = False
            try:
                _bpf(MAP_LOOKUP_BATCH, attr)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    done = True
                elif exc.errno in (errno.EINVAL, ENOTSUPP) and not parts and in_batch is None:
                    if not values:
                        return b"".join(self.keys()), b""
                    walked = list(self.items())
                    return b"".join(k for k, _ in walked), b"".join(v for _, v in walked)
                else:
                    raise
            count = struct.unpack_from("<I", attr, 32)[0]
            parts.append(keys.raw[: count * self.key_size])
            if values:
                value_parts.append(value_buf.raw[: count * self.value_size])
            if done:
                return b"".join(parts), b"".join(value_parts)
            in_batch = ctypes.create_string_buffer(out_batch.raw, len(out_batch))

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key in list(self.keys()):
            value = self.lookup(key)
            if value is not None:
                yield key, value

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def possible_cpus() -> int:
    """Number of possible CPUs: per-CPU map values hold one slot for each."""
    text = open("/sys/devices/system/cpu/possible").read().strip()
    total = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        total += int(hi or lo) - int(lo) + 1
    return total


ENABLE_STATS = 32
STATS_RUN_TIME = 0


def enable_run_time_stats() -> int:
    """Count run time and runs of every program while the returned fd stays open."""
    return _bpf(ENABLE_STATS, _attr("<I", STATS_RUN_TIME))


def prog_run_stats(prog_fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a program (counted only while stats are enabled)."""
    info = ctypes.create_string_buffer(256)
    _bpf(OBJ_GET_INFO_BY_FD, _attr("<IIQ", prog_fd, len(info), _addr(info)))
    run_time_ns, run_cnt = struct.unpack_from("<QQ", info, 192)
    return run_time_ns, run_cnt


PROG_TEST_RUN = 10
SK_BUFF_SIZE = 192  # sizeof(struct __sk_buff), enough for the fields test runs accept
SK_BUFF_IFINDEX_OFFSET = 40


def prog_test_run(prog_fd: int, frame: bytes, ifindex: int, repeat: int) -> tuple[int, int]:
    """Run a TC program on `frame` in the kernel `repeat` times (BPF_PROG_TEST_RUN):
    returns (return value, mean duration in ns)."""
    din = ctypes.create_string_buffer(frame, len(frame))
    dout = ctypes.create_string_buffer(len(frame) + 256)
    ctx = ctypes.create_string_buffer(SK_BUFF_SIZE)
    struct.pack_into("<I", ctx, SK_BUFF_IFINDEX_OFFSET, ifindex)
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("<IIIIQQII", attr, 0, prog_fd, 0, len(frame), len(dout), _addr(din),
                     _addr(dout), repeat, 0)
    struct.pack_into("<IIQQ", attr, 40, len(ctx), 0, _addr(ctx), 0)
    _bpf(PROG_TEST_RUN, attr)
    retval, = struct.unpack_from("<i", attr, 4)
    duration, = struct.unpack_from("<I", attr, 36)
    return retval, duration



PROG_ATTACH = 8
PROG_DETACH = 9
PROG_GET_FD_BY_ID = 13
PROG_QUERY = 16
ATTACH_TCX_INGRESS = 46
ATTACH_TCX_EGRESS = 47
F_REPLACE = 1 << 2
F_BEFORE = 1 << 3


def prog_attach(target_ifindex: int, prog_fd: int, attach_type: int, flags: int = 0,
                replace_fd: int = 0) -> None:
    """Attach a program to an interface of the caller's network namespace without a link
    (BPF_PROG_ATTACH, e.g. TCX): it stays until detached. Appended after any already there,
    unless F_BEFORE (first) or F_REPLACE (swap replace_fd's program in place, atomically)."""
    _bpf(PROG_ATTACH, _attr("<IIIII", target_ifindex, prog_fd, attach_type, flags, replace_fd))


def prog_detach(target_ifindex: int, prog_fd: int, attach_type: int) -> bool:
    """Undo prog_attach; False if that program was not attached there."""
    try:
        _bpf(PROG_DETACH, _attr("<IIII", target_ifindex, prog_fd, attach_type, 0))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def prog_query(target_ifindex: int, attach_type: int, capacity: int = 16) -> list[int]:
    """Ids of the programs attached to an interface's hook, in run order."""
    while True:
        ids = (ctypes.c_uint32 * capacity)()
        attr = _attr("<IIIIQI", target_ifindex, attach_type, 0, 0, ctypes.addressof(ids),
                     capacity)
        try:
            _bpf(PROG_QUERY, attr)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            capacity = struct.unpack_from("<I", attr, 24)[0] + 16  # the kernel says how many
            continue
        count, = struct.unpack_from("<I", attr, 24)
        return list(ids[:count])


def prog_fd_by_id(prog_id: int) -> int:
    return _bpf(PROG_GET_FD_BY_ID, _attr("<I", prog_id))


def prog_id_and_name(prog_fd: int) -> tuple[int, str]:
    """The program's id and its name as the kernel keeps it (at most 15 characters)."""
    info = ctypes.create_string_buffer(256)
    _bpf(OBJ_GET_INFO_BY_FD, _attr("<IIQ", prog_fd, len(info), _addr(info)))
    prog_id, = struct.unpack_from("<I", info, 4)
    name = info.raw[64:80].split(b"\0", 1)[0].decode()
    return prog_id, name
