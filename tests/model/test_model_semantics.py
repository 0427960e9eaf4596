"""Every NetworkPolicy rule of DESIGN-NOTES, each on its own tiny cluster, with the traps."""

from __future__ import annotations

import pytest
from netpol_builders import cluster, ns, pod, policy

from enforcer.model.evaluate import evaluate, evaluate_ip

WEB = {"app": "web"}
DB = {"app": "db"}


def allowed(state, src, dst, port=80, protocol="TCP", family=None) -> bool:
    return evaluate(state, src, dst, port, protocol, family).allowed


def two_pods(*policies, a_labels=WEB, b_labels=DB):
    return cluster(
        ns("x"),
        pod("x", "a", a_labels, ports=[{"containerPort": 80}]),
        pod("x", "b", b_labels, ports=[{"containerPort": 80}]),
        *policies,
    )


def two_namespaces(*policies, a="a", b="b"):
    """x/<a> (web) and y/<b> (db)."""
    return cluster(ns("x"), ns("y"), pod("x", a, WEB), pod("y", b, DB), *policies)


NAME_LABEL = "kubernetes.io/metadata.name"


def named_namespace(name):
    """A peer: every pod of the namespace called `name`."""
    return {"namespaceSelector": {"matchLabels": {NAME_LABEL: name}}}


def db_ingress(*rules, name="p"):
    """A policy that isolates the db pods' ingress and allows `rules`."""
    return policy("x", name, podSelector={"matchLabels": DB}, ingress=list(rules))


def web_egress(*rules, name="p"):
    """A policy that isolates the web pods' egress (only) and allows `rules`."""
    return policy(
        "x", name, podSelector={"matchLabels": WEB}, policyTypes=["Egress"], egress=list(rules)
    )


def from_(*peers):
    return {"from": list(peers)}


# --- isolation and policyTypes defaulting ----------------------------------------------------


def test_no_policy_allows_everything():
    s = two_pods()
    assert allowed(s, "x/a", "x/b") and allowed(s, "x/b", "x/a", 5353, "UDP")


def test_empty_pod_selector_without_types_denies_ingress_only():
    s = two_pods(policy("x", "deny"))
    v = evaluate(s, "x/a", "x/b", 80, "TCP")
    assert not v.allowed
    assert v.ingress.isolated and not v.ingress.allowed and v.ingress.isolating == ["x/deny"]
    assert not v.egress.isolated and v.egress.allowed


def test_trap_egress_empty_list_without_policy_types_isolates_ingress_not_egress():
    # `egress: []` defaults policyTypes to [Ingress]: egress stays open, ingress is denied.
    s = two_namespaces(policy("x", "p", egress=[]))
    assert s.policies["x/p"].policy_types == {"Ingress"}
    assert allowed(s, "x/a", "y/b")  # egress of x/a not isolated
    assert not allowed(s, "y/b", "x/a")  # ingress of x/a denied


def test_egress_rules_without_policy_types_also_isolate_ingress():
    s = two_namespaces(policy("x", "p", egress=[{"to": [{"namespaceSelector": {}}]}]))
    assert s.policies["x/p"].policy_types == {"Ingress", "Egress"}
    assert allowed(s, "x/a", "y/b")
    assert not allowed(s, "y/b", "x/a")


def test_explicit_egress_policy_with_no_rules_denies_all_egress():
    s = two_pods(policy("x", "p", podSelector={"matchLabels": WEB}, policyTypes=["Egress"]))
    assert not allowed(s, "x/a", "x/b")
    assert allowed(s, "x/b", "x/a")  # ingress untouched


def test_policy_types_ingress_ignores_egress_rules():
    s = two_pods(
        policy(
            "x",
            "p",
            podSelector={"matchLabels": WEB},
            policyTypes=["Ingress"],
            egress=[{"to": [{"podSelector": {"matchLabels": {"app": "none"}}}]}],
        ),
    )
    v = evaluate(s, "x/a", "x/b", 80, "TCP")
    assert not v.egress.isolated and v.allowed


# --- empty vs missing ------------------------------------------------------------------------


