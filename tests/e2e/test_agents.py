"""The deployed agents: one ready agent per node, answering its probes and exporting metrics."""

from __future__ import annotations

import re

from tests.deploy.contract import METRICS

from .kube import Cluster, Deployed
from .metrics import scrape, total


def test_one_ready_agent_per_node(cluster: Cluster) -> None:
    agents = cluster.agent_pods()
    nodes = cluster.nodes()
    assert sorted(p["spec"]["nodeName"] for p in agents) == sorted(nodes)
    for pod in agents:
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        assert conditions.get("Ready") == "True", pod["metadata"]["name"]


def test_agents_answer_health_and_readiness(cluster: Cluster) -> None:
    for pod in cluster.agent_pods():
        name = pod["metadata"]["name"]
        cluster.agent_get(name, "/healthz")  # raises on a non-2xx answer
        cluster.agent_get(name, "/readyz")


def test_agents_export_the_documented_metrics(cluster: Cluster) -> None:
    for pod in cluster.agent_pods():
        text = cluster.agent_get(pod["metadata"]["name"], "/metrics")
        for metric in METRICS:
            base = metric.removesuffix("_total")
            assert re.search(rf"^# TYPE {base}(_total)? ", text, re.MULTILINE), metric


def test_agents_report_ready_and_enforce_the_suites_pods(
    cluster: Cluster, deployed: Deployed
) -> None:
    scraped = scrape(cluster)
    for agent, samples in scraped.items():
        ready = [v for name, _, v in samples if name == "enforcer_ready"]
        assert ready == [1.0], agent
    # Each agent counts the endpoints on its node; the suite's nine pods are among them.
    assert total(scraped, "enforcer_endpoints") >= len(deployed.pods)
