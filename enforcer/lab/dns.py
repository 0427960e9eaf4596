"""The lab's cluster DNS: A/AAAA answers for NAME.NAMESPACE.svc.cluster.local, and a client.

Hand-written DNS wire format (RFC 1035), just what a Service lookup needs: one question, A or
AAAA, answers or NXDOMAIN. Anything that is not a DNS query (the prober's UDP payload) is
echoed, so the DNS pod answers port probes like every other lab pod.

Records live in a JSON file the lab rewrites atomically ({"name": {"A": [...], "AAAA": [...]}});
the server re-reads it when its mtime changes.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import struct
import time
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from enforcer.netnsutil import run_in_netns

CLUSTER_DOMAIN = "cluster.local"
TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
RCODE_NXDOMAIN = 3
_HEADER = struct.Struct("!HHHHHH")

IPAddress = IPv4Address | IPv6Address
Records = dict[str, dict[str, list[str]]]


def service_name(namespace: str, name: str) -> str:
    return f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}"


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad DNS label in {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _decode_name(msg: bytes, offset: int) -> tuple[str, int]:
    """Uncompressed names only (queries never compress the question)."""
    labels = []
    while True:
        length = msg[offset]
        offset += 1
        if length == 0:
            return ".".join(labels).lower(), offset
        if length & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(msg[offset : offset + length].decode("ascii"))
        offset += length


def build_query(name: str, qtype: int, txid: int) -> bytes:
    header = _HEADER.pack(txid, 0x0100, 1, 0, 0, 0)  # RD set, one question
    return header + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


def parse_query(msg: bytes) -> tuple[int, int, str, int, bytes] | None:
    """(id, flags, name, qtype, question bytes), or None if msg is not a one-question query."""
    if len(msg) < _HEADER.size + 5:
        return None
    txid, flags, qd, an, ns, _ = _HEADER.unpack_from(msg)
    if flags & 0x8000 or qd != 1 or an or ns:
        return None
    try:
        name, end = _decode_name(msg, _HEADER.size)
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    if end + 4 > len(msg):
        return None
    qtype, qclass = struct.unpack_from("!HH", msg, end)
    if qclass != CLASS_IN:
        return None
    return txid, flags, name, qtype, msg[_HEADER.size : end + 4]


def answer(msg: bytes, records: Records) -> bytes | None:
    """The response to a query, or None when msg is not a query."""
    query = parse_query(msg)
    if query is None:
        return None
    txid, flags, name, qtype, question = query
    entry = records.get(name)
    kind = "A" if qtype == TYPE_A else "AAAA" if qtype == TYPE_AAAA else None
    addrs = entry.get(kind, []) if entry is not None and kind else []
    rcode = 0 if entry is not None else RCODE_NXDOMAIN
    rd = flags & 0x0100
    header = _HEADER.pack(txid, 0x8000 | 0x0400 | rd | 0x0080 | rcode, 1, len(addrs), 0, 0)
    body = b""
    for addr in addrs:
        packed = ip_address(addr).packed
        # Name: a pointer to the question's name at offset 12.
        body += struct.pack("!HHHIH", 0xC00C, qtype, CLASS_IN, 5, len(packed)) + packed
    return header + question + body


def parse_response(msg: bytes, txid: int) -> list[IPAddress] | None:
    """Addresses in a response to query `txid`; None for NXDOMAIN or a foreign response."""
    if len(msg) < _HEADER.size:
        return None
    rid, flags, qd, an, _, _ = _HEADER.unpack_from(msg)
    if rid != txid or not flags & 0x8000 or flags & 0x000F:
        return None
    offset = _HEADER.size
    for _ in range(qd):
        _, offset = _decode_name(msg, offset)
        offset += 4
    out: list[IPAddress] = []
    for _ in range(an):
        if msg[offset] & 0xC0:
            offset += 2
        else:
            _, offset = _decode_name(msg, offset)
        rtype, _, _, rdlen = struct.unpack_from("!HHIH", msg, offset)
        offset += 10
        if rtype in (TYPE_A, TYPE_AAAA):
            out.append(ip_address(msg[offset : offset + rdlen]))
        offset += rdlen
    return out


class RecordFile:
    """The records, re-read whenever the lab rewrites the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = -1
        self.records: Records = {}

    def current(self) -> Records:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            return self.records
        if mtime != self._mtime:
            try:
                self.records = json.loads(self.path.read_text())
                self._mtime = mtime
            except (OSError, ValueError):
                pass  # a half-written file cannot happen (atomic rename); keep the last one
        return self.records


def write_records(path: Path, records: Records) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(records, sort_keys=True))
    os.replace(tmp, path)


def resolve(
    netns: str, server: IPAddress, name: str, family: int = 4, timeout: float = 2.0
) -> list[IPAddress] | None:
    """Ask `server` from inside `netns`; None when no answer came (or NXDOMAIN). The query is
    re-sent every 0.25 s, as resolvers do: the first may wait for ARP/ND."""
    qtype = TYPE_A if family == 4 else TYPE_AAAA

    def ask() -> list[IPAddress] | None:
        sock_family = socket.AF_INET if server.version == 4 else socket.AF_INET6
        deadline = time.monotonic() + timeout
        with socket.socket(sock_family, socket.SOCK_DGRAM) as s:
            txid = secrets.randbits(16)
            try:
                s.connect((str(server), 53))
                while (left := deadline - time.monotonic()) > 0:
                    s.send(build_query(name, qtype, txid))
                    s.settimeout(min(0.25, left))
                    try:
                        return parse_response(s.recv(4096), txid)
                    except TimeoutError:
                        continue
            except OSError:
                return None
        return None

    return run_in_netns(netns, ask)
