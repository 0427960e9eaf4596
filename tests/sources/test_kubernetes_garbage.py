"""The API server (or a proxy) sending garbage or objects past sane limits (issue 22, faults):
rejected, counted per kind and reason, memory bounded, and the agent's intake keeps the last
valid version of every object while the source keeps watching."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from enforcer.agent.intake import Intake
from enforcer.agent.metrics import SourceCollector
from enforcer.sources import limits
from enforcer.sources.base import EventType, SourceEvent
from enforcer.sources.kubernetes import READ_BYTES, _lines
from tests.fakeapi import FakeKubeAPI
from tests.sources.builders import k8s_source, namespace, pod
from tests.sources.conftest import RunSource
from tests.sources.recorder import wait_until


class IntakeFeed:
    """The source's events into the agent's intake, as the agent's loop applies them."""

    def __init__(self) -> None:
        self.invalid: list[str] = []
        self.intake = Intake(lambda: "test", self.invalid.append)
        self.synced = 0
        self.lock = threading.Lock()

    def __call__(self, event: SourceEvent) -> None:
        with self.lock:
            if event.type is EventType.SYNCED:
                self.intake.finish_relist()
                self.synced += 1
            elif event.type is EventType.RESET:
                self.intake.begin_relist(event.kind or "")
            else:
                self.intake.apply(event)

    def app(self, name: str) -> str | None:
        """The pod's app label as the intake holds it (None: it holds no such pod)."""
        with self.lock:
            obj = self.intake.objects.get(("Pod", "prod", name))
        return None if obj is None else obj.labels.get("app")


def _many_ports(obj: dict[str, Any], n: int) -> dict[str, Any]:
    obj["spec"]["containers"][0]["ports"] = [
        {"name": f"p{i}", "containerPort": 1 + i % 65535, "protocol": "TCP"} for i in range(n)
    ]  # about 55 bytes each: 100,000 are a 5.5 MB object
    return obj


def test_garbage_and_oversized_objects_are_rejected_counted_and_the_last_valid_kept(
    api: FakeKubeAPI,
) -> None:
    api.create(namespace("prod"))
    api.create(pod("web-0", "prod", {"app": "web"}, "10.0.0.10"))
    # In the first list: a pod with 100,000 containerPorts, one with 5,000 labels.
    api.create(_many_ports(pod("ports", "prod", {"app": "x"}, "10.0.0.11"), 100_000))
    api.create(pod("labels", "prod", {f"k{i}": "v" for i in range(5000)}, "10.0.0.12"))
    source = k8s_source(api, kinds=("Namespace", "Pod"))
    feed = IntakeFeed()
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(feed, stop), daemon=True)
    thread.start()
    try:
        wait_until(lambda: feed.synced == 1, what="SYNCED")
        assert feed.app("web-0") == "web"
        assert feed.app("ports") is None and feed.app("labels") is None
        assert source.rejected == {("Pod", "ports"): 1, ("Pod", "labels"): 1}
        api.wait_for_watches(1, "Pod")

        # On the watch: 100,000 ports make a line past MAX_OBJECT_BYTES (skipped unread);
        # 300 KiB of annotations, past the API server's own 256 KiB; a line that is not JSON.
        api.update(_many_ports(pod("web-0", "prod", {"app": "huge"}, "10.0.0.10"), 100_000))
        big = pod("web-0", "prod", {"app": "annotated"}, "10.0.0.10")
        big["metadata"]["annotations"] = {"a": "x" * (300 * 1024)}
        api.update(big)
        wait_until(lambda: source.rejected.get(("Pod", "annotations")) == 1, what="annotations")
        assert source.rejected[("Pod", "too_large")] == 1
        api.send_raw("Pod", b"<html><body>502 Bad Gateway</body></html>")
        wait_until(lambda: source.rejected.get(("Pod", "malformed")) == 1, what="malformed")
        assert feed.app("web-0") == "web"  # the last valid version, all along
        assert any("web-0: rejected by the source (annotations)" in m
                   for m in feed.intake.invalid)

        # The watch resumed from the last good resourceVersion: the next change arrives.
        api.update(pod("web-0", "prod", {"app": "web2"}, "10.0.0.10"))
        wait_until(lambda: feed.app("web-0") == "web2", what="converged")
        assert source.healthy
        assert feed.invalid == ["Pod"] * 3  # the intake counted each object it refused

        registry = CollectorRegistry()
        registry.register(SourceCollector(source))
        text = generate_latest(registry).decode()
        assert 'enforcer_source_rejected_total{reason="too_large",resource="Pod"} 1.0' in text
    finally:
        stop.set()
        thread.join(timeout=5)


