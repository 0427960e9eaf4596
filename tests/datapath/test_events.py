"""The event stream: rate-limited in the kernel, optionally reporting allowed new flows."""

from __future__ import annotations

import time

import pytest
from scapy.all import UDP

from enforcer.datapath import bpfsys
from enforcer.datapath.types import DropEvent, DropReason, EndpointPolicy
from tests.conftest import KERNEL_TEST_CONFIG
from tests.datapath.conftest import Env
from tests.datapath.crafted import Pair
from tests.datapath.net import TcpServer, tcp_connect

pytestmark = pytest.mark.kernel


def _drain(env: Env) -> None:
    env.dp.poll_events(0, lambda _e: None)


def test_drop_events_are_rate_limited(routed_env: Env) -> None:
    pair = Pair.make(routed_env, 4)
    env = routed_env
    rate, burst = 20, 10
    env.dp.set_event_rate(rate, burst)
    try:
        _drain(env)
        time.sleep(1)  # let the bucket fill up to its burst
        events: list[DropEvent] = []
        before = pair.drops(DropReason.POLICY_DENIED)
        start = time.monotonic()
        frame = pair.frame(pair.ip() / UDP(sport=4100, dport=54) / b"flood")
        for _ in range(500):
            pair.injector.send(frame)
        elapsed = time.monotonic() - start
        env.dp.poll_events(200, events.append)
        dropped = pair.drops(DropReason.POLICY_DENIED) - before
        flood = [e for e in events if e.dport == 54]
        assert dropped >= 500  # every drop is counted...
        # ...but events stop at the burst plus the rate (per CPU: the bucket is per CPU).
        ncpu = bpfsys.possible_cpus()
        assert 1 <= len(flood) <= ncpu * (burst + rate * (elapsed + 0.3)) + 2, len(flood)
    finally:
        env.dp.set_event_rate(KERNEL_TEST_CONFIG.events_per_second,
                              KERNEL_TEST_CONFIG.event_burst)
        pair.close()


def test_allowed_new_flows_can_be_reported(routed_env: Env) -> None:
    env = routed_env
    a, b = env.pod("a"), env.pod("b")
    env.policy(a, EndpointPolicy.allow_all())
    env.policy(b, EndpointPolicy.allow_all())
    server = TcpServer(b, 4, 7100)
    env.dp.set_flow_events(True)
    try:
        _drain(env)
        assert tcp_connect(a, b, 4, 7100)
        events: list[DropEvent] = []
        env.dp.poll_events(200, events.append)
        new_flows = [e for e in events if e.reason is None and e.dport == 7100]
        # One at a's egress hook, one at b's ingress hook; data packets are not reported.
        assert {e.ifindex for e in new_flows} == {a.host_ifindex, b.host_ifindex}
        assert len(new_flows) == 2
    finally:
        env.dp.set_flow_events(False)
        server.close()
