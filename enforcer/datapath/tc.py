"""Attach the program to a host-side veth with pyroute2: clsact qdisc, one direct-action bpf
filter per hook at a fixed prio and handle. `replace-filter` creates the filter or swaps the
program in place, so attaching again (a restart, a new program) never leaves a gap and never
detaches anything."""

from __future__ import annotations

import errno

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


def attach(
    ifindex: int,
    from_pod: tuple[int, str],
    to_pod: tuple[int, str],
    prio: int,
    handle: int,
    netns: str | None = None,
) -> None:
    # To-pod first: an interface is never left filtered in one direction only for long,
    # and both are idempotent.
    hooks = [(PARENT_EGRESS, to_pod[0], to_pod[1]), (PARENT_INGRESS, from_pod[0], from_pod[1])]
    if netns is None:
        _attach_here(ifindex, hooks, prio, handle)
    else:
        run_in_netns(netns, lambda: _attach_here(ifindex, hooks, prio, handle))


def filters(ifindex: int, netns: str | None = None) -> list[tuple[str, int, str]]:
    """(hook, prio, program name) of the bpf filters on an interface."""

    def read() -> list[tuple[str, int, str]]:
        out = []
        with IPRoute() as ipr:
            for parent_name, parent in (("ingress", PARENT_INGRESS), ("egress", PARENT_EGRESS)):
                for msg in ipr.get_filters(ifindex, parent=parent):
                    opts = msg.get_attr("TCA_OPTIONS")
                    name = opts.get_attr("TCA_BPF_NAME") if opts else None
                    if name:
                        out.append((parent_name, msg["info"] >> 16, name))
        return out

    return read() if netns is None else run_in_netns(netns, read)


def attach_node_egress(
    ifindex: int, program: tuple[int, str], prio: int, handle: int, netns: str | None = None
) -> None:
    """tc egress only, of a node interface that is no pod's (uplink, tunnel): see
    bpf/lib/services.h. Idempotent like attach()."""
    hooks = [(PARENT_EGRESS, program[0], program[1])]
    if netns is None:
        _attach_here(ifindex, hooks, prio, handle)
    else:
        run_in_netns(netns, lambda: _attach_here(ifindex, hooks, prio, handle))
