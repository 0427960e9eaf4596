"""Node objects, for the `nodes` peers of cluster-scoped policies: a node's labels and the IP
addresses of its `status.addresses` (InternalIP, ExternalIP; host names are not addresses)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address

from enforcer.model.objects import FrozenLabels, IPAddress, _freeze

KIND_NODE = "Node"


@dataclass(frozen=True)
class Node:
    name: str
    labels: Mapping[str, str] = field(default_factory=FrozenLabels)
    addresses: tuple[IPAddress, ...] = ()

    def __post_init__(self) -> None:
        _freeze(self, "labels")


def node_addresses(raw: object) -> tuple[IPAddress, ...]:
    """The IP addresses among status.addresses entries (others, e.g. Hostname, skipped)."""
    found: list[IPAddress] = []
    for entry in raw if isinstance(raw, list) else ():
        value = entry.get("address") if isinstance(entry, Mapping) else None
        try:
            ip = ip_address(value) if isinstance(value, str) else None
        except ValueError:
            ip = None
        if ip is not None and ip not in found:
            found.append(ip)
    return tuple(found)
