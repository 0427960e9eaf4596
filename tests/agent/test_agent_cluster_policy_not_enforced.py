"""Cluster-scoped policies with the folder source while enforcer.model.clusterpolicy.ENFORCED is
off (set so here, whatever the build's switch): read, said once per object as not enforced,
and never handed to the compiler (nothing enters the enforced state). With it on:
tests/agent/test_agent_cluster_policy_directory.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from enforcer.agent.intake import Intake
from enforcer.model import clusterpolicy
from enforcer.sources.base import SourceEvent
from enforcer.sources.directory import DirectorySource

CNP = {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
       "metadata": {"name": "deny-all"},
       "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
                "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}}
ANP = {**CNP, "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
       "spec": {"priority": 1, "subject": {"namespaces": {}},
                "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}}


def _write(path: Path, *docs: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump_all(docs))
    os.replace(tmp, path)


@pytest.mark.parametrize("policy", [CNP, ANP], ids=["v1alpha2", "v1alpha1"])
def test_read_said_once_and_not_enforced(
    tmp_path: Path, policy: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clusterpolicy, "ENFORCED", False)
    _write(tmp_path / "cnp.yaml", policy)
    intake = Intake(lambda: "test")
    source = DirectorySource(tmp_path)
    events: list[SourceEvent] = []

    def emit(event: SourceEvent) -> None:
        events.append(event)
        intake.apply(event)

    source.scan(emit)
    assert [e.kind for e in events if e.obj is not None] == [policy["kind"]]
    assert not intake.objects and not intake.digest
    assert intake.not_enforced == {(policy["kind"], None, "deny-all")}
    changed = {**policy, "metadata": {"name": "deny-all", "labels": {"a": "b"}}}
    _write(tmp_path / "cnp.yaml", changed)
    source.scan(lambda e: intake.apply(e))
    assert len(intake.not_enforced) == 1 and not intake.objects
    (tmp_path / "cnp.yaml").unlink()
    source.scan(lambda e: intake.apply(e))
    assert not intake.not_enforced
