"""DatapathConfig.attach_mode: "auto" takes TCX exactly where the kernel has it (6.6+), and a
bad value is an error naming the field."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from enforcer.datapath import bpfsys, tcx
from enforcer.netnsutil import run_in_netns

pytestmark = pytest.mark.kernel


def _kernel_has_tcx() -> bool:
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    return (major, minor) >= (6, 6)


def test_auto_takes_tcx_where_the_kernel_has_it() -> None:
    assert tcx.supported() == _kernel_has_tcx()
    assert tcx.resolve_attach_mode("auto") == ("tcx" if _kernel_has_tcx() else "tc")
    assert tcx.resolve_attach_mode("tc") == "tc"


def test_a_bad_attach_mode_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"DatapathConfig\.attach_mode: 'xdp' is not one of"):
        tcx.resolve_attach_mode("xdp")


def test_query_lists_every_program_on_a_crowded_hook() -> None:
    """More programs than the query's first buffer holds: all are listed, in run order."""
    from enforcer.kheaders import configure_bcc_headers

    configure_bcc_headers()
    from bcc import BPF

    netns = f"enf-q{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        text = "".join(f"int p{i}(struct __sk_buff *skb) {{ return -1; }}\n" for i in range(20))
        bpf = BPF(text=text.encode())
        fds = [bpf.load_func(f"p{i}".encode(), BPF.SCHED_CLS).fd for i in range(20)]
        ids = [bpfsys.prog_id_and_name(fd)[0] for fd in fds]
        lo = 1

        def attach_and_query() -> list[int]:
            for fd in fds:
                bpfsys.prog_attach(lo, fd, bpfsys.ATTACH_TCX_INGRESS)
            return bpfsys.prog_query(lo, bpfsys.ATTACH_TCX_INGRESS)

        assert run_in_netns(netns, attach_and_query) == ids
        bpf.cleanup()
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True)
