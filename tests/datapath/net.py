"""Traffic helpers for datapath tests: real sockets and crafted frames in pod namespaces."""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Self

from pyroute2 import IPRoute

from enforcer.netnsutil import run_in_netns
from enforcer.topology import Pod, Topology

ETH_P_ALL = 0x0003


def family_af(family: int) -> socket.AddressFamily:
    return socket.AF_INET if family == 4 else socket.AF_INET6


def addr(pod: Pod, family: int) -> str:
    return str(pod.ipv4 if family == 4 else pod.ipv6)


def mac_of(netns: str, ifname: str) -> str:
    def read() -> str:
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=ifname)[0]
            return str(ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS"))

    return run_in_netns(netns, read)


def next_hop_mac(topo: Topology, src: Pod, dst: Pod) -> str:
    """The MAC a frame from src towards dst's IP must carry on src's eth0."""
    if topo.mode == "bridged" and src.node is dst.node:
        return mac_of(dst.netns, dst.ifname)
    return gateway_mac(topo, src)


def gateway_mac(topo: Topology, src: Pod) -> str:
    """The MAC of src's node as its gateway (to another node, or to a ClusterIP)."""
    if topo.mode == "bridged":
        return mac_of(src.node.netns, "enfbr0")
    return mac_of(src.node.netns, src.host_ifname)


class _Server:
    """Serves from a pod in a thread until closed; a context manager too."""

    sock: socket.socket

    def _start(self) -> None:
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                self._serve_one()
            except (TimeoutError, OSError):
                continue

    def _serve_one(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TcpServer(_Server):
    """Listens in a pod; accepts and echoes in a thread."""

    def __init__(self, pod: Pod, family: int, port: int) -> None:
        self.sock = pod.run(lambda: socket.socket(family_af(family), socket.SOCK_STREAM))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr(pod, family), port))
        self.sock.listen(128)
        self._start()

    def _serve_one(self) -> None:
        conn, _ = self.sock.accept()
        threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        conn.settimeout(30)
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass


class UdpServer(_Server):
    """Echoes datagrams from a pod."""

    def __init__(self, pod: Pod, family: int, port: int) -> None:
        self.sock = pod.run(lambda: socket.socket(family_af(family), socket.SOCK_DGRAM))
        self.sock.bind((addr(pod, family), port))
        self.received: list[bytes] = []
        self._start()

    def _serve_one(self) -> None:
        data, peer = self.sock.recvfrom(65536)
        self.received.append(data)
        with contextlib.suppress(OSError):
            self.sock.sendto(data, peer)


def tcp_echo(sock: socket.socket, dest: str, port: int, timeout: float) -> bool:
    """Connect `sock` (made in the namespace to send from), send a random payload: True if it
    comes back (so replies must pass too). The socket is closed."""
    sock.settimeout(timeout)
    try:
        sock.connect((dest, port))
        payload = secrets.token_bytes(16)
        sock.sendall(payload)
        return sock.recv(64) == payload
    except OSError:
        return False
    finally:
        sock.close()


