"""The lab's kube-proxy in nftables mode: the ruleset's shape against
pkg/proxy/nftables/proxier.go (no kernel), and one load into a namespace of its own."""

from __future__ import annotations

import re
import secrets
import subprocess
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import pytest

from enforcer.lab import kubeproxy_nft, proxymode
from enforcer.model.cluster import ClusterState
from tests.model.netpol_builders import ns, pod, state_of

CIDR4 = IPv4Network("10.0.0.0/8")
CIDR6 = IPv6Network("fd00:10::/32")
NODES = {"x/b": "node1", "x/c": "node2"}
NODE_PORT = [{"name": "p80", "port": 80, "targetPort": 8080, "nodePort": 30080}]


def service(name: str, cluster_ips: list[str], **spec: Any) -> dict[str, Any]:
    spec.setdefault("ports", [{"name": "p80", "port": 80, "targetPort": 8080}])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "x", "name": name},
        "spec": {"clusterIP": cluster_ips[0], "clusterIPs": cluster_ips, **spec},
    }


def cluster(*services: dict[str, Any]) -> ClusterState:
    """x/b (node1) and x/c (node2), both app=web, dual-stack, and the Services."""
    web = {"app": "web"}
    return state_of(
        ns("x"),
        pod("x", "b", web, ["10.180.0.2", "fd00:10:180::2"]),
        pod("x", "c", web, ["10.180.1.2", "fd00:10:180::1:2"]),
        *services,
    )


def rules(state: ClusterState, family: int = 4, node: str = "node1") -> list[str]:
    cidr = CIDR4 if family == 4 else CIDR6
    return kubeproxy_nft.ruleset(state, family, cidr, node, NODES).splitlines()


def chain_rules(lines: list[str], chain: str) -> list[str]:
    prefix = f"add rule ip kube-proxy {chain} "
    prefix6 = prefix.replace(" ip ", " ip6 ", 1)
    return [ln.split(" ", 5)[5] for ln in lines if ln.startswith((prefix, prefix6))]


def elements(lines: list[str], container: str) -> list[str]:
    pattern = re.compile(rf"^add element ip6? kube-proxy {container} \{{ (.*) \}}$")
    return [m.group(1) for ln in lines if (m := pattern.match(ln))]