def test_ingress_with_one_empty_rule_allows_all():
    s = two_pods(policy("x", "deny"), policy("x", "all", ingress=[{}]))
    v = evaluate(s, "x/a", "x/b", 12345, "UDP")
    assert v.allowed and v.ingress.allowing == [("x/all", 0)]


def test_trap_from_empty_list_matches_all_sources():
    s = two_namespaces(policy("x", "p", ingress=[{"from": []}]))
    assert allowed(s, "y/b", "x/a")


@pytest.mark.parametrize(
    ("ports", "admitted", "refused"),
    [
        pytest.param(
            [{}],
            [(1, "TCP"), (65535, "TCP")],
            [(80, "UDP"), (80, "SCTP")],
            id="trap-one-empty-item-means-all-tcp-ports",
        ),
        pytest.param(
            [{"protocol": "UDP"}],
            [(1, "UDP"), (53, "UDP"), (65535, "UDP")],
            [(53, "TCP")],
            id="protocol-only-allows-every-port-of-that-protocol",
        ),
        pytest.param(
            [{"protocol": "SCTP", "port": 80}],
            [(80, "SCTP")],
            [(80, "TCP")],
            id="sctp-only-rule-still-isolates-tcp",
        ),
        pytest.param(
            [{"port": 53}], [(53, "TCP")], [(53, "UDP")], id="port-without-protocol-is-tcp-only"
        ),
        pytest.param(
            [{"port": 8000, "endPort": 8010}],
            [(8000, "TCP"), (8005, "TCP"), (8010, "TCP")],
            [(7999, "TCP"), (8011, "TCP")],
            id="end-port-range-is-inclusive",
        ),
    ],
)
def test_ingress_ports_admit_exactly(ports, admitted, refused):
    s = two_pods(db_ingress({"ports": ports}))
    assert all(allowed(s, "x/a", "x/b", port, proto) for port, proto in admitted)
    assert not any(allowed(s, "x/a", "x/b", port, proto) for port, proto in refused)


# --- peers -----------------------------------------------------------------------------------


def three_namespaces(*policies):
    return cluster(
        ns("x", team="red"),
        ns("y", team="blue"),
        ns("z", team="red"),
        pod("x", "a", WEB),
        pod("x", "b", DB),
        pod("y", "a", WEB),
        pod("y", "b", DB),
        pod("z", "a", WEB),
        pod("z", "b", DB),
        *policies,
    )


def sources_allowed(s, dst):
    return {src for src in s.endpoint_keys() if src != dst and allowed(s, src, dst)}


RED, BLUE = {"matchLabels": {"team": "red"}}, {"matchLabels": {"team": "blue"}}


@pytest.mark.parametrize(
    ("peers", "sources"),
    [
        pytest.param(
            [{"podSelector": {"matchLabels": WEB}}],
            {"x/a"},
            id="pod-selector-alone-means-the-policys-own-namespace",
        ),
        pytest.param(
            [{"namespaceSelector": RED}],
            {"x/a", "z/a", "z/b"},
            id="namespace-selector-alone-means-all-pods-of-those-namespaces",
        ),
        pytest.param(
            [{"namespaceSelector": {}, "podSelector": {"matchLabels": WEB}}],
            {"x/a", "y/a", "z/a"},
            id="empty-namespace-selector-means-every-namespace",
        ),
        pytest.param(
            [{"namespaceSelector": BLUE, "podSelector": {"matchLabels": WEB}}],
            {"y/a"},
            id="pod-and-namespace-selector-in-one-item-are-anded",
        ),
        pytest.param(
            [{"namespaceSelector": BLUE}, {"podSelector": {"matchLabels": WEB}}],
            {"x/a", "y/a", "y/b"},
            id="pod-and-namespace-selector-in-separate-items-are-ored",
        ),
    ],
)
def test_peers_select_exactly(peers, sources):
    s = three_namespaces(db_ingress(from_(*peers)))
    assert sources_allowed(s, "x/b") == sources


