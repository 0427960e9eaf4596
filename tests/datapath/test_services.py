"""Egress through a DNAT (what kube-proxy does to a ClusterIP), at the datapath level, for
IPv4 and IPv6 in both topologies: the source hook defers a flow to a Service frontend, and the
backend's veth judges the source's egress against the backend and target port."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from ipaddress import ip_address

import pytest

from enforcer.datapath.services import ServiceMaps
from enforcer.datapath.types import (
    PROTO_TCP,
    Direction,
    DropReason,
    EndpointPolicy,
    PolicyEntry,
)
from enforcer.topology import Pod
from tests.datapath.conftest import Env
from tests.datapath.net import TcpServer, addr, family_af, tcp_echo

pytestmark = pytest.mark.kernel

VIPS = {4: ("198.19.128.50", "198.19.128.51"), 6: ("2001:2:0:ff00::50", "2001:2:0:ff00::51")}


def _dnat(env: Env, family: int, vip: str, backend: Pod, port: int) -> None:
    tool = "iptables" if family == 4 else "ip6tables"
    dest = f"{addr(backend, family)}:{port}" if family == 4 else f"[{addr(backend, family)}]:{port}"
    subprocess.run(
        [
            "nsenter",
            f"--net=/run/netns/{backend.node.netns}",
            tool,
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-d",
            vip,
            "-p",
            "tcp",
            "--dport",
            "80",
            "-j",
            "DNAT",
            "--to-destination",
            dest,
        ],
        check=True,
    )


def _connect(src: Pod, family: int, vip: str) -> bool:
    return tcp_echo(src.run(lambda: socket.socket(family_af(family), socket.SOCK_STREAM)), vip,
                    80, 0.5)


@pytest.fixture
def services(env: Env) -> Iterator[ServiceMaps]:
    maps = ServiceMaps()
    try:
        yield maps
    finally:
        env.dp.set_services(ServiceMaps())


@pytest.mark.parametrize("family", [4, 6])
def test_egress_through_dnat_is_judged_on_the_backend(
    env: Env, services: ServiceMaps, family: int
) -> None:
    a, b, c = env.pod(), env.pod(), env.pod()
    vip_b, vip_c = VIPS[family]
    servers = [TcpServer(b, family, 8080), TcpServer(c, family, 8080)]
    try:
        _dnat(env, family, vip_b, b, 8080)
        _dnat(env, family, vip_c, c, 8080)
        out = Direction.EGRESS
        env.policy(
            a,
            EndpointPolicy(
                False, True, frozenset({PolicyEntry(out, env.ident(b), PROTO_TCP, 8080, 8080)})
            ),
        )
        env.policy(b, EndpointPolicy.allow_all())
        env.policy(c, EndpointPolicy.allow_all())
        # Without frontends the ClusterIP is just an address a's policy does not allow.
        assert not _connect(a, family, vip_b)
        for vip in (vip_b, vip_c):
            services.frontends.add((ip_address(vip), 80, "TCP"))
        for pod in (a, b, c):
            services.local_endpoints[ip_address(addr(pod, family))] = (
                env.endpoint_id(pod),
                pod.host_ifindex,
            )
        env.dp.set_services(services)
        denied_before = env.count(c, Direction.EGRESS, DropReason.POLICY_DENIED)
        assert _connect(a, family, vip_b)  # b on 8080: what a's egress allows
        assert not _connect(a, family, vip_c)  # c: denied at c's veth, after the DNAT
        # The drop is counted where it happened: at c's veth, as an egress verdict.
        # Taking b out of a's egress closes the Service to b as well.
        assert env.count(c, Direction.EGRESS, DropReason.POLICY_DENIED) > denied_before
        env.policy(a, EndpointPolicy(False, True, frozenset()))
        assert not _connect(a, family, vip_b)
    finally:
        for s in servers:
            s.close()
