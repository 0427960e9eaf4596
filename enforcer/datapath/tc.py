"""Attach the program to a host-side veth with pyroute2 where the kernel has no TCX (before
6.6, or attach_mode "tc"; see tcx.py): clsact qdisc, one direct-action bpf filter per hook at
a fixed prio and handle. `replace-filter` creates the filter or swaps the
program in place, so attaching again (a restart, a new program) never leaves a gap and never
detaches anything."""

from __future__ import annotations

import errno
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from enforcer.netnsutil import run_in_netns

PARENT_INGRESS = "ffff:fff2"  # tc ingress of the host veth: packets from the pod
PARENT_EGRESS = "ffff:fff3"  # tc egress of the host veth: packets to the pod


def _attach_here(ifindex: int, hooks: list[tuple[str, int, str]], prio: int, handle: int) -> None:
    with IPRoute() as ipr:
        try:
            ipr.tc("add", "clsact", ifindex)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise
        for parent, fd, name in hooks:
            ipr.tc("replace-filter", "bpf", ifindex, handle, fd=fd, name=name, parent=parent,
                   classid=1, direct_action=True, prio=prio)


def attach_hooks(ifindex: int, hooks: list[tuple[str, int, str]], prio: int, handle: int,
                 netns: str | None = None) -> None:
    """hooks: (parent, program fd, program name), attached in the order given; idempotent."""
    run_in_netns(netns, lambda: _attach_here(ifindex, hooks, prio, handle))


def attach(
    ifindex: int,
    from_pod: tuple[int, str],
    to_pod: tuple[int, str],
    prio: int,
    handle: int,
    netns: str | None = None,
) -> None:
    """Both hooks of a veth (to-pod first), e.g. a CNI's filter standing in in a test."""
    attach_hooks(ifindex, [(PARENT_EGRESS, to_pod[0], to_pod[1]),
                           (PARENT_INGRESS, from_pod[0], from_pod[1])], prio, handle, netns)


def _filters_or_none(ipr: IPRoute, ifindex: int, parent: str) -> list[Any]:
    try:
        return list(ipr.get_filters(ifindex, parent=parent))
    except NetlinkError as exc:
        if exc.code == errno.EINVAL:  # no clsact qdisc: no filters
            return []
        raise


def filters(ifindex: int, netns: str | None = None) -> list[tuple[str, int, str]]:
    """(hook, prio, program name) of the bpf filters on an interface."""

    def read() -> list[tuple[str, int, str]]:
        out = []
        with IPRoute() as ipr:
            for parent_name, parent in (("ingress", PARENT_INGRESS), ("egress", PARENT_EGRESS)):
                for msg in _filters_or_none(ipr, ifindex, parent):
                    opts = msg.get_attr("TCA_OPTIONS")
                    name = opts.get_attr("TCA_BPF_NAME") if opts else None
                    if name:
                        out.append((parent_name, msg["info"] >> 16, name))
        return out

    return run_in_netns(netns, read)


def detach_named(ifindex: int, names: set[str], prio: int, handle: int,
                 netns: str | None = None) -> list[str]:
    """Delete our filters (our prio and handle, one of these program names) from both hooks,
    e.g. an older agent's after TCX took over; returns the hooks they were on."""

    def run() -> list[str]:
        removed = []
        with IPRoute() as ipr:
            for hook, parent in (("ingress", PARENT_INGRESS), ("egress", PARENT_EGRESS)):
                for msg in _filters_or_none(ipr, ifindex, parent):
                    opts = msg.get_attr("TCA_OPTIONS")
                    if msg["info"] >> 16 != prio or not opts \
                            or opts.get_attr("TCA_BPF_NAME") not in names:
                        continue
                    ipr.tc("del-filter", "bpf", ifindex, handle, parent=parent, prio=prio)
                    removed.append(hook)
        return removed

    return run_in_netns(netns, run)
