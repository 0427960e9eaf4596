"""The agent's loop without a kernel: a datapath and an interface discovery held in memory
(enough for tests of what the loop writes, and how often)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from ipaddress import ip_address
from typing import Any

from enforcer.agent.interfaces import Interface
from enforcer.datapath.types import EndpointPolicy, IPAddress


class MemoryDatapath:
    """What the agent wrote: each endpoint's table and how many write passes it took."""

    def __init__(self) -> None:
        self.tables: dict[int, EndpointPolicy] = {}
        self.identity_map: dict[Any, int] = {}
        self.table_writes = 0  # set_endpoints calls (one kernel wait each)
        self.tables_written = 0  # tables in them
        self.written = threading.Event()  # set at every write (tests wait on it)
        self._generation = 0

    def attach(self, ifindex: int, netns: str | None = None) -> None:
        pass

    def attach_node_interface(self, ifindex: int, netns: str | None = None) -> None:
        pass

    def set_endpoints(
        self, items: Sequence[tuple[int, int, EndpointPolicy]]
    ) -> dict[int, int | Exception]:
        self.table_writes += 1
        self.tables_written += len(items)
        out: dict[int, int | Exception] = {}
        for ifindex, _eid, table in items:
            self._generation += 1
            self.tables[ifindex] = table
            out[ifindex] = self._generation
        self.written.set()
        return out

    def remove_endpoints(self, ifindexes: Iterable[int]) -> None:
        for ifindex in list(ifindexes):
            self.tables.pop(ifindex, None)

    def set_identities(self, changes: Mapping[Any, int | None]) -> None:
        for prefix, ident in changes.items():
            if ident is None:
                self.identity_map.pop(prefix, None)
            else:
                self.identity_map[prefix] = ident

    def identities(self) -> Mapping[Any, int]:
        return dict(self.identity_map)

    def flush_conntrack(self, ip: Any) -> int:
        return 0

    def flush_conntrack_many(self, ips: Any) -> int:
        return 0

    def endpoints(self) -> Mapping[int, Any]:
        return {}  # nothing pinned from a previous run

    def set_services(self, desired: Any) -> int:
        return 0

    def add_local_endpoints(self, addresses: Mapping[Any, tuple[int, int]]) -> int:
        return 0


class StaticInterfaces:
    """Each local pod's interface exists from the start: ifindex by pod address."""

    def __init__(self, ifindex_of: Mapping[str, int]) -> None:
        self.ifindex_of = {ip_address(ip): i for ip, i in ifindex_of.items()}

    def list_interfaces(self) -> list[Interface]:
        return []

    def interface_for_ip(self, ip: IPAddress) -> int | None:
        return self.ifindex_of.get(ip)

    def addresses_behind(self, iface: Interface) -> set[IPAddress]:
        return set()

    def watch(self, on_new: Callable[..., None], on_gone: Callable[..., None],
              stop: threading.Event, on_routing: Callable[[], None] | None = None) -> None:
        stop.wait()


class IdleSource:
    """A source that is never run: tests drive the agent's loop through `Agent.step`."""

    healthy = True

    def describe(self) -> str:
        return "test"
