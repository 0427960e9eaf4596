"""The fake API server against the official client's own helpers: protocol fidelity."""

from __future__ import annotations

import json
import threading
import time

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.fakeapi import FakeKubeAPI
from tests.sources.builders import pod


@pytest.fixture
def core(api: FakeKubeAPI) -> client.CoreV1Api:
    cfg = client.Configuration()
    cfg.host = api.url
    return client.CoreV1Api(client.ApiClient(cfg))


def test_typed_list_and_namespaced_paths(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.create(pod("a", "x", {"app": "a"}, "10.0.0.1"))
    api.create(pod("b", "y", {"app": "b"}, "10.0.0.2"))
    pods = core.list_pod_for_all_namespaces()  # deserialized into V1PodList by the client
    assert [p.metadata.name for p in pods.items] == ["a", "b"]
    assert pods.items[0].status.pod_ip == "10.0.0.1"
    assert pods.metadata.resource_version == api.resource_version
    only_y = core.list_namespaced_pod("y")
    assert [p.metadata.name for p in only_y.items] == ["b"]


def test_paged_list_is_one_snapshot(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    for i in range(5):
        api.create(pod(f"p{i}", "x"))
    first = core.list_pod_for_all_namespaces(limit=2)
    assert len(first.items) == 2 and first.metadata._continue
    api.create(pod("p-late", "x"))  # after the snapshot: not in later pages
    api.delete("Pod", "p4", "x")  # deleted after the snapshot: still in it
    names = [p.metadata.name for p in first.items]
    token = first.metadata._continue
    while token:
        page = core.list_pod_for_all_namespaces(limit=2, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version
        names += [p.metadata.name for p in page.items]
        token = page.metadata._continue
    assert names == [f"p{i}" for i in range(5)]
    with pytest.raises(ApiException) as err:  # like the real API
        core.list_pod_for_all_namespaces(limit=2, _continue="x", resource_version="1")
    assert err.value.status == 400


def test_official_watch_helper_streams_typed_events(
    api: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    api.create(pod("a", "x"))
    rv = core.list_pod_for_all_namespaces().metadata.resource_version

    def later() -> None:
        time.sleep(0.2)
        api.create(pod("b", "x", {"v": "1"}))
        api.update(pod("b", "x", {"v": "2"}))
        api.delete("Pod", "a", "x")

    threading.Thread(target=later).start()
    seen = []
    w = watch.Watch()
    for event in w.stream(core.list_pod_for_all_namespaces, resource_version=rv, timeout_seconds=2):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "a")]


def test_watch_from_zero_starts_with_the_current_state(
    api: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    api.create(pod("a", "x"))
    api.create(pod("b", "y"))
    resp = core.list_pod_for_all_namespaces(
        watch=True, resource_version="0", timeout_seconds=1, _preload_content=False
    )
    lines = [json.loads(line) for line in resp.data.splitlines() if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
    ]


def test_compacted_history_answers_410(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.create(pod("a", "x"))
    old = api.resource_version
    api.history_limit = 2
    for i in range(3):
        api.create(pod(f"n{i}", "x"))  # pushes `old`'s successors out of the window
    resp = core.list_pod_for_all_namespaces(
        watch=True, resource_version=old, timeout_seconds=1, _preload_content=False
    )
    (event,) = [json.loads(line) for line in resp.data.splitlines() if line.strip()]
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
