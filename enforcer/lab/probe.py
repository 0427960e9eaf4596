"""Probe who can reach whom with real packets: a new connection per pair, all in parallel.

A hostNetwork pod (`host`) is its node: it probes from the node's address (its sockets bind
it, so the node's traffic to its own pods does not leave from the pods' gateway), and SCTP
sent to it is seen where the node's stack receives it (a raw socket), after every hook.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from enforcer.netnsutil import run_in_netns

IPAddress = IPv4Address | IPv6Address
ETH_P_ALL = 0x0003
PROTO_SCTP = 132


@dataclass(frozen=True)
class ProbeEndpoint:
    key: str  # namespace/name
    netns: str
    ip: IPAddress  # where probes connect: the pod's address, or a frontend of its Service
    ifname: str = "eth0"
    via: str | None = None  # the Service (namespace/name) whose frontend `ip` is
    host: bool = False  # a hostNetwork pod: `netns` is its node's, `ip` the node's address


def _bind(s: socket.socket, src: IPAddress | None) -> None:
    if src is not None:
        s.bind((str(src), 0))


def _tcp(dst: IPAddress, port: int, timeout: float, src: IPAddress | None = None) -> bool:
    family = socket.AF_INET if dst.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            _bind(s, src)
            s.connect((str(dst), port))
            return s.recv(16).startswith(b"ok")
        except OSError:
            return False


def answered_by(netns: str, dst: IPAddress, port: int, timeout: float = 1.0) -> str | None:
    """Open a TCP connection from `netns`; the lab pod that answered (namespace/name), or
    None when the connection failed."""

    def connect() -> str | None:
        family = socket.AF_INET if dst.version == 4 else socket.AF_INET6
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect((str(dst), port))
                reply = s.recv(256)
            except OSError:
                return None
        return reply[3:].decode().strip() if reply.startswith(b"ok ") else None

    return run_in_netns(netns, connect)


def _udp(dst: IPAddress, port: int, timeout: float, src: IPAddress | None = None) -> bool:
    family = socket.AF_INET if dst.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        payload = b"probe"
        deadline = time.monotonic() + timeout
        try:
            _bind(s, src)
            s.connect((str(dst), port))
            # Two tries inside the timeout: the first datagram may wait for ARP/ND.
            while time.monotonic() < deadline:
                s.send(payload)
                try:
                    if s.recv(64) == payload:
                        return True
                except TimeoutError:
                    return False
                except OSError:
                    return False
        except OSError:
            return False
    return False


def _sctp_init(src_port: int, dst_port: int) -> bytes:
    from scapy.layers.sctp import SCTP, SCTPChunkInit

    return bytes(SCTP(sport=src_port, dport=dst_port) / SCTPChunkInit(init_tag=0x1234567))


def _capture_socket(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


def _sctp_seen(cap: socket.socket, src: IPAddress | None, dst_port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            frame, addr = cap.recvfrom(65535)
        except BlockingIOError:
            time.sleep(0.005)
            continue
        if addr[2] == socket.PACKET_OUTGOING:
            continue  # the capture also sees what the pod itself sends (hairpins)
        ethertype = struct.unpack("!H", frame[12:14])[0]
        if ethertype == 0x0800 and frame[14 + 9] == PROTO_SCTP:
            ihl = (frame[14] & 0x0F) * 4
            if src is None or IPv4Address(frame[26:30]) == src:
                l4 = 14 + ihl
                if struct.unpack("!H", frame[l4 + 2 : l4 + 4])[0] == dst_port:
                    return True
        elif ethertype == 0x86DD and frame[14 + 6] == PROTO_SCTP:
            if src is None or IPv6Address(frame[22:38]) == src:
                if struct.unpack("!H", frame[56:58])[0] == dst_port:
                    return True
    return False


def _sctp_delivered(
    raw: socket.socket, src: IPAddress | None, dst_port: int, timeout: float
) -> bool:
    """An SCTP packet to dst_port from src that the node's own stack received (a raw socket
    gets it at local delivery, after the hooks: a capture on the node's interfaces would see
    it before the pods' egress programs judge it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data, addr = raw.recvfrom(65535)
        except BlockingIOError:
            time.sleep(0.005)
            continue
        if raw.family == socket.AF_INET:  # the IPv4 header comes along
            sender: IPAddress = IPv4Address(data[12:16])
            data = data[(data[0] & 0x0F) * 4 :]
        else:
            sender = IPv6Address(addr[0].split("%")[0])
        if len(data) >= 4 and struct.unpack("!H", data[2:4])[0] == dst_port:
            if src is None or sender == src:
                return True
    return False


