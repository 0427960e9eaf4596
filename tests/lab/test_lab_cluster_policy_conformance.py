"""The Network Policy API conformance steps in the kernel: the model's translations
(tests/model/test_clusterpolicy_conformance.py) run in ONE lab with the suite's world (four
houses of two pods on two nodes, and the forbidden forest's hostNetwork centaurs on each
node), each step's policies applied with `lab apply` and its ports probed with real packets as
`lab probe --output json` does: every pair of every probed matrix must be the model's verdict
(`lab probe --check`), and each of the step's pokes the suite's expected verdict.

A representative set: the Admin tier's rule order (Accept, Deny, Pass) on TCP, egress by port
on UDP and SCTP, inline CIDR (`networks`) peers with a namespace relabelled, `nodes` peers to
the hostNetwork centaurs and a named port, the priority field, the Baseline tier's ingress
(UDP) and egress (TCP) with a NetworkPolicy overriding it, and the integration of the tiers
with NetworkPolicy through Pass (v1alpha2, and the v1alpha1 kinds)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from enforcer.commands.lab import check_documents, probe_ports
from enforcer.lab import lab
from enforcer.model import clusterpolicy
from tests.model import test_clusterpolicy_conformance as conf

pytestmark = pytest.mark.kernel

Raw = dict[str, Any]
Poke = tuple[str, str, str, int, bool]  # (from, to, protocol, port, allowed)
FOREST = conf.ns("forbidden-forrest")
CENTAUR = [f"{FOREST}/centaur-{i}" for i in range(2)]
NODE_NAMES = list(conf.NODES)  # node-a, node-b


def world() -> list[Raw]:
    """conformance/base/manifests.yaml in the lab: the lab gives the addresses; the Nodes carry
    the label the suite's `nodes` peers select."""
    out: list[Raw] = []
    for house, (name, _) in conf.HOUSES.items():
        out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": conf.ns(house), "labels": {"conformance-house": house}}})
        for i in range(2):
            pod = conf._pod(conf.ns(house), f"{name}-{i}", "0.0.0.0", NODE_NAMES[i])
            del pod["status"]
            out.append(pod)
    out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": FOREST, "labels": {"conformance-house": "forbidden-forrest"}}})
    for i, node in enumerate(NODE_NAMES):
        centaur = conf._pod(FOREST, f"centaur-{i}", "0.0.0.0", node, host=True)
        del centaur["status"]
        out.append(centaur)
        out.append({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": node, "labels": {"kubernetes.io/os": "linux"}}})
    return out


def pod(house: str, i: int) -> str:
    return conf.pod(house, i)


def namespace(house: str, label: str) -> Raw:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": conf.ns(house), "labels": {"conformance-house": label}}}


# (objects to apply, objects to delete, then the pokes); a case's policies are deleted after
# its last step.
Step = tuple[list[Raw], list[Raw], list[Poke]]
POLICY_KINDS = {"NetworkPolicy", *clusterpolicy.CLUSTER_POLICY_KINDS}


def admin_ingress_tcp() -> list[Step]:
    policy = conf.ingress_tcp()
    server = pod("gryffindor", 0)
    steps: list[Step] = [([copy.deepcopy(policy)], [], [
        (pod("ravenclaw", 0), server, "tcp", 80, True),
        (pod("ravenclaw", 1), server, "tcp", 8080, True),
        (pod("hufflepuff", 0), pod("gryffindor", 1), "tcp", 80, True),
        (pod("hufflepuff", 1), pod("gryffindor", 1), "tcp", 8080, False),
    ])]
    rules = policy["spec"]["ingress"]
    rules[0], rules[1] = rules[1], rules[0]
    steps.append(([copy.deepcopy(policy)], [], [
        (pod("ravenclaw", 0), pod("gryffindor", 1), "tcp", 80, False),
        (pod("ravenclaw", 1), pod("gryffindor", 1), "tcp", 8080, False),
        (pod("slytherin", 0), server, "tcp", 80, False),
        (pod("slytherin", 1), server, "tcp", 8080, True),
    ]))
    rules[0], rules[2] = rules[2], rules[0]
    rules[3], rules[4] = rules[4], rules[3]
    steps.append(([copy.deepcopy(policy)], [], [
        (pod("ravenclaw", 0), server, "tcp", 80, True),
        (pod("slytherin", 0), server, "tcp", 80, True),
        (pod("slytherin", 1), server, "tcp", 8080, True),
    ]))
    return steps


def admin_egress_by_protocol() -> list[Step]:
    steps: list[Step] = []
    previous: list[Raw] = []  # the same subject and priority: one at a time
    for proto, allowed_port, other_port in (("udp", 53, 5353), ("sctp", 9003, 9005)):
        to = [{"namespaces": conf.by_name("hufflepuff")}]
        policy = conf.cnp(f"egress-{proto}", "Admin", 5, {"namespaces": conf.by_name("ravenclaw")},
                          egress=[
            conf.rule(f"allow-to-hufflepuff-at-{allowed_port}", "Accept", to,
                      [conf.port(proto, allowed_port)], key="to"),
            conf.rule("deny-to-hufflepuff-everything-else", "Deny", to, key="to"),
        ])
        src = pod("ravenclaw", 0)
        steps.append(([policy], previous, [
            (src, pod("hufflepuff", 0), proto, allowed_port, True),
            (src, pod("hufflepuff", 1), proto, other_port, False),
            (src, pod("hufflepuff", 1), "tcp", 80, False),
            (src, pod("slytherin", 0), proto, other_port, True),
        ]))
        previous = [policy]
    return steps


def inline_cidr(ips: dict[str, str]) -> list[Step]:
    policy = conf.cnp("inline-cidr-as-peers-example", "Admin", 85, conf.house_pods("gryffindor"),
                      egress=[
        conf.rule("allow-egress-to-slytherin", "Accept", [conf.house_pods("slytherin")], key="to"),
        conf.rule("deny-egress-to-internet", "Deny", [{"networks": ["0.0.0.0/0", "::/0"]}],
                  key="to"),
    ])
    src = pod("gryffindor", 1)
    every = (("tcp", 80), ("udp", 53), ("sctp", 9003))
    steps: list[Step] = [([policy], [], [
        p for proto, n in every for p in (
            (src, pod("ravenclaw", 0), proto, n, False),
            (src, pod("slytherin", 0), proto, n, True))
    ])]
    steps.append(([namespace("slytherin", "denied-namespace-label")], [], [
        (src, pod("slytherin", 0), "tcp", 80, False)]))
    steps.append(([namespace("slytherin", "slytherin")], [], [
        (src, pod("slytherin", 0), "udp", 53, True)]))
    mutated = copy.deepcopy(policy)
    mutated["spec"]["egress"].insert(0, conf.rule("allow-egress-to-specific-podIPs", "Accept", [
        {"networks": [f"{ips[pod('ravenclaw', 0)]}/32", f"{ips[pod('hufflepuff', 0)]}/32"]}],
        key="to"))
    steps.append(([mutated], [], [
        p for proto, n in every for p in (
            (src, pod("ravenclaw", 0), proto, n, True),
            (src, pod("hufflepuff", 0), proto, n, True),
            (src, pod("ravenclaw", 1), proto, n, False))
    ]))
    return steps


def node_peers_and_named_ports() -> list[Step]:
    hp = conf.HOST_PORTS
    nodes = {"nodes": {"matchLabels": {"kubernetes.io/os": "linux"}}}
    policy = conf.cnp("node-and-cidr-as-peers-example", "Admin", 75,
                      conf.house_pods("gryffindor"), egress=[
        conf.rule(f"allow-egress-to-{hp[0]}-on-nodes", "Accept", [nodes],
                  [conf.port("tcp", hp[0])], key="to"),
        conf.rule(f"pass-egress-to-{hp[2]}-on-nodes", "Pass", [nodes],
                  [conf.port("udp", hp[2])], key="to"),
        conf.rule("deny-egress-to-slytherin-and-nodes-and-internet", "Deny", [
            conf.house_pods("slytherin"), nodes, {"networks": ["0.0.0.0/0", "::/0"]}], key="to"),
    ])
    src = pod("gryffindor", 1)
    steps: list[Step] = [([policy], [], [
        (src, CENTAUR[1], "tcp", hp[0], True),
        (src, CENTAUR[0], "tcp", hp[0], True),
        (src, CENTAUR[1], "udp", hp[2], True),
        (src, CENTAUR[1], "tcp", hp[1], False),
        (src, CENTAUR[1], "udp", hp[4], False),
        (src, CENTAUR[1], "sctp", hp[6], False),
        (src, pod("slytherin", 0), "tcp", 80, False),
    ])]
    mutated = copy.deepcopy(policy)
    mutated["spec"]["egress"].insert(0, conf.rule(
        "allow-to-hufflepuff-web", "Accept", [conf.house_pods("hufflepuff")],
        [{"destinationNamedPort": "web"}], key="to"))
    steps.append(([mutated], [], [
        (pod("gryffindor", 0), pod("hufflepuff", 1), "tcp", 80, True),
        (pod("gryffindor", 1), pod("hufflepuff", 1), "tcp", 8080, False),
    ]))
    return steps


def priority_field() -> list[Step]:
    subject = conf.house_pods("gryffindor")
    sly = [conf.house_pods("slytherin")]
    deny50 = conf.cnp("priority-50-example", "Admin", 50, subject,
                      ingress=[conf.rule("deny-all-ingress-from-slytherin", "Deny", sly)],
                      egress=[conf.rule("deny-all-egress-to-slytherin", "Deny", sly, key="to")])
    pass60 = conf.cnp("old-priority-60-new-priority-40-example", "Admin", 60, subject,
                      ingress=[conf.rule("pass-all-ingress-from-slytherin", "Pass", sly)],
                      egress=[conf.rule("pass-all-egress-to-slytherin", "Pass", sly, key="to")])
    baseline = conf.cnp("default", "Baseline", 10, subject,
                        ingress=[conf.rule("allow-all-ingress-from-slytherin", "Accept", sly)],
                        egress=[conf.rule("allow-all-egress-to-slytherin", "Accept", sly,
                                          key="to")])
    harry, draco = pod("gryffindor", 0), pod("slytherin", 0)
    pass40 = copy.deepcopy(pass60)
    pass40["spec"]["priority"] = 40
    return [
        ([deny50, pass60, baseline], [], [
            (draco, harry, "tcp", 80, False), (pod("slytherin", 1), harry, "tcp", 8080, False),
            (harry, draco, "tcp", 80, False)]),
        ([pass40], [], [
            (draco, harry, "tcp", 80, True), (pod("slytherin", 1), harry, "tcp", 8080, True),
            (harry, draco, "tcp", 80, True), (pod("gryffindor", 1), draco, "tcp", 8080, True)]),
    ]


def baseline_ingress_udp() -> list[Step]:
    def from_ns(house: str) -> list[Raw]:
        return [{"namespaces": conf.by_name(house)}]
    policy = conf.cnp("default", "Baseline", 10, {"namespaces": conf.by_name("hufflepuff")},
                      ingress=[
        conf.rule("allow-from-ravenclaw-everything", "Accept", from_ns("ravenclaw")),
        conf.rule("deny-from-ravenclaw-everything", "Deny", from_ns("ravenclaw")),
        conf.rule("deny-from-slytherin-at-port-5353", "Deny", from_ns("slytherin"),
                  [conf.port("udp", 5353)]),
        conf.rule("allow-from-gryffindor-at-port-53", "Accept", from_ns("gryffindor"),
                  [conf.port("udp", 53)]),
        conf.rule("deny-from-gryffindor-everything-else", "Deny", from_ns("gryffindor")),
    ])
    mutated = copy.deepcopy(policy)
    rules = mutated["spec"]["ingress"]
    rules[0], rules[1] = rules[1], rules[0]
    return [
        ([policy], [], [
            (pod("ravenclaw", 0), pod("hufflepuff", 0), "udp", 53, True),
            (pod("ravenclaw", 1), pod("hufflepuff", 0), "udp", 5353, True),
            (pod("gryffindor", 0), pod("hufflepuff", 1), "udp", 53, True),
            (pod("gryffindor", 1), pod("hufflepuff", 1), "udp", 5353, False)]),
        ([mutated], [], [
            (pod("ravenclaw", 0), pod("hufflepuff", 1), "udp", 53, False),
            (pod("ravenclaw", 1), pod("hufflepuff", 1), "udp", 5353, False),
            (pod("slytherin", 0), pod("hufflepuff", 0), "udp", 5353, False),
            (pod("slytherin", 1), pod("hufflepuff", 0), "udp", 53, True)]),
    ]


def baseline_egress_tcp_and_networkpolicy() -> list[Step]:
    to = [{"namespaces": conf.by_name("hufflepuff")}]
    policy = conf.cnp("default", "Baseline", 10, {"namespaces": conf.by_name("ravenclaw")},
                      egress=[
        conf.rule("allow-to-hufflepuff-at-port-8080", "Accept", to, [conf.port("tcp", 8080)],
                  key="to"),
        conf.rule("deny-to-hufflepuff-everything-else", "Deny", to, key="to"),
    ])
    np = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "metadata": {"namespace": conf.ns("ravenclaw"), "name": "allow-80"},
          "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                   "egress": [{"ports": [{"port": 80}]}]}}
    src = pod("ravenclaw", 0)
    return [
        ([policy], [], [(src, pod("hufflepuff", 0), "tcp", 8080, True),
                        (src, pod("hufflepuff", 0), "tcp", 80, False)]),
        ([np], [], [(src, pod("hufflepuff", 0), "tcp", 80, True),
                              (src, pod("hufflepuff", 0), "tcp", 8080, False)]),
    ]


def integration(v1alpha1: bool) -> list[Step]:
    sly = [{"namespaces": conf.by_house("slytherin")}]
    subject = {"namespaces": conf.by_house("gryffindor")}
    if v1alpha1:
        api = "policy.networking.k8s.io/v1alpha1"
        admin: Raw = {"apiVersion": api, "kind": "AdminNetworkPolicy",
                      "metadata": {"name": "pass-example"}, "spec": {"priority": 10,
                                                                     "subject": subject}}
        baseline: Raw = {"apiVersion": api, "kind": "BaselineAdminNetworkPolicy",
                         "metadata": {"name": "default"}, "spec": {"subject": subject}}
        for p in (admin, baseline):
            p["spec"]["ingress"] = [conf.rule("deny-all-ingress-from-slytherin", "Deny", sly)]
            p["spec"]["egress"] = [conf.rule("deny-all-egress-to-slytherin", "Deny", sly,
                                             key="to")]
    else:
        admin = conf.cnp("pass-example", "Admin", 10, subject,
                         ingress=[conf.rule("deny-all-ingress-from-slytherin", "Deny", sly)],
                         egress=[conf.rule("deny-all-egress-to-slytherin", "Deny", sly,
                                           key="to")])
        baseline = conf.cnp("default", "Baseline", 10, subject,
                            ingress=[conf.rule("deny-all-ingress-from-slytherin", "Deny", sly)],
                            egress=[conf.rule("deny-all-egress-to-slytherin", "Deny", sly,
                                              key="to")])
    np = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "metadata": {"namespace": conf.ns("gryffindor"), "name": "allow-slytherin"},
          "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                   "ingress": [{"from": [{"namespaceSelector": conf.by_house("slytherin")}]}],
                   "egress": [{"to": [{"namespaceSelector": conf.by_house("slytherin")}]}]}}
    harry0, harry1 = pod("gryffindor", 0), pod("gryffindor", 1)
    draco0, draco1 = pod("slytherin", 0), pod("slytherin", 1)
    passing = copy.deepcopy(admin)
    passing["spec"]["ingress"][0]["action"] = "Pass"
    passing["spec"]["egress"][0]["action"] = "Pass"
    steps: list[Step] = [
        ([admin, np, baseline], [], [
            (draco0, harry0, "tcp", 80, False), (draco1, harry0, "tcp", 8080, False),
            (harry0, draco0, "tcp", 80, False), (harry1, draco0, "tcp", 8080, False)]),
        ([passing], [], [
            (draco0, harry0, "tcp", 80, True), (draco1, harry0, "tcp", 8080, True),
            (harry0, draco0, "tcp", 80, True), (harry1, draco0, "tcp", 8080, True)]),
    ]
    # Without the NetworkPolicy, the Baseline tier's deny decides.
    steps.append(([], [np], [(draco0, harry0, "tcp", 80, False), (draco0, harry0, "udp", 53, False),
                             (harry0, draco0, "sctp", 9003, False),
                             (harry1, draco0, "tcp", 8080, False)]))
    if v1alpha1:  # Allow is Accept: above the BaselineAdminNetworkPolicy's deny
        allowing = copy.deepcopy(passing)
        allowing["spec"]["ingress"][0]["action"] = "Allow"
        steps.append(([allowing], [], [(draco0, harry0, "udp", 53, True),
                                       (harry0, draco0, "sctp", 9003, False)]))
    return steps


