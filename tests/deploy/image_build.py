"""`make image`'s script, started in the background as soon as a session has collected a test
that needs the image (tests/conftest.py), so that the build (debootstrap, apt, pip: mostly
waiting on the network and the disk, 2 to 5 minutes from a clean cache) runs beside the kernel
tests before it instead of in front of the one that needs it. Lowest CPU and I/O priority: the
kernel tests' probes time out when starved, the build only takes longer.

The test's fixture waits for it; the session's end stops a build no test waited for."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from typing import IO

from .render import REPO, agent_pod_spec

BUILD_TIMEOUT = 1100.0  # seconds, from the start: a clean cache on a slow mirror


class ImageBuild:
    def __init__(self, image: str) -> None:
        self.image = image
        self.started = time.monotonic()
        self._log: IO[str] = tempfile.TemporaryFile("w+")
        self._proc = subprocess.Popen(
            ["nice", "-n", "19", "ionice", "-c", "2", "-n", "7", "bash", "scripts/build-image.sh"],
            cwd=REPO,
            env=dict(os.environ, ENFORCER_IMAGE=image),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its podman and apt children stop with it
        )

    def wait(self) -> str:
        """The image's name once built; an AssertionError with the log's end if it failed."""
        left = BUILD_TIMEOUT - (time.monotonic() - self.started)
        try:
            rc = self._proc.wait(timeout=max(left, 0.0))
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"image build over {BUILD_TIMEOUT:.0f} s:\n{self.log()}") from None
        assert rc == 0, f"scripts/build-image.sh exited {rc}:\n{self.log()}"
        return self.image

    def log(self, tail: int = 4000) -> str:
        self._log.seek(0)
        return self._log.read()[-tail:]

    def stop(self) -> None:
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._log.close()


_build: ImageBuild | None = None


def start(image: str) -> ImageBuild:
    """The session's one build, started now if it is not yet."""
    global _build
    if _build is None:
        _build = ImageBuild(image)
    return _build


def stop() -> None:
    global _build
    if _build is not None:
        _build.stop()
        _build = None


def daemonset_image() -> str:
    """The agent container's image, as the rendered DaemonSet names it."""
    (agent,) = agent_pod_spec()["containers"]
    image: str = agent["image"]
    return image
