"""Cluster-scoped policies and Nodes with the folder source (`--source dir:`): read from files
into the intake's state as changes for the compiler; an invalid version is rejected with its
message naming the file, the object and the field, and the previous valid one stays; a file
removed removes them."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from enforcer.agent.intake import Intake, ObjectChange
from enforcer.sources.directory import DirectorySource

CNP: dict[str, Any] = {
    "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
    "metadata": {"name": "deny-all"},
    "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
             "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}}
BANP: dict[str, Any] = {
    "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
    "metadata": {"name": "default"},
    "spec": {"subject": {"namespaces": {}},
             "egress": [{"action": "Deny", "to": [{"nodes": {"matchLabels": {"a": "b"}}}]}]}}
NODE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"a": "b"}},
    "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.7"}]}}


def _write(path: Path, *docs: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump_all(docs))
    os.replace(tmp, path)


def test_read_from_files_into_the_state(tmp_path: Path) -> None:
    source = DirectorySource(tmp_path)
    intake = Intake(source.describe)
    changes: list[ObjectChange] = []

    def scan() -> None:
        def emit(event: Any) -> None:
            change = intake.apply(event)
            if change is not None:
                changes.append(change)
        source.scan(emit)

    _write(tmp_path / "guardrails.yaml", CNP, BANP)
    _write(tmp_path / "nodes.yaml", NODE)
    scan()
    assert sorted(c.key for c in changes) == [
        ("BaselineAdminNetworkPolicy", None, "default"), ("ClusterNetworkPolicy", None, "deny-all"),
        ("Node", None, "n1")]
    assert sorted(intake.state.cluster_policies) == [
        "BaselineAdminNetworkPolicy/default", "ClusterNetworkPolicy/deny-all"]
    assert "n1" in intake.state.nodes and not intake.not_enforced

    bad = copy.deepcopy(CNP)
    bad["spec"]["ingress"][0]["from"] = [{"networks": ["10.0.0.0/8"]}]  # egress-only peer
    _write(tmp_path / "guardrails.yaml", bad, BANP)
    changes.clear()
    scan()
    assert changes == []
    message = intake.invalid[-1]
    assert message.startswith(f"{tmp_path / 'guardrails.yaml'}: ClusterNetworkPolicy deny-all")
    assert "deny-all" in message and "spec.ingress[0].from[0]" in message, message
    kept = intake.state.cluster_policies["ClusterNetworkPolicy/deny-all"]
    assert kept.ingress[0].action == "Deny"

    (tmp_path / "guardrails.yaml").unlink()
    (tmp_path / "nodes.yaml").unlink()
    scan()
    assert not intake.state.cluster_policies and not intake.state.nodes and not intake.objects