def test_a_relist_keeps_an_object_now_rejected(api: FakeKubeAPI) -> None:
    """A relist does not take a rejected object for deleted: its last valid version stays."""
    api.create(namespace("prod"))
    api.create(pod("web-0", "prod", {"app": "web"}, "10.0.0.10"))
    feed = IntakeFeed()
    feed(SourceEvent(EventType.ADDED, "Pod", pod("web-0", "prod", {"app": "web"}, "10.0.0.10")))
    feed(SourceEvent(EventType.RESET, "Pod", None))
    bad = _many_ports(pod("web-0", "prod", {"app": "huge"}), 100_000)
    feed(SourceEvent(EventType.ADDED, "Pod", limits.stub("Pod", bad), None,
                     limits.reject_reason("Pod", bad)))
    feed(SourceEvent(EventType.SYNCED, None, None))
    assert feed.app("web-0") == "web"


def test_a_list_that_is_not_json_fails_and_is_retried(
    api: FakeKubeAPI, run_source: RunSource
) -> None:
    api.create(namespace("prod"))
    api.create(pod("web-0", "prod", {"app": "web"}, "10.0.0.10"))
    api.list_body["Pod"] = b"<html>502 Bad Gateway</html>"
    source = k8s_source(api, kinds=("Namespace", "Pod"))
    rec = run_source(source)
    wait_until(lambda: source.rejected.get(("Pod", "malformed"), 0) >= 2, what="retried")
    assert rec.synced == 0 and not source.healthy
    del api.list_body["Pod"]
    rec.wait(lambda r: r.synced == 1, what="SYNCED once the server answers again")
    assert source.healthy


def test_a_list_page_past_the_byte_limit_is_asked_for_in_halves(
    api: FakeKubeAPI, run_source: RunSource
) -> None:
    api.create(namespace("prod"))
    for i in range(40):
        api.create(pod(f"p{i}", "prod", {"app": "web"}, f"10.0.1.{i}"))
    source = k8s_source(api, kinds=("Namespace", "Pod"), max_list_page_bytes=8000)
    rec = run_source(source)
    rec.wait(lambda r: r.synced == 1, what="SYNCED")
    assert len(rec.of("Pod")) == 40
    limits_asked = [int(r.query["limit"]) for r in api.list_requests("Pod")]
    assert limits_asked[0] == 500 and min(limits_asked) < 40
    assert source.rejected[("Pod", "too_large")] >= 1


class _Stream:
    """A response streaming one endless line (no newline) then a good one."""

    def __init__(self, total: int) -> None:
        self.total = total

    def stream(self, amt: int | None = None, decode_content: bool = False) -> Iterator[bytes]:
        chunk = b"x" * (amt or READ_BYTES)
        for _ in range(self.total // len(chunk)):
            yield chunk
        yield b"\n{}\n"


def test_an_endless_watch_line_is_skipped_in_bounded_memory() -> None:
    tracemalloc.start()
    try:
        lines = list(_lines(_Stream(64 * 2**20), max_line=2**20))  # 64 MiB, 1 MiB allowed
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == [None, b"{}"]
    assert peak < 4 * 2**20


def test_limits_refuse_only_what_no_real_api_server_sends() -> None:
    real = pod("web-0", "prod", {"app": "web", "app.kubernetes.io/name": "web"}, "10.0.0.10")
    real["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration":
                                       "x" * 200_000}
    _many_ports(real, 500)
    assert limits.reject_reason("Pod", real) is None
    assert limits.reject_reason("Pod", "[]") == "malformed"
    assert limits.reject_reason("Pod", {"metadata": []}) == "malformed"
    long_value = pod("p", "prod", {"app": "x" * 64})
    assert limits.reject_reason("Pod", long_value) == "labels"
    many_ips = pod("p", "prod", {})
    many_ips["status"]["podIPs"] = [{"ip": f"10.0.0.{i}"} for i in range(100)]
    assert limits.reject_reason("Pod", many_ips) == "pod_ips"
    rules = {"metadata": {"name": "p", "namespace": "prod"},
             "spec": {"ingress": [{"from": [{"ipBlock": {"cidr": f"10.{i // 256}.{i % 256}.0/24"}}]}
                                  for i in range(30_000)]}}
    assert limits.reject_reason("NetworkPolicy", rules) == "spec"
