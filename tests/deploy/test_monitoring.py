"""Alerts and dashboard: promtool checks and unit-tests the rules; panels use real metrics."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .contract import METRICS, series_names
from .promql import metric_names
from .render import DAEMONSET_DIR, MONITORING_DIR, find, render

DASHBOARD = DAEMONSET_DIR / "grafana" / "enforcer-dashboard.json"
ALERT_TESTS = Path(__file__).with_name("alerts_test.yaml")
# Series Prometheus itself provides, allowed in alerts.
BUILTIN_SERIES = {"up"}


def _rules() -> list[dict[str, Any]]:
    rule = find(render(MONITORING_DIR), "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def _write_rule_file(tmp_path: Path) -> Path:
    rule = find(render(MONITORING_DIR), "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/install-deps.sh installs Debian's prometheus"
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panel_exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in _dashboard()["panels"] for t in p["targets"]]


def test_promtool_accepts_the_alert_rules(tmp_path: Path) -> None:
    rules = _write_rule_file(tmp_path)
    result = _promtool("check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    _write_rule_file(tmp_path)
    shutil.copy(ALERT_TESTS, tmp_path / "alerts_test.yaml")
    result = _promtool("test", "rules", "alerts_test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_four_required_alerts_exist() -> None:
    alerts = {r["alert"]: r["expr"] for r in _rules()}
    assert "enforcer_ready" in alerts["EnforcerAgentNotReady"]
    assert "enforcer_drop_count_total" in alerts["EnforcerDropsSpiking"]
    assert "enforcer_bpf_map_pressure > 0.9" in alerts["EnforcerBpfMapPressure"]
    assert "histogram_quantile(0.99" in alerts["EnforcerPolicyDelayHigh"]
    assert "> 0.1" in alerts["EnforcerPolicyDelayHigh"]


def test_alerts_use_only_exported_metrics() -> None:
    for r in _rules():
        names = metric_names(r["expr"])
        assert names, r["alert"]
        assert names <= series_names() | BUILTIN_SERIES, (r["alert"], names)


def test_dashboard_parses_and_is_shipped_in_the_configmap() -> None:
    dash = _dashboard()
    assert dash["uid"] and dash["panels"]
    cm = find(render(), "ConfigMap", "enforcer-grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"][DASHBOARD.name]) == dash


@pytest.mark.parametrize(("title", "expr"), _panel_exprs(), ids=[t for t, _ in _panel_exprs()])
def test_dashboard_panel_uses_only_exported_metrics(title: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{title}: no metric found in {expr!r}"
    assert names <= series_names(), f"{title}: unknown metrics {names - series_names()}"


def test_dashboard_expressions_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel's query (Grafana's $__rate_interval stands in as 5m)."""
    rules = [
        {"record": f"dashboard:panel_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, (_, expr) in enumerate(_panel_exprs())
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_shows_drops_by_namespace_pod_and_reason_delay_and_pressure() -> None:
    exprs = [e for _, e in _panel_exprs()]
    drops = [e for e in exprs if "enforcer_drop_count_total" in e]
    for label in ("namespace", "pod", "reason"):
        assert any(label in e.split("by (", 1)[-1].split(")", 1)[0] for e in drops), label
    assert any("enforcer_policy_implementation_delay_seconds_bucket" in e for e in exprs)
    assert any("enforcer_bpf_map_pressure" in e for e in exprs)
    used = set().union(*(metric_names(e) for e in exprs))
    # Every exported metric appears somewhere on the dashboard.
    base = {n.removesuffix("_bucket") for n in used}
    assert base >= METRICS
