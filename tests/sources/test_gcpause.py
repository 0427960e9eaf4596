"""The GC pause is counted across threads and restores the collector's previous state."""

from __future__ import annotations

import gc
import threading

from enforcer.sources.gcpause import gc_paused


def test_nested_and_concurrent_pauses_reenable_once_all_end() -> None:
    assert gc.isenabled()
    inside = threading.Event()
    release = threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other)
    with gc_paused():
        t.start()
        inside.wait(5)
        with gc_paused():
            assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread is still decoding
    release.set()
    t.join()
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
