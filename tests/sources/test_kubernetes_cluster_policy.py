"""The Network Policy API's cluster-scoped custom resources from the Kubernetes API:
ClusterNetworkPolicy (v1alpha2), AdminNetworkPolicy and BaselineAdminNetworkPolicy (v1alpha1).
Listed and watched at their cluster-wide paths, stripped to metadata and spec; each CRD may be
absent (no outage, retried, said once) and installed later, or removed while watched."""

from __future__ import annotations

from typing import Any

import pytest

from enforcer.sources.base import EventType
from enforcer.sources.kubernetes import CLUSTER_POLICY_KINDS, DEFAULT_KINDS
from tests.fakeapi import FakeKubeAPI
from tests.sources.builders import k8s_source, namespace
from tests.sources.conftest import RunSource
from tests.sources.test_kubernetes_staged import LogRecorder

KINDS = (*DEFAULT_KINDS, *CLUSTER_POLICY_KINDS)
PATHS = {
    "ClusterNetworkPolicy": "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies",
    "AdminNetworkPolicy": "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies",
    "BaselineAdminNetworkPolicy":
        "/apis/policy.networking.k8s.io/v1alpha1/baselineadminnetworkpolicies",
}


def cluster_policy(kind: str, name: str, priority: int = 10) -> dict[str, Any]:
    spec: dict[str, Any] = {"subject": {"namespaces": {}},
                            "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}
    if kind == "ClusterNetworkPolicy":
        spec |= {"tier": "Admin", "priority": priority}
    elif kind == "AdminNetworkPolicy":
        spec |= {"priority": priority}
    api = "policy.networking.k8s.io/" + ("v1alpha2" if kind == "ClusterNetworkPolicy"
                                         else "v1alpha1")
    return {"apiVersion": api, "kind": kind,
            "metadata": {"name": name, "managedFields": [{"manager": "kubectl"}]},
            "spec": spec, "status": {"conditions": []}}


@pytest.fixture
def source_and_logs(api: FakeKubeAPI) -> tuple[Any, LogRecorder]:
    source = k8s_source(api, kinds=KINDS, crd_retry=0.1, crd_retry_max=0.4)
    logs = LogRecorder()
    source.log = logs
    return source, logs


def test_listed_stripped_and_watched(
    api: FakeKubeAPI, run_source: RunSource, source_and_logs: tuple[Any, LogRecorder]
) -> None:
    api.create(namespace("prod"))
    for kind in CLUSTER_POLICY_KINDS:
        api.create(cluster_policy(kind, "default"))
    source, _ = source_and_logs
    rec = run_source(source)
    rec.wait(lambda r: r.synced >= 1, what="SYNCED")
    for kind in CLUSTER_POLICY_KINDS:
        got = rec.state[(kind, None, "default")]
        assert got["kind"] == kind and got["apiVersion"] == cluster_policy(kind, "x")["apiVersion"]
        assert "managedFields" not in got["metadata"] and "status" not in got
        assert got["spec"] == cluster_policy(kind, "default")["spec"]
        (listed,) = api.list_requests(kind)
        assert listed.path == PATHS[kind]
        api.wait_for_watches(1, kind)
    assert source.healthy and not source.unavailable
    api.update(cluster_policy("ClusterNetworkPolicy", "default", priority=20))
    rec.wait(lambda r: r.state[("ClusterNetworkPolicy", None, "default")]["spec"]["priority"]
             == 20, what="MODIFIED")
    api.delete("AdminNetworkPolicy", "default")
    rec.wait(lambda r: ("AdminNetworkPolicy", None, "default") not in r.state, what="DELETED")


def test_absent_then_installed_then_removed(
    api: FakeKubeAPI, run_source: RunSource, source_and_logs: tuple[Any, LogRecorder]
) -> None:
    api.create(namespace("prod"))
    for kind in CLUSTER_POLICY_KINDS:
        api.uninstall_crd(kind)
    source, logs = source_and_logs
    rec = run_source(source)
    rec.wait(lambda r: r.synced >= 1, what="SYNCED without the CRDs")
    assert source.healthy and source.unavailable == set(CLUSTER_POLICY_KINDS)
    for kind in CLUSTER_POLICY_KINDS:
        assert [(lv, "not installed" in m) for lv, m in logs.about(kind)] == [("warning", True)]

    api.install_crd("ClusterNetworkPolicy")
    api.create(cluster_policy("ClusterNetworkPolicy", "late"))
    rec.wait(lambda r: ("ClusterNetworkPolicy", None, "late") in r.state, timeout=5,
             what="delivered once installed")
    assert [e.type for e in rec.of("ClusterNetworkPolicy")] == [EventType.RESET, EventType.ADDED]
    api.wait_for_watches(1, "ClusterNetworkPolicy")
    assert source.unavailable == {"AdminNetworkPolicy", "BaselineAdminNetworkPolicy"}
    api.create(cluster_policy("ClusterNetworkPolicy", "watched"))
    rec.wait(lambda r: ("ClusterNetworkPolicy", None, "watched") in r.state, what="watched")

    api.uninstall_crd("ClusterNetworkPolicy")
    rec.wait(lambda r: not [k for k in r.state if k[0] == "ClusterNetworkPolicy"],
             what="gone with the CRD")
    assert source.healthy
