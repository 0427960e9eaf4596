"""Fuzz: thousands of random and mutated frames from one pod towards an isolated one (bridged,
so nothing but our program stands between them). An independent oracle re-derives from each
delivered frame whether the tables allow it; the program must keep working afterwards."""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field

import pytest
from scapy.all import (
    ICMP,
    IP,
    SCTP,
    TCP,
    UDP,
    Dot1Q,
    Ether,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    IPOption_NOP,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    raw,
)

from enforcer.datapath import Datapath
from enforcer.datapath.types import PROTO_TCP, Direction, EndpointPolicy, PolicyEntry
from enforcer.topology import Pod, Topology
from tests.datapath.conftest import Env
from tests.datapath.net import Capture, Injector, TcpServer, next_hop_mac, tcp_connect

pytestmark = pytest.mark.kernel

ALLOWED_PORT = 80
V6_EXT = {0, 43, 44, 51, 60}
MAX_V6_EXT = 6


@dataclass
class Oracle:
    """What the tables (ingress of dst: TCP 80 from src only) allow, computed from bytes."""

    src4: bytes
    src6: bytes
    first_frags: dict[tuple[bytes, ...], int] = field(default_factory=dict)  # key -> l4 len

    def note_sent(self, frame: bytes) -> None:
        """Allowed first fragments make their later fragments allowed (as in the kernel)."""
        self.allows(frame, remember=True)

    def allows(self, frame: bytes, remember: bool = False) -> bool:
        et = frame[12:14]
        if et == b"\x08\x06":
            return True  # ARP always passes
        if et == b"\x08\x00":
            return self._v4(frame[14:], remember)
        if et == b"\x86\xdd":
            return self._v6(frame[14:], remember)
        return False

    def _tcp80(self, l4: bytes) -> int:
        if len(l4) < 20 or l4[12] >> 4 < 5 or (l4[12] >> 4) * 4 > len(l4):
            return 0
        return (l4[12] >> 4) * 4 if int.from_bytes(l4[2:4], "big") == ALLOWED_PORT else 0

    def _v4(self, ip: bytes, remember: bool) -> bool:
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[0] & 15 < 5:
            return False
        ihl, tot = (ip[0] & 15) * 4, int.from_bytes(ip[2:4], "big")
        if tot < ihl or tot > len(ip) or ip[12:16] != self.src4:
            return False
        fo = int.from_bytes(ip[6:8], "big")
        key = (b"4", ip[12:16], ip[16:20], ip[4:6], ip[9:10])
        if fo & 0x1FFF:
            l4len = self.first_frags.get(key)
            return l4len is not None and (fo & 0x1FFF) * 8 >= l4len
        if ip[9] != 6:
            return False
        l4len = self._tcp80(ip[ihl:tot])
        if l4len and fo & 0x2000 and remember:
            self.first_frags[key] = l4len
        return bool(l4len)

    def _v6(self, ip: bytes, remember: bool) -> bool:
        if len(ip) < 40 or ip[0] >> 4 != 6:
            return False
        plen = int.from_bytes(ip[4:6], "big")
        if plen == 0 or 40 + plen > len(ip):
            return False
        end, nh, off = 40 + plen, ip[6], 40
        frag_key: tuple[bytes, ...] | None = None
        for _ in range(MAX_V6_EXT):
            if nh not in V6_EXT:
                break
            if off + 8 > end:
                return False
            if nh == 44:
                fo = int.from_bytes(ip[off + 2:off + 4], "big")
                if frag_key is not None:
                    return False
                key = (b"6", ip[8:24], ip[24:40], ip[off + 4:off + 8], ip[off:off + 1])
                if fo & 0xFFF8:
                    if ip[8:24] != self.src6:
                        return False
                    l4len = self.first_frags.get(key)
                    return l4len is not None and (fo & 0xFFF8) >= l4len
                if fo & 1:
                    frag_key = key
                length = 8
            elif nh == 51:
                length = (ip[off + 1] + 2) * 4
            else:
                length = (ip[off + 1] + 1) * 8
            nh, off = ip[off], off + length
        if nh in V6_EXT or nh in {59, 135, 139, 140, 253, 254} or off > end:
            return False
        if nh == 58 and off + 8 <= end and 133 <= ip[off] <= 137:
            return True  # neighbour discovery always passes
        if ip[8:24] != self.src6 or nh != 6:
            return False
        l4len = self._tcp80(ip[off:end])
        if l4len and frag_key is not None and remember:
            self.first_frags[frag_key] = l4len
        return bool(l4len)


