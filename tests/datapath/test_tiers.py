"""Cluster-scoped tiers with real packets: manifests parsed by the model, compiled (deny entries
and all), written to the session's datapath as the agent writes them, then TCP and UDP from
real sockets (SCTP is probed in the lab: this machine's kernel has no SCTP sockets). Each step
also asks the model, so a table that disagrees with it fails here.

Revocation: an Admin Deny written while a TCP stream and a UDP exchange run stops both at
their next packet; removing it lets new ones through again."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from enforcer.compiler import Compiler
from enforcer.compiler.delta import CompileDelta
from enforcer.model.cluster import ClusterState
from enforcer.model.evaluate import evaluate
from enforcer.model.loader import parse_object
from enforcer.model.parse_clusterpolicy import parse_cluster_object
from enforcer.topology import Pod
from tests.datapath.conftest import Env
from tests.datapath.net import (
    TcpServer,
    UdpServer,
    addr,
    established_tcp,
    family_af,
    is_cut,
    tcp_connect,
    udp_roundtrip,
)

pytestmark = pytest.mark.kernel

CNP = "policy.networking.k8s.io/v1alpha2"


def _namespace(name: str, team: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"team": team}}}


def _pod(pod: Pod, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": namespace, "name": pod.name, "uid": pod.name,
                         "labels": labels},
            "spec": {"containers": [{"name": "c", "ports": [
                {"name": "web", "containerPort": 80, "protocol": "TCP"}]}]},
            "status": {"phase": "Running",
                       "podIPs": [{"ip": str(pod.ipv4)}, {"ip": str(pod.ipv6)}]}}


def _cnp(name: str, tier: str, priority: int, ingress: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": CNP, "kind": "ClusterNetworkPolicy", "metadata": {"name": name},
            "spec": {"tier": tier, "priority": priority,
                     "subject": {"namespaces": {"matchLabels": {"team": "a"}}},
                     "ingress": ingress}}


def _from_team(team: str) -> list[dict[str, Any]]:
    return [{"namespaces": {"matchLabels": {"team": team}}}]


class _Cluster:
    def __init__(self, env: Env, pods: dict[str, Pod]) -> None:
        self.env, self.pods = env, pods
        self.state = ClusterState()
        self.compiler: Compiler | None = None

    def _parse(self, raw: dict[str, Any]) -> Any:
        obj = parse_object(raw) or parse_cluster_object(raw, "test")
        assert obj is not None, raw
        return obj

    def load(self, *raws: dict[str, Any]) -> None:
        for raw in raws:
            self.state.upsert(self._parse(raw))
        self.compiler = Compiler(self.state, None)
        self._write(self.compiler.full())

    def upsert(self, raw: dict[str, Any]) -> None:
        obj = self._parse(raw)
        self.state.upsert(obj)
        assert self.compiler is not None
        self._write(self.compiler.on_upsert(obj))

    def remove(self, raw: dict[str, Any]) -> None:
        obj = self._parse(raw)
        self.state.remove(raw["kind"], None, obj.name)
        assert self.compiler is not None
        self._write(self.compiler.on_remove(obj))

    def _write(self, delta: CompileDelta) -> None:
        """Identities first, then the endpoints' tables (the order of the agent's plan)."""
        self.env.dp.set_identities(dict(delta.identity_changes))
        for key, policy in delta.endpoints.items():
            self.env.policy(self.pods[key], policy)

    def model(self, src: str, dst: str, port: int, protocol: str) -> bool:
        return evaluate(self.state, src, dst, port, protocol, 4).allowed


def test_tiers_decide_with_packets(routed_env: Env) -> None:
    env = routed_env
    web, friend, stranger = env.pod("web"), env.pod("friend"), env.pod("stranger")
    pods = {"a/web": web, "a/friend": friend, "b/stranger": stranger}
    cluster = _Cluster(env, pods)
    deny_b = _cnp("deny-team-b", "Admin", 10, [
        {"name": "deny-b-web", "action": "Deny", "from": _from_team("b"),
         "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]},
        {"name": "deny-b-udp", "action": "Deny", "from": _from_team("b"),
         "protocols": [{"udp": {"destinationPort": {"number": 53}}}]},
    ])
    cluster.load(_namespace("a", "a"), _namespace("b", "b"),
                 _pod(web, "a", {"app": "web"}), _pod(friend, "a", {"app": "friend"}),
                 _pod(stranger, "b", {"app": "stranger"}), deny_b)
    with TcpServer(web, 4, 80), TcpServer(web, 4, 81), UdpServer(web, 4, 53):
        # Everything but what the Deny names: the pod has no NetworkPolicy (its wildcard
        # table allows everything, the stranger's own entries deny TCP 80 and UDP 53).
        assert cluster.model("b/stranger", "a/web", 80, "TCP") is False
        assert not tcp_connect(stranger, web, 4, 80, timeout=0.5)
        assert not udp_roundtrip(stranger, web, 4, 53)
        assert tcp_connect(stranger, web, 4, 81)
        assert tcp_connect(friend, web, 4, 80)
        assert udp_roundtrip(friend, web, 4, 53)
        with TcpServer(web, 6, 80):  # the stranger's class has both its addresses
            assert not tcp_connect(stranger, web, 6, 80, timeout=0.5)
            assert tcp_connect(friend, web, 6, 80)

        # NetworkPolicy isolates web to the friend on TCP 80; a Pass of the friend's team
        # hands it to that policy; the Baseline tier denies what no one else decided: only
        # isolated directions reach NetworkPolicy, so the Baseline applies to nothing here.
        cluster.upsert({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": "a", "name": "web-from-friend"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "friend"}}}],
                                  "ports": [{"port": "web"}]}]}})
        cluster.upsert(_cnp("accept-b-81", "Admin", 20, [
            {"name": "accept-b-81", "action": "Accept", "from": _from_team("b"),
             "protocols": [{"tcp": {"destinationPort": {"number": 81}}}]}]))
        for src, pod in (("a/friend", friend), ("b/stranger", stranger)):
            for port in (80, 81):
                want = cluster.model(src, "a/web", port, "TCP")
                got = tcp_connect(pod, web, 4, port, timeout=0.5 if not want else 2.0)
                assert got == want, (src, port, want)
        assert tcp_connect(stranger, web, 4, 81)  # the Admin Accept beats the isolation
        assert not tcp_connect(friend, web, 4, 81, timeout=0.5)  # isolated, no rule


def test_admin_deny_revokes_running_flows(routed_env: Env) -> None:
    env = routed_env
    web, client = env.pod("web"), env.pod("client")
    pods = {"a/web": web, "b/client": client}
    cluster = _Cluster(env, pods)
    cluster.load(_namespace("a", "a"), _namespace("b", "b"),
                 _pod(web, "a", {"app": "web"}), _pod(client, "b", {"app": "client"}))
    deny = _cnp("incident", "Admin", 1, [
        {"name": "cut-team-b", "action": "Deny", "from": _from_team("b")}])
    with UdpServer(web, 4, 53), established_tcp(client, web, 4, 80) as stream:
        udp = client.run(lambda: socket.socket(family_af(4), socket.SOCK_DGRAM))
        udp.settimeout(0.5)
        try:
            udp.sendto(b"before", (addr(web, 4), 53))
            assert udp.recvfrom(64)[0] == b"before"
            cluster.upsert(deny)
            # The same flows' next packets: the stream's and the exchange's.
            assert is_cut(stream)
            udp.sendto(b"after", (addr(web, 4), 53))
            with pytest.raises(TimeoutError):
                udp.recvfrom(64)
        finally:
            udp.close()
    cluster.remove(deny)
    with TcpServer(web, 4, 80):
        assert tcp_connect(client, web, 4, 80)
    assert udp_roundtrip_ok(client, web)


def udp_roundtrip_ok(client: Pod, web: Pod) -> bool:
    with UdpServer(web, 4, 54):
        return udp_roundtrip(client, web, 4, 54)
