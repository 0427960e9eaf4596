"""Differential test: random mixes of ClusterNetworkPolicies (Admin and Baseline tiers; Accept,
Deny, Pass; namespaces, pods, networks and nodes peers; ports, ranges and named ports) and
NetworkPolicies applied to a running two-node lab with hostNetwork pods on both nodes: the
kernel's verdicts on real packets must equal the model's, pair by pair (`lab probe --check`)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from enforcer.commands.lab import check_documents, probe_ports
from enforcer.lab import lab
from enforcer.model import clusterpolicy
from tests.lab import upstream
from tests.lab.test_lab_differential import policies as network_policies

pytestmark = pytest.mark.kernel

Raw = dict[str, Any]
NODE_LABELS = {"node1": {"role": "a"}, "node2": {"role": "b"}}


def world() -> list[Raw]:
    out = upstream.cluster()
    for obj in out:
        if obj["kind"] == "Pod":  # x/a, x/b, x/c, y/a, ...: both nodes in turn
            obj["spec"]["nodeName"] = "node1" if obj["metadata"]["name"] != "b" else "node2"
    for node, labels in NODE_LABELS.items():
        out.append({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": node, "labels": dict(labels)}})
        host = upstream.pod("h", node)
        host["spec"] |= {"nodeName": node, "hostNetwork": True}
        out.append(host)
    return out


def _selector(key: str, values: list[str]) -> st.SearchStrategy[Raw]:
    return st.one_of(
        st.just({}),
        st.builds(lambda v: {"matchLabels": {key: v}}, st.sampled_from(values)),
        st.builds(lambda op, v: {"matchExpressions": [{"key": key, "operator": op,
                                                       "values": [v]}]},
                  st.sampled_from(["In", "NotIn"]), st.sampled_from(values)),
    )


NS = _selector("ns", ["x", "y", "z"])
POD = _selector("pod", ["a", "b", "c"])
PODS_PEER = st.builds(lambda n, p: {"pods": {"namespaceSelector": n, "podSelector": p}}, NS, POD)
NS_PEER = st.builds(lambda n: {"namespaces": n}, NS)


def _port(proto: str, number: int) -> Raw:
    return {proto: {"destinationPort": {"number": number}}}


NUMBERED = st.sampled_from([
    _port("tcp", 80), _port("udp", 81), _port("sctp", 80),
    {"tcp": {"destinationPort": {"range": {"start": 79, "end": 81}}}},
    {"udp": {"destinationPort": {"range": {"start": 80, "end": 90}}}},
])
NAMED = st.sampled_from([{"destinationNamedPort": "serve-80-tcp"},
                         {"destinationNamedPort": "serve-81-udp"}])


def _rule(peers: st.SearchStrategy[Raw], ports: st.SearchStrategy[Raw], key: str,
          ) -> st.SearchStrategy[Raw]:
    return st.builds(
        lambda action, to, protocols: {"action": action, key: to,
                                       **({"protocols": protocols} if protocols else {})},
        st.sampled_from(["Accept", "Deny", "Pass"]),
        st.lists(peers, min_size=1, max_size=2),
        st.lists(ports, max_size=2),
    )


def _egress_rules(addresses: list[str]) -> st.SearchStrategy[Raw]:
    networks = st.builds(lambda cidrs: {"networks": cidrs}, st.lists(
        st.sampled_from([*(f"{a}/32" for a in addresses), "198.18.0.0/15", "198.19.255.0/24",
                         "0.0.0.0/0"]), min_size=1, max_size=2, unique=True))
    nodes = st.builds(lambda s: {"nodes": s}, _selector("role", ["a", "b"]))
    selectors = st.one_of(NS_PEER, PODS_PEER)
    return st.one_of(
        _rule(st.one_of(selectors, networks, nodes), NUMBERED, "to"),
        _rule(selectors, st.one_of(NUMBERED, NAMED), "to"),  # named ports: pod peers only
    )


def cluster_policies(addresses: list[str]) -> st.SearchStrategy[list[Raw]]:
    ingress = _rule(st.one_of(NS_PEER, PODS_PEER), st.one_of(NUMBERED, NAMED), "from")
    subject = st.one_of(
        st.builds(lambda n: {"namespaces": n}, NS),
        st.builds(lambda n, p: {"pods": {"namespaceSelector": n, "podSelector": p}}, NS, POD),
    )
    one = st.builds(
        lambda tier, priority, subj, i, e: {"tier": tier, "priority": priority, "subject": subj,
                                            "ingress": i, "egress": e},
        st.sampled_from(["Admin", "Admin", "Baseline"]), st.integers(0, 3), subject,
        st.lists(ingress, max_size=2), st.lists(_egress_rules(addresses), max_size=2),
    )
    return st.lists(one, min_size=1, max_size=3).map(lambda specs: [
        {"apiVersion": clusterpolicy.V1ALPHA2, "kind": "ClusterNetworkPolicy",
         "metadata": {"name": f"c{i}"}, "spec": spec} for i, spec in enumerate(specs)])


@pytest.fixture(scope="module")
def running_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.LabState]:
    manifests = Path(tmp_path_factory.mktemp("cpdifflab")) / "cluster.yaml"
    manifests.write_text(yaml.safe_dump_all(world()))
    name = f"c{secrets.token_hex(3)}"
    try:
        yield lab.up([manifests], name, "routed", nodes=2)
    finally:
        lab.down(name)


def test_random_cluster_policies_kernel_equals_model(
    running_lab: lab.LabState, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = Path(tmp_path_factory.mktemp("cpdiff"))
    state = running_lab
    assert {state.pods[f"h/{n}"]["netns"] for n in NODE_LABELS} == {
        n.netns for n in state.node_nets()}
    ip_of = {k: p["ips"][0] for k, p in state.pods.items() if not p.get("host_network")}
    addresses = [ip_of["x/a"], ip_of["y/b"], str(state.node_nets()[1].fabric_v4)]
    denied = [0]

    # No shrinking: each example costs seconds of packets; a failure prints its example.
    @settings(max_examples=12, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(cluster_policies(addresses),
           st.one_of(st.just([]), network_policies(ip_of)))
    def check(cluster: list[Raw], nps: list[Raw]) -> None:
        path = folder / "policies.yaml"
        path.write_text(yaml.safe_dump_all(cluster + nps))
        lab.apply(state, [path])
        try:
            docs = probe_ports(state, [(80, "TCP"), (81, "UDP")], 4, 0.4)
            assert check_documents(state, docs, 4) == [], yaml.safe_dump_all(cluster + nps)
            denied[0] += sum(not ok for d in docs for row in d["matrix"].values()
                             for ok in row.values())
        finally:
            lab.delete(state, [path])

    check()
    assert denied[0] > 0, "no example denied anything: the draw tests nothing"
