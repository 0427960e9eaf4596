"""The JSON API over HTTP, as the page uses it."""

from __future__ import annotations

import json
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enforcer.console.collector import NodeHealth
from enforcer.console.http import STATIC_DIR, ConsoleHTTPServer
from enforcer.flows.store import FlowStore

from .cluster import small_cluster
from .fakes import T0, record

NODES = [
    NodeHealth("node1", True, None, T0 + 2, {"ready": True, "endpoints": [{}, {}, {}]}),
    NodeHealth("node2", False, "ConnectionRefusedError: refused", None, None),
]


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[str, FlowStore]]:
    (tmp_path / "index.html").write_text("<html>page</html>")
    (tmp_path / "app.js").write_text("export {}")
    store = FlowStore(clock=lambda: T0 + 60)
    store.add(record("a/web", "b/api", 80, T0, policies=("b/allow-web",)))
    store.add(record("b/db", "b/api", 80, T0 + 1, verdict="denied", policies=("b/allow-web",)))
    server = ConsoleHTTPServer("127.0.0.1:0", store, lambda: NODES, small_cluster(),
                               static_dir=tmp_path, keepalive=0.3)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", store
    finally:
        server.stop()


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = resp.read()
            kind = resp.headers["Content-Type"]
            return resp.status, json.loads(body) if kind == "application/json" else body
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_flows_filtered_newest_last_with_why_and_stats(console: tuple[str, FlowStore]) -> None:
    base, _ = console
    status, doc = _get(f"{base}/api/flows")
    assert status == 200
    assert [f["source"] for f in doc["flows"]] == ["a/web", "b/db"]
    assert doc["flows"][0]["why"] == "allowed by b/allow-web"
    assert doc["stats"]["records"] == 2 and doc["stats"]["max_bytes"] == 64 * 2**20
    _, doc = _get(f"{base}/api/flows?verdict=denied")
    assert [f["source"] for f in doc["flows"]] == ["b/db"]
    _, doc = _get(f"{base}/api/flows?limit=1")
    assert [f["source"] for f in doc["flows"]] == ["b/db"]
    _, doc = _get(f"{base}/api/flows?since={T0 + 0.5}")
    assert [f["source"] for f in doc["flows"]] == ["b/db"]


@pytest.mark.parametrize(("query", "message"), [
    ("verdict=maybe", "verdict: expected one of"),
    ("since=yesterday", "since: not a number"),
    ("limit=-1", "limit: not a count"),
])  # fmt: skip
def test_a_bad_parameter_is_a_400_naming_it(
    console: tuple[str, FlowStore], query: str, message: str
) -> None:
    status, doc = _get(f"{console[0]}/api/flows?{query}")
    assert status == 400 and message in doc["error"]


def test_the_stream_sends_matching_records_as_events_and_keepalives(
    console: tuple[str, FlowStore],
) -> None:
    base, store = console
    with urllib.request.urlopen(f"{base}/api/flows/stream?verdict=denied", timeout=5) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.readline() == b": connected\n"
        assert resp.readline() == b"\n"
        store.add(record("a/web", "b/db", 5432, T0 + 3))  # allowed: not sent
        store.add(record("a/web", "b/db", 5432, T0 + 4, verdict="denied"))
        line = resp.readline()
        assert line.startswith(b"data: ")
        event = json.loads(line[len(b"data: "):])
        assert (event["source"], event["verdict"]) == ("a/web", "denied")
        assert event["why"].startswith("denied:")
        assert resp.readline() == b"\n"
        started = time.monotonic()
        assert resp.readline() == b": keepalive\n"
        assert time.monotonic() - started >= 0.2


def test_nodes(console: tuple[str, FlowStore]) -> None:
    assert _get(f"{console[0]}/api/nodes") == (200, {"nodes": [
        {"name": "node1", "reachable": True, "error": None,
         "last_record": "2023-11-14T22:13:22.000Z", "ready": True, "endpoints": 3,
         "inexact_resumes": 0, "lost": 0},
        {"name": "node2", "reachable": False, "error": "ConnectionRefusedError: refused",
         "last_record": None, "ready": None, "endpoints": None, "inexact_resumes": 0,
         "lost": 0},
    ]})  # fmt: skip


def test_graph_by_namespace(console: tuple[str, FlowStore]) -> None:
    status, doc = _get(f"{console[0]}/api/graph?namespace=a&namespace=x")
    assert status == 200
    assert [(e["source"], e["target"], e["verdict"]) for e in doc["edges"]] == [
        ("a/web", "b/api", "allowed")]
    status, doc = _get(f"{console[0]}/api/graph?namespace=NOT_A_NAME")
    assert status == 400


def test_policies_and_one_policy(console: tuple[str, FlowStore]) -> None:
    base, _ = console
    _, doc = _get(f"{base}/api/policies")
    assert [(p["key"], p["kind"]) for p in doc["policies"]] == [
        ("b/allow-web", "NetworkPolicy"), ("b/allow-web", "StagedNetworkPolicy")]
    status, doc = _get(f"{base}/api/policies/b/allow-web")
    assert status == 200 and doc["kind"] == "NetworkPolicy" and len(doc["flows"]) == 2
    _, doc = _get(f"{base}/api/policies/b/allow-web?kind=StagedNetworkPolicy")
    assert doc["kind"] == "StagedNetworkPolicy" and doc["flows"] == []
    assert _get(f"{base}/api/policies/b/nope") == (404, {"error": "no NetworkPolicy b/nope"})
    assert _get(f"{base}/api/policies/b/allow-web?kind=Role")[0] == 400


def test_the_page_and_its_files_and_nothing_outside_them(console: tuple[str, FlowStore]) -> None:
    base, _ = console
    assert _get(f"{base}/") == (200, b"<html>page</html>")
    with urllib.request.urlopen(f"{base}/static/app.js", timeout=5) as resp:
        assert resp.headers["Content-Type"] == "text/javascript"
    for path in ("/static/../cluster.py", "/static/%2e%2e/fakes.py", "/static/nope.js"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}{path}", timeout=5)
        assert err.value.code == 404


def test_the_package_ships_the_page_folder() -> None:
    assert STATIC_DIR.is_dir()
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["setuptools"]["package-data"]["enforcer"]
    assert {"console/static/*", "console/static/**/*"} <= set(shipped)
