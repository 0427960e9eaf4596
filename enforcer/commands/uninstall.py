"""`enforcer uninstall-node`: remove the enforcer's filters and pinned maps from this node.

What the agent never does on its own (it leaves enforcement in place when it stops); run by
the uninstall Job after the DaemonSet is deleted. Only our filters (our prio and handle) are
removed: the CNI's filters and the clsact qdisc it may share stay. Programs attached with
TCX are recognised by their names, as on node interfaces.
"""

from __future__ import annotations

import argparse
import errno
import shutil
from pathlib import Path

from enforcer.agent.interfaces import DEFAULT_INTERFACE_PATTERN
from enforcer.agent.services import DEFAULT_NODE_INTERFACE_PATTERN


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "uninstall-node",
        help="remove the enforcer's programs (TCX or tc filters) and pinned maps from this node",
    )
    p.add_argument("--pin-dir", default="/sys/fs/bpf/enforcer", help="the agent's --pin-dir")
    p.add_argument("--interface-pattern", default=DEFAULT_INTERFACE_PATTERN)
    p.add_argument("--node-interface-pattern", default=DEFAULT_NODE_INTERFACE_PATTERN)
    p.add_argument("--dry-run", action="store_true", help="say what would be removed")
    p.set_defaults(func=run)


def remove_node_filters(pattern: str, dry_run: bool) -> list[str]:
    """Our node-egress filter on uplinks and tunnels, recognised by its name (a CNI may have
    filters of its own at any prio there)."""
    from pyroute2 import IPRoute

    from enforcer.agent.services import node_interfaces
    from enforcer.datapath.layout import DatapathConfig
    from enforcer.datapath.loader import NODE_EGRESS_FUNC, LoadedProgram
    from enforcer.datapath.tc import PARENT_EGRESS

    cfg = DatapathConfig()
    name = LoadedProgram.__dataclass_fields__["node_egress_name"].default
    removed = []
    with IPRoute() as ipr:
        for ifindex, ifname in node_interfaces(pattern).items():
            for f in ipr.get_filters(ifindex, parent=PARENT_EGRESS):
                opts = f.get_attr("TCA_OPTIONS")
                if f["info"] >> 16 != cfg.tc_prio or not opts:
                    continue
                if opts.get_attr("TCA_BPF_NAME") != name:
                    continue
                removed.append(f"{ifname} {PARENT_EGRESS}")
                if not dry_run:
                    ipr.tc(
                        "del-filter",
                        "bpf",
                        ifindex,
                        cfg.tc_handle,
                        parent=PARENT_EGRESS,
                        prio=cfg.tc_prio,
                    )
            removed += _remove_tcx(ifindex, ifname, {NODE_EGRESS_FUNC}, dry_run)
    return removed


def _remove_tcx(ifindex: int, ifname: str, names: set[str], dry_run: bool) -> list[str]:
    from enforcer.datapath import tcx

    if not tcx.supported():
        return []
    return [f"{ifname} tcx {hook}" for hook in tcx.detach_named(ifindex, names, None, dry_run)]


def remove_filters(pattern: str, dry_run: bool) -> list[str]:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    from enforcer.agent.interfaces import InterfaceDiscovery
    from enforcer.datapath.layout import DatapathConfig
    from enforcer.datapath.loader import FROM_POD_FUNC, TO_POD_FUNC
    from enforcer.datapath.tc import PARENT_EGRESS, PARENT_INGRESS

    cfg = DatapathConfig()
    removed = []
    with IPRoute() as ipr:
        for iface in InterfaceDiscovery(pattern).list_interfaces():
            removed += _remove_tcx(iface.ifindex, iface.name, {FROM_POD_FUNC, TO_POD_FUNC},
                                   dry_run)
            for parent in (PARENT_INGRESS, PARENT_EGRESS):
                ours = [
                    f
                    for f in ipr.get_filters(iface.ifindex, parent=parent)
                    if f["info"] >> 16 == cfg.tc_prio and f.get_attr("TCA_KIND") == "bpf"
                ]
                if not ours:
                    continue
                removed.append(f"{iface.name} {parent}")
                if dry_run:
                    continue
                try:
                    ipr.tc(
                        "del-filter",
                        "bpf",
                        iface.ifindex,
                        cfg.tc_handle,
                        parent=parent,
                        prio=cfg.tc_prio,
                    )
                except NetlinkError as exc:
                    if exc.code != errno.ENOENT:
                        raise
    return removed


def run(args: argparse.Namespace) -> int:
    removed = remove_filters(args.interface_pattern, args.dry_run)
    removed += remove_node_filters(args.node_interface_pattern, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for what in removed:
        print(f"{verb} filter: {what}")
    pins = Path(args.pin_dir)
    if pins.exists():
        print(f"{verb} pinned maps: {pins}")
        if not args.dry_run:
            shutil.rmtree(pins)
    print(f"{verb} {len(removed)} filter(s)")
    return 0
