"""A pod's budget of new flows: past it, its new flows drop at its own egress as flow_budget,
counted for it; its established flows and other pods' new flows pass meanwhile."""

from __future__ import annotations

import socket
import time

import pytest

from enforcer.datapath import bpfsys
from enforcer.datapath.types import Direction, DropReason, EndpointPolicy
from tests.conftest import KERNEL_TEST_CONFIG
from tests.datapath.conftest import Env
from tests.datapath.net import TcpServer, addr, established_tcp, tcp_connect

pytestmark = pytest.mark.kernel

RATE, BURST, FLOWS = 20, 10, 300


def test_new_flows_past_a_pods_budget_drop_and_others_pass(routed_env: Env) -> None:
    env = routed_env
    a, b = env.pod("a"), env.pod("b")
    env.policy(a, EndpointPolicy.allow_all())
    env.policy(b, EndpointPolicy.allow_all())
    refused_before = env.count(a, Direction.EGRESS, DropReason.FLOW_BUDGET)
    with established_tcp(a, b, 4, 7400) as stream:
        env.dp.set_flow_budget(RATE, BURST)
        try:
            sender = a.run(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            start = time.monotonic()
            with sender:
                for port in range(20000, 20000 + FLOWS):  # each a new flow
                    sender.sendto(b"x", (addr(b, 4), port))
            elapsed = time.monotonic() - start
            refused = env.count(a, Direction.EGRESS, DropReason.FLOW_BUDGET) - refused_before
            # Per CPU: each CPU's bucket lets its burst and its rate through.
            admitted_at_most = bpfsys.possible_cpus() * (BURST + RATE * (elapsed + 0.2))
            assert FLOWS - admitted_at_most <= refused <= FLOWS - BURST, (refused, elapsed)

            # a's established connection goes on: its packets open nothing.
            stream.sendall(b"still here")
            assert stream.recv(64) == b"still here"
            # b's new flows have b's budget, untouched by a's flood.
            with TcpServer(a, 4, 7401):
                assert tcp_connect(b, a, 4, 7401)
            assert env.count(b, Direction.EGRESS, DropReason.FLOW_BUDGET) == 0
        finally:
            env.dp.set_flow_budget(KERNEL_TEST_CONFIG.pod_flows_per_second,
                                   KERNEL_TEST_CONFIG.pod_flow_burst)
    # With the budget back, a opens flows again.
    with TcpServer(b, 4, 7402):
        assert tcp_connect(a, b, 4, 7402)
