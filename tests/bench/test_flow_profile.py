"""bench.flow_profile builds the profiling program (it must pass the verifier too) and splits
a connection's cost by hook and packet kind: every connection is one SYN, one SYN-ACK, one
ACK and one RST at each pod's veth (the benchmark's client resets), each timed; and the slow
path, which only the SYN takes, by phase."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import report

pytestmark = pytest.mark.kernel


def test_a_connection_s_packets_are_profiled_at_both_veths() -> None:
    out = subprocess.run([sys.executable, "-m", "bench.flow_profile", "--metric", "conn",
                          "--seconds", "1", "--rules", "100", "--json"],
                         cwd=report.REPO_ROOT, capture_output=True, text=True, timeout=300,
                         check=True).stdout
    conn = json.loads(out)["tests"]["conn"]
    assert conn["units"] > 100  # connections made in the second
    for hook in ("source veth (tc_from_pod)", "destination veth (tc_to_pod)"):
        kinds = conn["hooks"][hook]["kinds"]
        for kind in ("SYN", "SYN-ACK", "ACK", "RST"):
            # Retransmissions or a FIN now and then; about one each per connection.
            assert 0.9 <= kinds[kind]["runs_per_unit"] <= 1.1, (hook, kind, kinds)
            assert kinds[kind]["ns_per_run"] > 0, (hook, kind)
        # A new flow (conntrack insert, event) costs more than a packet the memory passes.
        assert kinds["SYN"]["ns_per_run"] > kinds["RST"]["ns_per_run"]
        # The slow path: the SYN's run (the memory passes the rest), split into phases that
        # add up to no more than the hook's whole time.
        slow = conn["slow_path"][hook]
        lookup = slow["phases"]["conntrack lookup"]
        assert 0.9 <= lookup["runs_per_unit"] <= 1.2, (hook, slow)
        assert lookup["ns_per_run"] > 0, (hook, slow)
        whole = sum(k["ns_per_run"] * k["runs_per_unit"] for k in kinds.values())
        assert 0 < slow["ns_per_unit"] <= 1.2 * whole, (hook, slow, whole)
    assert conn["ns_per_unit"] > 0
