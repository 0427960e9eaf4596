"""Per-test topologies wired to the session's datapath; endpoints are removed afterwards
(ifindexes repeat across node namespaces, so nothing may leak into the next test)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network

import pytest

from enforcer.datapath import Datapath
from enforcer.datapath.services import ServiceMaps
from enforcer.datapath.types import CounterRow, Direction, DropReason, EndpointPolicy
from enforcer.topology import Mode, Pod, Topology

FIRST_POD_IDENTITY = 100
IN, OUT = Direction.INGRESS, Direction.EGRESS


@dataclass
class Env:
    topo: Topology
    dp: Datapath
    identities: dict[str, int] = field(default_factory=dict)
    _attached: list[Pod] = field(default_factory=list)

    def pod(self, name: str | None = None, attach: bool = True, node: int = 0) -> Pod:
        pod = self.topo.add_pod(node, name)
        ident = FIRST_POD_IDENTITY + len(self.identities)
        self.identities[pod.name] = ident
        self.dp.set_identities({ip_network(f"{pod.ipv4}/32"): ident,
                                ip_network(f"{pod.ipv6}/128"): ident})
        if attach:
            self.dp.attach(pod.host_ifindex, pod.node.netns)
            self._attached.append(pod)
            # As the agent does before a pod's first policy: its own addresses (a pod's
            # packets pass only from them, bpf/lib/source.h).
            self.dp.add_local_endpoints({
                ip_address(ip): (self.endpoint_id(pod), pod.host_ifindex)
                for ip in (pod.ipv4, pod.ipv6)
            })
        return pod

    def ident(self, pod: Pod) -> int:
        return self.identities[pod.name]

    def policy(self, pod: Pod, policy: EndpointPolicy) -> int:
        return self.dp.set_endpoint(pod.host_ifindex, self.endpoint_id(pod), policy)

    def endpoint_id(self, pod: Pod) -> int:
        return 1000 + pod.host_ifindex

    def count(self, pod: Pod, direction: Direction, reason: DropReason | None) -> int:
        return sum(r.packets for r in self.dp.counters() if _match(r, pod, direction, reason))

    def cleanup(self) -> None:
        self.dp.set_services(ServiceMaps())
        for pod in self._attached:
            self.dp.remove_endpoint(pod.host_ifindex)
            self.dp.flush_conntrack(pod.ipv4)
            self.dp.flush_conntrack(pod.ipv6)
        self.dp.set_identities({ip_network(f"{p.ipv4}/32"): None for p in self.topo.pods})
        self.dp.set_identities({ip_network(f"{p.ipv6}/128"): None for p in self.topo.pods})


def _match(row: CounterRow, pod: Pod, direction: Direction, reason: DropReason | None) -> bool:
    return row.ifindex == pod.host_ifindex and row.direction == direction and \
        row.reason == reason


def _env(mode: Mode, datapath: Datapath) -> Iterator[Env]:
    with Topology(mode) as topo:
        e = Env(topo, datapath)
        try:
            yield e
        finally:
            e.cleanup()


@pytest.fixture(params=["routed", "bridged"])
def env(request: pytest.FixtureRequest, datapath: Datapath) -> Iterator[Env]:
    yield from _env(request.param, datapath)


@pytest.fixture
def routed_env(datapath: Datapath) -> Iterator[Env]:
    yield from _env("routed", datapath)


@pytest.fixture(params=[4, 6], ids=["ipv4", "ipv6"])
def family(request: pytest.FixtureRequest) -> int:
    return int(request.param)