def test_namespace_name_label_selects_by_name_and_cannot_be_spoofed():
    s = cluster(
        ns("x"),
        ns("evil", **{NAME_LABEL: "trusted"}),
        pod("x", "dst", DB),
        pod("evil", "src", WEB),
        pod("trusted", "src", WEB),
        policy("x", "p", ingress=[from_(named_namespace("trusted"))]),
    )
    # "trusted" has no Namespace object: its identity comes from the pods' namespace field.
    assert s.namespace_identity("evil").labels[NAME_LABEL] == "evil"
    assert sources_allowed(s, "x/dst") == {"trusted/src"}


def test_match_expressions_operators():
    def only(expr):
        s = cluster(
            ns("x"),
            pod("x", "dst", {"role": "dst"}),
            pod("x", "red", {"color": "red"}),
            pod("x", "blue", {"color": "blue"}),
            pod("x", "none", {}),
            policy(
                "x",
                "p",
                podSelector={"matchLabels": {"role": "dst"}},
                ingress=[{"from": [{"podSelector": {"matchExpressions": [expr]}}]}],
            ),
        )
        return sources_allowed(s, "x/dst")

    assert only({"key": "color", "operator": "In", "values": ["red"]}) == {"x/red"}
    # NotIn and DoesNotExist match pods without the key (x/none, and the dst pod itself).
    assert only({"key": "color", "operator": "NotIn", "values": ["red"]}) == {"x/blue", "x/none"}
    assert only({"key": "color", "operator": "Exists"}) == {"x/red", "x/blue"}
    assert only({"key": "color", "operator": "DoesNotExist"}) == {"x/none"}


def test_match_labels_and_expressions_are_anded():
    s = cluster(
        ns("x"),
        pod("x", "dst", {"role": "dst"}),
        pod("x", "a", {"app": "web", "env": "prod"}),
        pod("x", "b", {"app": "web", "env": "dev"}),
        policy(
            "x",
            "p",
            podSelector={"matchLabels": {"role": "dst"}},
            ingress=[
                {
                    "from": [
                        {
                            "podSelector": {
                                "matchLabels": {"app": "web"},
                                "matchExpressions": [
                                    {"key": "env", "operator": "NotIn", "values": ["dev"]}
                                ],
                            }
                        }
                    ]
                }
            ],
        ),
    )
    assert sources_allowed(s, "x/dst") == {"x/a"}


# --- ports -----------------------------------------------------------------------------------


def test_named_ingress_port_resolves_on_the_destination_pod():
    s = cluster(
        ns("x"),
        pod("x", "client", WEB, ports=[{"name": "http", "containerPort": 9999}]),
        pod("x", "server", DB, ports=[{"name": "http", "containerPort": 8080}]),
        db_ingress({"ports": [{"port": "http"}]}),
    )
    assert allowed(s, "x/client", "x/server", 8080)
    assert not allowed(s, "x/client", "x/server", 9999)  # the source's number does not count


def test_trap_named_port_with_protocol_mismatch_matches_nothing():
    s = cluster(
        ns("x"),
        pod("x", "client", WEB),
        pod("x", "server", DB, ports=[{"name": "dns", "containerPort": 53, "protocol": "UDP"}]),
        db_ingress({"ports": [{"port": "dns"}]}),
    )
    assert not allowed(s, "x/client", "x/server", 53, "UDP")
    assert not allowed(s, "x/client", "x/server", 53, "TCP")


def test_named_egress_port_resolves_per_destination_pod():
    s = cluster(
        ns("x"),
        pod("x", "client", WEB),
        pod("x", "s1", DB, ports=[{"name": "api", "containerPort": 8080}]),
        pod("x", "s2", DB, ports=[{"name": "api", "containerPort": 9090}]),
        web_egress({"ports": [{"port": "api"}]}),  # empty `to`: any pod with that port
    )
    assert allowed(s, "x/client", "x/s1", 8080) and not allowed(s, "x/client", "x/s1", 9090)
    assert allowed(s, "x/client", "x/s2", 9090) and not allowed(s, "x/client", "x/s2", 8080)


