"""The real agent against the fake API server without the StagedNetworkPolicy CRD: it gets
ready and enforces; with the CRD and a staged policy, /status lists it, nothing it stages is
dropped, and the flow it would deny is reported as would-deny, naming it."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from enforcer.flows.record import parse_record
from enforcer.model.objects import STAGED_POLICY_API
from tests.agent.harness import NodeHarness, eventually, policy

pytestmark = pytest.mark.kernel

STAGED = "StagedNetworkPolicy"
DENY_A_EXCEPT_B = {
    "podSelector": {"matchLabels": {"app": "a"}},
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}],
}


def test_agent_runs_without_the_crd_and_judges_staged_policies_with_it(tmp_path: Path) -> None:
    h = NodeHarness(tmp_path)
    h.api.uninstall_crd(STAGED)
    try:
        h.start()  # ready although the CRD is missing
        assert h.status()["staged_policies"] == []
        log = h.log_path.read_text()
        assert log.count("its CRD is not installed") == 1
        h.api.create(policy("x", "a-from-b", DENY_A_EXCEPT_B))
        h.expect("y/c", "x/a", False)  # enforcing as usual
        h.api.delete("NetworkPolicy", "a-from-b", "x")
        h.expect("y/c", "x/a", True)

        # The CRD is installed and a policy staged. The running agent lists again after 30 s
        # (tests/sources cover that); a restart picks it up at once.
        h.api.install_crd(STAGED)
        h.api.create({**policy("x", "a-from-b", DENY_A_EXCEPT_B),
                      "apiVersion": STAGED_POLICY_API, "kind": STAGED})
        h.kill_agent()
        h.start_agent()
        eventually(lambda: h.status()["staged_policies"] == ["x/a-from-b"], 10, "staged listed")
        since = time.time()
        assert h.reach("y/c", "x/a"), "a staged policy is never enforced"
        assert h.reach("x/b", "x/a")
        path = "/flows?" + urlencode({"since": since, "limit": 0, "port": 80})

        def staged_flows() -> dict[tuple[str, str, str], str | None]:
            records = [parse_record(d)
                       for d in h.agent_api.stream(path, 5.0)]
            return {(r.source, r.destination, r.direction):
                    r.staged.verdict if r.staged else None for r in records}

        eventually(lambda: ("y/c", "x/a", "ingress") in staged_flows(), 5, "flows recorded")
        flows = staged_flows()
        assert flows[("y/c", "x/a", "ingress")] == "would-deny"
        assert flows.get(("x/b", "x/a", "ingress")) is None
        assert flows.get(("y/c", "x/a", "egress")) is None
    finally:
        h.stop()
