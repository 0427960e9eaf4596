"""No pod can crowd out another's flows. While one pod opens 200,000 new flows in 10 s (two
datagrams each, so its entries look alive to the conntrack LRU):

- two other pods keep a TCP stream and a UDP exchange, and a connection idle throughout
  whose server then speaks first; the client's ingress is isolated, so every reply passes
  only on its conntrack entry: none is lost (without the flood budget the idle one's is);
- the flooder's new flows past its budget are dropped and counted for it (flow_budget);
- every flood packet's event is delivered or counted as lost, never silently gone, and
  other pods' new flows meanwhile are attributed exactly as without the flood."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from enforcer.agentclient import get_text
from enforcer.analysis.explain import verdict_for
from enforcer.lab import lab
from enforcer.lab.probe import probe_pair
from enforcer.netnsutil import run_in_netns
from tests.datapath.net import EchoServers
from tests.lab import upstream
from tests.lab.test_lab_flows import (
    PORT,
    PROTOCOL,
    _cases,
    _expected,
    _flows_since,
    _flows_since_all,
)

pytestmark = pytest.mark.kernel

TCP_PORT, UDP_PORT, IDLE_PORT = 9000, 9001, 9002
FLOWS, SECONDS = 200_000, 10.0
INTERVAL = 0.005  # between a client's messages
REPLY_TIMEOUT = 1.0  # a reply later than this is a broken exchange (TCP retransmits in 0.2 s)


def _policies() -> list[dict[str, Any]]:
    """x/b's ingress isolated (nothing allowed in: the replies to it ride on conntrack); x/a
    accepts x/b and namespace y (the upstream case)."""
    return [
        upstream.policy("b-closed", "x", {"podSelector": upstream.sel(pod="b"),
                                          "policyTypes": ["Ingress"]}),
        *_cases()["pod-or-namespace-selector"],
    ]  # fmt: skip


class Exchange:
    """A client's messages and their echoes: how many, and the slowest reply."""

    def __init__(self) -> None:
        self.sent = 0
        self.answered = 0
        self.slowest = 0.0
        self.error: str | None = None

    def note(self, started: float) -> None:
        self.answered += 1
        self.slowest = max(self.slowest, time.monotonic() - started)


