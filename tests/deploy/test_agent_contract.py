"""The manifests, alerts and dashboard agree with the agent's code: its CLI accepts the
DaemonSet's arguments, and it exports every metric the monitoring files use."""

from __future__ import annotations

import re
from types import SimpleNamespace
from unittest import mock

from kubernetes import client
from prometheus_client import generate_latest

from enforcer.agent.metrics import AgentMetrics, DatapathCollector, SourceCollector
from enforcer.cli import build_parser
from enforcer.datapath.types import Direction, DropReason
from enforcer.sources.base import source_from_spec
from enforcer.sources.kubernetes import WATCHED_KINDS, KubernetesSource

from .contract import AGENT_READS, METRICS, METRICS_PORT, PIN_DIR
from .render import find, render


def test_agent_cli_accepts_the_daemonsets_arguments() -> None:
    ds = find(render(), "DaemonSet", "enforcer-agent")
    (agent,) = ds["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(["agent", *agent["args"]])
    assert args.source == "k8s"
    assert args.pin_dir == PIN_DIR
    assert args.metrics_addr == f"0.0.0.0:{METRICS_PORT}"
    assert args.unknown_endpoint_verdict == "deny"


def test_agent_exports_every_metric_the_monitoring_uses() -> None:
    metrics = AgentMetrics()
    rows = [
        SimpleNamespace(
            ifindex=7, direction=int(Direction.INGRESS), reason=None, packets=3, bytes=300
        ),
        SimpleNamespace(
            ifindex=7,
            direction=int(Direction.INGRESS),
            reason=int(next(iter(DropReason))),
            packets=2,
            bytes=120,
        ),
    ]
    metrics.add_collector(
        DatapathCollector(lambda: rows, lambda ifindex: "x/a", lambda: {"policy": 0.5})
    )
    source = SimpleNamespace(watch_restarts={"Pod": 1}, resource_versions={"Pod": "1234"})
    metrics.add_collector(SourceCollector(source))
    metrics.policy_delay.observe(0.01)
    metrics.map_full.inc()
    text = generate_latest(metrics.registry).decode()
    for metric in METRICS:
        assert re.search(rf"^{metric}(\{{| )", text, re.MULTILINE) or re.search(
            rf"^{metric}_bucket\{{", text, re.MULTILINE
        ), metric
    assert re.search(r'^enforcer_drop_count_total\{[^}]*namespace="x",pod="a"', text, re.M)


def test_the_contracts_reads_are_what_the_agents_source_watches() -> None:
    """AGENT_READS (and so the RBAC, test_security) is exactly the resources `--source k8s`
    lists and watches, the StagedNetworkPolicy custom resource included."""
    seen: dict[str, tuple[str, ...]] = {}

    def capture(cls: type, *, kubeconfig: str | None, node_name: str | None,
                kinds: tuple[str, ...]) -> KubernetesSource:
        seen["kinds"] = kinds
        return KubernetesSource(client.ApiClient(), kinds=kinds)

    with mock.patch.object(KubernetesSource, "from_config", classmethod(capture)):
        source_from_spec("k8s", kubeconfig=None, node_name="n1")
    watched = {(WATCHED_KINDS[k].group, WATCHED_KINDS[k].plural) for k in seen["kinds"]}
    assert watched == AGENT_READS
    crd = find(render(), "CustomResourceDefinition", "stagednetworkpolicies.enforcer.dev")
    staged = WATCHED_KINDS["StagedNetworkPolicy"]
    assert (crd["spec"]["group"], crd["spec"]["names"]["plural"]) == (staged.group, staged.plural)
    assert [v["name"] for v in crd["spec"]["versions"]] == [staged.api_version.split("/")[1]]
