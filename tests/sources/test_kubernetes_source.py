"""KubernetesSource against the fake API server, over HTTP, with the real kubernetes client."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from enforcer.sources.base import EventType, SourceEvent, source_from_spec
from enforcer.sources.kubernetes import DEFAULT_KINDS, KubernetesSource
from tests.fakeapi import FakeKubeAPI
from tests.sources.builders import k8s_source, namespace, node, pod, policy
from tests.sources.conftest import RunSource
from tests.sources.recorder import Recorder, wait_until

KINDS = ("Namespace", "Pod", "NetworkPolicy", "Node")


def seed(api: FakeKubeAPI) -> None:
    api.create(namespace("prod", {"team": "a"}))
    api.create(namespace("dev"))
    api.create(pod("web-0", "prod", {"app": "web"}, "10.0.0.10"))
    api.create(pod("db-0", "prod", {"app": "db"}, "10.0.0.11"))
    api.create(pod("tool", "dev", {"app": "tool"}, "10.0.1.5", node="node-b"))
    api.create(policy("deny-all", "prod"))
    api.create(node("node-a", "192.168.1.10"))


def synced(rec: Recorder, n: int = 1) -> bool:
    return rec.synced >= n


def assert_converged(rec: Recorder, api: FakeKubeAPI) -> None:
    """The recorder's state is exactly the server's: same objects at the same versions."""
    want = {}
    for kind in KINDS:
        for obj in api.objects(kind):
            meta = obj["metadata"]
            want[(kind, meta.get("namespace"), meta["name"])] = meta["resourceVersion"]
    _, state = rec.snapshot()
    got = {key: obj["metadata"]["resourceVersion"] for key, obj in state.items()}
    assert got == want


def test_initial_sync_lists_every_kind_then_synced_once(
    api: FakeKubeAPI, run_source: RunSource
) -> None:
    seed(api)
    big = pod("big", "prod", {"app": "big"}, "10.0.0.12")
    big["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "x" * 5000
    }
    big["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    big["spec"]["containers"].append({"name": "side", "image": "busybox", "env": [{"name": "A"}]})
    big["spec"]["volumes"] = [{"name": "v", "emptyDir": {}}]
    api.create(big)
    source = k8s_source(api, page_size=2)  # 4 pods: the list is paged over 2 requests
    assert not source.healthy
    rec = run_source(source)
    rec.wait(synced, what="SYNCED")
    events, _ = rec.snapshot()
    # SYNCED comes once, after all the ADDED events of every kind, and nothing else is sent.
    assert [e.type for e in events].count(EventType.SYNCED) == 1
    assert events[-1].type is EventType.SYNCED
    assert all(e.type is EventType.ADDED for e in events[:-1])
    assert_converged(rec, api)
    assert source.healthy and source.last_sync_time is not None
    pod_lists = api.list_requests("Pod")
    assert len(pod_lists) == 2 and pod_lists[1].query.get("continue")
    assert pod_lists[0].query.get("resourceVersion") == "0"  # from the watch cache
    assert "resourceVersion" not in pod_lists[1].query  # the API refuses it with continue

    # Objects are camelCase dicts with kind/apiVersion filled in (list items lack them) and
    # stripped to what policy needs.
    web = rec.state[("Pod", "prod", "web-0")]
    assert web["kind"] == "Pod" and web["apiVersion"] == "v1"
    assert web["status"]["podIPs"] == [{"ip": "10.0.0.10"}]
    assert web["spec"]["containers"] == [
        {"name": "app", "ports": [{"name": "http", "containerPort": 80}]}
    ]
    stripped = rec.state[("Pod", "prod", "big")]
    assert "annotations" not in stripped["metadata"]
    assert "managedFields" not in stripped["metadata"]
    assert "volumes" not in stripped["spec"]
    assert [c["name"] for c in stripped["spec"]["containers"]] == ["app"]  # "side" has no ports
    assert stripped["metadata"]["uid"] and stripped["metadata"]["labels"] == {"app": "big"}
    pol = rec.state[("NetworkPolicy", "prod", "deny-all")]
    assert pol["apiVersion"] == "networking.k8s.io/v1"
    assert pol["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    ns = rec.state[("Namespace", None, "prod")]
    assert ns["metadata"]["labels"] == {"team": "a", "kubernetes.io/metadata.name": "prod"}
    n = rec.state[("Node", None, "node-a")]
    assert n["status"]["addresses"] == [{"type": "InternalIP", "address": "192.168.1.10"}]
    # Every kind is then watched from the list's resourceVersion, with bookmarks.
    api.wait_for_watches(4)
    for kind in KINDS:
        (watch,) = api.watch_requests(kind)
        assert watch.query["allowWatchBookmarks"] == "true"
        assert int(watch.query["resourceVersion"]) >= 1000
        assert int(watch.query["timeoutSeconds"]) >= 30


def test_pod_add_label_change_and_ip_reuse_by_new_uid(
    api: FakeKubeAPI, run_source: RunSource
) -> None:
    seed(api)
    rec = run_source(k8s_source(api))
    rec.wait(synced)
    api.wait_for_watches(4)

    created = api.create(pod("web-1", "prod", {"app": "web"}, "10.0.0.20"))
    rec.wait(lambda r: ("Pod", "prod", "web-1") in r.state, what="pod add")
    added = rec.of("Pod", EventType.ADDED)[-1]
    assert added.obj is not None and added.obj["metadata"]["uid"] == created["metadata"]["uid"]
    assert added.resource_version == created["metadata"]["resourceVersion"]

    moved = api.get("Pod", "web-1", "prod")
    assert moved is not None
    moved["metadata"]["labels"] = {"app": "web", "tier": "front"}
    api.update(moved)
    rec.wait(lambda r: r.labels("Pod", "web-1", "prod") == {"app": "web", "tier": "front"})
    assert rec.of("Pod", EventType.MODIFIED)[-1].obj["metadata"]["name"] == "web-1"  # type: ignore[index]

    # The IP 10.0.0.20 passes to a new pod (new UID, same name even): a DELETED for the old
    # UID, then an ADDED for the new one, in that order.
    api.delete("Pod", "web-1", "prod")
    reborn = api.create(pod("web-1", "prod", {"app": "web"}, "10.0.0.20", uid="uid-new"))
    rec.wait(lambda r: len(r.of("Pod", EventType.ADDED)) >= 5, what="re-add")
    tail = [e for e in rec.of("Pod") if e.obj and e.obj["metadata"]["name"] == "web-1"][-2:]
    assert [e.type for e in tail] == [EventType.DELETED, EventType.ADDED]
    assert tail[0].obj["metadata"]["uid"] == created["metadata"]["uid"]  # type: ignore[index]
    assert tail[1].obj["metadata"]["uid"] == "uid-new" == reborn["metadata"]["uid"]  # type: ignore[index]
    assert_converged(rec, api)


def test_policy_add_update_delete_and_namespace_relabel(
    api: FakeKubeAPI, run_source: RunSource
) -> None:
    seed(api)
    rec = run_source(k8s_source(api))
    rec.wait(synced)
    key = ("NetworkPolicy", "prod", "allow-web")
    spec = {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}],
    }
    api.create(policy("allow-web", "prod", spec))
    rec.wait(lambda r: key in r.state, what="policy add")
    assert rec.state[key]["spec"] == spec

    spec2 = {**spec, "ingress": [{"ports": [{"port": 8080, "protocol": "TCP"}]}]}
    api.update(policy("allow-web", "prod", spec2))
    rec.wait(lambda r: r.state.get(key, {}).get("spec") == spec2, what="policy update")

    api.delete("NetworkPolicy", "allow-web", "prod")
    rec.wait(lambda r: key not in r.state, what="policy delete")
    assert rec.of("NetworkPolicy")[-1].type is EventType.DELETED

    api.update(namespace("dev", {"team": "a"}))
    rec.wait(lambda r: (r.labels("Namespace", "dev") or {}).get("team") == "a", what="ns relabel")
    assert_converged(rec, api)


def test_bookmarks_advance_the_resource_version(api: FakeKubeAPI, run_source: RunSource) -> None:
    seed(api)
    source = k8s_source(api)
    rec = run_source(source)
    rec.wait(synced)
    api.wait_for_watches(4)
    start_rv = source.resource_versions["Pod"]
    for _ in range(5):  # other resources move the global revision; no Pod event
        api.create(namespace(f"ns-{time.monotonic_ns()}"))
    api.bookmark()
    current = api.resource_version
    wait_until(lambda: source.resource_versions["Pod"] == current, what="bookmark rv")
    assert start_rv is not None and int(start_rv) < int(current)
    # No event was emitted for the bookmark itself.
    assert all(e.type is not EventType.MODIFIED for e in rec.of("Pod"))
    # A dropped watch resumes from the bookmarked revision, not the older listed one.
    api.drop_connections()
    wait_until(lambda: len(api.watch_requests("Pod")) >= 2, what="pod rewatch")
    assert api.watch_requests("Pod")[-1].query["resourceVersion"] == current
    assert source.relists["Pod"] == 0


@pytest.mark.parametrize("gone_as_http_status", [False, True], ids=["error-event", "http-410"])
def test_expired_history_relists_and_detects_deletions(
    api: FakeKubeAPI, run_source: RunSource, gone_as_http_status: bool
) -> None:
    api.gone_as_http_status = gone_as_http_status
    seed(api)
    source = k8s_source(api)
    rec = run_source(source)
    rec.wait(synced)
    api.wait_for_watches(4)
    # While the agent is away, a pod and a policy go, a pod comes, and the history is compacted.
    api.stop()
    wait_until(lambda: not source.healthy, what="unhealthy")
    api.delete("Pod", "db-0", "prod")
    api.delete("NetworkPolicy", "deny-all", "prod")
    api.create(pod("cache-0", "prod", {"app": "cache"}, "10.0.0.30"))
    api.expire_history()
    api.start()

    rec.wait(lambda r: r.synced >= 2, timeout=10, what="SYNCED after relist")
    wait_until(lambda: source.healthy, what="healthy")
    # Every kind was relisted (its watch got 410) and each relist is RESET, ADDED..., SYNCED.
    rec.wait(lambda r: r.synced >= 5, timeout=10, what="one SYNCED per relisted kind")
    events, _ = rec.snapshot()
    resets = [i for i, e in enumerate(events) if e.type is EventType.RESET]
    assert sorted(events[i].kind for i in resets) == sorted(KINDS)  # type: ignore[type-var]
    for i in resets:
        kind = events[i].kind
        j = i + 1
        while events[j].type is EventType.ADDED:
            assert events[j].kind == kind  # a relist is never interleaved with another kind's
            j += 1
        assert events[j].type is EventType.SYNCED
    assert all(source.relists[k] == 1 for k in KINDS)
    # The relist is a consistent read (no resourceVersion), not the possibly stale cache.
    assert "resourceVersion" not in api.list_requests("Pod")[-1].query
    assert ("Pod", "prod", "db-0") not in rec.state
    assert ("NetworkPolicy", "prod", "deny-all") not in rec.state
    assert ("Pod", "prod", "cache-0") in rec.state
    assert_converged(rec, api)


def test_watch_expired_while_connected_relists(api: FakeKubeAPI, run_source: RunSource) -> None:
    seed(api)
    source = k8s_source(api)
    rec = run_source(source)
    rec.wait(synced)
    api.wait_for_watches(4)
    api.expire_history()  # open watches get an ERROR event with a 410 Status
    rec.wait(lambda r: r.synced >= 5, what="relists")
    assert all(source.relists[k] == 1 for k in KINDS)
    api.create(pod("late", "dev", {}, "10.0.1.9"))  # the new watches work
    rec.wait(lambda r: ("Pod", "dev", "late") in r.state)
    assert_converged(rec, api)


def test_relist_before_the_first_sync_still_converges(
    api: FakeKubeAPI, run_source: RunSource
) -> None:
    """Pods are listed and watched while the Node list is still slow; the pod watch expires
    and pods are relisted (RESET) before the first SYNCED, which then covers both."""
    seed(api)
    api.list_delay["Node"] = 0.8
    source = k8s_source(api)
    rec = run_source(source)
    api.wait_for_watches(1, kind="Pod")
    api.delete("Pod", "db-0", "prod")
    api.expire_history()  # the pod watch gets 410: relist while Node is still listing
    rec.wait(lambda r: len(r.of("Pod", EventType.RESET)) == 1, what="pod RESET")
    assert rec.synced == 0
    rec.wait(synced, timeout=5, what="first SYNCED")
    api.list_delay.clear()
    rec.wait(lambda r: source.healthy and api.open_watches() == 4, what="all watching")
    assert ("Pod", "prod", "db-0") not in rec.state
    assert source.relists["Pod"] >= 1
    assert_converged(rec, api)


def test_dropped_connections_resume_without_duplicates_or_losses(
    api: FakeKubeAPI, run_source: RunSource
) -> None:
    seed(api)
    source = k8s_source(api)
    rec = run_source(source)
    rec.wait(synced)
    api.wait_for_watches(4)
    first_rv = int(api.resource_version)
    done = threading.Event()

    def churn() -> None:
        for i in range(150):
            name = f"p{i % 20}"
            if api.get("Pod", name, "dev") is None:
                api.create(pod(name, "dev", {"i": str(i)}, f"10.1.0.{i % 20 + 1}"))
            elif i % 3 == 0:
                api.delete("Pod", name, "dev")
            else:
                api.update(pod(name, "dev", {"i": str(i)}, f"10.1.0.{i % 20 + 1}"))
            time.sleep(0.002)
        done.set()

    t = threading.Thread(target=churn)
    t.start()
    while not done.wait(0.03):
        api.drop_connections()
    t.join()
    wait_until(lambda: source.resource_versions["Pod"] == _last_pod_rv(api), what="caught up")
    # The pod events received after the sync are exactly the server's, in order, once each.
    got = [
        (e.type.value, e.resource_version)
        for e in rec.of("Pod")
        if e.resource_version and int(e.resource_version) > first_rv
    ]
    want = [(ev.type, str(ev.rv)) for ev in api._history if ev.kind == "Pod" and ev.rv > first_rv]
    assert len(want) == 150
    assert got == want
    assert source.relists["Pod"] == 0
    assert source.watch_restarts["Pod"] >= 3
    # Each resumed watch started from the last resourceVersion delivered before the drop.
    resumed = [int(r.query["resourceVersion"]) for r in api.watch_requests("Pod")]
    assert resumed == sorted(resumed)
    assert_converged(rec, api)


def _last_pod_rv(api: FakeKubeAPI) -> str:
    return str(max(ev.rv for ev in api._history if ev.kind == "Pod"))


def test_api_outage_then_recovery(api: FakeKubeAPI, run_source: RunSource) -> None:
    seed(api)
    source = k8s_source(api)
    rec = run_source(source)
    rec.wait(synced)
    wait_until(lambda: source.healthy, what="healthy")
    api.wait_for_watches(4)

    api.stop()
    wait_until(lambda: not source.healthy, what="unhealthy while down")
    api.create(pod("new", "prod", {"app": "web"}, "10.0.0.40"))
    api.update(namespace("dev", {"team": "b"}))
    time.sleep(0.5)  # several failed reconnects, backing off
    assert not source.healthy
    # Retried, with backoff: a few attempts per kind, not a hot loop.
    assert 4 <= sum(source.errors.values()) <= 4 * 25
    api.start()  # same port; the history still covers the outage: resume, no relist
    wait_until(lambda: source.healthy, timeout=10, what="healthy again")
    rec.wait(lambda r: ("Pod", "prod", "new") in r.state, what="pod from the outage")
    rec.wait(lambda r: (r.labels("Namespace", "dev") or {}).get("team") == "b")
    assert all(source.relists[k] == 0 for k in KINDS)
    assert rec.synced == 1
    assert_converged(rec, api)


def test_api_errors_make_unhealthy_until_it_answers(
    api: FakeKubeAPI, run_source: RunSource
) -> None:
    seed(api)
    source = k8s_source(api)
    rec = run_source(source)
    rec.wait(synced)
    api.wait_for_watches(4)
    api.fail_requests(503)  # up, but every request fails (and open watches are cut)
    wait_until(lambda: not source.healthy, what="unhealthy on 503")
    api.delete("Pod", "tool", "dev")
    api.fail_requests(None)
    wait_until(lambda: source.healthy, timeout=10, what="healthy after 503s")
    rec.wait(lambda r: ("Pod", "dev", "tool") not in r.state)
    assert_converged(rec, api)


def test_no_api_at_start_then_it_comes_up(run_source: RunSource) -> None:
    api = FakeKubeAPI().start()
    port = api.port
    api.stop()
    seed(api)
    source = k8s_source(api)
    rec = run_source(source)
    time.sleep(0.3)
    assert not source.healthy and rec.synced == 0
    api = api.start()
    try:
        assert api.port == port
        rec.wait(synced, timeout=10, what="first sync after the API came up")
        assert source.healthy
        assert_converged(rec, api)
    finally:
        api.stop()


def test_watch_timeout_resumes_cleanly(api: FakeKubeAPI, run_source: RunSource) -> None:
    seed(api)
    source = k8s_source(api, watch_timeout=1)  # the server ends each watch after 1 s
    rec = run_source(source)
    rec.wait(synced)
    wait_until(lambda: len(api.watch_requests("Pod")) >= 3, timeout=6, what="rewatches")
    api.create(pod("after", "prod", {}, "10.0.0.50"))
    rec.wait(lambda r: ("Pod", "prod", "after") in r.state)
    assert source.relists["Pod"] == 0 and source.errors["Pod"] == 0
    assert len(rec.of("Pod", EventType.ADDED)) == 4  # 3 listed + 1: nothing repeated
    assert source.healthy


def test_streams_that_end_at_once_are_retried_with_backoff(
    api: FakeKubeAPI, run_source: RunSource
) -> None:
    seed(api)
    api.max_watch_seconds = 0  # e.g. a proxy closing every stream: clean, but immediate
    source = k8s_source(api)
    rec = run_source(source)
    rec.wait(synced)
    time.sleep(1.0)
    n = len(api.watch_requests("Pod"))
    # Backing off (0.05 s doubling to 0.3 s, jittered): a few per second, not a hot loop.
    assert 2 <= n <= 20, n
    assert source.healthy  # a clean end is not an outage
    api.max_watch_seconds = None
    api.create(pod("after", "prod", {}, "10.0.0.70"))
    rec.wait(lambda r: ("Pod", "prod", "after") in r.state, timeout=5)


def test_stop_returns_promptly_with_open_watches(api: FakeKubeAPI) -> None:
    seed(api)
    source = k8s_source(api)
    rec = Recorder()
    stop = threading.Event()
    t = threading.Thread(target=source.run, args=(rec, stop))
    t.start()
    rec.wait(synced)
    api.wait_for_watches(4)
    began = time.monotonic()
    stop.set()
    t.join(timeout=5)
    assert not t.is_alive()
    assert time.monotonic() - began < 2.0


def test_source_from_spec_with_a_kubeconfig(
    api: FakeKubeAPI, run_source: RunSource, tmp_path: Path
) -> None:
    seed(api)
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        f"""
apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "{api.url}"}}}}]
users: [{{name: me, user: {{token: secret-token}}}}]
contexts: [{{name: ctx, context: {{cluster: fake, user: me}}}}]
current-context: ctx
"""
    )
    source = source_from_spec("k8s", kubeconfig=str(kubeconfig), node_name="node-a")
    assert isinstance(source, KubernetesSource)
    assert api.url in source.describe()
    rec = run_source(source)
    rec.wait(synced)
    assert_converged(rec, api)


def test_services_and_endpoint_slices_on_request(api: FakeKubeAPI, run_source: RunSource) -> None:
    seed(api)
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "prod", "annotations": {"a": "b"}},
            "spec": {
                "selector": {"app": "web"},
                "clusterIP": "10.96.0.10",
                "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        }
    )
    api.create(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "web-abc",
                "namespace": "prod",
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.10"], "conditions": {"ready": True}}],
            "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
        }
    )
    source = k8s_source(api, kinds=(*DEFAULT_KINDS, "Service", "EndpointSlice"))
    rec = run_source(source)
    rec.wait(synced)
    svc = rec.state[("Service", "prod", "web")]
    assert svc["apiVersion"] == "v1" and svc["spec"]["clusterIP"] == "10.96.0.10"
    assert "annotations" not in svc["metadata"]
    eps = rec.state[("EndpointSlice", "prod", "web-abc")]
    assert eps["apiVersion"] == "discovery.k8s.io/v1"
    assert eps["endpoints"][0]["addresses"] == ["10.0.0.10"]
    assert eps["metadata"]["labels"] == {"kubernetes.io/service-name": "web"}
    api.delete("EndpointSlice", "web-abc", "prod")
    rec.wait(lambda r: ("EndpointSlice", "prod", "web-abc") not in r.state)


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    from enforcer.sources.kubernetes import _Backoff

    b = _Backoff(0.1, 2.0)
    for attempt in range(12):
        bound = min(2.0, 0.1 * 2**attempt)
        delay = b.next()
        assert 0 <= delay <= bound
    spread = [b.next() for _ in range(500)]
    assert max(spread) <= 2.0 and max(spread) > 1.5 and min(spread) < 0.5  # jittered over [0, cap]
    b.reset()
    assert b.next() <= 0.1


def test_in_cluster_config_is_used_in_a_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a pod (KUBERNETES_SERVICE_HOST set, no --kubeconfig): the service account's token and
    CA, over HTTPS to the service address."""
    from kubernetes.config import incluster_config

    token = tmp_path / "token"
    token.write_text("sa-token")
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    source = source_from_spec("k8s", kubeconfig=None, node_name="node-a")
    assert isinstance(source, KubernetesSource)
    cfg = source.api_client.configuration
    assert cfg.host == "https://10.96.0.1:443"
    assert cfg.ssl_ca_cert == str(ca)
    assert cfg.api_key["BearerToken"] == "bearer sa-token"
    assert cfg.refresh_api_key_hook is not None  # rotated service account tokens are re-read
    assert "in-cluster" in source.describe()


def test_a_failing_consumer_does_not_kill_the_watch(api: FakeKubeAPI) -> None:
    seed(api)
    rec = Recorder()
    failures = [1]

    def flaky(event: SourceEvent) -> None:
        if failures and event.kind == "Pod":
            failures.pop()
            raise RuntimeError("consumer bug")
        rec(event)

    source = k8s_source(api)
    stop = threading.Event()
    t = threading.Thread(target=source.run, args=(flaky, stop))
    t.start()
    try:
        rec.wait(synced, what="SYNCED despite the failure")
        api.create(pod("after", "prod", {}, "10.0.0.60"))
        rec.wait(lambda r: ("Pod", "prod", "after") in r.state, what="still watching")
        assert_converged(rec, api)
    finally:
        stop.set()
        t.join(5)
