"""The upstream conformance suite's behaviour, in the model (no kernel).

Translated from kubernetes-sigs/network-policy-api `conformance/tests/` (its policies are in
`conformance/base/`): the same houses, pods, ports and policies, each step's mutation applied
to the state, and each of its pokes asked of `evaluate` with the expected verdict. A
representative set: the Admin tier's ingress (TCP), egress (UDP, SCTP), inline CIDR peers,
node peers and named ports, the priority field, the Baseline tier's ingress (UDP) and egress
(TCP), and the integration of both tiers with NetworkPolicy (Pass).
"""

from __future__ import annotations

import copy
from ipaddress import ip_address
from typing import Any

from enforcer.model.cluster import ClusterState
from enforcer.model.evaluate import evaluate
from enforcer.model.loader import parse_object
from enforcer.model.nodes import Node
from enforcer.model.parse_clusterpolicy import parse_cluster_object

Raw = dict[str, Any]
HOUSES = {  # namespace suffix -> (pod name prefix, third octet of its pods' addresses)
    "gryffindor": ("harry-potter", 1),
    "slytherin": ("draco-malfoy", 2),
    "hufflepuff": ("cedric-diggory", 3),
    "ravenclaw": ("luna-lovegood", 4),
}
NODES = {"node-a": "192.168.0.1", "node-b": "192.168.0.2"}
HOST_PORTS = [34345, 34346, 34347, 34348, 34349, 34350, 34351, 34352]  # the suite's defaults


def ns(house: str) -> str:
    return f"network-policy-conformance-{house}"


def pod(house: str, i: int) -> str:
    return f"{ns(house)}/{HOUSES[house][0]}-{i}"


def _pod(namespace: str, name: str, ip: str, node: str, host: bool = False) -> Raw:
    ports = [(80, "TCP", "web"), (8080, "TCP", None), (53, "UDP", "dns"), (5353, "UDP", None),
             (9003, "SCTP", None), (9005, "SCTP", None)]
    if host:
        ports = [(HOST_PORTS[0], "TCP", "web"), (HOST_PORTS[1], "TCP", None),
                 (HOST_PORTS[2], "UDP", "dns"), (HOST_PORTS[4], "UDP", None),
                 (HOST_PORTS[6], "SCTP", None)]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": namespace, "name": name,
                     "labels": {"conformance-house": namespace.rsplit("-", 1)[-1]}},
        "spec": {"nodeName": node, "hostNetwork": host, "containers": [{"name": "c", "ports": [
            {"containerPort": n, "protocol": p, **({"name": name_} if name_ else {})}
            for n, p, name_ in ports]}]},
        "status": {"phase": "Running", "podIPs": [{"ip": ip}]},
    }


def world() -> ClusterState:
    """The suite's fixture (conformance/base/manifests.yaml): four houses of two pods, and the
    forbidden forest's host-network centaurs on the two nodes."""
    state = ClusterState()
    for house, (name, octet) in HOUSES.items():
        obj = parse_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": ns(house), "labels": {"conformance-house": house}}})
        assert obj is not None
        state.upsert(obj)
        for i in range(2):
            p = parse_object(_pod(ns(house), f"{name}-{i}", f"10.0.{octet}.{i + 1}",
                                  f"node-{'ab'[i]}"))
            assert p is not None
            state.upsert(p)
    forest = ns("forbidden-forrest")
    obj = parse_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": forest, "labels": {"conformance-house": "forbidden-forrest"}}})
    assert obj is not None
    state.upsert(obj)
    for i, (node, ip) in enumerate(NODES.items()):
        centaur = parse_object(_pod(forest, f"centaur-{i}", ip, node, host=True))
        assert centaur is not None
        state.upsert(centaur)
        state.upsert(Node(node, {"kubernetes.io/os": "linux"}, (ip_address(ip),)))
    return state


def apply(state: ClusterState, *objects: Raw) -> None:
    for raw in objects:
        obj = parse_cluster_object(raw) or parse_object(raw)
        assert obj is not None
        state.upsert(obj)


