"""A progress display for long benchmark runs: which benchmark, how long so far, what it does.

On a terminal one status line is redrawn twice a second; elsewhere (CI logs) each step is a
plain line, so the log reads the same story without control characters.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._lock = threading.Lock()
        self._index = 0
        self._name = ""
        self._detail = ""
        self._started = time.monotonic()
        self._run_started = time.monotonic()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def _prefix(self) -> str:
        return f"[{self._index}/{self.total}] {self._name}"

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._started:5.1f} s"

    def _draw(self) -> None:
        line = f"{self._prefix()}  {self._elapsed()}  {self._detail}"
        self.stream.write("\r\x1b[2K" + line[:160])
        self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                self._draw()

    def start(self, index: int, name: str, detail: str = "") -> None:
        with self._lock:
            self._index, self._name, self._detail = index, name, detail
            self._started = time.monotonic()
            if self.live:
                self._draw()
            else:
                self.stream.write(f"{self._prefix()}: {detail or 'starting'}\n")
                self.stream.flush()
        if self.live and self._ticker is None:
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def note(self, detail: str) -> None:
        """What the current benchmark is doing now (benchmarks call this)."""
        with self._lock:
            self._detail = detail
            if self.live:
                self._draw()
            else:
                self.stream.write(f"{self._prefix()}  {self._elapsed()}  {detail}\n")
                self.stream.flush()

    def finish(self, outcome: str) -> None:
        with self._lock:
            line = f"{self._prefix()}: {outcome} ({self._elapsed()})"
            self.stream.write(("\r\x1b[2K" if self.live else "") + line + "\n")
            self.stream.flush()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None

    def total_elapsed(self) -> float:
        return time.monotonic() - self._run_started
