"""The flow metrics as a real Prometheus (Debian's) scrapes them from a lab agent, after real
traffic: a known allowed and a known denied flow are counted under the policies that decided
them, the lost-events counter is there, and the dashboard's flow panels return those series."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from enforcer.agentclient import get_json
from enforcer.lab import lab
from enforcer.lab.probe import probe_pair

from .render import DAEMONSET_DIR

pytestmark = pytest.mark.kernel

THREE_TIER = Path(__file__).resolve().parents[2] / "examples" / "three-tier"
DASHBOARD = DAEMONSET_DIR / "grafana" / "enforcer-dashboard.json"
PROMETHEUS_ADDR = "127.0.0.1:9090"  # inside node1's namespace, beside its agent
# web runs on node1: its egress is judged there, by node1's agent.
ALLOWED = ("frontend/web", "backend/api", 8080, "TCP")  # frontend/frontend-to-backend
DENIED = ("frontend/web", "database/postgres", 5432, "TCP")  # frontend isolates web's egress


def _eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)


class Prometheus:
    def __init__(self, netns: str) -> None:
        self.netns = netns

    def query(self, promql: str) -> list[dict[str, Any]]:
        path = "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        result: list[dict[str, Any]] = get_json(PROMETHEUS_ADDR, path, netns=self.netns)[
            "data"]["result"]
        return result

    def value(self, promql: str) -> float:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else 0.0

    def scraping(self) -> bool:
        try:
            return self.value('up{job="enforcer"}') == 1.0
        except (OSError, RuntimeError, KeyError):
            return False


@pytest.fixture(scope="module")
def three_tier() -> Iterator[lab.LabState]:
    name = f"m{secrets.token_hex(3)}"
    try:
        state = lab.up([THREE_TIER / "cluster.yaml"], name, nodes=2)
        lab.apply(state, [THREE_TIER / "policies.yaml"])
        yield state
    finally:
        lab.down(name)


@pytest.fixture(scope="module")
def prometheus(three_tier: lab.LabState, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Prometheus]:
    node = next(n for n in three_tier.node_nets() if n.name == "node1")
    tmp = tmp_path_factory.mktemp("prometheus")
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: enforcer\n    static_configs: [{{targets: ['{lab.AGENT_ADDR}'], "
        "labels: {node: node1}}]\n"
    )
    proc = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{node.netns}", "prometheus",
         f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address={PROMETHEUS_ADDR}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        server = Prometheus(node.netns)
        _eventually(server.scraping, 30, "Prometheus scrapes node1's agent")
        yield server
    finally:
        proc.terminate()
        proc.wait(10)


def _send(state: lab.LabState, flow: tuple[str, str, int, str]) -> bool:
    ends = {e.key: e for e in lab.probe_endpoints(state)}
    src, dst, port, protocol = flow
    return probe_pair(ends[src], ends[dst], port, protocol, 0.5)


def _verdicts(namespace: str, policy: str, verdict: str, direction: str) -> str:
    return (f'enforcer_policy_verdicts_total{{namespace="{namespace}",policy="{policy}",'
            f'verdict="{verdict}",direction="{direction}"}}')


def _panel_exprs(*metrics: str) -> list[str]:
    """The dashboard's queries that use one of `metrics`, as Grafana would send them."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"].replace("$__rate_interval", "1m") for p in panels for t in p["targets"]
            if any(m in t["expr"] for m in metrics)]


def test_prometheus_counts_verdicts_per_deciding_policy(
    three_tier: lab.LabState, prometheus: Prometheus
) -> None:
    allowed = _verdicts("frontend", "frontend-to-backend", "allowed", "egress")
    denied = [_verdicts("frontend", p, "denied", "egress")
              for p in ("default-deny-all", "allow-dns", "frontend-to-backend")]
    before = {q: prometheus.value(q) for q in (allowed, *denied)}
    # Twice, a few scrapes apart, so the dashboard's rates have an increase to show.
    for _ in range(2):
        assert _send(three_tier, ALLOWED)
        assert not _send(three_tier, DENIED)
        time.sleep(2.5)
    for query in (allowed, *denied):
        _eventually(lambda q=query: prometheus.value(q) - before[q] >= 2, 15,
                    f"Prometheus counts two more of {query}")
    # A denied flow counts under each policy isolating web's egress, never as allowed by them.
    assert not prometheus.query(_verdicts("frontend", "default-deny-all", "allowed", "egress"))
    lost = prometheus.query("enforcer_flow_events_lost_total")
    assert {r["metric"]["reason"] for r in lost} >= {"rate_limit", "endpoint_limit", "ring_full"}
    assert all(float(r["value"][1]) == 0 for r in lost)  # this little traffic loses nothing
    assert prometheus.value("enforcer_flow_store_records") > 0


def test_the_dashboards_flow_panels_show_the_lab_traffic(
    three_tier: lab.LabState, prometheus: Prometheus
) -> None:
    for _ in range(2):
        _send(three_tier, DENIED)
        time.sleep(2.5)
    series = {
        (r["metric"].get("namespace"), r["metric"].get("policy"), r["metric"].get("verdict"))
        for expr in _panel_exprs("enforcer_policy_verdicts_total")
        for r in prometheus.query(expr)
    }
    assert ("frontend", "default-deny-all", "denied") in series
    assert ("frontend", "frontend-to-backend", "allowed") in series
    for expr in _panel_exprs("enforcer_flow_events_lost_total", "enforcer_flow_store_"):
        assert prometheus.query(expr), expr
