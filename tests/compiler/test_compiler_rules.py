"""One rule or event at a time: the tables the compiler writes and what an event touches."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from enforcer.compiler import Compiler
from enforcer.datapath.types import (
    FIRST_IDENTITY,
    IDENTITY_ANY,
    IDENTITY_WORLD,
    PROTO_ANY,
    PROTO_TCP,
    PROTO_UDP,
    Direction,
    EndpointPolicy,
    PolicyEntry,
)
from enforcer.model.cluster import ClusterState
from enforcer.model.objects import KIND_NAMESPACE, KIND_POD, ModelObject

from .builders import ns, pod, policy
from .simulator import Datapath

IN, OUT = Direction.INGRESS, Direction.EGRESS


class Harness:
    """A state, its compiler and the datapath the deltas build, driven like the agent."""

    def __init__(self, *objects: ModelObject, node: str | None = None) -> None:
        self.state = ClusterState()
        for o in objects:
            self.state.upsert(o)
        self.compiler = Compiler(self.state, node)
        self.dp = Datapath()
        self.last = self.compiler.full()
        self.dp.apply(self.last)

    def upsert(self, o: ModelObject):
        self.state.upsert(o)
        self.last = self.compiler.on_upsert(o)
        self.dp.apply(self.last)
        return self.last

    def remove(self, o: ModelObject):
        self.state.remove(type(o).__name__, getattr(o, "namespace", None), o.name)
        self.last = self.compiler.on_remove(o)
        self.dp.apply(self.last)
        return self.last

    def ident(self, ip: str) -> int:
        return self.dp.lookup(ip_address(ip))

    def allows(self, src: str, src_ip: str, dst: str, dst_ip: str, proto: str, port: int) -> bool:
        return self.dp.connection(src, ip_address(src_ip), dst, ip_address(dst_ip), proto, port)

    def to_ip(self, src: str, src_ip: str, ip: str, proto: str = "TCP", port: int = 80) -> bool:
        return self.dp.connection(src, ip_address(src_ip), None, ip_address(ip), proto, port)

    def from_ip(self, ip: str, dst: str, dst_ip: str, proto: str = "TCP", port: int = 80) -> bool:
        return self.dp.connection(None, ip_address(ip), dst, ip_address(dst_ip), proto, port)


def entries(h: Harness, key: str) -> set[PolicyEntry]:
    return set(h.compiler.endpoint_policy(key).entries)


# --- isolation and rule shapes ---------------------------------------------------------------


def test_unselected_pod_allows_everything() -> None:
    h = Harness(pod("a", "p", ["10.0.0.1"]))
    assert h.compiler.endpoint_policy("a/p") == EndpointPolicy.allow_all()


def test_policy_without_rules_isolates_and_allows_nothing() -> None:
    h = Harness(pod("a", "p", ["10.0.0.1"]), policy("a", "deny", policyTypes=["Ingress", "Egress"]))
    assert h.compiler.endpoint_policy("a/p") == EndpointPolicy(
        True, True, frozenset(), isolating_ingress=("a/deny",), isolating_egress=("a/deny",)
    )


def test_empty_rule_allows_any_peer_any_protocol() -> None:
    h = Harness(pod("a", "p", ["10.0.0.1"]), policy("a", "all", ingress=[{}]))
    assert entries(h, "a/p") == {PolicyEntry(IN, IDENTITY_ANY, PROTO_ANY, 0, 65535)}
    assert not h.compiler.endpoint_policy("a/p").egress_isolated


def test_port_defaults_to_tcp_and_end_port_is_a_range() -> None:
    h = Harness(
        pod("a", "p", ["10.0.0.1"]),
        policy("a", "r", ingress=[{"ports": [{"port": 80, "endPort": 90}, {"protocol": "UDP"}]}]),
    )
    assert entries(h, "a/p") == {
        PolicyEntry(IN, IDENTITY_ANY, PROTO_TCP, 80, 90),
        PolicyEntry(IN, IDENTITY_ANY, PROTO_UDP, 0, 65535),
    }


def test_pods_with_equal_labels_share_an_identity_and_selectors_pick_it() -> None:
    h = Harness(
        pod("a", "web1", ["10.0.0.1"], {"app": "web"}),
        pod("a", "web2", ["10.0.0.2"], {"app": "web"}),
        pod("a", "db", ["10.0.0.3"], {"app": "db"}),
        policy(
            "a",
            "db",
            podSelector={"matchLabels": {"app": "db"}},
            ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
        ),
    )
    web = h.ident("10.0.0.1")
    assert web == h.ident("10.0.0.2") >= FIRST_IDENTITY
    assert h.ident("10.0.0.3") not in (web, IDENTITY_WORLD)
    assert entries(h, "a/db") == {PolicyEntry(IN, web, PROTO_ANY, 0, 65535)}
    assert h.allows("a/web1", "10.0.0.1", "a/db", "10.0.0.3", "TCP", 5432)
    assert not h.from_ip("10.0.0.9", "a/db", "10.0.0.3", "TCP", 5432)
    assert h.ident("10.0.0.9") == IDENTITY_WORLD


def test_namespace_selector_and_pod_selector_in_one_peer_are_anded() -> None:
    h = Harness(
        ns("a"),
        ns("b", team="red"),
        ns("c"),
        pod("a", "dst", ["10.0.0.1"]),
        pod("b", "ok", ["10.0.0.2"], {"app": "x"}),
        pod("b", "wrongpod", ["10.0.0.3"], {"app": "y"}),
        pod("c", "wrongns", ["10.0.0.4"], {"app": "x"}),
        policy(
            "a",
            "np",
            ingress=[
                {
                    "from": [
                        {
                            "namespaceSelector": {"matchLabels": {"team": "red"}},
                            "podSelector": {"matchLabels": {"app": "x"}},
                        }
                    ]
                }
            ],
        ),
    )
    assert h.allows("b/ok", "10.0.0.2", "a/dst", "10.0.0.1", "TCP", 80)
    assert not h.allows("b/wrongpod", "10.0.0.3", "a/dst", "10.0.0.1", "TCP", 80)
    assert not h.allows("c/wrongns", "10.0.0.4", "a/dst", "10.0.0.1", "TCP", 80)


# --- named ports -----------------------------------------------------------------------------


def test_ingress_named_port_resolves_on_the_local_pod() -> None:
    h = Harness(
        pod("a", "p8080", ["10.0.0.1"], ports=[{"name": "http", "containerPort": 8080}]),
        pod("a", "p80", ["10.0.0.2"], ports=[{"name": "http", "containerPort": 80}]),
        pod(
            "a",
            "udp",
            ["10.0.0.3"],
            ports=[{"name": "http", "containerPort": 80, "protocol": "UDP"}],
        ),
        policy("a", "np", ingress=[{"ports": [{"port": "http"}]}]),
    )
    assert entries(h, "a/p8080") == {PolicyEntry(IN, IDENTITY_ANY, PROTO_TCP, 8080, 8080)}
    assert entries(h, "a/p80") == {PolicyEntry(IN, IDENTITY_ANY, PROTO_TCP, 80, 80)}
    assert entries(h, "a/udp") == set()  # name matches, protocol does not


def test_egress_named_port_resolves_per_peer_pod_and_never_on_addresses() -> None:
    h = Harness(
        pod("a", "src", ["10.0.0.1"], {"role": "client"}),
        pod(
            "a",
            "s8080",
            ["10.0.0.2"],
            {"role": "server"},
            [{"name": "http", "containerPort": 8080}],
        ),
        pod("a", "s80", ["10.0.0.3"], {"role": "other"}, [{"name": "http", "containerPort": 80}]),
        pod("a", "none", ["10.0.0.4"], {"role": "server"}),
        policy(
            "a",
            "np",
            podSelector={"matchLabels": {"role": "client"}},
            policyTypes=["Egress"],
            egress=[
                {"ports": [{"port": "http"}]},
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": "dns"}]},
            ],
        ),
    )
    # No `to`: every pod declaring the name, each on its own number.
    assert h.allows("a/src", "10.0.0.1", "a/s8080", "10.0.0.2", "TCP", 8080)
    assert not h.allows("a/src", "10.0.0.1", "a/s8080", "10.0.0.2", "TCP", 80)
    assert h.allows("a/src", "10.0.0.1", "a/s80", "10.0.0.3", "TCP", 80)
    assert not h.allows("a/src", "10.0.0.1", "a/s80", "10.0.0.3", "TCP", 8080)
    assert not h.allows("a/src", "10.0.0.1", "a/none", "10.0.0.4", "TCP", 80)
    for port in (80, 8080, 53):
        assert not h.to_ip("a/src", "10.0.0.1", "8.8.8.8", "TCP", port)
    egress_peers = {e.peer for e in entries(h, "a/src")}
    assert IDENTITY_ANY not in egress_peers and IDENTITY_WORLD not in egress_peers


# --- ipBlock ---------------------------------------------------------------------------------


def test_ipblock_with_except_partitions_addresses_and_matches_pod_ips() -> None:
    h = Harness(
        pod("a", "dst", ["10.1.0.1"]),
        pod("a", "inside", ["10.0.0.1"]),
        pod("a", "excepted", ["10.0.1.1"]),
        policy(
            "a",
            "np",
            podSelector={"matchLabels": {}},
            ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}}]}],
        ),
    )
    ids = h.compiler.identities()
    assert ids[ip_network("10.0.1.0/24")] == IDENTITY_WORLD  # overrides the /16
    assert ids[ip_network("10.0.0.0/16")] >= FIRST_IDENTITY
    assert h.from_ip("10.0.200.1", "a/dst", "10.1.0.1")
    assert not h.from_ip("10.0.1.200", "a/dst", "10.1.0.1")
    assert not h.from_ip("8.8.8.8", "a/dst", "10.1.0.1")
    assert h.allows("a/inside", "10.0.0.1", "a/dst", "10.1.0.1", "TCP", 80)
    assert not h.allows("a/excepted", "10.0.1.1", "a/dst", "10.1.0.1", "TCP", 80)
    # A pod inside the block is its own class (labels), distinct from the block's other space.
    assert h.ident("10.0.0.1") != ids[ip_network("10.0.0.0/16")]


def test_non_endpoint_pods_have_no_identity_of_their_own() -> None:
    h = Harness(
        pod("a", "host", ["192.168.0.5"], host_network=True),
        pod("a", "done", ["10.0.0.7"], phase="Succeeded"),
        pod("a", "p", ["10.0.0.1"]),
    )
    assert h.ident("192.168.0.5") == IDENTITY_WORLD
    assert h.ident("10.0.0.7") == IDENTITY_WORLD
    assert h.compiler.local_endpoints() == {"a/p"}


def test_dual_stack_pod_gets_both_host_prefixes() -> None:
    h = Harness(pod("a", "p", ["10.0.0.1", "fd00::1"], {"app": "x"}))
    ids = h.compiler.identities()
    assert ids[ip_network("10.0.0.1/32")] == ids[ip_network("fd00::1/128")] >= FIRST_IDENTITY


# --- incrementality --------------------------------------------------------------------------


def _web_db() -> list[ModelObject]:
    return [
        pod("a", "web1", ["10.0.0.1"], {"app": "web"}),
        pod("a", "db", ["10.0.0.3"], {"app": "db"}),
        pod("a", "other", ["10.0.0.4"], {"app": "other"}),
        policy(
            "a",
            "db",
            podSelector={"matchLabels": {"app": "db"}},
            ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
        ),
        policy("a", "other", podSelector={"matchLabels": {"app": "other"}}, ingress=[{}]),
    ]


def test_pod_of_an_existing_class_costs_one_identity_write() -> None:
    h = Harness(*_web_db())
    delta = h.upsert(pod("a", "web2", ["10.0.0.2"], {"app": "web"}, node="node-2"))
    assert delta.identity_changes == {ip_network("10.0.0.2/32"): h.ident("10.0.0.1")}
    assert set(delta.endpoints) == {"a/web2"}  # only its own (new, local) table
    h2 = Harness(*_web_db(), node="node-1")
    delta = h2.upsert(pod("a", "web2", ["10.0.0.2"], {"app": "web"}, node="node-2"))
    assert delta.endpoints == {} and len(delta.identity_changes) == 1


def test_new_class_rewrites_only_endpoints_whose_rules_match_it() -> None:
    h = Harness(*_web_db(), node="node-1")
    delta = h.upsert(pod("a", "web3", ["10.0.0.5"], {"app": "api"}, node="node-2"))
    assert delta.endpoints == {}  # a new class, but no rule of a local endpoint matches it
    assert delta.born_identities == {h.ident("10.0.0.5")}
    delta = h.upsert(
        policy(
            "a",
            "db",
            podSelector={"matchLabels": {"app": "db"}},
            ingress=[{"from": [{"podSelector": {"matchLabels": {"v": "2"}}}]}],
        )
    )
    assert set(delta.endpoints) == {"a/db"} and not delta.identity_changes
    delta = h.upsert(pod("a", "web4", ["10.0.0.6"], {"v": "2"}, node="node-2"))
    assert set(delta.endpoints) == {"a/db"}
    assert h.from_ip("10.0.0.6", "a/db", "10.0.0.3", "TCP", 1)
    assert not h.from_ip("10.0.0.5", "a/db", "10.0.0.3", "TCP", 1)


def test_label_change_moves_the_pod_to_another_class() -> None:
    h = Harness(*_web_db())
    assert h.allows("a/web1", "10.0.0.1", "a/db", "10.0.0.3", "TCP", 1)
    delta = h.upsert(pod("a", "web1", ["10.0.0.1"], {"app": "nope"}))
    assert ip_network("10.0.0.1/32") in delta.identity_changes
    assert not h.allows("a/web1", "10.0.0.1", "a/db", "10.0.0.3", "TCP", 1)
    assert delta.dead_identities and delta.born_identities


def test_policy_change_touches_only_the_endpoints_it_selects() -> None:
    h = Harness(*_web_db())
    delta = h.upsert(policy("a", "db", podSelector={"matchLabels": {"app": "db"}}, ingress=[]))
    assert set(delta.endpoints) == {"a/db"} and not delta.identity_changes
    assert not h.allows("a/web1", "10.0.0.1", "a/db", "10.0.0.3", "TCP", 1)
    delta = h.remove(h.state.policies["a/db"])
    assert set(delta.endpoints) == {"a/db"}
    assert h.compiler.endpoint_policy("a/db") == EndpointPolicy.allow_all()


def test_namespace_relabel_changes_tables_not_identities() -> None:
    h = Harness(
        ns("a"),
        ns("b", team="blue"),
        pod("a", "dst", ["10.0.0.1"]),
        pod("a", "bystander", ["10.0.0.9"], {"x": "y"}),
        pod("b", "src", ["10.0.0.2"]),
        policy(
            "a",
            "np",
            podSelector={"matchLabels": {}},
            ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "red"}}}]}],
        ),
        policy("a", "np2", podSelector={"matchLabels": {"x": "y"}}, ingress=[{}]),
    )
    assert not h.allows("b/src", "10.0.0.2", "a/dst", "10.0.0.1", "TCP", 80)
    delta = h.upsert(ns("b", team="red"))
    assert not delta.identity_changes
    assert set(delta.endpoints) == {"a/dst", "a/bystander"}  # both are selected by np
    assert h.allows("b/src", "10.0.0.2", "a/dst", "10.0.0.1", "TCP", 80)
    delta = h.remove(h.state.namespaces["b"])  # back to the name label only
    assert not h.allows("b/src", "10.0.0.2", "a/dst", "10.0.0.1", "TCP", 80)
    h.state.remove(KIND_NAMESPACE, None, "zzz")  # unknown: no effect, no crash


def test_ip_reuse_follows_uids_and_late_deletes_do_not_remove_the_new_owner() -> None:
    old = pod("a", "old", ["10.0.0.1"], {"app": "old"}, uid="u1")
    h = Harness(old, pod("a", "x", ["10.0.0.2"]))
    new = pod("a", "new", ["10.0.0.1"], {"app": "new"}, uid="u2")
    delta = h.upsert(new)  # the new pod reports the IP before the old one is deleted
    assert delta.ip_owner_changes == {ip_address("10.0.0.1")}
    new_ident = h.ident("10.0.0.1")
    delta = h.remove(old)  # the late delete
    assert ip_network("10.0.0.1/32") not in delta.identity_changes
    assert h.ident("10.0.0.1") == new_ident
    assert not delta.ip_owner_changes
    # The old pod finishing (Succeeded, IP still listed) does not claim it back either.
    delta = h.upsert(pod("a", "old", ["10.0.0.1"], {"app": "old"}, uid="u1", phase="Succeeded"))
    assert h.ident("10.0.0.1") == new_ident and not delta.identity_changes


def test_an_address_gaining_an_owner_is_not_flushed_but_changes_its_identity() -> None:
    """Flushed when its owner went; what was made since is re-checked at its next packet
    because the address's identity changes (the kernel's policy epoch moves)."""
    h = Harness(pod("a", "x", ["10.0.0.2"]))
    first = pod("a", "p", ["10.0.0.1"], {"app": "p"}, uid="u1")
    delta = h.upsert(first)
    assert not delta.ip_owner_changes
    assert ip_network("10.0.0.1/32") in delta.identity_changes
    delta = h.remove(first)
    assert delta.ip_owner_changes == {ip_address("10.0.0.1")}
    delta = h.upsert(pod("a", "q", ["10.0.0.1"], {"app": "p"}, uid="u2"))  # same labels
    assert not delta.ip_owner_changes
    assert delta.identity_changes.get(ip_network("10.0.0.1/32")) is not None


def test_pod_delete_removes_its_entries_and_endpoint() -> None:
    h = Harness(pod("a", "p", ["10.0.0.1", "fd00::1"]))
    delta = h.remove(h.state.pods["a/p"])
    assert delta.identity_changes == {
        ip_network("10.0.0.1/32"): None,
        ip_network("fd00::1/128"): None,
    }
    assert delta.removed_endpoints == {"a/p"}
    assert delta.ip_owner_changes == {ip_address("10.0.0.1"), ip_address("fd00::1")}
    assert h.dp.identities == {} and h.dp.policies == {}


def test_only_pods_on_this_node_get_tables() -> None:
    h = Harness(
        pod("a", "here", ["10.0.0.1"]), pod("a", "there", ["10.0.0.2"], node="n2"), node="node-1"
    )
    assert h.compiler.local_endpoints() == {"a/here"}
    assert ip_network("10.0.0.2/32") in h.compiler.identities()
    delta = h.upsert(pod("a", "there", ["10.0.0.2"], node="node-1"))  # e.g. a static pod
    assert set(delta.endpoints) == {"a/there"}


def test_identity_numbers_are_never_reused_and_full_keeps_them() -> None:
    h = Harness(pod("a", "p", ["10.0.0.1"], {"v": "1"}))
    first = h.ident("10.0.0.1")
    h.upsert(pod("a", "p", ["10.0.0.1"], {"v": "2"}))
    second = h.ident("10.0.0.1")
    h.upsert(pod("a", "p", ["10.0.0.1"], {"v": "1"}))
    assert len({first, second, h.ident("10.0.0.1")}) == 3
    assert h.compiler.full().is_empty()  # a relist of the same state rewrites nothing


def test_remove_of_unknown_pod_is_harmless() -> None:
    h = Harness(pod("a", "p", ["10.0.0.1"]))
    h.state.remove(KIND_POD, "a", "ghost")
    assert h.compiler.on_remove(pod("a", "ghost", ["10.0.0.1"], uid="u9")).is_empty()


@pytest.mark.parametrize("bad", [object(), 42])
def test_unknown_objects_are_refused(bad: object) -> None:
    h = Harness()
    with pytest.raises(TypeError):
        h.compiler.on_upsert(bad)  # type: ignore[arg-type]


def test_planned_pods_without_ips_get_tables_but_no_identity() -> None:
    # The analyzer's case: manifests carry no status, yet their pods are endpoints.
    state = ClusterState(planned_pods=True)
    for o in (
        pod("a", "web", [], {"app": "web"}),
        pod("a", "db", [], {"app": "db"}),
        policy("a", "db", podSelector={"matchLabels": {"app": "db"}}, ingress=[{}]),
    ):
        state.upsert(o)
    compiler = Compiler(state, None)
    delta = compiler.full()
    assert set(delta.endpoints) == {"a/web", "a/db"} and not delta.identity_changes
    assert compiler.endpoint_policy("a/db").ingress_isolated


def test_namespace_delete_with_pods_left_falls_back_to_the_name_label() -> None:
    h = Harness(
        ns("b", team="red"),
        pod("a", "dst", ["10.0.0.1"]),
        pod("b", "src", ["10.0.0.2"]),
        policy(
            "a",
            "np",
            ingress=[
                {"from": [{"namespaceSelector": {}}]},
                {
                    "from": [{"namespaceSelector": {"matchLabels": {"team": "red"}}}],
                    "ports": [{"port": 81}],
                },
            ],
        ),
    )
    assert h.allows("b/src", "10.0.0.2", "a/dst", "10.0.0.1", "TCP", 80)
    h.remove(h.state.namespaces["b"])
    assert h.allows("b/src", "10.0.0.2", "a/dst", "10.0.0.1", "TCP", 80)  # {} still matches
    h.upsert(
        policy(
            "a", "np", ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "red"}}}]}]
        )
    )
    assert not h.allows("b/src", "10.0.0.2", "a/dst", "10.0.0.1", "TCP", 80)