def cnp(name: str, tier: str, priority: int, subject: Raw, ingress: list[Raw] | None = None,
        egress: list[Raw] | None = None) -> Raw:
    spec: Raw = {"tier": tier, "priority": priority, "subject": subject}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


def by_name(house: str) -> Raw:
    return {"matchLabels": {"kubernetes.io/metadata.name": ns(house)}}


def by_house(house: str) -> Raw:
    return {"matchLabels": {"conformance-house": house}}


def house_pods(house: str) -> Raw:
    return {"pods": {"namespaceSelector": by_house(house), "podSelector": by_house(house)}}


def rule(name: str, action: str, peers: list[Raw], protocols: list[Raw] | None = None,
         key: str = "from") -> Raw:
    out: Raw = {"name": name, "action": action, key: peers}
    if protocols:
        out["protocols"] = protocols
    return out


def port(proto: str, number: int) -> Raw:
    return {proto: {"destinationPort": {"number": number}}}


def poke(state: ClusterState, src: str, dst: str, proto: str, number: int) -> bool:
    return evaluate(state, src, dst, number, proto.upper()).allowed


# --- CNPAdminTierIngressTCP (admin_tier/standard-ingress-tcp-rules.yaml) --------------------


def ingress_tcp() -> Raw:
    def from_ns(house: str) -> list[Raw]:
        return [{"namespaces": by_name(house)}]
    return cnp("ingress-tcp", "Admin", 3, {"namespaces": by_name("gryffindor")}, ingress=[
        rule("allow-from-ravenclaw-everything", "Accept", from_ns("ravenclaw")),
        rule("deny-from-ravenclaw-everything", "Deny", from_ns("ravenclaw")),
        rule("pass-from-ravenclaw-everything", "Pass", from_ns("ravenclaw")),
        rule("deny-from-slytherin-at-port-80", "Deny", from_ns("slytherin"), [port("tcp", 80)]),
        rule("pass-from-slytherin-at-port-80", "Pass", from_ns("slytherin"), [port("tcp", 80)]),
        rule("allow-from-hufflepuff-at-port-80", "Accept", from_ns("hufflepuff"),
             [port("tcp", 80)]),
        rule("deny-from-hufflepuff-everything-else", "Deny", from_ns("hufflepuff")),
    ])


def test_admin_ingress_tcp_rule_order_allow_deny_pass() -> None:
    state = world()
    policy = ingress_tcp()
    apply(state, policy)
    server = pod("gryffindor", 0)
    # allow-ingress; rule ordering is respected
    assert poke(state, pod("ravenclaw", 0), server, "tcp", 80)
    assert poke(state, pod("ravenclaw", 1), server, "tcp", 8080)
    # allow-ingress at the specified port
    assert poke(state, pod("hufflepuff", 0), pod("gryffindor", 1), "tcp", 80)
    assert not poke(state, pod("hufflepuff", 1), pod("gryffindor", 1), "tcp", 8080)
    # deny-ingress: swap rules 0 and 1
    mutated = copy.deepcopy(policy)
    rules = mutated["spec"]["ingress"]
    rules[0], rules[1] = rules[1], rules[0]
    apply(state, mutated)
    assert not poke(state, pod("ravenclaw", 0), pod("gryffindor", 1), "tcp", 80)
    assert not poke(state, pod("ravenclaw", 1), pod("gryffindor", 1), "tcp", 8080)
    # deny-ingress at the specified port
    assert not poke(state, pod("slytherin", 0), server, "tcp", 80)
    assert poke(state, pod("slytherin", 1), server, "tcp", 8080)
    # pass-ingress: swap rules 0 and 2 (the pass comes first; no NetworkPolicy: allowed)
    rules[0], rules[2] = rules[2], rules[0]
    apply(state, mutated)
    assert poke(state, pod("ravenclaw", 0), server, "tcp", 80)
    assert poke(state, pod("ravenclaw", 1), server, "tcp", 8080)
    # pass-ingress at the specified port: swap rules 3 and 4
    rules[3], rules[4] = rules[4], rules[3]
    apply(state, mutated)
    assert poke(state, pod("slytherin", 0), server, "tcp", 80)
    assert poke(state, pod("slytherin", 1), server, "tcp", 8080)


