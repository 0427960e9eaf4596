"""A lab from manifests that carry their own nodes and addresses, bridged on two nodes: the
nodes are the ones the manifests name, each node's bridge subnet holds its pods' addresses,
and real packets get the model's verdicts. Before the fix this lab had four nodes (node1 and
node2 from --nodes, worker-a and worker-b from the manifests), and pods whose addresses lay
in another node's bridge subnet could not reach each other."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest

from enforcer.commands.lab import check_documents, probe_documents
from enforcer.lab import lab
from tests.lab import upstream

pytestmark = pytest.mark.kernel


def _pod(ns: str, name: str, node: str | None = None, ip: str | None = None) -> dict[str, Any]:
    pod = upstream.pod(ns, name)
    if node:
        pod["spec"]["nodeName"] = node
    if ip:
        pod["status"] = {"phase": "Running", "podIPs": [{"ip": ip}]}
    return pod


def _objects() -> list[dict[str, Any]]:
    # Each worker's pods in the subnet the old lab gave the other --nodes node.
    worker_b = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-b"},
                "spec": {"podCIDR": "198.18.1.0/24"}}
    only_from_y = upstream.policy("only-from-y", "x", {
        "podSelector": upstream.sel(pod="a"),
        "ingress": [{"from": [{"namespaceSelector": upstream.sel(ns="y")}]}],
    })
    return [
        upstream.namespace("x"), upstream.namespace("y"), worker_b, only_from_y,
        _pod("x", "a", "worker-a", "198.18.2.10"),
        _pod("x", "b", "worker-b", "198.18.1.10"),
        _pod("x", "c"), _pod("x", "d"), _pod("y", "e"),
        _pod("y", "f", ip="198.18.1.20"),  # no node: the one whose subnet holds its address
    ]  # fmt: skip


def test_manifest_nodes_and_addresses_bridged(lab_factory, write_manifests) -> None:
    state = lab_factory([write_manifests(_objects())], topology="bridged", nodes=2)
    nodes = {n.name: n for n in state.node_nets()}
    assert set(nodes) == {"worker-a", "worker-b"}
    assert str(nodes["worker-a"].subnet_v4) == "198.18.2.0/24"  # from x/a's address
    assert str(nodes["worker-b"].subnet_v4) == "198.18.1.0/24"  # its spec.podCIDR
    assert state.pods["y/f"]["node"] == "worker-b"
    for key, pod in state.pods.items():  # allocated ones too: from their node's subnet
        assert ip_address(pod["ips"][0]) in nodes[pod["node"]].subnet_v4, key
    docs = probe_documents(state, 80, "TCP", 4, 1.0)
    assert check_documents(state, docs, 4) == []
    matrix = docs[0]["matrix"]
    assert matrix["y/f"]["x/a"] and not matrix["x/b"]["x/a"]
    assert matrix["x/c"]["x/b"] and matrix["y/e"]["y/f"] and matrix["x/d"]["x/c"]
    # lab apply keeps to the plan: no new nodes, no address in another node's subnet.
    for bad, why in (
        (_pod("x", "g", "worker-c"), "spec.nodeName 'worker-c' is not a node of this lab"),
        (_pod("x", "g", "worker-b", "198.18.2.30"),
         "pod x/g on node worker-b has 198.18.2.30, outside worker-b's 198.18.1.0/24"),
    ):
        with pytest.raises(lab.LabError, match="nothing applied") as caught:
            lab.apply(state, [write_manifests([bad])])
        assert why in str(caught.value)
    assert "x/g" not in state.pods
