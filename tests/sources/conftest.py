"""Fixtures: a fake API server on a free port, and a source running in a thread against it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from enforcer.sources.base import Source
from tests.fakeapi import FakeKubeAPI
from tests.sources.recorder import Recorder


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    server = FakeKubeAPI().start()
    try:
        yield server
    finally:
        server.stop()


RunSource = Callable[[Source], Recorder]


@pytest.fixture
def run_source() -> Iterator[RunSource]:
    """Start `source.run` in a thread with a Recorder; stopped (and checked to stop) at the end."""
    running: list[tuple[threading.Event, threading.Thread]] = []

    def start(source: Source) -> Recorder:
        rec = Recorder()
        stop = threading.Event()
        t = threading.Thread(target=source.run, args=(rec, stop), daemon=True)
        t.start()
        running.append((stop, t))
        return rec

    yield start
    for stop, _ in running:
        stop.set()
    for _, t in running:
        t.join(timeout=5)
        assert not t.is_alive(), "source.run did not return after stop"
