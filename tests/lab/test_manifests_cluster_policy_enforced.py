"""The lab's manifests with cluster-scoped policies: they are taken, validated as the agents
will (an invalid one refuses the input, naming file, object and field), cluster-scoped; the
lab's Node objects; hostNetwork pods. No kernel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from enforcer.lab import lab
from enforcer.lab import manifests as mf

CNP = {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
       "metadata": {"name": "tenant-isolation"},
       "spec": {"tier": "Admin", "priority": 10, "subject": {"namespaces": {}},
                "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}}
BANP = {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "default"}, "spec": {"subject": {"namespaces": {}}}}


def _write(tmp_path: Path, *docs: Any) -> Path:
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump_all(list(docs)))
    return path


def test_cluster_policies_are_taken_without_a_namespace(tmp_path: Path) -> None:
    objects, errors = mf.read_raw([_write(tmp_path, CNP, BANP)])
    assert errors == []
    assert [mf.object_id(o) for o in objects] == [
        ("ClusterNetworkPolicy", "", "tenant-isolation"),
        ("BaselineAdminNetworkPolicy", "", "default"),
    ]
    assert mf.implied_namespaces(objects) == []


def test_an_invalid_one_is_refused_with_file_object_and_field(tmp_path: Path) -> None:
    bad = {**CNP, "spec": {**CNP["spec"], "priority": 1001}}
    path = _write(tmp_path, bad)
    objects, errors = mf.read_raw([path])
    assert objects == []
    (error,) = errors
    assert str(path) in error and "tenant-isolation" in error and "spec.priority" in error
    wrong = {**CNP, "apiVersion": "policy.networking.k8s.io/v1alpha1"}
    objects, errors = mf.read_raw([_write(tmp_path, wrong)])
    assert objects == [] and errors == [
        f"{tmp_path / 'in.yaml'}: ClusterNetworkPolicy tenant-isolation of "
        "policy.networking.k8s.io/v1alpha1 not read: its API is "
        "policy.networking.k8s.io/v1alpha2"
    ]


def test_an_invalid_node_is_refused(tmp_path: Path) -> None:
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node1", "labels": {"zone": "-bad-"}}}
    objects, errors = mf.read_raw([_write(tmp_path, node)])
    assert objects == [] and len(errors) == 1 and "metadata.labels" in errors[0]


def test_the_lab_node_keeps_the_manifests_labels_and_has_the_labs_addresses() -> None:
    given = {"apiVersion": "v1", "kind": "Node",
             "metadata": {"name": "node1", "labels": {"role": "infra"}},
             "status": {"addresses": [{"type": "InternalIP", "address": "10.9.9.9"}]}}
    node = mf.lab_node("node1", given, ["198.18.1.0/24"], ["198.19.255.1"])
    assert node["metadata"]["labels"] == {"kubernetes.io/hostname": "node1", "role": "infra"}
    assert node["status"]["addresses"] == [
        {"type": "InternalIP", "address": "198.19.255.1"},
        {"type": "Hostname", "address": "node1"},
    ]
    assert node["spec"] == {"podCIDR": "198.18.1.0/24", "podCIDRs": ["198.18.1.0/24"]}


def test_model_state_and_digest_take_cluster_policies_and_nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lab, "LAB_ROOT", tmp_path)
    state = lab.LabState(name="m", topology="routed", ipv6=False)
    state.manifest_dir.mkdir(parents=True)
    node = mf.lab_node("node1", None, ["198.18.1.0/24"], ["198.19.255.1"])
    for obj in (CNP, node):
        mf.write_object(state.manifest_dir, obj)
    cluster = lab.model_state(state)
    assert list(cluster.cluster_policies) == ["ClusterNetworkPolicy/tenant-isolation"]
    assert [str(ip) for ip in cluster.nodes["node1"].addresses] == ["198.19.255.1"]
    assert lab.expected_digest(state) != f"{0:016x}", "the agents take both in"