def test_named_egress_port_never_matches_an_ip_block_destination():
    s = cluster(
        ns("x"),
        pod("x", "client", WEB),
        web_egress(
            {
                "to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}],
                "ports": [{"port": "http"}, {"port": 443}],
            }
        ),
    )
    assert not evaluate_ip(s, "x/client", "192.0.2.7", 80, "TCP").allowed
    assert evaluate_ip(s, "x/client", "192.0.2.7", 443, "TCP").allowed


def test_named_ingress_port_works_with_ip_block_source():
    s = cluster(
        ns("x"),
        pod("x", "server", DB, ports=[{"name": "http", "containerPort": 8080}]),
        policy(
            "x",
            "p",
            ingress=[
                {"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"port": "http"}]}
            ],
        ),
    )
    assert evaluate_ip(s, "x/server", "192.0.2.7", 8080, "TCP", "Ingress").allowed
    assert not evaluate_ip(s, "x/server", "198.51.100.1", 8080, "TCP", "Ingress").allowed


# --- ipBlock ---------------------------------------------------------------------------------


def test_ip_block_with_except_matches_pod_ips():
    s = cluster(
        ns("x"),
        pod("x", "dst", DB),
        pod("x", "in", WEB, ips=["10.9.0.5"]),
        pod("x", "excepted", WEB, ips=["10.9.1.5"]),
        pod("x", "out", WEB, ips=["10.8.0.5"]),
        db_ingress(from_({"ipBlock": {"cidr": "10.9.0.0/16", "except": ["10.9.1.0/24"]}})),
    )
    assert sources_allowed(s, "x/dst") == {"x/in"}


def test_excepted_ip_allowed_by_another_policy():
    s = cluster(
        ns("x"),
        pod("x", "dst", DB),
        pod("x", "src", WEB, ips=["10.9.1.5"]),
        policy(
            "x",
            "p1",
            ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.9.1.5/32"]}}]}],
        ),
        policy("x", "p2", ingress=[{"from": [{"ipBlock": {"cidr": "10.9.1.5/32"}}]}]),
    )
    v = evaluate(s, "x/src", "x/dst", 80, "TCP")
    assert v.allowed and v.ingress.allowing == [("x/p2", 0)]


def test_dual_stack_pods_match_ip_blocks_per_family():
    s = cluster(
        ns("x"),
        pod("x", "dst", DB, ips=["10.1.0.2", "fd00::2"]),
        pod("x", "src", WEB, ips=["10.1.0.3", "fd00::3"]),
        db_ingress(from_({"ipBlock": {"cidr": "fd00::/64"}})),
    )
    assert allowed(s, "x/src", "x/dst", family=6)
    assert not allowed(s, "x/src", "x/dst", family=4)  # v4 0.0.0.0/0 style gaps are real
    assert allowed(s, "x/src", "x/dst")  # any family: one of its IPs matches
    assert s.pods_by_ip("fd00::3") == "x/src" and s.pods_by_ip("10.1.0.3") == "x/src"
    assert evaluate_ip(s, "x/src", "fd00::2", 80, "TCP").allowed
    assert not evaluate_ip(s, "x/src", "10.1.0.2", 80, "TCP").allowed


def test_ip_block_does_not_match_selector_peers_of_outside_addresses():
    s = cluster(
        ns("x"),
        pod("x", "client", WEB),
        web_egress({"to": [{"namespaceSelector": {}}]}),
    )
    assert not evaluate_ip(s, "x/client", "8.8.8.8", 53, "UDP").allowed


# --- combination -------------------------------------------------------------------------------


def test_policies_are_additive():
    s = three_namespaces(
        db_ingress(from_({"podSelector": {"matchLabels": WEB}}), name="p1"),
        db_ingress(from_({"namespaceSelector": BLUE}), name="p2"),
    )
    assert sources_allowed(s, "x/b") == {"x/a", "y/a", "y/b"}


def test_source_egress_denial_wins_even_if_destination_allows():
    s = two_namespaces(
        policy("x", "deny-egress", policyTypes=["Egress"]),
        policy("y", "allow-all", ingress=[{}]),
        a="client",
        b="server",
    )
    v = evaluate(s, "x/client", "y/server", 80, "TCP")
    assert not v.allowed and v.ingress.allowed and not v.egress.allowed
    assert v.egress.isolating == ["x/deny-egress"]


def test_both_directions_allowed_gives_allowed():
    s = two_namespaces(
        policy(
            "x",
            "e",
            policyTypes=["Egress"],
            egress=[{"to": [{"namespaceSelector": {}}], "ports": [{"port": 80}]}],
        ),
        policy("y", "i", ingress=[from_(named_namespace("x"))]),
        a="client",
        b="server",
    )
    assert allowed(s, "x/client", "y/server", 80)
    assert not allowed(s, "x/client", "y/server", 81)


def test_a_pod_may_always_reach_itself():
    s = two_pods(policy("x", "deny", policyTypes=["Ingress", "Egress"]))
    v = evaluate(s, "x/a", "x/a", 80, "TCP")
    assert v.allowed and v.self_traffic
    assert not v.egress.allowed and not v.ingress.allowed  # the policies alone would deny
    assert not allowed(s, "x/a", "x/b")


def test_host_network_and_terminated_pods_are_not_endpoints():
    s = cluster(
        ns("x"),
        pod("x", "dst", DB),
        pod("x", "host", WEB, host_network=True),
        pod("x", "done", WEB, phase="Succeeded"),
        pod("x", "failed", WEB, phase="Failed"),
        pod("x", "live", WEB),
        policy(
            "x", "p", podSelector={}, ingress=[{"from": [{"podSelector": {"matchLabels": WEB}}]}]
        ),
    )
    p = s.policies["x/p"]
    assert s.pods_selected_by(p) == {"x/dst", "x/live"}
    assert s.peer_pods(p, p.ingress[0].peers[0]) == {"x/live"}
    assert allowed(s, "x/live", "x/dst")
    assert not allowed(s, "x/host", "x/dst") and not allowed(s, "x/done", "x/dst")
    # Not selected as subjects either: the host-network pod's ingress is unrestricted.
    assert not evaluate(s, "x/dst", "x/host", 80, "TCP").ingress.isolated


def test_ip_block_matches_host_network_pod_addresses():
    s = cluster(
        ns("x"),
        pod("x", "dst", DB),
        pod("x", "host", WEB, ips=["172.16.0.1"], host_network=True),
        policy("x", "p", ingress=[{"from": [{"ipBlock": {"cidr": "172.16.0.0/24"}}]}]),
    )
    assert allowed(s, "x/host", "x/dst")


def test_verdict_lists_every_allowing_rule_and_isolating_policy():
    s = two_pods(
        policy("x", "p1", podSelector={"matchLabels": DB}, ingress=[{"ports": [{"port": 81}]}, {}]),
        policy("x", "p2", podSelector={}, ingress=[{"from": [{"podSelector": {}}]}]),
    )
    v = evaluate(s, "x/a", "x/b", 80, "TCP")
    assert v.ingress.isolating == ["x/p1", "x/p2"]
    assert v.ingress.allowing == [("x/p1", 1), ("x/p2", 0)]


def test_traffic_from_the_destinations_own_node_is_always_allowed():
    docs = [ns("x"), policy("x", "deny-all", policyTypes=["Ingress", "Egress"])]
    local = pod("x", "kubelet-like", WEB, ips=["192.168.0.1"], host_network=True)
    remote = pod("x", "other-node", WEB, ips=["192.168.0.2"], host_network=True)
    dst = pod("x", "dst", DB)
    local["spec"]["nodeName"] = dst["spec"]["nodeName"] = "node-1"
    remote["spec"]["nodeName"] = "node-2"
    s = cluster(*docs, local, remote, dst)
    v = evaluate(s, "x/kubelet-like", "x/dst", 8080, "TCP")
    assert v.allowed and v.from_node and not v.ingress.allowed
    assert not allowed(s, "x/other-node", "x/dst", 8080)
    assert not allowed(s, "x/dst", "x/kubelet-like", 8080)  # the pod's own egress still applies