# --- CNPAdminTierEgressUDP / SCTP (admin_tier/standard-egress-{udp,sctp}-rules.yaml) --------


def test_admin_egress_by_protocol_and_port() -> None:
    for proto, allowed_port, other_port in (("udp", 53, 5353), ("sctp", 9003, 9005)):
        state = world()
        to = [{"namespaces": by_name("hufflepuff")}]
        apply(state, cnp(f"egress-{proto}", "Admin", 5,
                         {"namespaces": by_name("ravenclaw")}, egress=[
            rule(f"allow-to-hufflepuff-at-{allowed_port}", "Accept", to,
                 [port(proto, allowed_port)], key="to"),
            rule("deny-to-hufflepuff-everything-else", "Deny", to, key="to"),
        ]))
        src = pod("ravenclaw", 0)
        assert poke(state, src, pod("hufflepuff", 0), proto, allowed_port)
        assert not poke(state, src, pod("hufflepuff", 1), proto, other_port)
        assert not poke(state, src, pod("hufflepuff", 1), "tcp", 80)
        assert poke(state, src, pod("slytherin", 0), proto, other_port)  # not a peer


# --- CNPAdminTierEgressInlineCIDRPeers (admin_tier/standard-egress-inline-cidr-rules.yaml) --


def test_admin_egress_inline_cidr_peers() -> None:
    state = world()
    policy = cnp("inline-cidr-as-peers-example", "Admin", 85, house_pods("gryffindor"), egress=[
        rule("allow-egress-to-slytherin", "Accept", [house_pods("slytherin")], key="to"),
        rule("deny-egress-to-internet", "Deny", [{"networks": ["0.0.0.0/0", "::/0"]}], key="to"),
    ])
    apply(state, policy)
    src = pod("gryffindor", 1)
    for proto, number in (("tcp", 80), ("udp", 53), ("sctp", 9003)):
        assert not poke(state, src, pod("ravenclaw", 0), proto, number)
        assert not poke(state, src, pod("hufflepuff", 0), proto, number)
        assert poke(state, src, pod("slytherin", 0), proto, number)
    # slytherin's namespace relabelled: its pods fall to the networks deny, and back
    slytherin = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns("slytherin")}}
    relabel = copy.deepcopy(slytherin)
    relabel["metadata"]["labels"] = {"conformance-house": "denied-namespace-label"}
    apply(state, relabel)
    assert not poke(state, src, pod("slytherin", 0), "tcp", 80)
    relabel["metadata"]["labels"] = {"conformance-house": "slytherin"}
    apply(state, relabel)
    assert poke(state, src, pod("slytherin", 0), "udp", 53)
    # allow-egress to two pods' addresses (/32), written before the deny
    mutated = copy.deepcopy(policy)
    mutated["spec"]["egress"].insert(0, rule("allow-egress-to-specific-podIPs", "Accept", [
        {"networks": ["10.0.4.1/32", "10.0.3.1/32"]}], key="to"))
    apply(state, mutated)
    for proto, number in (("tcp", 80), ("udp", 53), ("sctp", 9003)):
        assert poke(state, src, pod("ravenclaw", 0), proto, number)
        assert poke(state, src, pod("hufflepuff", 0), proto, number)
        assert not poke(state, src, pod("ravenclaw", 1), proto, number)


# --- CNPAdminTierEgressNodePeers and named ports (admin_tier/experimental-egress-...) --------


