"""Metrics scraped by a real Prometheus server, `enforcer status` and `enforcer monitor`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from scapy.all import IP, UDP, raw

from enforcer.agentclient import get_json
from enforcer.netnsutil import run_in_netns
from tests.agent.harness import AGENT_ADDR, NodeHarness, eventually, policy

pytestmark = pytest.mark.kernel

PROMETHEUS_ADDR = "127.0.0.1:9090"
DENY_C = policy(
    "x",
    "a-not-from-c",
    {
        "podSelector": {"matchLabels": {"app": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}],
    },
)
DROPS_QUERY = (
    'sum(enforcer_drop_count_total{namespace="x",pod="a",direction="ingress",'
    'reason="policy_denied"})'
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    h = NodeHarness(Path(tmp_path_factory.mktemp("obs")))
    try:
        h.start()
        h.api.create(DENY_C)
        h.expect("y/c", "x/a", False)
        yield h
    finally:
        h.stop()


def send_udp(node: NodeHarness, src: str, dst: str, port: int, count: int) -> None:
    """Exactly `count` datagrams: one packet each, so one drop each when denied."""
    target = (node.ip(dst), port)

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(count):
                s.sendto(f"drop-{i}".encode(), target)

    run_in_netns(node.pods[src].netns, send)


@pytest.fixture
def prometheus(node: NodeHarness, tmp_path: Path) -> Iterator[None]:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: enforcer\n    static_configs: [{{targets: ['{AGENT_ADDR}']}}]\n"
    )
    proc = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{node.node.netns}",
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={PROMETHEUS_ADDR}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually(lambda: _targets_up(node), 30, "Prometheus scrapes the agent")
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def _query(node: NodeHarness, promql: str) -> list[dict]:
    path = "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    return get_json(PROMETHEUS_ADDR, path, netns=node.node.netns)["data"]["result"]


def _targets_up(node: NodeHarness) -> bool:
    try:
        return any(r["value"][1] == "1" for r in _query(node, 'up{job="enforcer"}'))
    except (OSError, RuntimeError, KeyError):
        return False


def _drops(node: NodeHarness) -> float:
    result = _query(node, DROPS_QUERY)
    return float(result[0]["value"][1]) if result else 0.0


def test_prometheus_counts_exactly_the_drops_caused(node: NodeHarness, prometheus: None) -> None:
    time.sleep(1.5)  # one scrape after start, for a stable baseline
    before = _drops(node)
    send_udp(node, "y/c", "x/a", 81, 25)
    eventually(lambda: _drops(node) - before >= 25, 15, "Prometheus sees the 25 drops")
    time.sleep(2.5)  # later scrapes must not count more
    assert _drops(node) - before == 25
    # The implementation-delay histogram and readiness are exported too.
    assert _query(node, "enforcer_ready")[0]["value"][1] == "1"
    assert _query(node, "enforcer_policy_implementation_delay_seconds_count")


def test_status_command_lists_endpoints(node: NodeHarness) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "enforcer.cli",
            "status",
            "--agent",
            f"unix:{node.agent_api.socket}",  # the node's socket, as on a real node
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    status = json.loads(out)
    by_pod = {ep["pod"]: ep for ep in status["endpoints"]}
    assert by_pod["x/a"]["ingress_isolated"] and not by_pod["x/a"]["egress_isolated"]
    assert by_pod["x/a"]["policies"] == ["x/a-not-from-c"]
    assert by_pod["x/a"]["ips"] == [node.ip("x/a")]
    assert not by_pod["y/c"]["ingress_isolated"]
    table = subprocess.run(
        [sys.executable, "-m", "enforcer.cli", "status", "--agent",
         f"unix:{node.agent_api.socket}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "x/a" in table and "x/a-not-from-c" in table


def test_monitor_streams_drops_with_pods_resolved(node: NodeHarness) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "enforcer.cli",
            "monitor",
            "--agent",
            f"unix:{node.agent_api.socket}",
            "--output",
            "json",
            "--count",
            "3",
            "--pod",
            "x/a",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # connected
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            send_udp(node, "y/c", "x/a", 81, 1)
            time.sleep(0.2)
        out, _ = proc.communicate(timeout=5)
    finally:
        proc.kill()
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 3
    for ev in events:
        assert ev["reason"] == "policy_denied"
        assert ev["direction"] == "ingress"
        assert ev["src_pod"] == "y/c" and ev["dst_pod"] == "x/a"
        assert ev["dst_port"] == 81 and ev["protocol"] == 17
        assert ev["pod"] == "x/a"
    # Readiness endpoint, as the DaemonSet probes it.
    assert node.status()["ready"]


def _counted(node: NodeHarness, **labels: str) -> float:
    """The agent's own /metrics: enforcer_drop_count_total with these labels."""
    total = 0.0
    for family in text_string_to_metric_families(node.metrics()):
        for s in family.samples:
            if s.name == "enforcer_drop_count_total" and labels.items() <= s.labels.items():
                total += s.value
    return total


def test_a_pod_wearing_another_pods_address_is_dropped_and_counted(node: NodeHarness) -> None:
    """c sends as b, whom a admits: the agent wrote every pod's own addresses, so c's hook
    drops them (bpf/lib/source.h) and the drops are exported against c."""
    datagram = raw(IP(src=node.ip("x/b"), dst=node.ip("x/a")) / UDP(sport=5000, dport=81)
                   / b"spoofed")

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
            for _ in range(10):
                s.sendto(datagram, (node.ip("x/a"), 0))

    spoofed = {"namespace": "y", "pod": "c", "direction": "egress", "reason": "spoofed_source"}
    before = _counted(node, **spoofed)
    run_in_netns(node.pods["y/c"].netns, send)
    eventually(lambda: _counted(node, **spoofed) - before >= 10, 5, "10 spoofed drops")
    assert _counted(node, **spoofed) - before == 10
    # The real pods' own traffic is unaffected.
    assert node.reach("x/b", "x/a", 81, "UDP")