def test_chain_names_are_kube_proxys() -> None:
    # The names kube-proxy's own tests expect (pkg/proxy/nftables/proxier_test.go).
    svc = cluster(service("svc1", ["172.30.0.41"])).services.services["x/svc1"]
    sp = svc.ports[0]
    assert kubeproxy_nft.service_chain_base(svc, sp).split("-", 1)[1] == "x/svc1/tcp/p80"
    assert kubeproxy_nft._hash_and_truncate("ns1/svc1/tcp/p80") == "ULMVA6XW-ns1/svc1/tcp/p80"
    assert (
        kubeproxy_nft._hash_and_truncate("ns1/svc1/tcp/p80__10.180.0.1/80")
        == "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    )
    assert (
        kubeproxy_nft._hash_and_truncate("ns1/svc1/tcp/p80__fd00.10.180..1/80")
        == "ZVRFLKHO-ns1/svc1/tcp/p80__fd00.10.180..1/80"
    )


def test_the_table_is_replaced_whole_in_one_transaction_with_kube_proxys_hooks() -> None:
    lines = rules(cluster())
    assert lines[:3] == [
        "add table ip kube-proxy",
        "delete table ip kube-proxy",
        'add table ip kube-proxy { comment "rules for kube-proxy" ; }',
    ]
    hooks = {
        m.group(1): (m.group(2), m.group(3), int(m.group(4)))
        for ln in lines
        if (m := re.match(r"add chain ip kube-proxy (\S+) \{ type (\w+) hook (\w+) priority "
                          r"(-?\d+) ; \}", ln))
    }  # fmt: skip
    assert hooks == {
        "filter-prerouting": ("filter", "prerouting", -110),
        "filter-input": ("filter", "input", -110),
        "filter-forward": ("filter", "forward", -110),
        "filter-output": ("filter", "output", -110),
        "filter-output-post-dnat": ("filter", "output", -90),
        "nat-prerouting": ("nat", "prerouting", -100),
        "nat-output": ("nat", "output", -100),
        "nat-postrouting": ("nat", "postrouting", 100),
    }
    assert chain_rules(lines, "nat-prerouting") == ["jump services"]
    assert chain_rules(lines, "nat-output") == ["jump services"]
    assert chain_rules(lines, "nat-postrouting") == ["jump masquerading"]
    assert chain_rules(lines, "services") == [
        "ip daddr . meta l4proto . th dport vmap @service-ips",
        "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport "
        "vmap @service-nodeports",
    ]
    assert chain_rules(lines, "mark-for-masquerade") == ["mark set mark or 0x004000"]
    assert chain_rules(lines, "masquerading") == [
        "mark and 0x004000 == 0 return",
        "mark set mark xor 0x004000",
        "masquerade fully-random",
    ]


def test_a_cluster_ip_picks_one_endpoint_at_random_and_dnats_to_its_target_port() -> None:
    lines = rules(cluster(service("web", ["172.30.0.41"], selector={"app": "web"})))
    svc_chain = "service-" + kubeproxy_nft._hash_and_truncate("x/web/tcp/p80")
    ep_b = "endpoint-" + kubeproxy_nft._hash_and_truncate("x/web/tcp/p80__10.180.0.2/8080")
    ep_c = "endpoint-" + kubeproxy_nft._hash_and_truncate("x/web/tcp/p80__10.180.1.2/8080")
    assert elements(lines, "service-ips") == [f"172.30.0.41 . tcp . 80 : goto {svc_chain}"]
    assert elements(lines, "cluster-ips") == ["172.30.0.41"]
    assert chain_rules(lines, svc_chain) == [
        # From outside the pod CIDR: masqueraded (kube-proxy's cluster-CIDR local detector).
        "ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
        f"numgen random mod 2 vmap {{ 0 : goto {ep_b} , 1 : goto {ep_c} }}",
    ]
    assert chain_rules(lines, ep_b) == [
        "ip saddr 10.180.0.2 jump mark-for-masquerade",  # hairpin
        "meta l4proto tcp dnat to 10.180.0.2:8080",
    ]
    assert elements(lines, "no-endpoint-services") == []


def test_a_node_port_with_cluster_policy_is_masqueraded_to_any_endpoint() -> None:
    web = service("web", ["172.30.0.41"], selector={"app": "web"}, type="NodePort",
                  ports=NODE_PORT)  # fmt: skip
    lines = rules(cluster(web))
    base = kubeproxy_nft._hash_and_truncate("x/web/tcp/p80")
    assert elements(lines, "service-nodeports") == [f"tcp . 30080 : goto external-{base}"]
    assert chain_rules(lines, f"external-{base}") == [
        "jump mark-for-masquerade",
        f"goto service-{base}",
    ]


@pytest.mark.parametrize("node", ["node1", "node3"])
def test_a_node_port_with_local_policy_uses_local_endpoints_only(node: str) -> None:
    web = service("web", ["172.30.0.41"], selector={"app": "web"}, type="NodePort",
                  externalTrafficPolicy="Local", externalIPs=["192.0.2.9"],
                  ports=NODE_PORT)  # fmt: skip
    state = cluster(web)
    lines = rules(state, node=node)
    base = kubeproxy_nft._hash_and_truncate("x/web/tcp/p80")
    short_circuits = [
        f'ip saddr 10.0.0.0/8 goto service-{base} comment "short-circuit pod traffic"',
        'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"',
        f'fib saddr type local goto service-{base} comment "short-circuit local traffic"',
    ]
    assert f"192.0.2.9 . tcp . 80 : goto external-{base}" in elements(lines, "service-ips")
    if node == "node1":  # x/b is here
        ep_b = "endpoint-" + kubeproxy_nft._hash_and_truncate("x/web/tcp/p80__10.180.0.2/8080")
        assert chain_rules(lines, f"external-{base}") == [*short_circuits, f"goto local-{base}"]
        assert chain_rules(lines, f"local-{base}") == [
            f"numgen random mod 1 vmap {{ 0 : goto {ep_b} }}"
        ]
        assert elements(lines, "no-endpoint-nodeports") == []
    else:  # none here: what is not short-circuited is dropped
        assert chain_rules(lines, f"external-{base}") == short_circuits
        assert chain_rules(lines, f"local-{base}") == []
        assert elements(lines, "no-endpoint-nodeports") == [
            'tcp . 30080 comment "x/web:p80" : drop'
        ]
        assert elements(lines, "no-endpoint-services") == [
            '192.0.2.9 . tcp . 80 comment "x/web:p80" : drop'
        ]


def test_a_service_without_endpoints_is_rejected_not_translated() -> None:
    lines = rules(cluster(service("none", ["172.30.0.9"], selector={"app": "nothing"})))
    assert elements(lines, "service-ips") == []
    assert elements(lines, "no-endpoint-services") == [
        '172.30.0.9 . tcp . 80 comment "x/none:p80" : goto reject-chain'
    ]
    assert not [ln for ln in lines if ln.startswith("add chain") and "/" in ln.split()[4]]
    assert chain_rules(lines, "reject-chain") == ["reject"]
    assert chain_rules(lines, "service-endpoints-check") == [
        "ip daddr . meta l4proto . th dport vmap @no-endpoint-services"
    ]


def test_ipv6_has_a_table_of_its_own() -> None:
    dual = service("web", ["172.30.0.41", "fd00:10:96::41"], selector={"app": "web"})
    only4 = service("v4", ["172.30.0.42"], selector={"app": "web"})
    lines = rules(cluster(dual, only4), family=6)
    assert lines[2] == 'add table ip6 kube-proxy { comment "rules for kube-proxy" ; }'
    ep = "endpoint-" + kubeproxy_nft._hash_and_truncate("x/web/tcp/p80__fd00.10.180..2/8080")
    assert chain_rules(lines, ep) == [
        "ip6 saddr fd00:10:180::2 jump mark-for-masquerade",
        "meta l4proto tcp dnat to [fd00:10:180::2]:8080",
    ]
    # The IPv4-only Service is not this family's proxier's.
    assert [e.split(" ")[0] for e in elements(lines, "service-ips")] == ["fd00:10:96::41"]
    assert "ip6 daddr != ::1" in chain_rules(lines, "services")[1]


def test_an_unknown_proxy_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="ipvs"):
        proxymode.sync("ipvs", "nowhere", cluster(), 4, CIDR4, "node1", NODES)


@pytest.mark.kernel
def test_the_ruleset_loads_and_replaces_itself_in_a_namespace() -> None:
    netns = f"enf-nft-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        web = service("web", ["172.30.0.41", "fd00:10:96::41"], selector={"app": "web"},
                      type="NodePort", externalTrafficPolicy="Local",
                      ports=NODE_PORT)  # fmt: skip
        for state in (cluster(web), cluster()):  # the second load replaces the first
            for family in (4, 6):
                proxymode.sync("nftables", netns, state, family,
                               CIDR4 if family == 4 else CIDR6, "node1", NODES, True)  # fmt: skip
            listed = subprocess.run(
                ["ip", "netns", "exec", netns, "nft", "list", "ruleset"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            for table in ("ip kube-proxy", "ip6 kube-proxy", "ip lab-cni", "ip6 lab-cni"):
                assert f"table {table} {{" in listed
            assert ("numgen random mod 2" in listed) == ("x/web" in state.services.services)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True)