def test_admin_egress_node_peers_and_named_ports() -> None:
    state = world()
    nodes = {"nodes": {"matchLabels": {"kubernetes.io/os": "linux"}}}
    policy = cnp("node-and-cidr-as-peers-example", "Admin", 75, house_pods("gryffindor"), egress=[
        rule(f"allow-egress-to-{HOST_PORTS[0]}-on-nodes", "Accept", [nodes],
             [port("tcp", HOST_PORTS[0])], key="to"),
        rule(f"pass-egress-to-{HOST_PORTS[2]}-on-nodes", "Pass", [nodes],
             [port("udp", HOST_PORTS[2])], key="to"),
        rule("deny-egress-to-slytherin-and-nodes-and-internet", "Deny", [
            house_pods("slytherin"), nodes, {"networks": ["0.0.0.0/0", "::/0"]}], key="to"),
    ])
    apply(state, policy)
    centaur = f"{ns('forbidden-forrest')}/centaur-1"
    src = pod("gryffindor", 1)
    assert poke(state, src, centaur, "tcp", HOST_PORTS[0])
    assert poke(state, src, centaur, "udp", HOST_PORTS[2])  # passed, nothing else: allowed
    assert not poke(state, src, centaur, "tcp", HOST_PORTS[1])
    assert not poke(state, src, centaur, "udp", HOST_PORTS[4])
    assert not poke(state, src, centaur, "sctp", HOST_PORTS[6])
    assert not poke(state, src, pod("slytherin", 0), "tcp", 80)
    # A named port (resolved on the destination pod): only hufflepuff's `web`
    mutated = copy.deepcopy(policy)
    mutated["spec"]["egress"].insert(0, rule("allow-to-hufflepuff-web", "Accept",
                                             [house_pods("hufflepuff")],
                                             [{"destinationNamedPort": "web"}], key="to"))
    apply(state, mutated)
    assert poke(state, pod("gryffindor", 0), pod("hufflepuff", 1), "tcp", 80)
    assert not poke(state, pod("gryffindor", 1), pod("hufflepuff", 1), "tcp", 8080)


# --- CNPAdminTierPriorityField (admin_tier/standard-priority-field.yaml) -------------------


def test_admin_priority_field() -> None:
    state = world()
    subject = house_pods("gryffindor")
    deny50 = cnp("priority-50-example", "Admin", 50, subject,
                 ingress=[rule("deny-all-ingress-from-slytherin", "Deny",
                               [house_pods("slytherin")])],
                 egress=[rule("deny-all-egress-to-slytherin", "Deny", [house_pods("slytherin")],
                              key="to")])
    pass60 = cnp("old-priority-60-new-priority-40-example", "Admin", 60, subject,
                 ingress=[rule("pass-all-ingress-from-slytherin", "Pass",
                               [house_pods("slytherin")])],
                 egress=[rule("pass-all-egress-to-slytherin", "Pass", [house_pods("slytherin")],
                              key="to")])
    baseline = cnp("default", "Baseline", 10, subject,
                   ingress=[rule("allow-all-ingress-from-slytherin", "Accept",
                                 [house_pods("slytherin")])],
                   egress=[rule("allow-all-egress-to-slytherin", "Accept",
                                [house_pods("slytherin")], key="to")])
    apply(state, deny50, pass60, baseline)
    harry, draco = pod("gryffindor", 0), pod("slytherin", 0)
    assert not poke(state, draco, harry, "tcp", 80)
    assert not poke(state, pod("slytherin", 1), harry, "tcp", 8080)
    assert not poke(state, harry, draco, "tcp", 80)
    pass60["spec"]["priority"] = 40
    apply(state, pass60)
    assert poke(state, draco, harry, "tcp", 80)
    assert poke(state, pod("slytherin", 1), harry, "tcp", 8080)
    assert poke(state, harry, draco, "tcp", 80)
    assert poke(state, pod("gryffindor", 1), draco, "tcp", 8080)


# --- CNPBaselineTierIngressUDP (baseline_tier/standard-ingress-udp-rules.yaml) -------------


