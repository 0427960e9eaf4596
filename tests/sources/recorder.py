"""A consumer of source events for tests: records them and keeps the state they describe,
applying RESET/SYNCED the way the contract in enforcer.sources.base says a consumer must."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from enforcer.sources.base import EventType, SourceEvent, object_key

Key = tuple[str, str | None, str]


class Recorder:
    def __init__(self) -> None:
        self.events: list[SourceEvent] = []
        self.state: dict[Key, Mapping[str, Any]] = {}
        self.synced = 0
        self._relisting: dict[str, set[Key]] = {}
        self._cond = threading.Condition()

    def __call__(self, event: SourceEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._apply(event)
            self._cond.notify_all()

    def _apply(self, event: SourceEvent) -> None:
        if event.type is EventType.RESET:
            assert event.kind
            self._relisting[event.kind] = set()
        elif event.type is EventType.SYNCED:
            for kind, seen in self._relisting.items():
                for key in [k for k in self.state if k[0] == kind and k not in seen]:
                    del self.state[key]
            self._relisting.clear()
            self.synced += 1
        else:
            assert event.kind and event.obj is not None
            key = object_key(event.kind, event.obj)
            if event.type is EventType.DELETED:
                self.state.pop(key, None)
            else:
                self.state[key] = event.obj
            if event.kind in self._relisting:
                self._relisting[event.kind].add(key)

    def wait(self, pred: Callable[[Recorder], bool], timeout: float = 5.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what or pred}")
                self._cond.wait(min(left, 0.05))

    def snapshot(self) -> tuple[list[SourceEvent], dict[Key, Mapping[str, Any]]]:
        with self._cond:
            return list(self.events), dict(self.state)

    def of(self, kind: str, type_: EventType | None = None) -> list[SourceEvent]:
        with self._cond:
            return [e for e in self.events if e.kind == kind and (type_ is None or e.type is type_)]

    def labels(self, kind: str, name: str, namespace: str | None = None) -> dict[str, str] | None:
        with self._cond:
            obj = self.state.get((kind, namespace, name))
            return dict(obj["metadata"].get("labels") or {}) if obj else None


def wait_until(pred: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        time.sleep(0.01)
