"""`make demo`'s command: runs unattended, shows both matrices and the drops, leaves nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from enforcer.lab import lab
from enforcer.lab.topology import existing_netns

pytestmark = pytest.mark.kernel


def test_demo_runs_and_cleans_up() -> None:
    # Only the demo's own names: other tests may create namespaces at the same time.
    def demo_leftovers() -> set[str]:
        return {n for n in existing_netns() if n.startswith("enf-demo-")} | {
            name for name in lab.list_labs() if name.startswith("demo-")
        }

    before = demo_leftovers()
    pin_root_existed = lab.PIN_ROOT.exists()  # another lab's pins, if any
    proc = subprocess.run(
        [sys.executable, "-m", "enforcer.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1. No policies" in out and "2. Applying" in out
    assert "match `enforcer analyze` on every pair" in out
    # The denied probes show up as drop events and as drop counters.
    assert "DROP policy_denied" in out
    assert 'enforcer_drop_count_total{' in out and 'reason="policy_denied"' in out
    # Port 5432 on the database: only the backend may connect once the policies are in force.
    after = out.split("2. Applying", 1)[1]
    assert "5432/TCP" in after
    assert demo_leftovers() == before
    assert pin_root_existed or not lab.PIN_ROOT.exists()  # not even an empty bpffs folder