def _pod_ips(state: lab.LabState) -> dict[str, str]:
    return {k: next(ip for ip in p["ips"] if ":" not in ip) for k, p in state.pods.items()}


def test_conformance_steps_in_the_kernel(
    lab_factory: Callable[..., lab.LabState],
    write_manifests: Callable[[list[Raw]], Path],
) -> None:
    began = time.monotonic()
    state = lab_factory([write_manifests(world())], nodes=2)
    assert {p["node"] for p in state.pods.values()} == set(NODE_NAMES)
    assert [state.pods[c]["netns"] for c in CENTAUR] == [n.netns for n in state.node_nets()]
    cases: dict[str, list[Step]] = {
        "admin-ingress-tcp": admin_ingress_tcp(),
        "admin-egress-udp-sctp": admin_egress_by_protocol(),
        "admin-inline-cidr": inline_cidr(_pod_ips(state)),
        "admin-node-peers-named-ports": node_peers_and_named_ports(),
        "admin-priority": priority_field(),
        "baseline-ingress-udp": baseline_ingress_udp(),
        "baseline-egress-tcp-networkpolicy": baseline_egress_tcp_and_networkpolicy(),
        "integration-v1alpha2": integration(v1alpha1=False),
        "integration-v1alpha1": integration(v1alpha1=True),
    }
    problems: list[str] = []
    pokes = 0
    for case, steps in cases.items():
        policies: dict[tuple[str, str], Raw] = {}
        for number, (applied, deleted, expected) in enumerate(steps):
            if applied:
                lab.apply(state, [write_manifests(applied)])
            if deleted:
                lab.delete(state, [write_manifests(deleted)])
            policies |= {(o["kind"], o["metadata"]["name"]): o for o in applied
                         if o["kind"] in POLICY_KINDS}
            wanted = sorted({(n, proto.upper()) for _, _, proto, n, _ in expected})
            docs = probe_ports(state, wanted, 4, 0.5)
            problems += [f"{case} step {number}: kernel and model: {p}"
                         for p in check_documents(state, docs, 4)]
            got = {(d["port"], d["protocol"]): d["matrix"] for d in docs}
            for src, dst, proto, n, ok in expected:
                pokes += 1
                if got[(n, proto.upper())][src][dst] is not ok:
                    problems.append(f"{case} step {number}: {src} -> {dst} {n}/{proto}: "
                                    f"conformance says {'allowed' if ok else 'denied'}")
        lab.delete(state, [write_manifests(list(policies.values()))])
    assert problems == []
    assert pokes >= 80
    elapsed = time.monotonic() - began
    assert elapsed < 150, f"{elapsed:.0f} s: over CI's budget for this test"
