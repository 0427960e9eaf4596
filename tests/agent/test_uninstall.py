"""`enforcer uninstall-node` removes our filters and pins, and nothing else."""

from __future__ import annotations

import dataclasses
import errno
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from enforcer.datapath import Datapath, bpfsys, tcx
from enforcer.datapath.loader import FROM_POD_FUNC, TO_POD_FUNC
from enforcer.datapath.tc import PARENT_INGRESS, filters
from enforcer.lab import topology as topo
from enforcer.netnsutil import run_in_netns
from tests.conftest import KERNEL_TEST_CONFIG

pytestmark = pytest.mark.kernel


FOREIGN_PROGRAM = b"int cni_prog(struct __sk_buff *skb) { return -1; }"  # TCX_NEXT


def _add_foreign_filter(ifindex: int, fd: int, name: str) -> None:
    """A filter at another prio, standing in for a CNI's."""
    with IPRoute() as ipr:
        try:
            ipr.tc("add", "clsact", ifindex)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise
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


@pytest.mark.parametrize("attach_mode", ["tcx", "tc"])
def test_uninstall_removes_only_our_filters_and_pins(tmp_path: Path, attach_mode: str) -> None:
    """Ours go, attached either way; a CNI's clsact filter and TCX program stay. Attached
    after the CNI's TCX program, ours still runs first."""
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
        dp = Datapath.open(pins, dataclasses.replace(KERNEL_TEST_CONFIG,
                                                     attach_mode=attach_mode))
        try:
            from bcc import BPF  # after Datapath.open: bcc's kernel headers are set up

            foreign = BPF(text=FOREIGN_PROGRAM)
            cni_fd = foreign.load_func(b"cni_prog", BPF.SCHED_CLS).fd
            run_in_netns(node.netns, lambda: _add_foreign_filter(ifindex, cni_fd, "cni_prog"))
            run_in_netns(node.netns, lambda: bpfsys.prog_attach(
                ifindex, cni_fd, bpfsys.ATTACH_TCX_INGRESS))
            dp.attach(ifindex, node.netns)  # after the CNI's, yet ours runs first
            ours_as_filters = {("ingress", 1), ("egress", 1)} if attach_mode == "tc" else set()
            assert {(p, prio) for p, prio, _ in filters(ifindex, node.netns)} == {
                ("ingress", 50), *ours_as_filters}
            ours_in_tcx = [("ingress", FROM_POD_FUNC)] if attach_mode == "tcx" else []
            assert tcx.programs(ifindex, node.netns) == [
                *ours_in_tcx, ("ingress", "cni_prog"),
                *([("egress", TO_POD_FUNC)] if attach_mode == "tcx" else [])]
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
            assert tcx.programs(ifindex, node.netns) == [("ingress", "cni_prog")]
            assert not pins.exists()
        finally:
            dp.close()
    finally:
        topo.delete_netns([pod.netns, node.netns])
        subprocess.run(["rm", "-rf", str(pins)])