def test_baseline_ingress_udp() -> None:
    state = world()
    def from_ns(house: str) -> list[Raw]:
        return [{"namespaces": by_name(house)}]
    policy = cnp("default", "Baseline", 10, {"namespaces": by_name("hufflepuff")}, ingress=[
        rule("allow-from-ravenclaw-everything", "Accept", from_ns("ravenclaw")),
        rule("deny-from-ravenclaw-everything", "Deny", from_ns("ravenclaw")),
        rule("deny-from-slytherin-at-port-5353", "Deny", from_ns("slytherin"),
             [port("udp", 5353)]),
        rule("allow-from-gryffindor-at-port-53", "Accept", from_ns("gryffindor"),
             [port("udp", 53)]),
        rule("deny-from-gryffindor-everything-else", "Deny", from_ns("gryffindor")),
    ])
    apply(state, policy)
    assert poke(state, pod("ravenclaw", 0), pod("hufflepuff", 0), "udp", 53)
    assert poke(state, pod("ravenclaw", 1), pod("hufflepuff", 0), "udp", 5353)
    assert poke(state, pod("gryffindor", 0), pod("hufflepuff", 1), "udp", 53)
    assert not poke(state, pod("gryffindor", 1), pod("hufflepuff", 1), "udp", 5353)
    mutated = copy.deepcopy(policy)
    rules = mutated["spec"]["ingress"]
    rules[0], rules[1] = rules[1], rules[0]
    apply(state, mutated)
    assert not poke(state, pod("ravenclaw", 0), pod("hufflepuff", 1), "udp", 53)
    assert not poke(state, pod("ravenclaw", 1), pod("hufflepuff", 1), "udp", 5353)
    assert not poke(state, pod("slytherin", 0), pod("hufflepuff", 0), "udp", 5353)
    assert poke(state, pod("slytherin", 1), pod("hufflepuff", 0), "udp", 53)


# --- CNPBaselineTierEgressTCP, and NetworkPolicy overriding the Baseline tier --------------


def test_baseline_egress_tcp_and_networkpolicy_overrides_it() -> None:
    state = world()
    to = [{"namespaces": by_name("hufflepuff")}]
    apply(state, cnp("default", "Baseline", 10, {"namespaces": by_name("ravenclaw")}, egress=[
        rule("allow-to-hufflepuff-at-port-8080", "Accept", to, [port("tcp", 8080)], key="to"),
        rule("deny-to-hufflepuff-everything-else", "Deny", to, key="to"),
    ]))
    src = pod("ravenclaw", 0)
    assert poke(state, src, pod("hufflepuff", 0), "tcp", 8080)
    assert not poke(state, src, pod("hufflepuff", 0), "tcp", 80)
    # A NetworkPolicy that isolates ravenclaw's egress decides instead of the Baseline tier
    apply(state, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                  "metadata": {"namespace": ns("ravenclaw"), "name": "allow-80"},
                  "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                           "egress": [{"ports": [{"port": 80}]}]}})
    assert poke(state, src, pod("hufflepuff", 0), "tcp", 80)
    assert not poke(state, src, pod("hufflepuff", 0), "tcp", 8080)


# --- CNPAdminTierIntegration (api_integration/standard-anp-np-banp.yaml) -------------------


def test_integration_admin_networkpolicy_baseline_with_pass() -> None:
    state = world()
    subject = {"namespaces": by_house("gryffindor")}
    slytherin = [{"namespaces": by_house("slytherin")}]
    admin = cnp("pass-example", "Admin", 10, subject,
                ingress=[rule("deny-all-ingress-from-slytherin", "Deny", slytherin)],
                egress=[rule("deny-all-egress-to-slytherin", "Deny", slytherin, key="to")])
    np = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "metadata": {"namespace": ns("gryffindor"),
                       "name": "allow-gress-from-to-slytherin-to-gryffindor"},
          "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                   "ingress": [{"from": [{"namespaceSelector": by_house("slytherin")}]}],
                   "egress": [{"to": [{"namespaceSelector": by_house("slytherin")}]}]}}
    baseline = cnp("default", "Baseline", 10, subject,
                   ingress=[rule("deny-all-ingress-from-slytherin", "Deny", slytherin)],
                   egress=[rule("deny-all-egress-to-slytherin", "Deny", slytherin, key="to")])
    apply(state, admin, np, baseline)
    harry0, harry1 = pod("gryffindor", 0), pod("gryffindor", 1)
    draco0, draco1 = pod("slytherin", 0), pod("slytherin", 1)
    assert not poke(state, draco0, harry0, "tcp", 80)
    assert not poke(state, draco1, harry0, "tcp", 8080)
    assert not poke(state, harry0, draco0, "tcp", 80)
    assert not poke(state, harry1, draco0, "tcp", 8080)
    # pass-ingress: the NetworkPolicy decides (it allows slytherin)
    admin["spec"]["ingress"][0]["action"] = "Pass"
    apply(state, admin)
    assert poke(state, draco0, harry0, "tcp", 80)
    assert poke(state, draco1, harry0, "tcp", 8080)
    # pass-egress: likewise
    admin["spec"]["egress"][0]["action"] = "Pass"
    apply(state, admin)
    assert poke(state, harry0, draco0, "tcp", 80)
    assert poke(state, harry1, draco0, "tcp", 8080)
    # without the NetworkPolicy, the Baseline tier's deny decides
    state.remove("NetworkPolicy", ns("gryffindor"), "allow-gress-from-to-slytherin-to-gryffindor")
    assert not poke(state, draco0, harry0, "tcp", 80)
    assert not poke(state, draco1, harry0, "tcp", 8080)
    assert not poke(state, harry0, draco0, "tcp", 80)
    assert not poke(state, harry1, draco0, "tcp", 8080)


