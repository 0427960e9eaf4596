"""Pause the cyclic garbage collector around bulk decoding (a shared, counted switch).

Decoding a big JSON list or YAML file allocates only acyclic dicts and lists, yet the
allocation count triggers collections that traverse the whole growing structure, making it
several times slower (measured: json.loads of 9.5 MB of pods 0.63 s with the GC, 0.18 s
without). The switch is process-wide and several threads may decode at once, so pauses are
counted: the GC comes back when the last one ends, and only if it was on to begin with.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_pausers = 0
_was_enabled = True


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    global _pausers, _was_enabled
    with _lock:
        if _pausers == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pausers += 1
    try:
        yield
    finally:
        with _lock:
            _pausers -= 1
            if _pausers == 0 and _was_enabled:
                gc.enable()
