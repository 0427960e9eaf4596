"""Agents in: every node agent's flows merged into one store, and each node's health.

One thread re-lists the agents (they come and go: rolling updates, node loss); each node then
has a thread following its `/flows?follow=1&cursor=1` and one polling its `/status`. A broken
stream marks the node unreachable and reconnects with backoff, resuming from its cursor (the
agent store's epoch and the number of the last record merged; `FlowStore.resume`):

- the agent still holds everything after it: exactly those records come back ("replay"), so
  nothing is merged twice or lost, even of an aggregate the agent kept extending meanwhile;
- the agent restarted (another epoch): its store is new, all of it is merged ("snapshot");
- the disconnect outlasted the agent's replay ring: its aggregates seen at or after the newest
  record merged come back ("since"), those not newer (or, at that very moment, already merged)
  are skipped; an aggregate extended across the disconnect comes back with its whole count,
  part of which was merged before. Counted in the node's `inexact_resumes`.

A snapshot is merged only once its end arrives, so a stream broken in the middle of one merges
none of it. Gaps in the numbers (a live record the agent's queue for us lost) are counted in
`lost`.

Nothing here outlives a restart: the store is rebuilt from the agents' own stores.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from enforcer import log
from enforcer.flows.record import FlowFormatError, parse_record
from enforcer.flows.store import FlowStore, Key, key_of

# The agent sends a bare newline every second on a followed stream: a silence this long
# means the agent (or its node) is gone without closing the connection.
READ_TIMEOUT = 15.0
STATUS_TIMEOUT = 3.0


class AgentAPI(Protocol):
    """What the collector uses of `enforcer.agentclient.AgentEndpoint` (tests fake it)."""

    name: str

    def get_json(self, path: str, timeout: float = ...) -> Any: ...

    def stream(self, path: str, timeout: float | None = ...) -> Iterator[dict[str, Any]]: ...


ListAgents = Callable[[], Mapping[str, AgentAPI]]


@dataclass(frozen=True)
class NodeHealth:
    """What /api/nodes shows of one node."""

    name: str
    reachable: bool
    error: str | None
    last_record: float | None  # unix seconds of the newest record merged from it
    status: dict[str, Any] | None  # its agent's last /status answer
    inexact_resumes: int = 0  # reconnects the agent's replay ring no longer covered
    lost: int = 0  # records the agent numbered but never sent us (its queue for us was full)


class _Node:
    """One node's agent: its stream and status threads, and what was merged from it."""

    def __init__(self, name: str, agent: AgentAPI, collector: Collector) -> None:
        self.name = name
        self.agent = agent  # replaced when the listing names another address for the node
        self.collector = collector
        self.stop = threading.Event()
        # Set by a successful /status: an agent that answers again is reconnected at once,
        # not at the end of its backoff (a lab's agents answer seconds after the console asks).
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.reachable = False
        self.error: str | None = "not contacted yet"
        self.status: dict[str, Any] | None = None
        # The newest last_seen merged, and the keys merged at exactly that moment.
        self.newest: float | None = None
        self.keys_at_newest: set[Key] = set()
        self.bad_records = 0
        # The agent store's epoch and the number of the last of its records merged.
        self.epoch: str | None = None
        self.cursor = 0
        self.inexact_resumes = 0
        self.lost = 0

    def start(self) -> None:
        for target, kind in ((self._follow, "flows"), (self._poll_status, "status")):
            threading.Thread(
                target=target, name=f"console-{kind}-{self.name}", daemon=True
            ).start()

    def health(self) -> NodeHealth:
        with self.lock:
            return NodeHealth(self.name, self.reachable, self.error, self.newest, self.status,
                              self.inexact_resumes, self.lost)

    def _mark(self, reachable: bool, error: str | None) -> None:
        with self.lock:
            self.reachable, self.error = reachable, error

    def _path(self) -> str:
        with self.lock:
            since, epoch, cursor = self.newest, self.epoch, self.cursor
        path = "/flows?follow=1&limit=0&cursor=1"
        if epoch is not None:
            path += f"&after={epoch}:{cursor}"
        return path if since is None else f"{path}&since={since!r}"

    def _follow(self) -> None:
        delay = self.collector.backoff_min
        while not self.stop.is_set():
            started = time.monotonic()
            with self.lock:
                threshold, known = self.newest, set(self.keys_at_newest)
            try:
                self._read(self.agent.stream(self._path(), timeout=self.collector.read_timeout),
                           threshold, known)
                error = "the agent closed its flow stream"
            except (OSError, RuntimeError, ValueError) as exc:  # ValueError: a bad JSON line
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if self.stop.is_set():
                return
            with self.lock:
                changed = self.error != error
            self._mark(False, error)
            if changed:  # once per outage and cause, not at every retry
                self.collector.log.info("agent unreachable", node=self.name, error=error)
            # A stream that stayed up a while was healthy: start the backoff over.
            if time.monotonic() - started > self.collector.backoff_max:
                delay = self.collector.backoff_min
            self.wake.clear()
            self.wake.wait(delay)
            delay = min(delay * 2, self.collector.backoff_max)

    def _read(self, docs: Iterator[dict[str, Any]], threshold: float | None,
              known: set[Key]) -> None:
        """One connection's stream: the cursor protocol's header, answer and cursor line,
        then live records; an agent without the protocol (no header) streams records only."""
        mode: str | None = None
        pending: list[dict[str, Any]] = []  # a snapshot's records, merged once it is whole
        for doc in docs:
            if self.stop.is_set():
                return
            if mode is None:
                mode = self._begin(doc)
                if mode == "legacy":
                    self._merge(doc, threshold, known)
            elif mode == "legacy":
                self._merge(doc, threshold, known)
            elif "cursor" in doc and len(doc) == 1:  # the answer is complete
                for record in pending:
                    self._merge(record, threshold if mode == "since" else None, known)
                pending = []
                self._advance(int(doc["cursor"]))
                mode = "live"
            elif mode in ("snapshot", "since"):
                pending.append(doc)
            else:  # replay or live: numbered records, merged as they come
                self._merge(doc, None, known)
                self._advance(int(doc.get("cursor", 0)))

    def _begin(self, doc: dict[str, Any]) -> str:
        """The stream's mode from its first line."""
        mode = doc.get("resume")
        if mode not in ("replay", "snapshot", "since"):
            return "legacy"
        with self.lock:
            if doc.get("epoch") != self.epoch:
                if self.epoch is not None:
                    self.collector.log.info("agent's flow store started over", node=self.name)
                self.epoch, self.cursor = str(doc.get("epoch")), 0
            if mode == "since":
                self.inexact_resumes += 1
            self.reachable, self.error = True, None
        if mode == "since":
            self.collector.log.warning(
                "resumed past the agent's replay ring: aggregates extended during the "
                "disconnect may be counted twice", node=self.name)
        return str(mode)

    def _advance(self, cursor: int) -> None:
        with self.lock:
            if cursor > self.cursor + 1 and self.cursor:
                self.lost += cursor - self.cursor - 1
            self.cursor = max(self.cursor, cursor)

    def _merge(self, doc: dict[str, Any], threshold: float | None, known: set[Key]) -> None:
        try:
            record = parse_record(doc, origin=f"agent {self.name}")
        except FlowFormatError as exc:
            self.bad_records += 1
            self.collector.log.warning("bad flow record", node=self.name, error=str(exc))
            return
        if not record.node:
            record = replace(record, node=self.name)
        key = key_of(record)
        # Only what this connection's `since` could repeat is checked: records at or before
        # the newest merged when it connected.
        if threshold is not None and (
            record.last_seen < threshold or (record.last_seen == threshold and key in known)
        ):
            return
        self.collector.store.add(record)
        with self.lock:
            self.reachable, self.error = True, None
            if self.newest is None or record.last_seen > self.newest:
                self.newest, self.keys_at_newest = record.last_seen, {key}
            elif record.last_seen == self.newest:
                self.keys_at_newest.add(key)

    def _poll_status(self) -> None:
        while not self.stop.is_set():
            try:
                status = self.agent.get_json("/status", timeout=self.collector.status_timeout)
            except (OSError, RuntimeError, ValueError) as exc:
                self._mark(False, f"/status: {type(exc).__name__}: {exc}")
            else:
                with self.lock:
                    self.status = status if isinstance(status, dict) else None
                    self.reachable, self.error = True, None
                self.wake.set()
            # While unreachable, ask more often: the stream reconnects when this answers.
            with self.lock:
                reachable = self.reachable
            self.stop.wait(self.collector.status_seconds if reachable else
                           min(1.0, self.collector.status_seconds))


