"""Upstream NetworkPolicy e2e cases run in the lab: the kernel's verdicts on real packets must
equal the model's, pair by pair, with pods on two nodes. Routed only: the tables and the
program are the same on a bridge, whose own traps (flooding, ARP, neighbour discovery) the
datapath tests check in both topologies; the bridged run cost CI 65 s."""

from __future__ import annotations

import pytest

from enforcer.commands.lab import check_documents, probe_documents, probe_ports
from enforcer.lab import lab
from tests.lab import upstream

pytestmark = pytest.mark.kernel

def _ipv4(state: lab.LabState) -> dict[str, str]:
    return {k: next(ip for ip in p["ips"] if ":" not in ip) for k, p in state.pods.items()}


def _run_cases(state: lab.LabState, write_manifests) -> None:
    problems: list[str] = []
    for name, policies in upstream.cases(_ipv4(state)).items():
        path = write_manifests(policies)
        lab.apply(state, [path])
        docs = probe_ports(state, upstream.PROBED, 4, 0.5)
        problems += [f"{name}: {p}" for p in check_documents(state, docs, 4)]
        for doc in docs:
            denied = sum(not ok for row in doc["matrix"].values() for ok in row.values())
            if name.startswith("default-deny"):
                assert denied > 0, f"{name}: nothing denied on {doc['port']}/{doc['protocol']}"
        lab.delete(state, [path])
    assert problems == []


@pytest.mark.parametrize("topology", ["routed"])
def test_upstream_cases_match_model(lab_factory, write_manifests, topology: str) -> None:
    state = lab_factory(
        [write_manifests(upstream.cluster())], topology=topology, nodes=2, ipv6=False
    )
    assert {p["node"] for p in state.pods.values()} == {"node1", "node2"}
    _run_cases(state, write_manifests)


def test_label_changes_and_deletes_follow_the_model(lab_factory, write_manifests) -> None:
    state = lab_factory([write_manifests(upstream.cluster())], nodes=2)
    allow_from_b = upstream.policy(
        "p",
        "x",
        {
            "podSelector": upstream.sel(pod="a"),
            "ingress": [{"from": [{"namespaceSelector": upstream.sel(team="blue")}]}],
        },
    )
    lab.apply(state, [write_manifests([allow_from_b])])

    def reach(src: str, dst: str) -> bool:
        doc = probe_documents(state, 80, "TCP", 4, 0.5)[0]
        assert check_documents(state, [doc], 4) == []
        return doc["matrix"][src][dst]

    assert not reach("y/b", "x/a")
    # Namespace relabel: y joins team blue.
    lab.apply(state, [write_manifests([upstream.namespace("y", {"team": "blue"})])])
    assert reach("y/b", "x/a")
    # Pod relabel: x/a loses the label the policy selects, so it is no longer isolated.
    lab.apply(
        state,
        [
            write_manifests(
                [
                    upstream.pod("x", "a")
                    | {"metadata": {"namespace": "x", "name": "a", "labels": {"pod": "renamed"}}}
                ]
            )
        ],
    )
    assert reach("z/c", "x/a")
    # Policy delete: back to open.
    lab.apply(state, [write_manifests([upstream.pod("x", "a")])])
    assert not reach("z/c", "x/a")
    lab.delete(state, [write_manifests([allow_from_b])])
    assert reach("z/c", "x/a")


def test_ipv6_lab_enforces_the_same(lab_factory, write_manifests) -> None:
    state = lab_factory([write_manifests(upstream.cluster())], nodes=2, ipv6=True)
    lab.apply(
        state,
        [write_manifests(upstream.cases(_ipv4(state))["pod-and-namespace-selector"])],
    )
    docs = probe_ports(state, [(80, "TCP"), (80, "UDP")], 6, 0.5)
    assert check_documents(state, docs, 6) == []
    for doc in docs:
        assert not doc["matrix"]["z/b"]["x/a"]
        assert doc["matrix"]["y/b"]["x/a"]
