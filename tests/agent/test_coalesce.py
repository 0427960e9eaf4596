"""How the loop splits a drained queue into runs compiled together (pure)."""

from __future__ import annotations

from typing import Any

from enforcer.agent.coalesce import latest, runs
from enforcer.agent.runtime import LinkEvent
from enforcer.sources.base import EventType, SourceEvent


def _ev(type_: EventType, name: str, version: int = 0) -> tuple[float, SourceEvent]:
    obj = {"metadata": {"namespace": "x", "name": name, "resourceVersion": str(version)}}
    return (0.0, SourceEvent(type_, "Pod", obj))


def _names(run: list[Any]) -> list[str]:
    return [f"{item.type.name}:{item.obj['metadata']['name']}" if item.obj else item.type.name
            for _, item in run]


ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED


def test_object_events_run_together_until_something_else() -> None:
    link = (0.0, LinkEvent())
    synced = (0.0, SourceEvent(EventType.SYNCED, None, None))
    batch = [_ev(MODIFIED, "a"), _ev(MODIFIED, "b"), link, _ev(MODIFIED, "c"), synced,
             _ev(ADDED, "d")]
    out = list(runs(batch))
    assert [len(r) for r in out] == [2, 1, 1, 1, 1]
    assert out[1] == [link] and out[3] == [synced]


def test_a_pod_deleted_then_created_again_ends_the_run() -> None:
    batch = [_ev(MODIFIED, "a"), _ev(DELETED, "a"), _ev(MODIFIED, "b"), _ev(ADDED, "a"),
             _ev(MODIFIED, "a")]
    assert [_names(r) for r in runs(batch)] == [
        ["MODIFIED:a", "DELETED:a", "MODIFIED:b"], ["ADDED:a", "MODIFIED:a"]]


def test_superseded_versions_are_dropped_in_order() -> None:
    run = [_ev(MODIFIED, "a", 1), _ev(MODIFIED, "b", 2), _ev(MODIFIED, "a", 3),
           _ev(DELETED, "b", 4)]
    kept = latest(run)
    assert [(item.obj["metadata"]["name"], item.obj["metadata"]["resourceVersion"])
            for _, item in kept] == [("a", "3"), ("b", "4")]
