"""The agent's intake: the source's initial listing is applied to the cluster state as it
arrives (the loop starts at the first SYNCED), relists remove what they no longer name, and
invalid objects leave the previous version in force."""

from __future__ import annotations

import queue
from typing import Any

from enforcer.agent.intake import Intake, PrelistFeed
from enforcer.sources.base import EventType, SourceEvent


def _pod(name: str, ip: str, app: str = "a") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": "x", "name": name, "labels": {"app": app}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def _event(etype: EventType, obj: dict[str, Any] | None = None, kind: str | None = None) -> Any:
    return SourceEvent(etype, kind or (obj or {}).get("kind"), obj, None)


def test_prelist_applies_until_the_first_synced_then_queues() -> None:
    invalid: list[str] = []
    intake = Intake(lambda: "test", invalid.append)
    out: queue.Queue[Any] = queue.Queue()
    seen_at_sync: list[set[str]] = []
    feed = PrelistFeed(intake, out, on_synced=lambda: seen_at_sync.append(set(intake.state.pods)))
    feed(_event(EventType.ADDED, _pod("a", "10.0.0.1")))
    feed(_event(EventType.ADDED, _pod("gone", "10.0.0.2")))
    bad = _pod("bad", "not-an-ip")
    feed(_event(EventType.ADDED, bad))
    # A relist of pods starts before the first sync: "gone" is not in it.
    feed(_event(EventType.RESET, kind="Pod"))
    feed(_event(EventType.ADDED, _pod("a", "10.0.0.1")))
    feed(_event(EventType.ADDED, _pod("b", "10.0.0.3")))
    assert out.empty(), "nothing is queued before the first SYNCED"
    feed(_event(EventType.SYNCED))
    assert seen_at_sync == [{"x/a", "x/b"}], "on_synced sees the finished relist"
    assert invalid == ["Pod"] and "bad" in intake.invalid[-1]
    later = _event(EventType.MODIFIED, _pod("a", "10.0.0.1", app="b"))
    feed(later)
    queued = [out.get_nowait()[1] for _ in range(2)]
    assert [e.type for e in queued] == [EventType.SYNCED, EventType.MODIFIED]
    assert intake.state.pods["x/a"].labels["app"] == "a", "later events are the loop's"


def test_apply_keeps_the_digest_of_valid_objects() -> None:
    intake = Intake(lambda: "test")
    first = intake.apply(_event(EventType.ADDED, _pod("a", "10.0.0.1")))
    assert first is not None and first.old is None and first.new.key == "x/a"
    digest = intake.digest
    assert intake.apply(_event(EventType.MODIFIED, _pod("a", "bad"))) is None
    assert intake.digest == digest and intake.state.pods["x/a"].ips
    change = intake.apply(_event(EventType.DELETED, _pod("a", "10.0.0.1")))
    assert change is not None and change.new is None and change.old.key == "x/a"
    assert intake.digest == 0 and not intake.objects
