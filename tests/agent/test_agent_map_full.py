"""A pod table that does not fit: the previous generation stays, and it is loud."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.harness import NodeHarness, eventually, policy

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    h = NodeHarness(Path(tmp_path_factory.mktemp("mapfull")), ("--max-policy-entries", "6"))
    try:
        yield h.start()
    finally:
        h.stop()


def test_map_full_keeps_previous_generation_and_reports(node: NodeHarness) -> None:
    fits = policy(
        "x",
        "small",
        {
            "podSelector": {"matchLabels": {"app": "a"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}],
        },
    )
    node.api.create(fits)
    node.expect("y/c", "x/a", False)
    # Eight separate ports from any peer: more entries than the table holds.
    too_big = policy(
        "x",
        "small",
        {
            "podSelector": {"matchLabels": {"app": "a"}},
            "ingress": [{"ports": [{"port": p} for p in (80, 82, 84, 86, 88, 90, 92, 94)]}],
        },
    )
    node.api.update(too_big)
    eventually(lambda: node.status()["map_full"] > 0, 5, "map full counted in status")
    ep = {e["pod"]: e for e in node.status()["endpoints"]}["x/a"]
    assert ep["error"] and "full" in ep["error"].lower()
    assert "enforcer_map_full_total" in node.metrics()
    # The previous generation is still enforced: b allowed, c denied (not the new allow-all-80).
    assert node.reach("x/b", "x/a")
    assert not node.reach("y/c", "x/a")
    # A version that fits again is applied and clears the error.
    node.api.update(fits)
    eventually(lambda: {e["pod"]: e for e in node.status()["endpoints"]}["x/a"]["error"] is None, 5)