def test_host_network_pods_are_never_subjects_nor_pod_peers() -> None:
    state = world()
    forest = {"namespaces": by_house("forbidden-forrest")}
    apply(state, cnp("deny-forest", "Admin", 1, forest,
                     egress=[rule("deny", "Deny", [{"namespaces": {}}], key="to")]),
          cnp("deny-to-forest", "Admin", 2, {"namespaces": {}},
              egress=[rule("deny", "Deny", [forest], key="to")]))
    centaur = f"{ns('forbidden-forrest')}/centaur-0"
    assert poke(state, centaur, pod("gryffindor", 1), "tcp", 80)  # not a subject
    assert poke(state, pod("gryffindor", 0), centaur, "tcp", HOST_PORTS[0])  # not a pod peer


# --- CNPAdminTierGress (admin_tier/standard-gress-rules-combined.yaml) ----------------------


def gress_rules() -> Raw:
    def to(house: str) -> list[Raw]:
        return [{"namespaces": by_name(house)}]

    def ports(*pairs: tuple[str, int]) -> list[Raw]:
        return [port(proto, number) for proto, number in pairs]

    slytherin_ports = ports(("tcp", 80), ("udp", 53), ("sctp", 9003))
    egress = [
        rule("allow-to-ravenclaw-everything", "Accept", to("ravenclaw"), key="to"),
        rule("deny-to-ravenclaw-everything", "Deny", to("ravenclaw"), key="to"),
        rule("pass-to-ravenclaw-everything", "Pass", to("ravenclaw"), key="to"),
        rule("deny-to-slytherin-at-ports-80-53-9003", "Deny", to("slytherin"), slytherin_ports,
             key="to"),
        rule("pass-to-slytherin-at-port-80-53-9003", "Pass", to("slytherin"), slytherin_ports,
             key="to"),
        rule("allow-to-hufflepuff-at-ports-8080-5353-9003", "Accept", to("hufflepuff"),
             ports(("tcp", 8080), ("udp", 5353), ("sctp", 9003)), key="to"),
        rule("deny-to-hufflepuff-everything-else", "Deny", to("hufflepuff"), key="to"),
    ]
    ingress = [
        rule("allow-from-ravenclaw-everything", "Accept", to("ravenclaw")),
        rule("deny-from-ravenclaw-everything", "Deny", to("ravenclaw")),
        rule("pass-from-ravenclaw-everything", "Pass", to("ravenclaw")),
        rule("deny-from-slytherin-at-port-80-53-9003", "Deny", to("slytherin"), slytherin_ports),
        rule("pass-from-slytherin-at-port-80-53-9003", "Pass", to("slytherin"), slytherin_ports),
        rule("allow-from-hufflepuff-at-port-80-5353-9003", "Accept", to("hufflepuff"),
             ports(("tcp", 80), ("udp", 5353), ("sctp", 9003))),
        rule("deny-from-hufflepuff-everything-else", "Deny", to("hufflepuff")),
    ]
    return cnp("gress-rules", "Admin", 15, {"namespaces": by_name("gryffindor")},
               ingress=ingress, egress=egress)


