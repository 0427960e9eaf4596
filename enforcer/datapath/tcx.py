"""Attach the program with TCX (kernel 6.6+), the hooks' cheaper successor to clsact filters.

Our program goes first on each hook (ahead of any CNI's TCX programs, which run before every
clsact filter) and is recognised later by its name in the kernel (its function's name):
attaching again swaps it in place (BPF_F_REPLACE, atomic), so a restart or a new program never
leaves a gap and never detaches anything. Allowed packets return TCX_NEXT (TC_ACT_UNSPEC), so
the programs and clsact filters after ours still run. Attachments without a link stay when the
agent stops, as tc filters do."""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Iterable

from enforcer.datapath import bpfsys
from enforcer.netnsutil import run_in_netns

HOOKS = {"ingress": bpfsys.ATTACH_TCX_INGRESS, "egress": bpfsys.ATTACH_TCX_EGRESS}
LOOPBACK_IFINDEX = 1


@functools.cache  # the kernel's answer cannot change while we run
def supported() -> bool:
    """Whether this kernel has TCX: querying a hook of the loopback reads nothing, changes
    nothing, and fails with EINVAL on kernels before 6.6."""
    try:
        bpfsys.prog_query(LOOPBACK_IFINDEX, bpfsys.ATTACH_TCX_INGRESS)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    return True


ATTACH_MODES = ("auto", "tcx", "tc")


def resolve_attach_mode(mode: str) -> str:
    """DatapathConfig.attach_mode to "tcx" or "tc" on this kernel."""
    if mode not in ATTACH_MODES:
        raise ValueError(f"DatapathConfig.attach_mode: {mode!r} is not one of "
                         f"{', '.join(ATTACH_MODES)}")
    if mode == "tc":
        return "tc"
    if supported():
        return "tcx"
    if mode == "tcx":
        raise ValueError("DatapathConfig.attach_mode: 'tcx' needs kernel 6.6 or later "
                         "(this kernel has no TCX); use 'auto' or 'tc'")
    return "tc"


def _attached_here(ifindex: int, attach_type: int) -> list[tuple[int, str, int]]:
    """(id, name, fd) of the programs on a hook; the caller closes the fds."""
    out = []
    for prog_id in bpfsys.prog_query(ifindex, attach_type):
        try:
            fd = bpfsys.prog_fd_by_id(prog_id)
        except FileNotFoundError:
            continue  # detached meanwhile
        try:
            out.append((prog_id, bpfsys.prog_id_and_name(fd)[1], fd))
        except OSError:
            for f in [fd, *(f for _, _, f in out)]:
                os.close(f)
            raise
    return out


def _attach_one(ifindex: int, attach_type: int, fd: int) -> None:
    prog_id, name = bpfsys.prog_id_and_name(fd)
    present = _attached_here(ifindex, attach_type)
    try:
        ours = [(i, f) for i, n, f in present if n == name]
        if any(i == prog_id for i, _ in ours):
            return
        if ours:
            bpfsys.prog_attach(ifindex, fd, attach_type, bpfsys.F_REPLACE, replace_fd=ours[0][1])
        else:
            bpfsys.prog_attach(ifindex, fd, attach_type, bpfsys.F_BEFORE)
    finally:
        for _, _, f in present:
            os.close(f)


def attach(ifindex: int, hooks: Iterable[tuple[str, int]], netns: str | None = None) -> None:
    """hooks: (hook, program fd), attached in the order given; idempotent."""
    hooks = list(hooks)

    def run() -> None:
        for hook, fd in hooks:
            _attach_one(ifindex, HOOKS[hook], fd)

    run_in_netns(netns, run)


def programs(ifindex: int, netns: str | None = None) -> list[tuple[str, str]]:
    """(hook, program name) of the TCX programs on an interface, in run order per hook."""

    def read() -> list[tuple[str, str]]:
        out = []
        for hook, attach_type in HOOKS.items():
            present = _attached_here(ifindex, attach_type)
            out += [(hook, name) for _, name, _ in present]
            for _, _, fd in present:
                os.close(fd)
        return out

    return run_in_netns(netns, read)


def detach_named(ifindex: int, names: set[str] | None, netns: str | None = None,
                 dry_run: bool = False) -> list[str]:
    """Detach the programs with these names (None: all) from both hooks; returns the hooks
    they were on."""

    def run() -> list[str]:
        removed = []
        for hook, attach_type in HOOKS.items():
            present = _attached_here(ifindex, attach_type)
            try:
                for _, name, fd in present:
                    if names is None or name in names:
                        removed.append(hook)
                        if not dry_run:
                            bpfsys.prog_detach(ifindex, fd, attach_type)
            finally:
                for _, _, fd in present:
                    os.close(fd)
        return removed

    return run_in_netns(netns, run)