class Collector:
    """Follows every agent `list_agents` names (called every `relist_seconds`) into `store`."""

    def __init__(
        self,
        list_agents: ListAgents,
        store: FlowStore,
        relist_seconds: float = 10.0,
        status_seconds: float = 5.0,
        backoff_min: float = 0.5,
        backoff_max: float = 5.0,
        read_timeout: float = READ_TIMEOUT,
        status_timeout: float = STATUS_TIMEOUT,
    ) -> None:
        self.list_agents = list_agents
        self.store = store
        self.relist_seconds = relist_seconds
        self.status_seconds = status_seconds
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.read_timeout = read_timeout
        self.status_timeout = status_timeout
        self.listing_error: str | None = None
        self.log = log.get("console")
        self._nodes: dict[str, _Node] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self) -> None:
        self.relist()
        threading.Thread(target=self._relist_loop, name="console-agents", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for node in self._nodes.values():
                node.stop.set()
                node.wake.set()

    def _relist_loop(self) -> None:
        while not self._stop.wait(self.relist_seconds):
            self.relist()

    def relist(self) -> None:
        """Starts following new agents, stops following those no longer listed; a failed
        listing keeps the agents known."""
        try:
            agents = self.list_agents()
        except Exception as exc:  # the API or the lab state may be briefly unreadable
            self.listing_error = f"listing the agents: {exc}"
            self.log.warning("listing the agents failed", error=str(exc))
            return
        self.listing_error = None
        with self._lock:
            for name in [n for n in self._nodes if n not in agents]:
                gone = self._nodes.pop(name)
                gone.stop.set()
                gone.wake.set()
                self.log.info("agent gone", node=name)
            for name, agent in agents.items():
                node = self._nodes.get(name)
                if node is None:
                    node = self._nodes[name] = _Node(name, agent, self)
                    node.start()
                    self.log.info("following agent", node=name, agent=str(agent))
                else:
                    node.agent = agent  # a new pod's address takes effect at the next connect

    def nodes(self) -> list[NodeHealth]:
        with self._lock:
            nodes = list(self._nodes.values())
        return sorted((n.health() for n in nodes), key=lambda h: h.name)