def reset_on_close_socket(family: int, port: int) -> socket.socket:
    """A TCP socket bound to `port` that a close resets: the port is free again at once (no
    TIME_WAIT), as a busy client's ephemeral ports come back. Make it in the sender's
    namespace."""
    sock = socket.socket(family_af(family), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.bind(("::" if family == 6 else "0.0.0.0", port))
    return sock


def tcp_connect(src: Pod, dst: Pod, family: int, port: int, timeout: float = 2.0) -> bool:
    """A full connection: handshake plus one echoed message (so replies must pass too).
    Checks of a denial pass a short timeout; the default leaves a loaded machine room."""
    sock = src.run(lambda: socket.socket(family_af(family), socket.SOCK_STREAM))
    return tcp_echo(sock, addr(dst, family), port, timeout)


@contextlib.contextmanager
def established_tcp(src: Pod, dst: Pod, family: int, port: int) -> Iterator[socket.socket]:
    """A connection from src to an echo server on dst, one round trip done."""
    with TcpServer(dst, family, port):
        client = src.run(lambda: socket.socket(family_af(family), socket.SOCK_STREAM))
        client.settimeout(1.0)
        try:
            client.connect((addr(dst, family), port))
            client.sendall(b"one")
            assert client.recv(10) == b"one"
            yield client
        finally:
            client.close()


def is_cut(client: socket.socket) -> bool:
    """True if the connection's next message gets no answer (dropped, not reset)."""
    client.sendall(b"two")
    try:
        client.recv(10)
    except TimeoutError:
        return True
    return False


def udp_roundtrip(src: Pod, dst: Pod, family: int, port: int, timeout: float = 0.5) -> bool:
    s = src.run(lambda: socket.socket(family_af(family), socket.SOCK_DGRAM))
    s.settimeout(timeout)
    try:
        payload = secrets.token_bytes(16)
        s.sendto(payload, (addr(dst, family), port))
        data, _ = s.recvfrom(64)
        return data == payload
    except OSError:
        return False
    finally:
        s.close()


def wait_until(pred: Callable[[], bool], timeout: float = 3.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return False


@dataclass
class Capture:
    """Raw frames arriving on a pod's eth0 (inbound only)."""

    pod: Pod
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = self.pod.run(
            lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)))
        self.sock.bind((self.pod.ifname, 0))
        self.sock.setblocking(False)

    def frames(self, wait: float = 0.3) -> list[bytes]:
        out = []
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            ready, _, _ = select.select([self.sock], [], [], left)
            if ready:
                data, meta = self.sock.recvfrom(65536)
                if meta[2] != socket.PACKET_OUTGOING:
                    out.append(data)

    def saw(self, marker: bytes, wait: float = 0.3) -> bool:
        return any(marker in f for f in self.frames(wait))

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def capture(pod: Pod) -> Iterator[Capture]:
    cap = Capture(pod)
    try:
        yield cap
    finally:
        cap.close()


class Injector:
    """Sends raw Ethernet frames from a pod's eth0."""

    def __init__(self, pod: Pod) -> None:
        self.pod = pod
        self.sock = pod.run(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
        self.sock.bind((pod.ifname, 0))
        self.mac = mac_of(pod.netns, pod.ifname)

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def close(self) -> None:
        self.sock.close()


def marker() -> bytes:
    return b"ENF" + secrets.token_hex(6).encode()


@contextlib.contextmanager
def on_one_cpu() -> Iterator[int]:
    """Pins this thread to one CPU, and yields it: a frame it sends through a veth is handled
    on the CPU that sent it, so every packet meets the same per-CPU flow memory
    (bpf/lib/flowcache.h)."""
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


class EchoServers:
    """TCP and UDP echo on all of a namespace's IPv4 addresses (sockets bound there, served
    from threads): the peer of a long-lived stream and exchange in tests that cut flows."""

    def __init__(self, netns: str, tcp_port: int, udp_port: int) -> None:
        def bind() -> tuple[socket.socket, socket.socket]:
            tcp = socket.create_server(("0.0.0.0", tcp_port))
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("0.0.0.0", udp_port))
            return tcp, udp

        self.tcp, self.udp = run_in_netns(netns, bind)
        for target in (self._serve_tcp, self._serve_udp):
            threading.Thread(target=target, daemon=True).start()

    def _serve_tcp(self) -> None:
        try:
            conn, _ = self.tcp.accept()
            while data := conn.recv(4096):
                conn.sendall(data)
        except OSError:
            pass

    def _serve_udp(self) -> None:
        try:
            while True:
                data, peer = self.udp.recvfrom(2048)
                self.udp.sendto(data, peer)
        except OSError:
            pass

    def close(self) -> None:
        for s in (self.tcp, self.udp):
            s.close()
