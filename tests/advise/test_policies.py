"""The advised policies: stable selectors, exact peers, named ports, DNS, ipBlocks."""

from __future__ import annotations

from typing import Any

from enforcer.advise import AdviseOptions, Prefixes, advise
from enforcer.advise.advice import Advice
from enforcer.advise.selectors import stable_labels
from enforcer.flows.record import FlowRecord
from enforcer.model.objects import Pod

from .builders import (
    API,
    DB,
    DNS,
    WEB,
    WEB_PORTS,
    both_sides,
    deployment,
    flow,
    namespace,
    pod,
    shop,
    state_of,
)


def run(records: list[FlowRecord], docs: list[dict[str, Any]] | None = None,
        **options: Any) -> Advice:
    advice = advise(state_of(docs if docs is not None else shop()), records,
                    AdviseOptions(**options))
    assert advice.proof.holds, [r.describe() for r in advice.proof.refused]
    return advice


def policy(advice: Advice, key: str) -> dict[str, Any]:
    (found,) = [p.manifest for p in advice.policies if p.key == key]
    return found


def test_stable_labels_are_the_shared_ones_without_hashes_or_topology() -> None:
    pods = [Pod("n", "a", labels={"app": "x", "pod-template-hash": "1", "version": "1",
                                  "controller-revision-hash": "c",
                                  "topology.kubernetes.io/zone": "z"}),
            Pod("n", "b", labels={"app": "x", "pod-template-hash": "1", "version": "2",
                                  "statefulset.kubernetes.io/pod-name": "b",
                                  "apps.kubernetes.io/pod-index": "1"})]
    assert stable_labels(pods) == {"app": "x"}


def test_one_policy_per_workload_and_direction_with_explicit_types() -> None:
    advice = run(both_sides(WEB[0], API[0], 8080))
    assert [p.key for p in advice.policies] == [
        "shop/api-ingress", "shop/api-egress", "shop/web-ingress", "shop/web-egress"]
    web_out = policy(advice, "shop/web-egress")["spec"]
    assert web_out["podSelector"] == {"matchLabels": {"app": "web"}}
    assert web_out["policyTypes"] == ["Egress"]
    # Same namespace: no namespaceSelector; port by the name every api pod declares.
    assert web_out["egress"] == [{"to": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                                  "ports": [{"port": "http", "protocol": "TCP"}]}]
    # Nothing came in to web, nothing went out of api: those directions deny all.
    assert policy(advice, "shop/web-ingress")["spec"]["ingress"] == []
    assert policy(advice, "shop/api-egress")["spec"]["egress"] == []


def test_peers_in_other_namespaces_are_named_by_namespace_and_labels() -> None:
    advice = run([flow(API[1], DB, 5432)])
    (rule,) = policy(advice, "data/db-ingress")["spec"]["ingress"]
    assert rule["from"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}},
        "podSelector": {"matchLabels": {"app": "api"}},
    }]


def test_one_rule_per_peer_with_its_ports_sorted() -> None:
    docs = [*shop(), *deployment("shop", "cache", {"app": "cache"}, ["10.0.4.1"])]
    advice = run([flow(WEB[0], API[0], 9090), flow(WEB[1], API[1], 8080),
                  flow(WEB[0], API[1], 8080, "UDP"), flow(WEB[0], "shop/cache-5d8f7c9b6-0", 6379)],
                 docs)
    rules = policy(advice, "shop/web-egress")["spec"]["egress"]
    assert [r["to"][0]["podSelector"]["matchLabels"]["app"] for r in rules] == ["api", "cache"]
    assert rules[0]["ports"] == [{"port": "http", "protocol": "TCP"},
                                 {"port": 8080, "protocol": "UDP"},
                                 {"port": 9090, "protocol": "TCP"}]
    assert rules[1]["ports"] == [{"port": 6379, "protocol": "TCP"}]


def test_a_port_is_named_only_when_every_destination_pod_declares_that_name() -> None:
    docs = [namespace("n"),
            *deployment("n", "client", {"app": "client"}, ["10.0.0.1"]),
            pod("n", "s-0", {"app": "s"}, "10.0.0.2", WEB_PORTS, owner=("StatefulSet", "s")),
            pod("n", "s-1", {"app": "s"}, "10.0.0.3",
                [{"name": "web", "containerPort": 8080}], owner=("StatefulSet", "s"))]
    advice = run([flow("n/client-5d8f7c9b6-0", "n/s-0", 8080)], docs)
    (rule,) = policy(advice, "n/s-ingress")["spec"]["ingress"]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]


