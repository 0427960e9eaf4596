"""hostNetwork pods in the lab: each runs in its node's network namespace with its node's
address (the Node object's InternalIP the lab writes), so a pod reaching it reaches the node,
and `lab probe` probes from and to it over TCP, UDP and SCTP, as the model says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from enforcer.commands.lab import check_documents, probe_documents
from enforcer.lab import lab
from enforcer.lab import manifests as mf
from enforcer.lab.topology import existing_netns

pytestmark = pytest.mark.kernel

PORTS = [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 81, "protocol": "UDP"},
         {"containerPort": 82, "protocol": "SCTP"}]


def _pod(ns: str, name: str, node: str, host: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": node, "containers": [{"name": "c", "ports": PORTS}]}
    if host:
        spec["hostNetwork"] = True
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": ns, "name": name, "labels": {"app": name}}, "spec": spec}


def _policy(node2: str) -> dict[str, Any]:
    """x/a: egress only to node2's address on TCP; ingress only from node2's address on TCP."""
    block = [{"ipBlock": {"cidr": f"{node2}/32"}}]
    tcp = [{"protocol": "TCP", "port": 80}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": "x", "name": "a-node2-only"},
            "spec": {"podSelector": {"matchLabels": {"app": "a"}},
                     "policyTypes": ["Ingress", "Egress"],
                     "egress": [{"to": block, "ports": tcp}],
                     "ingress": [{"from": block, "ports": tcp}]}}


def _matrices(state: lab.LabState) -> dict[str, dict[str, dict[str, bool]]]:
    docs = probe_documents(state, None, None, 4, 0.5)
    assert check_documents(state, docs, 4) == []
    return {d["protocol"]: d["matrix"] for d in docs}


def test_host_network_pods_are_their_nodes(lab_factory, write_manifests) -> None:
    pods = [_pod("x", "a", "node1"), _pod("x", "b", "node2"),
            _pod("host", "h1", "node1", host=True), _pod("host", "h2", "node2", host=True)]
    state = lab_factory([write_manifests(pods)], nodes=2)
    nodes = {n.name: n for n in state.node_nets()}
    node1, node2 = (str(nodes[n].fabric_v4) for n in ("node1", "node2"))
    assert state.pods["host/h1"]["netns"] == nodes["node1"].netns
    assert state.pods["host/h2"]["ips"] == [node2]
    written = {mf.object_id(o)[2]: o for o in mf.read_folder(state.manifest_dir)
               if o["kind"] == "Node"}
    assert {n: [a["address"] for a in o["status"]["addresses"] if a["type"] == "InternalIP"]
            for n, o in written.items()} == {"node1": [node1], "node2": [node2]}
    h1 = next(o for o in mf.read_folder(state.manifest_dir)
              if mf.object_id(o) == ("Pod", "host", "h1"))
    assert h1["status"]["podIP"] == node1 and h1["spec"]["hostNetwork"] is True

    open_ = _matrices(state)
    for proto in ("TCP", "UDP", "SCTP"):
        assert all(all(row.values()) for row in open_[proto].values()), proto

    lab.apply(state, [write_manifests([_policy(node2)])])
    m = _matrices(state)
    assert m["TCP"]["x/a"]["host/h2"] and not m["UDP"]["x/a"]["host/h2"]
    assert not m["TCP"]["x/a"]["host/h1"] and not m["SCTP"]["x/a"]["host/h2"]
    assert m["TCP"]["host/h2"]["x/a"] and not m["UDP"]["host/h2"]["x/a"]
    assert not m["SCTP"]["host/h2"]["x/a"]
    # Its own node always reaches it (kubelet probes), on any protocol.
    assert m["UDP"]["host/h1"]["x/a"] and m["SCTP"]["host/h1"]["x/a"]
    assert not m["TCP"]["x/b"]["x/a"] and m["TCP"]["x/b"]["host/h1"]

    # A hostNetwork pod deleted leaves its node (its namespace, its agent) in place.
    gone = write_manifests([_pod("host", "h2", "node2", host=True)])
    lab.delete(state, [gone])
    assert nodes["node2"].netns in existing_netns() and "host/h2" not in state.pods
    assert _matrices(state)["TCP"]["x/a"]["x/b"] is False
    lab.apply(state, [gone])
    assert _matrices(state)["TCP"]["x/a"]["host/h2"]


def test_a_single_node_has_an_address_of_its_own(lab_factory, write_manifests) -> None:
    """With one node there is no fabric: the node's address is on its loopback."""
    pods = [_pod("x", "a", "node1"), _pod("host", "h1", "node1", host=True)]
    state = lab_factory([write_manifests(pods)], nodes=1, ipv6=True, topology="bridged")
    (node,) = state.node_nets()
    assert state.pods["host/h1"]["ips"] == [str(node.fabric_v4), str(node.fabric_v6)]
    for family in (4, 6):
        docs = probe_documents(state, None, None, family, 0.5)
        assert check_documents(state, docs, family) == []
        for doc in docs:
            assert doc["matrix"]["x/a"]["host/h1"], (family, doc["protocol"])


def test_host_network_addresses_are_the_nodes(lab_factory, tmp_path: Path) -> None:
    pod = _pod("host", "h1", "node1", host=True)
    pod["status"] = {"podIP": "198.18.1.50", "podIPs": [{"ip": "198.18.1.50"}]}
    path = tmp_path / "pods.yaml"
    path.write_text(yaml.safe_dump(pod))
    with pytest.raises(lab.LabError, match=r"host/h1: hostNetwork, so its addresses are its "
                       r"node's \(node1: 198\.19\.255\.1\), not 198\.18\.1\.50 \(nothing created"):
        lab_factory([path])
