"""Read the agents' Prometheus metrics through the API server's pod proxy."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from .kube import Cluster

Sample = tuple[str, dict[str, str], float]


def scrape(cluster: Cluster) -> dict[str, list[Sample]]:
    """{agent pod name: [(series name, labels, value)]} for every agent."""
    out = {}
    for pod in cluster.agent_pods():
        name = pod["metadata"]["name"]
        text = cluster.agent_get(name, "/metrics")
        out[name] = [
            (s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
    return out


def total(scraped: dict[str, list[Sample]], series: str, **labels: str) -> float:
    """Sum of a series over all agents, for samples whose labels include `labels`."""
    return sum(
        value
        for samples in scraped.values()
        for name, have, value in samples
        if name == series and labels.items() <= have.items()
    )
