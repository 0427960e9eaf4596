"""`enforcer uninstall-node` removes our filters and pins, and nothing else."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from enforcer.datapath import Datapath
from enforcer.datapath.tc import PARENT_INGRESS, filters
from enforcer.lab import topology as topo
from enforcer.netnsutil import run_in_netns
from tests.conftest import KERNEL_TEST_CONFIG

pytestmark = pytest.mark.kernel


def _add_foreign_filter(ifindex: int, fd: int, name: str) -> None:
    """A filter at another prio, standing in for a CNI's."""
    with IPRoute() as ipr:
        ipr.tc(
            "add-filter",
            "bpf",
            ifindex,
            7,
            fd=fd,
            name=name,
            parent=PARENT_INGRESS,
            classid=1,
            direct_action=True,
            prio=50,
        )


def test_uninstall_removes_only_our_filters_and_pins(tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    node = topo.NodeNet("node1", 1, f"enf-u{tag}-n1")
    pod = topo.PodNet(
        "x/a", "node1", f"enf-u{tag}-p1", "enfp1", topo.allocate_ips(node, set(), False)
    )
    pins = Path(f"/sys/fs/bpf/enf-test-uninstall-{tag}")
    topo.create_nodes([node], None, "routed")
    try:
        topo.add_pods([pod], {"node1": node}, [node], "routed")
        ifindex = run_in_netns(node.netns, lambda: IPRoute().link_lookup(ifname="enfp1")[0])
        dp = Datapath.open(pins, KERNEL_TEST_CONFIG)
        try:
            dp.attach(ifindex, node.netns)
            # The CNI's filter must see a program that is still loaded when we check.
            fd = dp.program.from_pod_fd
            run_in_netns(node.netns, lambda: _add_foreign_filter(ifindex, fd, "cni_prog"))
            before = filters(ifindex, node.netns)
            assert {(p, prio) for p, prio, _ in before} == {
                ("ingress", 1),
                ("egress", 1),
                ("ingress", 50),
            }
            out = subprocess.run(
                [
                    "nsenter",
                    f"--net=/run/netns/{node.netns}",
                    sys.executable,
                    "-m",
                    "enforcer.cli",
                    "uninstall-node",
                    "--pin-dir",
                    str(pins),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert "removed 2 filter(s)" in out
            after = filters(ifindex, node.netns)
            assert [(p, prio) for p, prio, _ in after] == [("ingress", 50)]
            assert not pins.exists()
        finally:
            dp.close()
    finally:
        topo.delete_netns([pod.netns, node.netns])
        subprocess.run(["rm", "-rf", str(pins)])
