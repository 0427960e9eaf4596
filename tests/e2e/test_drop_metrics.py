"""Denied connections show up in the agents' drop counters, per namespace and pod."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .kube import Cluster, Deployed
from .metrics import scrape, total
from .probing import converge, describe


def test_denied_connections_are_counted_as_drops_of_the_destination_pods(
    cluster: Cluster, deployed: Deployed, apply_policies: Callable[[list[Any]], None]
) -> None:
    x_ns = deployed.pods["x/a"].namespace
    apply_policies(
        [
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "deny-ingress", "namespace": x_ns},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
            }
        ]
    )
    targets = ["x/a", "x/b", "x/c"]
    expected = {(80, "TCP", 4): {"y/a": {t: False for t in targets}}}
    # Converged: every y/a -> x/* connection is denied now (each probe also counts drops).
    wrong = converge(cluster, deployed, expected)
    assert not wrong, describe(wrong)

    before = scrape(cluster)
    wrong = converge(cluster, deployed, expected, attempts=1)  # a second round of denied SYNs
    assert not wrong, describe(wrong)
    after = scrape(cluster)
    for target in targets:
        pod = deployed.pods[target].name
        series = "enforcer_drop_count_total"
        grew = total(after, series, namespace=x_ns, pod=pod) - total(
            before, series, namespace=x_ns, pod=pod
        )
        assert grew >= 1, f"no drop counted for {target} ({x_ns}/{pod})"
