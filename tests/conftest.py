"""Fixtures shared by kernel tests: one bcc compile per session, pins under a unique dir; the
benchmarks' kernel tests last."""

from __future__ import annotations

import secrets
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from enforcer.datapath import Datapath, DatapathConfig


def pytest_configure(config: pytest.Config) -> None:
    """A TERM (a CI timeout, a run killed) ends the run as Ctrl-C does: pytest then runs the
    fixtures' finalisers, which take down labs, namespaces and pins. Python's own TERM
    exits at once and leaves them behind."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The benchmarks' kernel tests go last: `make test` runs the pure tests in a second
    process beside the kernel tests (scripts/test.sh), and by then they no longer load a CPU."""
    items.sort(key=lambda item: bool(item.get_closest_marker("kernel"))
               and "tests/bench/" in str(item.path))


def pytest_collection_finish(session: pytest.Session) -> None:
    """A session with a test that needs the agent's image starts building it now, in the
    background at the lowest priority (tests/deploy/image_build.py): the kernel tests before
    that one run meanwhile."""
    if any("built_image" in getattr(item, "fixturenames", ()) for item in session.items):
        from tests.deploy import image_build

        image_build.start(image_build.daemonset_image())


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.deploy import image_build

    image_build.stop()  # a build no test waited for (the run stopped early)


# Small maps keep read-backs fast; a high event rate lets tests see every drop event.
KERNEL_TEST_CONFIG = DatapathConfig(
    max_endpoints=256,
    max_identities=4096,
    max_policy_entries=1024,
    max_conntrack=16384,
    max_fragments=1024,
    max_counters=4096,
    event_pages=16,
    events_per_second=100000,
    event_burst=100000,
    endpoint_events_per_second=100000,
    endpoint_event_burst=100000,
    pod_flows_per_second=1000000,  # checked on every new flow, never refusing one
    pod_flow_burst=1000000,
)


@pytest.fixture(scope="session")
def pin_root() -> Iterator[Path]:
    root = Path("/sys/fs/bpf") / f"enf-test-{secrets.token_hex(4)}"
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def datapath(pin_root: Path) -> Iterator[Datapath]:
    dp = Datapath.open(pin_root, KERNEL_TEST_CONFIG)
    yield dp
    dp.close()
