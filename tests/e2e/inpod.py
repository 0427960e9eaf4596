"""Runs INSIDE a test pod's toolbox container (the enforcer image: Python 3 and scapy).

The e2e suite sends this file's source with `python3 -c SOURCE COMMAND JSON` through the
exec API. Standalone: standard library and scapy only. Prints one JSON document.

Commands:
  probe   [[key, ip, port, protocol], ...] -> {key: true|false}
          a new TCP connection, or a UDP datagram answered (agnhost serve-hostname replies
          with its name), within the timeout.
  inject  {"dst": ip, "port": p, "variant": name} -> {"delivered": true|false}
          crafted packets (fragments, IPv6 extension headers) to a UDP server that answers;
          delivered means the server's answer came back.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

TIMEOUT = 1.5
PAYLOAD = b"enforcer-e2e " + b"x" * 1200  # long enough to fragment into several pieces


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def probe_one(ip: str, port: int, protocol: str, timeout: float = TIMEOUT) -> bool:
    """May this pod open a new connection to ip:port? Retries once (a lost SYN or datagram)."""
    for _ in range(2):
        with socket.socket(_family(ip), _kind(protocol)) as s:
            s.settimeout(timeout)
            try:
                if protocol == "TCP":
                    s.connect((ip, port))
                    return True
                s.sendto(b"hostname", (ip, port))
                s.recvfrom(512)
                return True
            except ConnectionRefusedError:
                return False  # nothing listens (or an ICMP error): not allowed through either
            except OSError:
                continue
    return False


def _kind(protocol: str) -> socket.SocketKind:
    return socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM


def probe(targets: list[list[Any]]) -> dict[str, bool]:
    with ThreadPoolExecutor(max_workers=max(1, min(64, len(targets)))) as pool:
        results = pool.map(lambda t: probe_one(str(t[1]), int(t[2]), str(t[3])), targets)
        return {str(t[0]): ok for t, ok in zip(targets, results, strict=True)}


def _packets(dst: str, sport: int, port: int, variant: str) -> list[Any]:
    """The crafted packets of one variant (scapy imported here: `probe` does not need it)."""
    from scapy.layers.inet import IP, UDP, fragment
    from scapy.layers.inet6 import (
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        fragment6,
    )

    datagram = UDP(sport=sport, dport=port) / PAYLOAD
    if variant == "ipv4-fragments":
        return list(fragment(IP(dst=dst) / datagram, fragsize=256))
    if variant == "ipv4-fragments-reversed":
        return list(reversed(fragment(IP(dst=dst) / datagram, fragsize=256)))
    if variant == "ipv4-tiny-first-fragment":
        # The first fragment carries only the 8-byte UDP header: the ports, nothing else.
        return list(fragment(IP(dst=dst) / datagram, fragsize=8))
    if variant == "ipv6-destopt":
        return [IPv6(dst=dst) / IPv6ExtHdrDestOpt() / datagram]
    if variant == "ipv6-hop-destopt":
        return [IPv6(dst=dst) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / datagram]
    if variant == "ipv6-fragments":
        pkt = IPv6(dst=dst) / IPv6ExtHdrFragment() / datagram
        return list(fragment6(pkt, 500))
    if variant == "ipv6-too-many-destopts":
        chain = IPv6(dst=dst)
        for _ in range(12):
            chain = chain / IPv6ExtHdrDestOpt()
        return [chain / datagram]
    raise ValueError(f"unknown variant {variant}")


def inject(spec: dict[str, Any]) -> dict[str, bool]:
    from scapy.all import AsyncSniffer, conf, send
    from scapy.layers.inet import UDP

    conf.verb = 0
    dst, port, variant = str(spec["dst"]), int(spec["port"]), str(spec["variant"])
    want_src = socket.inet_pton(_family(dst), dst)

    def is_answer(pkt: Any) -> bool:
        # A Python filter: a BPF filter would need tcpdump, which the image does not ship.
        if UDP not in pkt or (pkt[UDP].sport, pkt[UDP].dport) != (port, sport):
            return False
        src = pkt[UDP].underlayer.src
        return socket.inet_pton(_family(src), src) == want_src

    # A bound socket owns the source port, so the kernel takes the answer (no ICMP unreachable)
    # and the sniffer sees it.
    with socket.socket(_family(dst), socket.SOCK_DGRAM) as owner:
        owner.bind(("::" if ":" in dst else "0.0.0.0", 0))
        sport = owner.getsockname()[1]
        sniffer = AsyncSniffer(lfilter=is_answer, count=1, iface=spec.get("iface"))
        sniffer.start()
        time.sleep(0.3)  # the capture is open before the first packet leaves
        send(_packets(dst, sport, port, variant))
        sniffer.join(timeout=float(spec.get("wait", 3.0)))
        if sniffer.running:
            sniffer.stop()
        return {"delivered": bool(sniffer.results)}


def main(argv: list[str]) -> int:
    command, arg = argv[0], json.loads(argv[1])
    if command == "probe":
        out: Any = probe(arg)
    elif command == "inject":
        out = inject(arg)
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