def test_dns_gets_one_rule_for_udp_and_tcp_53_whenever_names_were_resolved() -> None:
    advice = run([flow(WEB[0], DNS, 53, "UDP"), flow(WEB[0], "192.0.2.53", 53, "UDP"),
                  flow(WEB[0], API[0], 8080)])
    dns, app = policy(advice, "shop/web-egress")["spec"]["egress"]
    assert dns["ports"] == [{"port": 53, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]
    assert dns["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
         "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}},
        {"ipBlock": {"cidr": "192.0.2.53/32"}},
    ]
    assert app["ports"] == [{"port": "http", "protocol": "TCP"}]
    # The DNS server lets its clients in on both protocols, by the names it declares.
    (inbound,) = policy(advice, "kube-system/coredns-ingress")["spec"]["ingress"]
    assert inbound["ports"] == [{"port": "dns-tcp", "protocol": "TCP"},
                                {"port": "dns", "protocol": "UDP"}]


def test_ingress_only_emits_no_egress_policies() -> None:
    advice = run([flow(WEB[0], DNS, 53, "UDP"), flow(WEB[0], API[0], 8080)], ingress_only=True)
    assert {p.direction for p in advice.policies} == {"ingress"}
    assert {p.workload.name for p in advice.policies} == {"web", "api", "coredns"}


def test_namespace_limits_which_workloads_get_policies() -> None:
    advice = run([flow(API[0], DB, 5432), flow(WEB[0], API[0], 8080)],
                 namespaces=frozenset({"data"}))
    assert [p.key for p in advice.policies] == ["data/db-ingress", "data/db-egress"]


def test_addresses_outside_are_aggregated_to_the_prefix_around_the_pods() -> None:
    records = [flow(WEB[0], "192.0.2.10", 443), flow(WEB[1], "192.0.2.99", 443),
               flow("10.0.9.7", API[0], 8080), flow(WEB[0], "2001:db8::1:5", 443),
               flow(WEB[0], "2001:db8::2:5", 443)]
    advice = run(records, prefixes=Prefixes(v4=24, v6=64))
    rules = policy(advice, "shop/web-egress")["spec"]["egress"]
    assert [r["to"] for r in rules] == [[{"ipBlock": {"cidr": "192.0.2.0/24"}}],
                                        [{"ipBlock": {"cidr": "2001:db8::/64"}}]]
    assert len(advice.policies[0].rules[0].observations) == 1  # api-ingress from 10.0.9.7
    # The aggregate of 10.0.9.7 covers no pod; one over the pods excepts them.
    advice = run([flow("10.0.1.200", API[0], 8080)], prefixes=Prefixes(v4=16))
    (rule,) = policy(advice, "shop/api-ingress")["spec"]["ingress"]
    assert rule["from"] == [{"ipBlock": {"cidr": "10.0.0.0/16", "except": [
        "10.0.0.10/32", "10.0.1.1/32", "10.0.1.2/32", "10.0.2.1/32", "10.0.2.2/32",
        "10.0.3.1/32"]}}]


def test_a_selector_that_would_select_other_pods_says_so() -> None:
    docs = [*shop(), pod("shop", "debug", {"app": "web", "debug": "yes"}, "10.0.1.50")]
    advice = run([flow(WEB[0], API[0], 8080)], docs)
    web_out = next(p for p in advice.policies if p.key == "shop/web-egress")
    assert web_out.notes and "also select shop/debug" in web_out.notes[0]
    assert any("also select shop/debug" in w for w in advice.warnings)
    # Not widened silently, and not narrowed either: the selector stays the stable labels.
    assert web_out.manifest["spec"]["podSelector"] == {"matchLabels": {"app": "web"}}


def test_two_workloads_of_one_name_get_distinct_policy_names() -> None:
    docs = [*shop(), pod("shop", "web-0", {"app": "web-sts"}, "10.0.5.1",
                         owner=("StatefulSet", "web"))]
    advice = run([flow(WEB[0], "shop/web-0", 8080)], docs)
    assert {p.key for p in advice.policies} >= {"shop/web-deployment-egress",
                                                "shop/web-statefulset-ingress"}


def test_denied_dns_not_learned_is_warned_about() -> None:
    advice = run([flow(WEB[0], API[0], 8080), flow(WEB[0], DNS, 53, "UDP", verdict="denied")])
    assert any("resolved names but was denied" in w for w in advice.warnings)
    assert advise(state_of(shop()), [flow(WEB[0], DNS, 53, "UDP", verdict="denied")],
                  AdviseOptions(include_denied=True)).policies
