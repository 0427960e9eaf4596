"""`make demo`'s command: runs unattended, shows both matrices and the drops, the flow log with
why, a staged policy's would-deny, and advised policies that keep the app working; leaves
nothing."""

from __future__ import annotations

import re
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
    assert "2. No policies" in out and "3. Applying" in out
    assert "match `enforcer analyze` on every pair" in out
    # The denied probes show up as drop events and as drop counters.
    assert "DROP policy_denied" in out
    assert 'enforcer_drop_count_total{' in out and 'reason="policy_denied"' in out
    # Port 5432 on the database: only the backend may connect once the policies are in force.
    after = out.split("3. Applying", 1)[1]
    assert "5432/TCP" in after
    # The flow log names the isolating policies of a denied flow.
    log = out.split("6. The flow log", 1)[1].split("7. A staged policy", 1)[0]
    assert "$ enforcer lab flows --name" in log
    assert re.search(r"frontend/web +database/postgres +5432/TCP +egress +denied .*"
                     r"isolated for egress by .*frontend/default-deny-all", log), log
    assert re.search(r"frontend/web +backend/api +8080/TCP +ingress +allowed .*"
                     r"allowed by backend/backend-from-frontend", log), log
    # The staged policy would deny DNS over TCP, and nothing was dropped for it.
    staged = out.split("7. A staged policy", 1)[1].split("8. Advise", 1)[0]
    assert re.search(r"53/TCP .*staged: would-deny by frontend/allow-dns", staged), staged
    assert "frontend/web -> kube-system/coredns 53/TCP: ok" in staged
    assert "packets dropped meanwhile: 0 " in staged
    # advise learns the app's four flows; under its policies exactly those work.
    advised = out.split("8. Advise", 1)[1]
    assert "$ enforcer advise --lab demo-" in advised
    assert re.search(r"advised 8 policies for 4 workloads; every one of 4 observed flows "
                     r"stays allowed", advised), advised
    assert "frontend/web -> backend/api 8080/TCP: ok" in advised
    assert "frontend/web -> database/postgres 5432/TCP: refused" in advised
    assert "the app works under the advised policies" in advised
    assert "!!" not in out
    assert demo_leftovers() == before
    assert pin_root_existed or not lab.PIN_ROOT.exists()  # not even an empty bpffs folder
