"""The lab's console with real agents and packets: flows from both nodes appear within
seconds; a node whose agent is killed shows as unreachable while the other node's flows keep
arriving; the policy view names the lab's policy and what it selects."""

from __future__ import annotations

import json
import math
import os
import signal
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from enforcer.cli import main
from enforcer.lab import lab
from enforcer.lab.probe import probe_pair
from tests.lab import upstream

pytestmark = pytest.mark.kernel

PORT = 80
SECONDS = 10.0  # how long flows may take from a packet to the console's API


def _objects() -> list[dict[str, Any]]:
    """x/a and y/b on node1, x/c and y/d on node2; y/d isolated: only x/a may reach it."""
    placed = {"x/a": "node1", "y/b": "node1", "x/c": "node2", "y/d": "node2"}
    pods = []
    for key, node in placed.items():
        ns, name = key.split("/")
        pod = upstream.pod(ns, name)
        pod["spec"]["nodeName"] = node
        pods.append(pod)
    only_a = upstream.policy("only-a", "y", {
        "podSelector": upstream.sel(pod="d"),
        "ingress": [{"from": [{"namespaceSelector": upstream.sel(ns="x"),
                               "podSelector": upstream.sel(pod="a")}]}],
    })  # fmt: skip
    return [upstream.namespace("x"), upstream.namespace("y"), *pods, only_a]


def _get(state: lab.LabState, path: str, params: Sequence[tuple[str, Any]] = ()) -> Any:
    assert state.console_url
    url = state.console_url.rstrip("/") + path + (f"?{urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _eventually(what: str, check: Callable[[], Any], timeout: float = SECONDS,
                show: Callable[[], Any] = lambda: None) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}: {show()}"
        time.sleep(0.2)
    return found


def _now() -> float:
    """Now, to the millisecond: records' times are truncated to it (RFC 3339 in JSON)."""
    return math.floor(time.time() * 1000) / 1000


def _connect(state: lab.LabState, src: str, dst: str) -> bool:
    ends = {e.key: e for e in lab.probe_endpoints(state)}
    return probe_pair(ends[src], ends[dst], PORT, "TCP", 0.5)


def _nodes_of_flows(state: lab.LabState, since: float) -> set[str]:
    flows = _get(state, "/api/flows", [("since", since), ("port", PORT), ("limit", 0)])["flows"]
    return {f["node"] for f in flows}


def test_the_console_merges_both_nodes_and_survives_a_dead_agent(
    lab_factory: Callable[..., lab.LabState],
    write_manifests: Callable[[list[dict[str, Any]]], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = lab_factory([write_manifests(_objects())], nodes=2)
    assert state.console_url and state.console_url.startswith("http://127.0.0.1:")
    assert state.console_pid and lab._alive(state.console_pid)
    assert main(["lab", "status", "--name", state.name]) == 0
    assert f"console: {state.console_url}" in capsys.readouterr().out

    since = _now()
    assert _connect(state, "x/a", "x/c")  # node1's egress, node2's ingress
    assert not _connect(state, "y/b", "y/d")  # denied at y/d's ingress on node2
    assert _connect(state, "x/c", "y/b")  # node2's egress, node1's ingress
    _eventually("flows from both nodes",
                lambda: _nodes_of_flows(state, since) == {"node1", "node2"})
    denied = _get(state, "/api/flows", [("since", since), ("verdict", "denied")])["flows"]
    assert [(f["source"], f["destination"], f["node"], f["policies"]) for f in denied] == [
        ("y/b", "y/d", "node2", ["y/only-a"])]
    assert denied[0]["why"].startswith("denied: y/d isolated for ingress by y/only-a")

    # Waits for both: a node's /status poll may come a few seconds after its first flows.
    def all_ready() -> list[dict[str, Any]]:
        nodes = _get(state, "/api/nodes")["nodes"]
        return nodes if all(n["reachable"] and n["ready"] for n in nodes) else []

    nodes = _eventually("both nodes reachable and ready", all_ready)
    assert [n["name"] for n in nodes] == ["node1", "node2"]
    assert all(n["endpoints"] == 2 and n["last_record"] for n in nodes)

    # The policy view: what the lab's policy selects, its matrix, the flow it denied.
    doc = _get(state, "/api/policies/y/only-a")
    assert doc["selects"] == ["y/d"]
    (matrix,) = [m for m in doc["matrix"] if (m["port"], m["protocol"]) == (PORT, "TCP")]
    assert matrix["matrix"]["x/a"]["y/d"] is True and matrix["matrix"]["y/b"]["y/d"] is False
    assert any(f["source"] == "y/b" and f["verdict"] == "denied" for f in doc["flows"])

    # The map: workloads, and the denied edge.
    graph = _get(state, "/api/graph", [("namespace", "y"), ("since", since)])
    assert {n["id"] for n in graph["nodes"]} == {"y/b", "x/c", "y/d"}  # x/a: only in x so far
    assert {(e["source"], e["target"], e["verdict"]) for e in graph["edges"]} >= {
        ("y/b", "y/d", "allowed"), ("y/b", "y/d", "denied"), ("x/c", "y/b", "allowed")}

    # The live stream: a new flow arrives as an event.
    url = f"{state.console_url.rstrip('/')}/api/flows/stream?from=x/c&to=x/a"
    with urllib.request.urlopen(url, timeout=SECONDS) as stream:
        assert stream.readline() == b": connected\n"
        assert _connect(state, "x/c", "x/a")
        line = next(line for line in stream if line.startswith(b"data: "))
        event = json.loads(line[len(b"data: "):])
        assert (event["source"], event["destination"], event["verdict"]) == (
            "x/c", "x/a", "allowed")

    # node2's agent dies: the console says so, and node1's flows keep coming.
    os.kill(state.agent_pids["node2"], signal.SIGKILL)
    _eventually("node2 unreachable", lambda: [
        n for n in _get(state, "/api/nodes")["nodes"]
        if n["name"] == "node2" and not n["reachable"] and n["error"]])
    after = _now()
    assert _connect(state, "x/a", "y/b")  # both on node1
    _eventually("node1's flows after node2's agent died",
                lambda: _nodes_of_flows(state, after) == {"node1"},
                show=lambda: (after, _get(state, "/api/nodes"), _get(state, "/api/flows")))
    node1 = next(n for n in _get(state, "/api/nodes")["nodes"] if n["name"] == "node1")
    assert node1["reachable"] and node1["error"] is None

    lab.down(state.name)  # and the console goes with the lab
    assert not lab._alive(state.console_pid)