def _raw_sctp(family: int) -> socket.socket:
    s = socket.socket(family, socket.SOCK_RAW, PROTO_SCTP)
    s.setblocking(False)
    return s


def probe_sctp(src: ProbeEndpoint, dst: ProbeEndpoint, port: int, timeout: float) -> bool:
    """This kernel has no SCTP: inject an INIT from src, see whether it arrives at dst.

    Through a Service (dst.via set) the INIT comes back in on eth0 even from the pod itself,
    and possibly masqueraded (hairpin), so any source counts there."""
    # Traffic to itself never leaves the pod: it is seen on loopback.
    ifname = "lo" if src.netns == dst.netns and dst.via is None else dst.ifname
    expect_src = None if dst.via is not None and src.netns == dst.netns else src.ip
    family = socket.AF_INET if dst.ip.version == 4 else socket.AF_INET6
    if dst.host:
        cap = run_in_netns(dst.netns, lambda: _raw_sctp(family))
        seen = _sctp_delivered
    else:
        cap = run_in_netns(dst.netns, lambda: _capture_socket(ifname))
        seen = _sctp_seen
    try:

        def sending_socket() -> socket.socket:
            s = socket.socket(family, socket.SOCK_RAW, PROTO_SCTP)
            if src.host:
                _bind(s, src.ip)
            return s

        sender = run_in_netns(src.netns, sending_socket)
        try:
            packet = _sctp_init(40000 + port % 1000, port)
            deadline = time.monotonic() + timeout
            # Re-sent as a real INIT would be (T1-init): the first may wait for ARP/ND and,
            # on a fresh bridge, be lost with it.
            while True:
                sender.sendto(packet, (str(dst.ip), 0))
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if seen(cap, expect_src, port, min(0.25, left)):
                    return True
        finally:
            sender.close()
    finally:
        cap.close()


def probe_pair(
    src: ProbeEndpoint, dst: ProbeEndpoint, port: int, protocol: str, timeout: float = 1.0
) -> bool:
    if protocol == "SCTP":
        return probe_sctp(src, dst, port, timeout)
    fn = _tcp if protocol == "TCP" else _udp
    bind = src.ip if src.host else None
    return run_in_netns(src.netns, lambda: fn(dst.ip, port, timeout, bind))


@dataclass(frozen=True)
class PortProbe:
    """One matrix to probe: a port and protocol, from every source to `destinations` (None:
    to the sources themselves)."""

    port: int
    protocol: str
    destinations: Sequence[ProbeEndpoint] | None = None


Matrix = dict[str, dict[str, bool]]


def probe_matrices(
    pods: Sequence[ProbeEndpoint],
    probes: Sequence[PortProbe],
    timeout: float = 1.0,
    workers: int = 128,
) -> list[Matrix]:
    """A matrix per PortProbe, rows the sources `pods`. Every pair of every port goes into one
    pool: a denied probe waits out its timeout, and the ports' waits overlap instead of adding
    up port after port."""
    jobs = [
        (src, dst, probe.port, probe.protocol, i)
        for i, probe in enumerate(probes)
        for src in pods
        for dst in (pods if probe.destinations is None else probe.destinations)
    ]
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs) or 1)) as pool:
        results = list(pool.map(lambda j: probe_pair(j[0], j[1], j[2], j[3], timeout), jobs))
    matrices: list[Matrix] = [{s.key: {} for s in pods} for _ in probes]
    for (src, dst, _, _, i), ok in zip(jobs, results, strict=True):
        matrices[i][src.key][dst.key] = ok
    return matrices


def probe_matrix(
    pods: Sequence[ProbeEndpoint],
    port: int,
    protocol: str,
    timeout: float = 1.0,
    workers: int = 128,
    destinations: Sequence[ProbeEndpoint] | None = None,
) -> Matrix:
    """A new connection from every pod to every destination (default: every pod); rows are
    sources, columns destinations."""
    return probe_matrices(pods, [PortProbe(port, protocol, destinations)], timeout, workers)[0]


def parse_ip(text: str) -> IPAddress:
    return ip_address(text)
