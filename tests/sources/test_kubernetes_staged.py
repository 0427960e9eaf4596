"""StagedNetworkPolicies from the Kubernetes API: a custom resource whose CRD may be absent.

Absent (404) is no outage: the kind is listed as empty, the source stays healthy and says so
once, and lists again until the CRD appears; then its objects are delivered and watched."""

from __future__ import annotations

import time
from typing import Any

from enforcer.sources.base import EventType
from enforcer.sources.kubernetes import DEFAULT_KINDS, KubernetesSource
from tests.fakeapi import FakeKubeAPI
from tests.sources.builders import k8s_source, namespace, pod
from tests.sources.conftest import RunSource
from tests.sources.recorder import Recorder, wait_until

STAGED = "StagedNetworkPolicy"
KINDS = (*DEFAULT_KINDS, STAGED)


def staged(name: str, ns: str = "default", ports: list[int] | None = None) -> dict[str, Any]:
    rule = {"ports": [{"port": p} for p in ports]} if ports else {}
    return {
        "apiVersion": "enforcer.dev/v1alpha1",
        "kind": STAGED,
        "metadata": {
            "name": name,
            "namespace": ns,
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x" * 500},
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [rule]},
    }


class LogRecorder:
    """Stands in for the source's structlog logger: keeps (level, message, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def log(message: str, **fields: Any) -> None:
            self.lines.append((level, message, fields))

        return log

    def about(self, kind: str) -> list[tuple[str, str]]:
        return [
            (lv, msg) for lv, msg, f in list(self.lines) if f.get("kind") == kind and lv != "debug"
        ]


def source_for(api: FakeKubeAPI, **kwargs: Any) -> tuple[KubernetesSource, LogRecorder]:
    source = k8s_source(api, kinds=KINDS, crd_retry=0.1, crd_retry_max=0.4, **kwargs)
    logs = LogRecorder()
    source.log = logs
    return source, logs


def seed(api: FakeKubeAPI) -> None:
    api.create(namespace("prod"))
    api.create(pod("web-0", "prod", {"app": "web"}, "10.0.0.10"))


def test_installed_crd_staged_policies_listed_stripped_and_watched(
    api: FakeKubeAPI, run_source: RunSource
) -> None:
    seed(api)
    api.create(staged("narrow", "prod", [80]))
    source, _ = source_for(api)
    rec = run_source(source)
    rec.wait(lambda r: r.synced >= 1, what="SYNCED")
    got = rec.state[(STAGED, "prod", "narrow")]
    # Stripped like a NetworkPolicy: metadata that matters and the spec.
    assert got["apiVersion"] == "enforcer.dev/v1alpha1" and got["kind"] == STAGED
    assert "annotations" not in got["metadata"] and "managedFields" not in got["metadata"]
    assert got["spec"]["ingress"] == [{"ports": [{"port": 80}]}]
    (listed,) = api.list_requests(STAGED)
    assert listed.path == "/apis/enforcer.dev/v1alpha1/stagednetworkpolicies"
    api.wait_for_watches(1, STAGED)
    assert source.healthy and not source.unavailable

    api.update(staged("narrow", "prod", [443]))
    rec.wait(lambda r: r.state[(STAGED, "prod", "narrow")]["spec"]["ingress"][0]["ports"]
             == [{"port": 443}], what="MODIFIED")
    api.create(staged("other", "prod"))
    rec.wait(lambda r: (STAGED, "prod", "other") in r.state, what="ADDED")
    api.delete(STAGED, "narrow", "prod")
    rec.wait(lambda r: (STAGED, "prod", "narrow") not in r.state, what="DELETED")
    types = [e.type for e in rec.of(STAGED)]
    assert types == [EventType.ADDED, EventType.MODIFIED, EventType.ADDED, EventType.DELETED]


def test_absent_crd_does_not_hold_the_sync_then_is_watched_once_installed(
    api: FakeKubeAPI, run_source: RunSource
) -> None:
    seed(api)
    api.uninstall_crd(STAGED)
    source, logs = source_for(api)
    rec = run_source(source)
    # The first full sync does not wait for the missing kind, and the source is healthy.
    rec.wait(lambda r: r.synced >= 1, what="SYNCED")
    assert ("Pod", "prod", "web-0") in rec.state
    assert source.healthy and source.unavailable == {STAGED}
    # Retried with growing pauses (0.1 s doubling to 0.4 s here; 30 s to 5 min by default),
    # and logged once, not at every retry.
    wait_until(lambda: len(api.list_requests(STAGED)) >= 4, timeout=5, what="retries")
    times = []
    began = time.monotonic()
    while len(times) < 2 and time.monotonic() - began < 5:
        n = len(api.list_requests(STAGED))
        wait_until(lambda: len(api.list_requests(STAGED)) > n, timeout=5)  # noqa: B023
        times.append(time.monotonic())
    assert times[1] - times[0] >= 0.25  # at the cap, not hammering
    assert [lv for lv, _ in logs.about(STAGED)] == ["warning"]
    assert "not installed" in logs.about(STAGED)[0][1]
    assert source.healthy
    synced_before = rec.synced

    api.install_crd(STAGED)
    api.create(staged("narrow", "prod", [80]))
    rec.wait(lambda r: (STAGED, "prod", "narrow") in r.state, timeout=5, what="delivered")
    # Delivered as a relist of the kind (RESET, ADDED, SYNCED), then watched.
    rec.wait(lambda r: r.synced > synced_before, what="SYNCED after the relist")
    assert [e.type for e in rec.of(STAGED)] == [EventType.RESET, EventType.ADDED]
    api.wait_for_watches(1, STAGED)
    assert not source.unavailable and source.healthy
    assert ("info", "custom resource available, watching it") in logs.about(STAGED)
    api.create(staged("later", "prod"))
    rec.wait(lambda r: (STAGED, "prod", "later") in r.state, what="watched")


def test_crd_removed_while_watched_empties_the_kind_and_waits_for_it(
    api: FakeKubeAPI, run_source: RunSource
) -> None:
    seed(api)
    api.create(staged("narrow", "prod", [80]))
    source, logs = source_for(api)
    rec = run_source(source)
    rec.wait(lambda r: (STAGED, "prod", "narrow") in r.state, what="listed")
    api.wait_for_watches(1, STAGED)
    api.uninstall_crd(STAGED)
    rec.wait(lambda r: (STAGED, "prod", "narrow") not in r.state, what="gone")
    wait_until(lambda: source.unavailable == {STAGED}, what="unavailable")
    assert source.healthy
    # The other kinds are still watched; the staged kind comes back with its CRD.
    api.create(pod("web-1", "prod", {"app": "web"}, "10.0.0.11"))
    rec.wait(lambda r: ("Pod", "prod", "web-1") in r.state, what="pods still watched")
    api.install_crd(STAGED)
    api.create(staged("again", "prod"))
    rec.wait(lambda r: (STAGED, "prod", "again") in r.state, timeout=5, what="back")
    assert len([m for lv, m in logs.about(STAGED) if lv == "warning"]) == 1


def test_forbidden_crd_is_not_an_outage(api: FakeKubeAPI, run_source: RunSource) -> None:
    """RBAC from a release before the CRD: 403 on its list. The agent still gets ready."""
    from kubernetes.client.exceptions import ApiException

    seed(api)
    source, logs = source_for(api)
    real = source._list_fns[STAGED]

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise ApiException(status=403, reason="Forbidden")

    source._list_fns[STAGED] = forbidden
    rec: Recorder = run_source(source)
    rec.wait(lambda r: r.synced >= 1, what="SYNCED")
    assert source.healthy and source.unavailable == {STAGED}
    assert "RBAC" in logs.about(STAGED)[0][1]
    source._list_fns[STAGED] = real
    api.create(staged("narrow", "prod"))
    rec.wait(lambda r: (STAGED, "prod", "narrow") in r.state, timeout=5, what="granted")