def _tcp_client(sock: socket.socket, stop: threading.Event, out: Exchange) -> None:
    try:
        while not stop.is_set():
            started = time.monotonic()
            msg = f"{out.sent:08d}".encode() * 8
            sock.sendall(msg)
            out.sent += 1
            got = b""
            while len(got) < len(msg):
                chunk = sock.recv(len(msg) - len(got))
                if not chunk:
                    raise ConnectionError("closed")
                got += chunk
            assert got == msg
            out.note(started)
            time.sleep(INTERVAL)
    except (OSError, AssertionError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"


def _udp_client(sock: socket.socket, stop: threading.Event, out: Exchange) -> None:
    while not stop.is_set():
        started = time.monotonic()
        msg = f"{out.sent:08d}".encode()
        sock.send(msg)
        out.sent += 1
        try:
            while sock.recv(64) != msg:  # a late echo of an earlier message: skip it
                pass
            out.note(started)
        except TimeoutError:
            pass  # lost: sent but not answered
        time.sleep(INTERVAL)


def _flood(netns: str, dst: str) -> None:
    """FLOWS new UDP flows (one datagram each, distinct source and destination ports)."""

    def send() -> None:
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
        start = time.monotonic()
        try:
            for i in range(FLOWS):
                # Twice: an entry looked up again is one the LRU keeps over older ones.
                socks[i % 8].sendto(b"x", (dst, 1024 + (i // 8) % 60000))
                socks[i % 8].sendto(b"x", (dst, 1024 + (i // 8) % 60000))
                if i % 5000 == 0:
                    ahead = start + SECONDS * i / FLOWS - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
        finally:
            for s in socks:
                s.close()

    run_in_netns(netns, send)


def _metric(state: lab.LabState, name: str, labels: str = "") -> float:
    total = 0.0
    for node in state.node_nets():
        _, text = get_text(lab.AGENT_ADDR, "/metrics", netns=node.netns)
        for line in text.splitlines():
            if line.startswith(name) and labels in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_flood_of_new_flows_breaks_no_other_pods_flow_and_loses_no_event_uncounted(
    lab_factory: Callable[..., lab.LabState],
    write_manifests: Callable[[list[dict[str, Any]]], Path],
) -> None:
    state = lab_factory([write_manifests([*upstream.cluster(), *_policies()])],
                        topology="routed", nodes=1)
    ends = {e.key: e for e in lab.probe_endpoints(state, 4)}
    server, client = ends["x/a"], ends["x/b"]
    servers = EchoServers(server.netns, TCP_PORT, UDP_PORT)

    def connect() -> tuple[socket.socket, socket.socket]:
        tcp = socket.create_connection((str(server.ip), TCP_PORT), timeout=REPLY_TIMEOUT)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.settimeout(REPLY_TIMEOUT)
        udp.connect((str(server.ip), UDP_PORT))
        return tcp, udp

    tcp, udp = run_in_netns(client.netns, connect)
    # A connection idle through the flood (a pool's, a websocket's): its server speaks first
    # after it, and that reply-direction packet passes x/b's ingress only on its entry.
    idle_listener = run_in_netns(server.netns, lambda: socket.create_server(("0.0.0.0",
                                                                             IDLE_PORT)))
    idle_client = run_in_netns(client.netns, lambda: socket.create_connection(
        (str(server.ip), IDLE_PORT), timeout=REPLY_TIMEOUT))
    idle_server, _ = idle_listener.accept()
    stop = threading.Event()
    streams = {"TCP": Exchange(), "UDP": Exchange()}
    clients = [threading.Thread(target=_tcp_client, args=(tcp, stop, streams["TCP"])),
               threading.Thread(target=_udp_client, args=(udp, stop, streams["UDP"]))]
    try:
        for t in clients:
            t.start()
        time.sleep(1.0)  # both exchanges under way before the flood
        drops_before = _metric(state, "enforcer_drop_count_total", 'namespace="x",pod="b"')
        lost_before = _metric(state, "enforcer_flow_events_lost_total")
        since = time.time()
        flooder = threading.Thread(target=_flood, args=(ends["z/c"].netns, str(ends["y/c"].ip)))
        flooder.start()
        probed = {}
        while flooder.is_alive():  # others keep making new flows while it floods
            for src, dst in (("y/b", "x/a"), ("z/a", "x/a"), ("x/c", "x/a")):
                probed[(src, dst)] = probe_pair(ends[src], ends[dst], PORT, PROTOCOL, 0.5)
            time.sleep(0.5)
        flooder.join()
        time.sleep(1.0)
        idle_server.sendall(b"still there?")
        try:
            pushed = idle_client.recv(64)
        except TimeoutError:
            pushed = b"(nothing: timed out)"
    finally:
        for s in (idle_server, idle_client, idle_listener):
            s.close()
        stop.set()
        for t in clients:
            t.join(timeout=5)
        tcp.close()
        udp.close()
        servers.close()
    drops = _metric(state, "enforcer_drop_count_total", 'namespace="x",pod="b"') - drops_before
    report = {k: (v.sent, v.answered, round(v.slowest, 3), v.error) for k, v in streams.items()}
    refused = _metric(state, "enforcer_drop_count_total",
                      'namespace="z",pod="c",reason="flow_budget"')
    print(report, "drops at x/b:", drops, "idle:", pushed, "refused:", refused)
    assert pushed == b"still there?"
    for proto, ex in streams.items():
        assert ex.error is None, (proto, report)
        assert ex.sent > 500 and ex.answered == ex.sent, (proto, report)
        assert ex.slowest < 0.5, (proto, report)
    assert drops == 0, report
    # The flooder ran into its budget (5,000 new flows a second per CPU by default).
    assert refused > FLOWS / 4

    # Every flood packet that made an event is delivered or counted as lost: an admitted
    # flow makes two (z/c's egress, y/c's ingress), a refused packet one. A flow with no
    # refused packet was admitted, so at least FLOWS - refused were.
    lost = _metric(state, "enforcer_flow_events_lost_total") - lost_before
    delivered = sum(r.count for r in _flows_since_all(state, since)
                    if r.source == "z/c" and r.destination == "y/c")
    assert delivered + lost >= (2 * (FLOWS - refused) + refused) * 0.99, (delivered, lost)
    assert lost > 0
    # The others' new flows are all there, attributed exactly as without the flood.
    records = _flows_since(state, since)
    problems = []
    for (src, dst), ok in probed.items():
        want = "allowed" if ok else "denied"
        got = {(r.verdict, r.policies) for r in records
               if (r.source, r.destination, r.direction) == (src, dst, "ingress")}
        expected = verdict_for(lab.model_state(state), src, dst, PORT, PROTOCOL)
        if got != {(want, _expected(expected.ingress)[1])}:
            problems.append(f"{src} -> {dst}: {got}")
    assert problems == []
    assert 0 < _metric(state, "enforcer_flow_store_bytes") < 64 * 2**20

