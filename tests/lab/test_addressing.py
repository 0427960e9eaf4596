"""The lab's address plan, without a kernel: which nodes, which subnets, where pods go, and
the refusal of plans no CNI could produce, with messages naming pods, nodes and addresses."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
import yaml

from enforcer.lab import addressing as a
from enforcer.lab import lab


def pod(key: str, node: str | None = None, *ips: str) -> a.RequestedPod:
    return a.requested_pod(key, node, ips)


def plan(
    pods: Sequence[a.RequestedPod],
    count: int = 1,
    topology: str = "bridged",
    cidrs: dict[str, list[str]] | None = None,
) -> tuple[a.NodeSubnets, list[a.PlacedPod], list[str]]:
    named = [p.node for p in pods if p.node] + list(cidrs or {})
    nodes, _ = a.lab_nodes(named, count)
    pod_cidrs = {n: a.parse_pod_cidrs(n, c) for n, c in (cidrs or {}).items()}
    subnets = a.node_subnets(nodes, pods, pod_cidrs)
    placed = a.place_pods(pods, subnets, set(), 0, ipv6=True)
    return subnets, placed, a.problems(topology, subnets, placed)


def v4(subnets: a.NodeSubnets) -> dict[str, str]:
    return {n: str(by[4].network) for n, by in subnets.items()}


def test_the_manifests_name_the_nodes_and_nodes_adds_up_to_n() -> None:
    assert a.lab_nodes(["worker-b", "worker-a", "worker-b"], 2) == (
        ["worker-a", "worker-b"], "nodes: worker-a, worker-b (named by the manifests)"
    )
    names, note = a.lab_nodes(["node2", "w"], 3)
    assert names == ["node1", "node2", "w"]
    assert note == "nodes: node2, w (named by the manifests); node1 (to make --nodes 3)"
    assert a.lab_nodes([], 2) == (["node1", "node2"], "nodes: node1, node2 (--nodes 2)")
    assert a.lab_nodes(["node2", "node10"], 1)[0] == ["node2", "node10"]


def test_a_node_name_must_be_a_dns_subdomain() -> None:
    with pytest.raises(a.PlanError, match=r"'../etc'.*DNS subdomain"):
        a.lab_nodes(["../etc"], 1)


def test_subnets_from_pod_cidr_then_pods_then_defaults_that_overlap_nothing() -> None:
    pods = [pod("x/a", "w1", "198.18.2.10"), pod("x/b", "w1", "198.18.2.11", "2001:db8::5"),
            pod("x/c", "w3")]  # fmt: skip
    subnets, placed, problems = plan(pods, 4, cidrs={"w2": ["198.18.1.0/24"]})
    assert problems == []
    assert v4(subnets) == {"node1": "198.18.3.0/24", "w1": "198.18.2.0/24",
                           "w2": "198.18.1.0/24", "w3": "198.18.4.0/24"}  # fmt: skip
    assert subnets["w1"][6].network == ip_network("2001:db8::/64")
    assert subnets["w2"][4].origin == "from spec.podCIDR"
    assert subnets["w1"][4].origin == "from its pods' addresses"
    assert [p.ips for p in placed if p.key == "x/c"] == [
        (ip_address("198.18.4.2"), ip_address("2001:2:0:3::2"))
    ]


def test_a_nodes_pods_spanning_two_24s_give_it_their_covering_subnet() -> None:
    subnets, _, problems = plan([pod("x/a", "w", "10.244.1.5"), pod("x/b", "w", "10.244.2.5")])
    assert problems == []
    assert v4(subnets)["w"] == "10.244.0.0/22"


def test_a_pod_with_an_address_and_no_node_goes_where_its_address_belongs() -> None:
    pods = [pod("x/a", "w1", "10.244.1.5"), pod("x/b", "w2", "10.244.2.5"),
            pod("x/c", None, "10.244.2.9"), pod("x/d", None, "10.244.7.9"),
            pod("x/e", None, "10.244.7.10")]  # fmt: skip
    subnets, placed, problems = plan(pods, 3)
    assert problems == []
    assert {p.key: p.node for p in placed} == {
        "x/a": "w1", "x/b": "w2", "x/c": "w2", "x/d": "node1", "x/e": "node1"
    }
    assert v4(subnets)["node1"] == "10.244.7.0/24"


def test_pods_without_addresses_go_round_robin_into_their_nodes_subnets() -> None:
    pods = [pod("x/a", "w1", "10.244.1.5"), pod("x/b"), pod("x/c"), pod("x/d", "w1")]
    _, placed, problems = plan(pods, 2)
    assert problems == []
    assert [(p.key, p.node, str(p.ips[0])) for p in placed] == [
        ("x/a", "w1", "10.244.1.5"), ("x/b", "w1", "10.244.1.2"),
        ("x/c", "node1", "198.18.1.2"), ("x/d", "w1", "10.244.1.3"),
    ]  # fmt: skip


def test_one_nodes_pod_inside_another_nodes_subnet_is_refused_when_bridged() -> None:
    pods = [pod("x/a", "w1", "10.244.1.5"), pod("x/b", "w1", "10.244.2.5"),
            pod("x/c", "w2", "10.244.2.6")]  # fmt: skip
    _, _, problems = plan(pods)
    assert len(problems) == 1
    assert problems[0].startswith(
        "nodes w1 and w2 have overlapping pod subnets, w1's 10.244.0.0/22 (from its pods' "
        "addresses) and w2's 10.244.2.0/24 (from its pods' addresses): "
        "x/b on w1 has 10.244.2.5, inside w2's subnet"
    )
    # Routed, a route per pod: any address works.
    assert plan(pods, topology="routed")[2] == []


def test_a_pod_outside_its_nodes_pod_cidr_is_refused() -> None:
    pods = [pod("x/a", "w1", "10.244.2.5"), pod("x/b", "w2", "10.244.2.6")]
    cidrs = {"w1": ["10.244.1.0/24"], "w2": ["10.244.2.0/24"]}
    _, _, problems = plan(pods, cidrs=cidrs)
    assert problems == [
        "pod x/a on node w1 has 10.244.2.5, outside w1's 10.244.1.0/24 (from spec.podCIDR); "
        "inside w2's 10.244.2.0/24 (from spec.podCIDR) (a bridged node's pods take "
        "addresses from its subnet)"
    ]


def test_overlapping_pod_cidrs_are_refused() -> None:
    _, _, problems = plan([], cidrs={"w1": ["10.244.0.0/16"], "w2": ["10.244.2.0/24"]})
    assert len(problems) == 1
    assert "nodes w1 and w2 have overlapping pod subnets" in problems[0]
    assert "10.244.0.0/16 (from spec.podCIDR)" in problems[0]


def test_duplicates_the_gateway_and_the_fabric_are_refused() -> None:
    pods = [pod("x/a", "w", "10.244.1.1"), pod("x/b", "w", "10.244.1.7"),
            pod("x/c", "w", "10.244.1.7"), pod("x/d", "v", "198.19.255.9")]  # fmt: skip
    _, _, problems = plan(pods)
    assert "pods x/b and x/c both have 10.244.1.7" in problems
    assert "pod x/d has 198.19.255.9, inside the lab's node fabric 198.19.255.0/24" in problems
    assert (
        "pod x/a on node w has 10.244.1.1, the gateway address of its node's bridge of "
        "w's 10.244.1.0/24 (from its pods' addresses)"
    ) in problems
    # Routed pods have no bridge: only the duplicate and the fabric.
    assert len(plan(pods, topology="routed")[2]) == 3  # the fabric's subnet overlap too


def test_a_bad_pod_cidr_names_the_node() -> None:
    with pytest.raises(a.PlanError, match=r"Node w: spec.podCIDR '10.244.1.5/24'"):
        a.parse_pod_cidrs("w", ["10.244.1.5/24"])


def test_cluster_cidr_is_the_default_range_or_covers_every_node() -> None:
    assert str(a.cluster_cidr([ip_network("198.18.1.0/24")], 4)) == "198.18.0.0/16"
    nets = [ip_network("10.244.1.0/24"), ip_network("10.244.2.0/24")]
    assert str(a.cluster_cidr(nets, 4)) == "10.244.0.0/22"


def _write(tmp_path: Path, objects: list[dict[str, Any]]) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    return path


def _pod_manifest(name: str, node: str, ip: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "x", "name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
            "status": {"podIPs": [{"ip": ip}]}}  # fmt: skip


def test_lab_up_refuses_before_creating_anything(tmp_path: Path) -> None:
    name = f"a{secrets.token_hex(3)}"
    manifests = _write(tmp_path, [_pod_manifest("a", "w1", "10.244.1.5"),
                                  _pod_manifest("b", "w2", "10.244.1.6")])  # fmt: skip
    with pytest.raises(lab.LabError) as caught:
        lab.up([manifests], name, "bridged", nodes=2)
    message = str(caught.value)
    assert message.startswith(f"lab {name}: an address plan no CNI would make (nothing created)")
    assert "x/b on w2 has 10.244.1.6, inside w1's subnet" in message
    assert not (lab.LAB_ROOT / name).exists()
