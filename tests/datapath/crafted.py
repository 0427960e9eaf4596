"""A pod pair with isolating policies and helpers to inject crafted frames from one pod and
see what reaches the other (by capture at its eth0) and which drop reason our program
counted; policy entries and IP layers for tests that build their own."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from scapy.all import IP, Ether, IPv6, Packet, raw

from enforcer.datapath.types import (
    PROTO_ANY,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    Direction,
    DropReason,
    EndpointPolicy,
    PolicyEntry,
)
from enforcer.topology import Pod
from tests.datapath.conftest import Env
from tests.datapath.net import Injector, addr, capture, next_hop_mac

# What the pair's tables allow from src to dst.
ALLOWED = ((PROTO_TCP, 80), (PROTO_UDP, 53), (PROTO_SCTP, 9))


@dataclass
class Pair:
    env: Env
    src: Pod
    dst: Pod
    family: int
    injector: Injector
    dst_mac: str

    @classmethod
    def make(cls, env: Env, family: int) -> Pair:
        src, dst = env.pod("src"), env.pod("dst")
        env.policy(src, EndpointPolicy(True, True, frozenset(
            PolicyEntry(Direction.EGRESS, env.ident(dst), proto, port, port)
            for proto, port in ALLOWED)))
        env.policy(dst, EndpointPolicy(True, True, frozenset(
            PolicyEntry(Direction.INGRESS, env.ident(src), proto, port, port)
            for proto, port in ALLOWED)))
        inj = Injector(src)
        return cls(env, src, dst, family, inj, next_hop_mac(env.topo, src, dst))

    def ip(self, **fields: object) -> Packet:
        cls = IP if self.family == 4 else IPv6
        return cls(src=addr(self.src, self.family), dst=addr(self.dst, self.family), **fields)

    def frame(self, l3: Packet | bytes) -> bytes:
        eth = Ether(src=self.injector.mac, dst=self.dst_mac,
                    type=0x0800 if self.family == 4 else 0x86DD)
        return raw(eth) + (l3 if isinstance(l3, bytes) else raw(l3))

    def delivered(self, frames: Iterable[bytes], marker: bytes, wait: float = 0.3) -> bool:
        with capture(self.dst) as cap:
            for f in frames:
                self.injector.send(f)
            return cap.saw(marker, wait)

    def drops(self, reason: DropReason) -> int:
        return sum(self.env.count(p, d, reason) for p in (self.src, self.dst)
                   for d in (Direction.INGRESS, Direction.EGRESS))

    def close(self) -> None:
        self.injector.close()


def marker() -> bytes:
    return b"ENF" + secrets.token_hex(6).encode()


def allow(direction: Direction, peer: int, proto: int = PROTO_ANY, lo: int = 0,
          hi: int = 65535) -> PolicyEntry:
    return PolicyEntry(direction, peer, proto, lo, hi)


def inject(env: Env, src: Pod, dst: Pod, l3: object, mark: bytes, *, src_ip: str | None = None,
           family: int = 4, dst_mac: str | None = None) -> bool:
    """Send an IP packet (scapy) from src's eth0 towards dst (by default to dst's next hop);
    True if dst's eth0 got it."""
    inj = Injector(src)
    try:
        frame = raw(Ether(src=inj.mac, dst=dst_mac or next_hop_mac(env.topo, src, dst),
                          type=0x0800 if family == 4 else 0x86DD) / l3)
        with capture(dst) as cap:
            inj.send(frame)
            return cap.saw(mark)
    finally:
        inj.close()


def ip_layer(src: Pod | str, dst: Pod, family: int) -> object:
    s = src if isinstance(src, str) else addr(src, family)
    return (IP if family == 4 else IPv6)(src=s, dst=addr(dst, family))
