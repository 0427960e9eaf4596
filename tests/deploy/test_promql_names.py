"""The metric-name extractor the dashboard and alert checks rely on."""

from __future__ import annotations

from .promql import metric_names


def test_finds_selectors_and_skips_functions_labels_and_keywords() -> None:
    expr = (
        "topk(20, sum by (namespace, pod, reason) (rate(enforcer_drop_count_total"
        '{reason!="x"}[$__rate_interval]))) > 3 * up offset 1h and bool time() - other_metric'
    )
    assert metric_names(expr) == {"enforcer_drop_count_total", "up", "other_metric"}


def test_histogram_bucket_series_is_a_name() -> None:
    expr = "histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket[5m]))) > 0.1"
    assert metric_names(expr) == {"x_seconds_bucket"}
