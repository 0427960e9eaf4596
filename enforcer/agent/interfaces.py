"""Find local pods' host-side interfaces, whatever the CNI, and watch them come and go.

Two ways to tie an interface to a pod IP, tried in order:
- routed CNIs (Calico, kindnet, Cilium in direct routing): the route to the pod IP leaves
  through the pod's veth, so a route lookup names it;
- bridged CNIs (flannel, bridge): the route leaves through the bridge, so we look at the veth's
  peer instead: its network namespace (found by netns id among the CRI's pinned namespaces
  under /run/netns) holds the pod's addresses.
"""

from __future__ import annotations

import os
import re
import select
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import (
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
    RTMGRP_NEIGH,
)

from enforcer.netnsutil import NETNS_DIRS, run_in_netns

IPAddress = IPv4Address | IPv6Address

# Host-side veth names of common CNIs, and the lab's. Other links (uplinks, bridges, the lab's
# node-to-node links) are never touched.
DEFAULT_INTERFACE_PATTERN = r"^(veth|cali|lxc|cni|azv|eni|gke|vnet|enfp)"


@dataclass(frozen=True)
class Interface:
    ifindex: int
    name: str
    peer_netnsid: int | None


def _veth_of(msg: dict) -> Interface | None:
    linkinfo = msg.get_attr("IFLA_LINKINFO")  # type: ignore[attr-defined]
    kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo else None
    if kind != "veth":
        return None
    nsid = msg.get_attr("IFLA_LINK_NETNSID")  # type: ignore[attr-defined]
    return Interface(msg["index"], msg.get_attr("IFLA_IFNAME"), nsid)  # type: ignore[attr-defined]


def _addresses_here() -> set[IPAddress]:
    with IPRoute() as ipr:
        return {ip_address(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr()}


class InterfaceDiscovery:
    def __init__(
        self,
        pattern: str = DEFAULT_INTERFACE_PATTERN,
        netns_dirs: Iterable[Path] = NETNS_DIRS,
    ) -> None:
        self.pattern = re.compile(pattern)
        self.netns_dirs = tuple(netns_dirs)
        self._nsid_paths: dict[int, Path] = {}  # netns id (as seen here) -> pinned netns file

    def wanted(self, iface: Interface) -> bool:
        return bool(self.pattern.match(iface.name))

    def list_interfaces(self) -> list[Interface]:
        with IPRoute() as ipr:
            found = [_veth_of(m) for m in ipr.get_links()]
        return [i for i in found if i is not None and self.wanted(i)]

    def interface_for_ip(self, ip: IPAddress) -> int | None:
        """The ifindex of the local interface that leads to pod IP `ip`, or None."""
        with IPRoute() as ipr:
            try:
                routes = ipr.route("get", dst=str(ip))
            except Exception:  # no route: not a local pod (yet)
                routes = []
            oif = routes[0].get_attr("RTA_OIF") if routes else None
            if oif is not None:
                # Only the route's interface, not a dump of every link: this runs on every
                # local pod add, and a node has hundreds of links.
                try:
                    links = ipr.link("get", index=oif)
                except Exception:  # the link went away meanwhile
                    links = []
                iface = _veth_of(links[0]) if links else None
                if iface is not None and self.wanted(iface):
                    return oif
        return self._by_peer_namespace(ip, self.list_interfaces())

    def addresses_behind(self, iface: Interface) -> set[IPAddress]:
        """The addresses configured in the namespace at the other end of a veth."""
        path = self._netns_for_nsid(iface.peer_netnsid)
        if path is None:
            return set()
        try:
            return run_in_netns(str(path), _addresses_here)
        except OSError:
            return set()

    def _by_peer_namespace(self, ip: IPAddress, candidates: Iterable[Interface]) -> int | None:
        for iface in candidates:
            if ip in self.addresses_behind(iface):
                return iface.ifindex
        return None

    def _netns_for_nsid(self, nsid: int | None) -> Path | None:
        if nsid is None or nsid < 0:
            return None
        path = self._nsid_paths.get(nsid)
        if path is not None and path.exists():
            return path
        self._nsid_paths = self._scan_netns_files()  # a new pod namespace: rescan once
        return self._nsid_paths.get(nsid)

    def _scan_netns_files(self) -> dict[int, Path]:
        found: dict[int, Path] = {}
        with IPRoute() as ipr:
            for folder in self.netns_dirs:
                if not folder.is_dir():
                    continue
                for path in sorted(folder.iterdir()):
                    try:
                        fd = os.open(path, os.O_RDONLY)
                    except OSError:
                        continue
                    try:
                        answer = ipr.get_netnsid(fd=fd)
                    except Exception:
                        answer = None
                    finally:
                        os.close(fd)
                    nsid = answer.get("nsid") if answer else None
                    if nsid is not None and nsid >= 0:
                        found.setdefault(nsid, path)
        return found

    def watch(
        self,
        on_new: Callable[[Interface], None],
        on_gone: Callable[[int], None],
        stop: threading.Event,
        on_routing_change: Callable[[], None] | None = None,
    ) -> None:
        """Call on_new/on_gone from netlink link events until `stop` is set (blocks).

        on_routing_change is called (at most once per batch of messages) when routes or
        neighbours change: a pod's route or first ARP can be what makes it locatable."""
        groups = RTMGRP_LINK
        if on_routing_change is not None:
            groups |= RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_NEIGH
        with IPRoute() as ipr:
            ipr.bind(groups=groups)
            while not stop.is_set():
                ready, _, _ = select.select([ipr.fileno()], [], [], 0.2)
                if not ready:
                    continue
                routing = False
                for msg in ipr.get():
                    event = msg.get("event")
                    if event == "RTM_DELLINK":
                        on_gone(msg["index"])
                    elif event == "RTM_NEWLINK":
                        iface = _veth_of(msg)
                        if iface is not None and self.wanted(iface):
                            on_new(iface)
                    elif event in ("RTM_NEWROUTE", "RTM_NEWNEIGH"):
                        routing = True
                if routing and on_routing_change is not None:
                    on_routing_change()
