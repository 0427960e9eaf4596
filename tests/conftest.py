"""Fixtures shared by kernel tests: one bcc compile per session, pins under a unique dir; and
how the suite splits over pytest-xdist workers."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from enforcer.datapath import Datapath, DatapathConfig


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With `-n 2 --dist loadgroup` (make test), every kernel test runs on one worker, in order,
    one at a time as without xdist (probes judge a denial by a timeout: two kernel tests at
    once on 2 CPUs made allowed probes time out), while the pure tests run on the other. The
    benchmarks' kernel tests go last, once the pure tests no longer load a CPU."""
    for item in items:
        if item.get_closest_marker("kernel"):
            item.add_marker(pytest.mark.xdist_group("kernel"))
    items.sort(key=lambda item: bool(item.get_closest_marker("kernel"))
               and "tests/bench/" in str(item.path))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under xdist, the pure tests run at a lower CPU priority than the kernel tests (and what
    either starts inherits it), so a pure test on the other worker does not slow a kernel
    test's packets and agents: their probes judge a denial by a timeout."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.setpriority(os.PRIO_PROCESS, 0, 0 if item.get_closest_marker("kernel") else 10)


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
