"""A host outside the cluster for lab tests: a namespace on the lab's fabric (like a client on
the nodes' network), with a TCP server that names itself, routes to the pod subnets through
their nodes, and removal on exit."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address

from enforcer.lab import lab
from enforcer.lab import topology as topo
from enforcer.netnsutil import run_in_netns

OUTSIDE_IP = topo.FABRIC_V4[200]
OUTSIDE_MAC = "02:00:00:00:0f:c8"


@dataclass
class Outside:
    netns: str
    ip: IPv4Address


def _serve(sock: socket.socket, stop: threading.Event) -> None:
    sock.settimeout(0.1)
    while not stop.is_set():
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        with conn:
            conn.sendall(b"ok outside\n")


@contextmanager
def outside_host(state: lab.LabState, port: int) -> Iterator[Outside]:
    assert state.fabric_netns, "an outside host needs a lab with several nodes"
    netns = f"{lab.NETNS_PREFIX}{state.name}-out"
    stop = threading.Event()
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        topo.ip_batch(
            state.fabric_netns,
            [
                # One MAC address for every outside host: the nodes' neighbour entries for
                # OUTSIDE_IP outlive an earlier one of the same lab.
                f"link add out0 type veth peer name eth0 address {OUTSIDE_MAC} netns {netns}",
                f"link set out0 master {topo.FABRIC_BRIDGE}",
                "link set out0 up",
            ],
        )
        cmds = ["link set lo up", f"addr add {OUTSIDE_IP}/24 dev eth0", "link set eth0 up"]
        cmds += [f"route add {n.subnet_v4} via {n.fabric_v4}" for n in state.node_nets()]
        topo.ip_batch(netns, cmds)

        def listen() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(16)
            return s

        server = run_in_netns(netns, listen)
        thread = threading.Thread(target=_serve, args=(server, stop), daemon=True)
        thread.start()
        try:
            yield Outside(netns, OUTSIDE_IP)
        finally:
            stop.set()
            thread.join(2)
            server.close()
    finally:
        # The veth first, by hand: a namespace's removal frees its links later, in the
        # background, and the next outside host of the lab needs the name out0 again.
        subprocess.run(["ip", "-n", state.fabric_netns, "link", "del", "out0"], check=False,
                       capture_output=True)  # fmt: skip
        subprocess.run(["ip", "netns", "del", netns], check=False)