def templates(src: Pod, dst: Pod) -> list[bytes]:
    s4, d4, s6, d6 = str(src.ipv4), str(dst.ipv4), str(src.ipv6), str(dst.ipv6)
    pkts = [
        IP(src=s4, dst=d4) / TCP(sport=1234, dport=80, flags="S"),
        IP(src=s4, dst=d4) / TCP(sport=1234, dport=81, flags="S"),
        IP(src=s4, dst=d4, options=[IPOption_NOP()] * 4) / TCP(dport=80, flags="S"),
        IP(src=s4, dst=d4) / UDP(sport=53, dport=80) / (b"x" * 20),
        IP(src=s4, dst=d4) / SCTP(sport=80, dport=80),
        IP(src=s4, dst=d4) / ICMP(type=8),
        IP(src=s4, dst=d4, flags="MF", id=7) / TCP(dport=80) / (b"y" * 40),
        IP(src=s4, dst=d4, frag=3, id=7, proto=6) / (b"z" * 40),
        IPv6(src=s6, dst=d6) / TCP(sport=1234, dport=80, flags="S"),
        IPv6(src=s6, dst=d6) / TCP(sport=1234, dport=8080, flags="S"),
        IPv6(src=s6, dst=d6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / TCP(dport=80),
        IPv6(src=s6, dst=d6) / IPv6ExtHdrFragment(m=1, id=9) / TCP(dport=80) / (b"q" * 40),
        IPv6(src=s6, dst=d6) / UDP(dport=80),
        IPv6(src=s6, dst=d6) / ICMPv6EchoRequest(),
        IPv6(src=s6, dst=d6) / ICMPv6ND_NS(tgt=d6),
        Dot1Q(vlan=3) / IP(src=s4, dst=d4) / TCP(dport=80),
    ]
    # Ethertype + L3 (the MACs are prepended when sending).
    return [raw(Ether() / p)[12:] for p in pkts]


def mutate(rng: random.Random, body: bytes) -> bytes:
    b = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.6 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif choice < 0.8 and b:
            del b[rng.randrange(len(b)):]
        else:
            b.extend(rng.randbytes(rng.randint(1, 40)))
    return bytes(b)


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzzed_frames_never_pass_what_the_tables_deny(datapath: Datapath, seed: int) -> None:
    with Topology("bridged") as topo:
        env = Env(topo, datapath)
        try:
            _fuzz(env, seed)
        finally:
            env.cleanup()


def _fuzz(env: Env, seed: int) -> None:
    src, dst = env.pod("src"), env.pod("dst")
    env.policy(src, EndpointPolicy.allow_all())  # everything reaches dst's hook
    env.policy(dst, EndpointPolicy(True, False, frozenset({
        PolicyEntry(Direction.INGRESS, env.ident(src), PROTO_TCP, ALLOWED_PORT, ALLOWED_PORT)})))
    rng = random.Random(seed)
    inj = Injector(src)
    cap = Capture(dst)
    cap.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    oracle = Oracle(src.ipv4.packed, src.ipv6.packed)
    eth_ip = raw(Ether(src=inj.mac, dst=next_hop_mac(env.topo, src, dst)))[:12]
    bases = templates(src, dst)
    sent = 0
    delivered: list[bytes] = []
    try:
        for i in range(3000):
            base = bases[i % len(bases)]
            # Ethertype and everything after it are fair game; the MACs keep it on the wire.
            body = mutate(rng, base) if rng.random() < 0.9 else rng.randbytes(rng.randint(0, 90))
            if len(body) < 2:
                continue
            frame = eth_ip + (body if i % 5 else _ethertype_of(base) + body[2:])
            oracle.note_sent(frame)
            inj.send(frame)
            sent += 1
            if i % 200 == 0:
                delivered += cap.frames(0.01)
        delivered += cap.frames(0.5)
    finally:
        inj.close()
        cap.close()
    from_src = [f for f in delivered if f[6:12] == eth_ip[6:12]]
    wrong = [f.hex() for f in from_src if not oracle.allows(f)]
    assert sent > 2500
    assert sum(oracle.allows(f) for f in from_src) > 50  # the capture sees what passes
    assert not wrong, f"{len(wrong)} denied frames delivered, e.g. {wrong[:3]}"
    # Still enforcing, and still forwarding what is allowed.
    with TcpServer(dst, 4, 80), TcpServer(dst, 4, 81):
        assert tcp_connect(src, dst, 4, 80)
        assert not tcp_connect(src, dst, 4, 81, timeout=0.3)


def _ethertype_of(base: bytes) -> bytes:
    return base[:2]
