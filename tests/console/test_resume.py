"""A console reconnecting to an agent counts every record once: the real agent HTTP server and
flow store on a unix socket, the real collector, connections cut from the console's side while
the agent keeps extending the same aggregates."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from enforcer.agent.http import AgentHTTPServer, EventHub
from enforcer.agentclient import AgentEndpoint
from enforcer.console.collector import Collector
from enforcer.flows.store import FlowStore

from .fakes import record

Counts = dict[tuple[str, str, int], int]


class Cuttable:
    """The agent's endpoint, with the network between: `cut()` breaks every open stream,
    and while `down` is set no connection gets through."""

    def __init__(self, endpoint: AgentEndpoint) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self.down = threading.Event()
        self.paths: list[str] = []
        self._socks: list[socket.socket] = []

    def get_json(self, path: str, timeout: float = 5.0) -> Any:
        if self.down.is_set():
            raise ConnectionRefusedError(111, "Connection refused")
        return self.endpoint.get_json(path, timeout)

    def stream(self, path: str, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        if self.down.is_set():
            raise ConnectionRefusedError(111, "Connection refused")
        self.paths.append(path)
        conn = self.endpoint.connect(timeout)
        try:
            conn.request("GET", path)
            assert conn.sock is not None
            self._socks.append(conn.sock)  # the response detaches it from conn
            resp = conn.getresponse()
            assert resp.status == 200, resp.read()
            for raw in resp:
                if raw.strip():
                    yield json.loads(raw)
        finally:
            conn.close()

    def cut(self) -> None:
        for sock in self._socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed
                pass
        self._socks.clear()


class Agent:
    """The agent's HTTP API over its unix socket, serving `store`."""

    def __init__(self, sock: Path, store: FlowStore) -> None:
        self.store = store
        self.server = AgentHTTPServer(
            "127.0.0.1:0", CollectorRegistry(), lambda: True, lambda: {"node": "n1"},
            EventHub(), store, api_socket=str(sock))
        self.server.start()


def _counts(store: FlowStore) -> Counts:
    return {(r.source, r.destination, r.port): r.count for r in store.query()}


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _add(store: FlowStore, n: int, ports: int = 3) -> None:
    """n records over `ports` aggregates: each aggregate is extended again and again."""
    for i in range(n):
        store.add(record(port=1 + i % ports, at=time.time()))


def _console(link: Cuttable) -> tuple[Collector, FlowStore]:
    store = FlowStore()
    collector = Collector(lambda: {"n1": link}, store, relist_seconds=0.05,  # type: ignore[dict-item]
                          status_seconds=0.05, backoff_min=0.01, backoff_max=0.05,
                          read_timeout=5.0)
    collector.start()
    return collector, store


def _sum(*counts: Counts) -> Counts:
    total: Counts = {}
    for c in counts:
        for key, n in c.items():
            total[key] = total.get(key, 0) + n
    return total


def test_a_reconnect_replays_exactly_what_was_missed(tmp_path: Path) -> None:
    agent = Agent(tmp_path / "agent.sock", FlowStore())
    link = Cuttable(AgentEndpoint("n1", socket=str(tmp_path / "agent.sock")))
    collector, console = _console(link)
    try:
        _add(agent.store, 30)
        _eventually(lambda: _counts(console) == _counts(agent.store))
        # Cut, and the agent goes on extending the same aggregates while we are away.
        link.down.set()
        link.cut()
        _eventually(lambda: not collector.nodes()[0].reachable)
        _add(agent.store, 40)
        link.down.clear()
        _eventually(lambda: _counts(console) == _counts(agent.store))
        assert "&after=" in link.paths[-1], (link.paths, collector.nodes())
        # A cut between a record's sending and its merging: the records in flight come back.
        for _ in range(5):
            _add(agent.store, 7)
            link.cut()
        _add(agent.store, 1)
        _eventually(lambda: _counts(console) == _counts(agent.store))
        time.sleep(0.3)  # nothing more arrives later: no record merged twice
        assert _counts(console) == _counts(agent.store)
        assert sum(_counts(console).values()) == 30 + 40 + 36
        (node,) = collector.nodes()
        assert (node.inexact_resumes, node.lost) == (0, 0)
    finally:
        collector.stop()
        agent.server.stop()


def test_a_restarted_agent_is_merged_whole_and_a_resume_past_the_ring_is_counted(
    tmp_path: Path,
) -> None:
    sock = tmp_path / "agent.sock"
    first = Agent(sock, FlowStore(replay_records=16))
    link = Cuttable(AgentEndpoint("n1", socket=str(sock)))
    collector, console = _console(link)
    try:
        _add(first.store, 10)
        _eventually(lambda: _counts(console) == _counts(first.store))
        before = _counts(first.store)

        # The agent restarts: its store starts over (another epoch); all of it is new to us.
        link.down.set()
        first.server.stop()
        link.cut()
        second = Agent(sock, FlowStore(replay_records=16))
        _add(second.store, 12, ports=4)
        link.down.clear()
        _eventually(lambda: _counts(console) == _sum(before, _counts(second.store)))
        assert collector.nodes()[0].inexact_resumes == 0

        # Away for longer than the agent's replay ring reaches back: resumed by time, and
        # said so.
        link.down.set()
        link.cut()
        _add(second.store, 40, ports=4)
        link.down.clear()
        _eventually(lambda: collector.nodes()[0].inexact_resumes == 1)
        _eventually(lambda: collector.nodes()[0].reachable)
        second.server.stop()
    finally:
        collector.stop()
        first.server.stop()
