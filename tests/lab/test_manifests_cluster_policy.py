"""While the agents do not enforce cluster-scoped policies (enforcer.model.clusterpolicy.ENFORCED
off, set so here whatever the build's switch), the lab refuses them (no kernel): a probe must
never run as if they were. With it on: tests/lab/test_manifests_cluster_policy_enforced.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from enforcer.lab import manifests as mf
from enforcer.model import clusterpolicy


def test_cluster_policies_are_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clusterpolicy, "ENFORCED", False)
    path = tmp_path / "guardrails.yaml"
    path.write_text(yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
        {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
         "metadata": {"name": "tenant-isolation"},
         "spec": {"tier": "Admin", "priority": 10, "subject": {"namespaces": {}}}},
        {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
         "metadata": {"name": "default"}, "spec": {"subject": {"namespaces": {}}}},
    ]))
    objects, errors = mf.read_raw([path])
    assert [mf.object_id(o) for o in objects] == [("Namespace", "", "x")]
    assert [e.split(" not taken: ")[0] for e in errors] == [
        f"{path}: ClusterNetworkPolicy tenant-isolation",
        f"{path}: BaselineAdminNetworkPolicy default",
    ]
    assert all("does not enforce cluster-scoped policies" in e for e in errors)
