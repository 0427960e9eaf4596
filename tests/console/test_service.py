"""The console put together, without a kernel: fake agents, a watched folder of manifests."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from enforcer.cli import main
from enforcer.console.service import Console
from enforcer.sources.directory import DirectorySource

from .cluster import OBJECTS
from .fakes import FakeAgent, record


def _eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return found


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def test_flows_of_the_agents_and_policies_of_the_folder_are_served(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump_all(OBJECTS))
    agent = FakeAgent("node1")
    now = time.time()
    agent.held = [record("a/web", "b/api", 80, now, policies=("b/allow-web",))]
    console = Console("127.0.0.1:0", lambda: {"node1": agent}, DirectorySource(str(tmp_path)),
                      relist_seconds=0.1, status_seconds=0.1)
    console.start()
    base = f"http://127.0.0.1:{console.port}"
    try:
        flows = _eventually(lambda: _get(f"{base}/api/flows")["flows"])
        assert [(f["source"], f["node"]) for f in flows] == [("a/web", "node1")]
        policies = _eventually(lambda: _get(f"{base}/api/policies")["policies"])
        assert [p["key"] for p in policies] == ["b/allow-web", "b/allow-web"]
        doc = _get(f"{base}/api/policies/b/allow-web")
        assert [f["source"] for f in doc["flows"]] == ["a/web"]
        nodes = _eventually(lambda: [n for n in _get(f"{base}/api/nodes")["nodes"]
                                     if n["ready"]])
        assert nodes[0]["name"] == "node1" and nodes[0]["endpoints"] == 2
    finally:
        console.stop()


@pytest.mark.parametrize(("args", "message"), [
    (["--agents", "nowhere"], "--agents 'nowhere': use 'k8s' or 'lab:NAME'"),
    (["--agents", "lab:x", "--listen", "9840"], "--listen '9840': expected HOST:PORT"),
    (["--agents", "lab:x", "--source", "ftp:x"], "unknown source 'ftp:x'"),
])  # fmt: skip
def test_bad_flags_are_named(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["console", *args]) == 2
    assert message in capsys.readouterr().err
