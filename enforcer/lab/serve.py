"""Serve every declared container port of many lab pods from one process.

Sockets are created inside each pod's network namespace (a thread enters it for the call) and
stay bound to that namespace, so a single selector loop serves all pods: cheaper than a
process per pod. TCP accepts and answers "ok POD"; UDP echoes. SCTP cannot be served by this
kernel; probes capture it at the destination instead (see probe.py).

The lab's DNS pod is one of them: its UDP port 53 answers DNS queries from a record file
(see dns.py) and echoes anything else, like every other pod.

Run as: python -m enforcer.lab.serve SPEC.json
  (SPEC: [{"netns": ..., "ports": [[80, "TCP"]], "dns": "/path/records.json" (optional)}])
"""

from __future__ import annotations

import json
import selectors
import signal
import socket
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from enforcer.lab.dns import RecordFile, answer
from enforcer.netnsutil import run_in_netns

# socket, protocol, DNS records (the DNS pod's UDP 53), TCP greeting ("ok POD\n": a probe
# through a Service sees which backend answered)
Listener = tuple[socket.socket, str, RecordFile | None, bytes]


def _listener(port: int, protocol: str) -> socket.socket:
    kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # one socket for v4 and v6
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", port))
    if protocol == "TCP":
        sock.listen(128)
    else:  # answer from the address asked (a node has several: see _reply)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    sock.setblocking(False)
    return sock


def open_listeners(
    netns: str,
    ports: Iterable[tuple[int, str]],
    dns: RecordFile | None = None,
    name: str = "",
) -> list[Listener]:
    wanted = [(p, proto) for p, proto in ports if proto in ("TCP", "UDP")]
    if dns is not None and (53, "UDP") not in wanted:
        wanted.append((53, "UDP"))

    def records_for(port: int, proto: str) -> RecordFile | None:
        return dns if port == 53 and proto == "UDP" else None

    return run_in_netns(
        netns,
        lambda: [
            (_listener(p, proto), proto, records_for(p, proto), f"ok {name}\n".encode())
            for p, proto in wanted
        ],
    )


def _reply(sock: socket.socket, data: bytes, ancdata: list[Any], peer: Any) -> None:
    """Send from the address the datagram came to (IPV6_PKTINFO, v4-mapped for IPv4): a
    hostNetwork pod's namespace is its node's, with several addresses, and an unbound reply
    would leave from the one the route prefers (the pods' gateway), which the asking socket,
    connected to the node's address, would not take for an answer."""
    info = [d for level, kind, d in ancdata
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(d) >= 16]
    cmsg = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info[0][:16] + bytes(4))] if info else []
    sock.sendmsg([data], cmsg, 0, peer)


def serve_forever(listeners: list[Listener]) -> None:
    sel = selectors.DefaultSelector()
    for sock, proto, dns, greeting in listeners:
        sel.register(sock, selectors.EVENT_READ, (proto, dns, greeting))
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            proto, dns, greeting = key.data
            try:
                if proto == "TCP":
                    conn, _ = sock.accept()
                    conn.setblocking(True)
                    conn.settimeout(1.0)
                    conn.sendall(greeting)
                    conn.close()
                else:
                    data, ancdata, _, peer = sock.recvmsg(2048, socket.CMSG_SPACE(20))
                    reply = answer(data, dns.current()) if dns is not None else None
                    _reply(sock, reply if reply is not None else data, ancdata, peer)
            except OSError:
                continue  # a probe that went away; keep serving the others


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    listeners = []
    for pod in spec:
        dns = RecordFile(Path(pod["dns"])) if pod.get("dns") else None
        listeners += open_listeners(
            pod["netns"],
            [(int(p), str(proto)) for p, proto in pod["ports"]],
            dns,
            str(pod.get("key", "")),
        )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"serving {len(listeners)} sockets", flush=True)
    serve_forever(listeners)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
