"""The collector: every agent's flows merged once, memory capped, each node's health."""

from __future__ import annotations

import time
from collections.abc import Callable

from enforcer.console.collector import Collector
from enforcer.flows.store import FlowStore

from .fakes import END, T0, FakeAgent, record


def _store(max_bytes: int = 2**20) -> FlowStore:
    return FlowStore(max_bytes=max_bytes, clock=lambda: T0 + 60)


def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _collector(agents: dict[str, FakeAgent], store: FlowStore) -> Collector:
    return Collector(lambda: dict(agents), store, relist_seconds=0.05, status_seconds=0.05,
                     backoff_min=0.01, backoff_max=0.05, read_timeout=1.0)


def _counts(store: FlowStore) -> dict[tuple[str, str, int], int]:
    return {(r.source, r.destination, r.port): r.count for r in store.query()}


def test_an_agent_without_cursors_is_asked_only_for_newer_records_on_a_reconnect() -> None:
    agent = FakeAgent("node1")
    agent.held = [record(port=1, at=T0), record(port=2, at=T0 + 1)]
    store = _store()
    collector = _collector({"node1": agent}, store)
    collector.start()
    try:
        agent.live.put(record(port=3, at=T0 + 2))
        _eventually(lambda: len(store.query()) == 3)
        # The stream breaks; meanwhile the agent saw another flow at the very same moment.
        agent.live.put(ConnectionResetError(104, "Connection reset by peer"))
        agent.held.append(record(port=4, at=T0 + 2))
        _eventually(lambda: len(agent.paths) >= 2)
        assert agent.paths[0] == "/flows?follow=1&limit=0&cursor=1"
        assert agent.paths[1] == f"/flows?follow=1&limit=0&cursor=1&since={T0 + 2!r}"
        agent.live.put(record(port=5, at=T0 + 3))
        _eventually(lambda: len(store.query()) == 5)
        agent.live.put(END)  # the agent closes (a restart): it answers its whole store again
        agent.live.put(record(port=6, at=T0 + 4))
        _eventually(lambda: len(store.query()) == 6)
    finally:
        collector.stop()
    assert _counts(store) == {("a/web", "b/api", p): 1 for p in range(1, 7)}
    (node,) = collector.nodes()
    assert node.last_record == T0 + 4


def test_records_are_named_by_their_node_when_the_agent_did_not() -> None:
    agent = FakeAgent("node7")
    agent.held = [record(at=T0)]
    store = _store()
    collector = _collector({"node7": agent}, store)
    collector.start()
    try:
        _eventually(lambda: len(store.query()) == 1)
    finally:
        collector.stop()
    assert store.query()[0].node == "node7"


def test_flows_of_every_node_are_merged_and_a_dead_node_is_unreachable() -> None:
    one, two = FakeAgent("node1"), FakeAgent("node2")
    one.held = [record(port=1, at=T0, node="node1")]
    two.held = [record(port=2, at=T0, node="node2")]
    store = _store()
    collector = _collector({"node1": one, "node2": two}, store)
    collector.start()
    try:
        _eventually(lambda: {r.node for r in store.query()} == {"node1", "node2"})
        _eventually(lambda: all(n.reachable and n.status for n in collector.nodes()))
        health = {n.name: n for n in collector.nodes()}
        assert health["node1"].status == one.status and health["node1"].error is None
        two.down.set()
        _eventually(lambda: not {n.name: n for n in collector.nodes()}["node2"].reachable)
        dead = {n.name: n for n in collector.nodes()}["node2"]
        assert dead.error and ("refused" in dead.error.lower() or "reset" in dead.error.lower())
        one.live.put(record(port=3, at=T0 + 1, node="node1"))
        _eventually(lambda: len(store.query()) == 3)
        assert {n.name: n.reachable for n in collector.nodes()} == {"node1": True, "node2": False}
        two.down.clear()  # back: it reconnects by itself
        _eventually(lambda: all(n.reachable for n in collector.nodes()))
    finally:
        collector.stop()


def test_an_agent_that_answers_again_is_followed_at_once_not_after_its_backoff() -> None:
    agent = FakeAgent("node1")
    agent.down.set()  # not started yet, as a lab's agents when its console starts
    store = _store()
    collector = Collector(lambda: {"node1": agent}, store, status_seconds=0.05,
                          backoff_min=60.0, backoff_max=60.0)
    collector.start()
    try:
        _eventually(lambda: len(agent.paths) == 1)  # refused: 60 s of backoff ahead
        agent.held = [record(at=T0)]
        agent.down.clear()
        _eventually(lambda: len(store.query()) == 1, timeout=3.0)
    finally:
        collector.stop()


def test_agents_that_go_away_are_no_longer_followed() -> None:
    agents = {"node1": FakeAgent("node1"), "node2": FakeAgent("node2")}
    collector = _collector(agents, _store())
    collector.start()
    try:
        _eventually(lambda: [n.name for n in collector.nodes()] == ["node1", "node2"])
        del agents["node2"]
        _eventually(lambda: [n.name for n in collector.nodes()] == ["node1"])
        agents["node3"] = FakeAgent("node3")
        _eventually(lambda: [n.name for n in collector.nodes()] == ["node1", "node3"])
    finally:
        collector.stop()


def test_a_failed_listing_keeps_the_agents_known() -> None:
    agents = {"node1": FakeAgent("node1")}
    fail = [False]

    def listing() -> dict[str, FakeAgent]:
        if fail[0]:
            raise OSError("API unreachable")
        return dict(agents)

    collector = Collector(listing, _store(), relist_seconds=0.02, status_seconds=0.05)
    collector.start()
    try:
        fail[0] = True
        _eventually(lambda: collector.listing_error is not None)
        assert [n.name for n in collector.nodes()] == ["node1"]
    finally:
        collector.stop()


def test_memory_stays_under_the_cap() -> None:
    agent = FakeAgent("node1")
    agent.held = [record(src=f"a/w{i}", port=i % 60000, at=T0 + i / 100) for i in range(3000)]
    store = _store(max_bytes=200_000)
    collector = _collector({"node1": agent}, store)
    collector.start()
    try:
        _eventually(lambda: collector.nodes()[0].last_record == agent.held[-1].last_seen)
    finally:
        collector.stop()
    stats = store.stats()
    assert stats.bytes <= 200_000
    assert stats.evicted_records > 0
    assert stats.records + stats.evicted_records == 3000
