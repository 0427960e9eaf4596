"""The topology builder (reused by the lab): routed and bridged, IPv4 and IPv6, several
nodes, node-to-pod traffic, and nothing left behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from enforcer.topology import Mode, Topology
from tests.datapath.net import TcpServer, tcp_connect, wait_until

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("mode", ["routed", "bridged"])
def test_pods_reach_each_other_across_nodes(mode: Mode) -> None:
    with Topology(mode, nodes=2) as topo:
        a, b, c = topo.add_pod(0), topo.add_pod(0), topo.add_pod(1)
        names = set(topo.namespaces)
        assert all(Path("/run/netns", n).exists() for n in names)
        assert all(p.host_ifname.startswith("enfp") for p in topo.pods)
        for family in (4, 6):
            servers = [TcpServer(p, family, 9100) for p in (b, c)]
            try:
                for dst in (b, c):
                    # The first packet may wait for neighbour resolution: allow a retry.
                    assert wait_until(lambda d=dst, f=family: tcp_connect(a, d, f, 9100), 3)
            finally:
                for s in servers:
                    s.close()
        out = subprocess.run(["ip", "netns", "exec", a.node.netns, "ping", "-c1", "-W1",
                              str(c.ipv4)], capture_output=True)
        assert out.returncode == 0  # a node reaches the other node's pods
    assert not any(Path("/run/netns", n).exists() for n in names)


def test_cleanup_happens_even_after_an_error() -> None:
    names: set[str] = set()
    with pytest.raises(RuntimeError, match="boom"), Topology("routed") as topo:
        topo.add_pod()
        names = set(topo.namespaces)
        raise RuntimeError("boom")
    assert names and not any(Path("/run/netns", n).exists() for n in names)