Poke = tuple[str, str, str, int, bool]  # (from, to, protocol, port, allowed)


def both_ways(house: str, expected: list[tuple[str, int, bool]], i: int = 0) -> list[Poke]:
    """The suite's pattern: gryffindor to a house's pod, and that house's pods to gryffindor."""
    out: list[Poke] = []
    for n, (proto, number, ok) in enumerate(expected):
        out.append((pod("gryffindor", n % 2), pod(house, i), proto, number, ok))
        out.append((pod(house, n % 2), pod("gryffindor", i), proto, number, ok))
    return out


def swap(i: int, j: int) -> Any:
    def mutate(policy: Raw) -> None:
        for direction in ("ingress", "egress"):
            rules = policy["spec"][direction]
            rules[i], rules[j] = rules[j], rules[i]
    return mutate


def test_admin_gress_rules_combined() -> None:
    """Each step mutates the policy as left by the one before, as the suite does."""
    state = world()
    policy = gress_rules()
    apply(state, policy)
    all_protocols = [("tcp", 80, True), ("udp", 53, True), ("sctp", 9003, True)]
    steps: list[tuple[Any, list[Poke]]] = [
        # allow-gress across protocols, and at the specified ports
        (None, both_ways("ravenclaw", all_protocols)),
        (None, [
            (pod("gryffindor", 0), pod("hufflepuff", 1), "tcp", 8080, True),
            (pod("gryffindor", 1), pod("hufflepuff", 1), "tcp", 80, False),
            (pod("gryffindor", 0), pod("hufflepuff", 1), "udp", 5353, True),
            (pod("gryffindor", 1), pod("hufflepuff", 1), "udp", 53, False),
            (pod("gryffindor", 0), pod("hufflepuff", 1), "sctp", 9003, True),
            (pod("gryffindor", 1), pod("hufflepuff", 1), "sctp", 9005, False),
            (pod("hufflepuff", 0), pod("gryffindor", 1), "tcp", 80, True),
            (pod("hufflepuff", 1), pod("gryffindor", 1), "tcp", 8080, False),
            (pod("hufflepuff", 0), pod("gryffindor", 1), "udp", 5353, True),
            (pod("hufflepuff", 1), pod("gryffindor", 1), "udp", 53, False),
            (pod("hufflepuff", 0), pod("gryffindor", 1), "sctp", 9003, True),
            (pod("hufflepuff", 1), pod("gryffindor", 1), "sctp", 9005, False),
        ]),
        # deny-gress: the deny rules first
        (swap(0, 1), both_ways("ravenclaw", [(p, n, False) for p, n, _ in all_protocols], 1)),
        (None, [
            (pod("gryffindor", 0), pod("slytherin", 0), "tcp", 80, False),
            (pod("gryffindor", 1), pod("slytherin", 0), "tcp", 8080, True),
            (pod("gryffindor", 0), pod("slytherin", 0), "udp", 53, False),
            (pod("gryffindor", 1), pod("slytherin", 0), "udp", 5353, True),
            (pod("gryffindor", 0), pod("slytherin", 0), "sctp", 9003, False),
            (pod("gryffindor", 1), pod("slytherin", 0), "sctp", 9005, True),
            (pod("slytherin", 0), pod("gryffindor", 0), "tcp", 80, False),
            (pod("slytherin", 1), pod("gryffindor", 0), "tcp", 8080, True),
            (pod("slytherin", 0), pod("gryffindor", 0), "udp", 53, False),
            (pod("slytherin", 1), pod("gryffindor", 0), "udp", 5353, True),
            (pod("slytherin", 0), pod("gryffindor", 0), "sctp", 9003, False),
            (pod("slytherin", 1), pod("gryffindor", 0), "sctp", 9005, True),
        ]),
        # pass-gress: the pass rules first (no NetworkPolicy, no Baseline: allowed)
        (swap(0, 2), both_ways("ravenclaw", [("tcp", 80, True), ("udp", 5353, True),
                                             ("sctp", 9003, True)])),
        (swap(3, 4), [
            (src, dst, proto, number, True)
            for src, dst in ((pod("gryffindor", 0), pod("slytherin", 0)),
                             (pod("slytherin", 1), pod("gryffindor", 0)))
            for proto, number in (("tcp", 80), ("tcp", 8080), ("udp", 53), ("udp", 5353),
                                  ("sctp", 9003), ("sctp", 9005))
        ]),
    ]
    for number, (mutate, pokes) in enumerate(steps):
        if mutate is not None:
            mutate(policy)
            apply(state, policy)
        for src, dst, proto, dport, ok in pokes:
            assert poke(state, src, dst, proto, dport) is ok, (number, src, dst, proto, dport)


