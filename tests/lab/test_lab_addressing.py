"""A lab from manifests that carry their own nodes and addresses, bridged on two nodes: the
nodes are the ones the manifests name, each node's bridge subnet holds its pods' addresses,
and real packets get the model's verdicts. Before the fix this lab had four nodes (node1 and
node2 from --nodes, worker-a and worker-b from the manifests), and pods whose addresses lay
in another node's bridge subnet could not reach each other. The same lab (one, for CI's time)
then shows what the CLI says of its nodes: their namespaces, and their agents' drops."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import ip_address
from typing import Any

import pytest
import yaml

from enforcer.commands.lab import check_documents, probe_documents
from enforcer.lab import lab
from enforcer.lab.probe import probe_matrix
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


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.LabState]:
    manifests = tmp_path_factory.mktemp("addressing") / "lab.yaml"
    manifests.write_text(yaml.safe_dump_all(_objects()))
    name = f"t{secrets.token_hex(3)}"
    try:
        yield lab.up([manifests], name, "bridged", nodes=2)
    finally:
        lab.down(name)
        assert name not in lab.list_labs()


def test_manifest_nodes_and_addresses_bridged(state: lab.LabState, write_manifests) -> None:
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


def enforcer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "enforcer.cli", *args], capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_lab_status_names_namespaces_and_lab_monitor_shows_a_nodes_drops(
    state: lab.LabState,
) -> None:
    netns = {n.name: n.netns for n in state.node_nets()}
    table = enforcer("lab", "status", "--name", state.name).stdout
    for node, ns in netns.items():
        assert any(line.split()[:2] == [node, ns] for line in table.splitlines()), table
    doc = json.loads(enforcer("lab", "status", "--name", state.name, "--output", "json").stdout)
    assert {n: d["netns"] for n, d in doc["nodes"].items()} == netns
    # A node's namespace as a new user would try it: the agent there wants a token.
    refused = enforcer("monitor", "--agent", lab.AGENT_ADDR, "--netns", netns["worker-a"])
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: the agent refused") and refused.stderr.count("\n") == 1
    unknown = enforcer("lab", "monitor", "--name", state.name, "--node", "worker-z")
    assert unknown.returncode == 1
    assert unknown.stderr == (f"error: no node 'worker-z' in lab {state.name} "
                              "(its nodes: worker-a, worker-b)\n")  # fmt: skip
    # lab monitor: x/a's node drops x/b's connection (only-from-y).
    monitor = subprocess.Popen(
        [sys.executable, "-m", "enforcer.cli", "lab", "monitor", "--name", state.name,
         "--node", "worker-a", "--count", "1", "--output", "json"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    pods = {e.key: e for e in lab.probe_endpoints(state)}
    deadline = time.monotonic() + 15
    while monitor.poll() is None and time.monotonic() < deadline:
        probe_matrix([pods["x/b"]], 80, "TCP", 0.3, destinations=[pods["x/a"]])
    monitor.kill()
    out, _ = monitor.communicate()
    event = json.loads(out)
    assert (event["src_pod"], event["dst_pod"], event["node"]) == ("x/b", "x/a", "worker-a")