# --- AdminNetworkPolicy / BaselineAdminNetworkPolicy (v1alpha1, the v0.1 suite's API
# integration test: base/api_integration/standard-anp-np-banp.yaml at v0.1.8) ---------------


def test_v1alpha1_integration_admin_networkpolicy_baseline_with_pass() -> None:
    state = world()
    slytherin = [{"namespaces": by_house("slytherin")}]
    anp = {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
           "metadata": {"name": "pass-example"},
           "spec": {"priority": 10, "subject": {"namespaces": by_house("gryffindor")},
                    "ingress": [{"name": "deny-all-ingress-from-slytherin", "action": "Deny",
                                 "from": slytherin}],
                    "egress": [{"name": "deny-all-egress-to-slytherin", "action": "Deny",
                                "to": slytherin}]}}
    np = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "metadata": {"namespace": ns("gryffindor"), "name": "allow-slytherin"},
          "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                   "ingress": [{"from": [{"namespaceSelector": by_house("slytherin")}]}],
                   "egress": [{"to": [{"namespaceSelector": by_house("slytherin")}]}]}}
    banp = {"apiVersion": "policy.networking.k8s.io/v1alpha1",
            "kind": "BaselineAdminNetworkPolicy", "metadata": {"name": "default"},
            "spec": {"subject": {"namespaces": by_house("gryffindor")},
                     "ingress": [{"name": "deny-all-ingress-from-slytherin", "action": "Deny",
                                  "from": slytherin}],
                     "egress": [{"name": "deny-all-egress-to-slytherin", "action": "Deny",
                                 "to": slytherin}]}}
    apply(state, anp, np, banp)
    harry, draco = pod("gryffindor", 0), pod("slytherin", 0)
    assert not poke(state, draco, harry, "tcp", 80)
    assert not poke(state, harry, draco, "tcp", 8080)
    anp["spec"]["ingress"][0]["action"] = "Pass"
    anp["spec"]["egress"][0]["action"] = "Pass"
    apply(state, anp)
    assert poke(state, draco, harry, "tcp", 80)  # the NetworkPolicy allows
    assert poke(state, harry, draco, "tcp", 8080)
    state.remove("NetworkPolicy", ns("gryffindor"), "allow-slytherin")
    assert not poke(state, draco, harry, "udp", 53)  # the BaselineAdminNetworkPolicy denies
    assert not poke(state, harry, draco, "sctp", 9003)
    # Allow in v1alpha1 is Accept: above the BANP's deny
    anp["spec"]["ingress"][0]["action"] = "Allow"
    apply(state, anp)
    assert poke(state, draco, harry, "udp", 53)
