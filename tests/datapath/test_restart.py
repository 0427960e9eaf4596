"""Restart without a gap: a second Datapath opens the same pins (layout checked), compiles,
and replaces the program in place while probes run, with TCX or clsact filters or switching
between them; and a pin with another layout is an error, never silently reused."""

from __future__ import annotations

import dataclasses
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from enforcer.datapath import Datapath, LayoutMismatchError, bpfsys, tc, tcx
from enforcer.datapath.layout import LAYOUT_VERSION
from enforcer.datapath.loader import BPF_DIR_ENV, CHECKOUT_BPF_DIR, FROM_POD_FUNC, TO_POD_FUNC
from enforcer.datapath.policykeys import normalize
from enforcer.datapath.types import (
    PROTO_TCP,
    PROTO_UDP,
    Direction,
    DropReason,
    EndpointPolicy,
    PolicyEntry,
)
from enforcer.netnsutil import run_in_netns
from enforcer.topology import Pod
from tests.conftest import KERNEL_TEST_CONFIG
from tests.datapath.conftest import Env
from tests.datapath.net import TcpServer, UdpServer, addr, family_af, udp_roundtrip

pytestmark = pytest.mark.kernel


def _program_ids(pod: Pod) -> set[int]:
    """Ids of the programs on both hooks of the pod's veth: clsact filters and TCX."""
    ids: set[int] = set()
    for hook in ("ingress", "egress"):
        out = subprocess.run(["tc", "-n", pod.node.netns, "filter", "show", "dev",
                              pod.host_ifname, hook], capture_output=True, text=True,
                             check=True).stdout
        ids.update(int(x) for x in re.findall(r" id (\d+)", out))
        ids.update(run_in_netns(pod.node.netns, lambda hook=hook: bpfsys.prog_query(
            pod.host_ifindex, tcx.HOOKS[hook])))
    return ids


def _attached(pod: Pod) -> tuple[set[tuple[str, int]], list[tuple[str, str]]]:
    """(hook, prio) of the clsact filters and (hook, name) of the TCX programs."""
    return ({(hook, prio) for hook, prio, _ in tc.filters(pod.host_ifindex, pod.node.netns)},
            tcx.programs(pod.host_ifindex, pod.node.netns))


ONE_EACH_WAY = {
    "tc": ({("ingress", 1), ("egress", 1)}, []),
    "tcx": (set(), [("ingress", FROM_POD_FUNC), ("egress", TO_POD_FUNC)]),
}


@pytest.mark.parametrize(("first", "then"), [("tcx", "tcx"), ("tc", "tc"), ("tc", "tcx"),
                                             ("tcx", "tc")])
def test_reopen_and_replace_under_load_loses_nothing(routed_env: Env, pin_root: Path,
                                                     first: str, then: str) -> None:
    """`first` attaches before the probes start; `then` is the restarted agent's way."""
    env = routed_env
    a, b = env.pod("a"), env.pod("b")
    with Datapath.open(pin_root, dataclasses.replace(KERNEL_TEST_CONFIG,
                                                     attach_mode=first)) as before:
        for pod in (a, b):
            before.attach(pod.host_ifindex, pod.node.netns)
    assert _attached(b) == ONE_EACH_WAY[first]
    env.policy(a, EndpointPolicy.allow_all())
    policy_b = EndpointPolicy(True, False, frozenset({
        PolicyEntry(Direction.INGRESS, env.ident(a), PROTO_UDP, 53, 53),
        PolicyEntry(Direction.INGRESS, env.ident(a), PROTO_TCP, 80, 80),
    }))
    env.policy(b, policy_b)
    servers = [UdpServer(b, 4, 53), UdpServer(b, 4, 54), TcpServer(b, 4, 80)]
    conn = a.run(lambda: socket.socket(family_af(4), socket.SOCK_STREAM))
    conn.settimeout(1)
    conn.connect((addr(b, 4), 80))  # an established flow that must survive the restart
    stop = threading.Event()
    results = {"allowed": 0, "lost": 0, "denied": 0, "leaked": 0, "tcp_ok": 0, "tcp_lost": 0}

    def probe() -> None:
        while not stop.is_set():
            if udp_roundtrip(a, b, 4, 53, timeout=2.0):
                results["allowed"] += 1
            else:
                results["lost"] += 1
            if udp_roundtrip(a, b, 4, 54, timeout=0.05):
                results["leaked"] += 1
            else:
                results["denied"] += 1
            try:
                conn.sendall(b"ping")
                ok = conn.recv(16) == b"ping"
            except OSError:
                ok = False
            results["tcp_ok" if ok else "tcp_lost"] += 1

    def drops(reason: DropReason | None = None) -> int:
        reasons = [reason] if reason else list(DropReason)
        return sum(env.count(p, d, r) for p in (a, b) for d in Direction for r in reasons)

    drops_before, denied_before = drops(), drops(DropReason.POLICY_DENIED)
    t = threading.Thread(target=probe)
    t.start()
    try:
        time.sleep(0.3)
        before_ids = _program_ids(b)
        restarted = Datapath.open(pin_root, dataclasses.replace(KERNEL_TEST_CONFIG,
                                                                attach_mode=then))
        try:
            assert {"ep_config", "pol_outer", "ct", "ident4", "ident6"} <= set(restarted.adopted)
            for pod in (a, b):
                restarted.attach(pod.host_ifindex, pod.node.netns)
            after_ids = _program_ids(b)
            assert len(after_ids) == 2 and after_ids.isdisjoint(before_ids)  # replaced
            assert _attached(b) == ONE_EACH_WAY[then]  # one each way, no extra
            state = restarted.endpoints()[b.host_ifindex]
            assert state.policy == normalize(policy_b)  # adopted state reads back exactly
        finally:
            restarted.close()
        time.sleep(0.5)
    finally:
        stop.set()
        t.join()
        conn.close()
        for s in servers:
            s.close()
    assert results["allowed"] > 10 and results["denied"] > 10, results
    assert results["lost"] == 0 and results["leaked"] == 0 and results["tcp_lost"] == 0, results
    # Exactly the denied probes were dropped: no allowed packet (nor a retransmission of
    # one) was lost during the restart.
    assert drops(DropReason.POLICY_DENIED) - denied_before == results["denied"]
    assert drops() - drops_before == results["denied"]


CHILD = """
import sys
from pathlib import Path
from enforcer.datapath import Datapath
from enforcer.datapath.types import Direction, EndpointPolicy, PolicyEntry
from tests.conftest import KERNEL_TEST_CONFIG
dp = Datapath.open(Path(sys.argv[1]), KERNEL_TEST_CONFIG)
policy = EndpointPolicy(True, False, frozenset({PolicyEntry(Direction.INGRESS, 77, 6, 443, 443)}))
print(dp.set_endpoint(int(sys.argv[2]), 4242, policy))
"""


def test_state_written_by_an_exited_process_stays_reachable(datapath: Datapath,
                                                            pin_root: Path) -> None:
    """Inner policy maps are not pinned: the outer map keeps them alive and reachable."""
    ifindex = 999_999  # no such interface: only the maps are exercised
    out = subprocess.run([sys.executable, "-c", CHILD, str(pin_root), str(ifindex)],
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    generation = int(out.stdout.strip().splitlines()[-1])
    try:
        state = datapath.endpoints()[ifindex]
        assert state.endpoint_id == 4242 and state.generation == generation
        assert state.policy == EndpointPolicy(True, False, frozenset({
            PolicyEntry(Direction.INGRESS, 77, PROTO_TCP, 443, 443)}))
    finally:
        datapath.remove_endpoint(ifindex)


def test_pins_with_another_layout_are_refused(datapath: Datapath, pin_root: Path) -> None:
    other = dataclasses.replace(KERNEL_TEST_CONFIG,
                                max_conntrack=KERNEL_TEST_CONFIG.max_conntrack * 2)
    start = time.monotonic()
    with pytest.raises(LayoutMismatchError, match="ct"):
        Datapath.open(pin_root, other)
    assert time.monotonic() - start < 1.0  # refused before compiling anything
    assert datapath.map_pressure()["ct"] >= 0  # the pinned maps are untouched and usable


def test_a_program_the_kernel_refuses_leaves_no_pins(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """bcc pins the maps before the verifier sees the program: a first start whose program
    is refused removes the pins it made (an existing layout is never touched: above)."""
    sources = tmp_path / "bpf"
    shutil.copytree(CHECKOUT_BPF_DIR, sources)
    main = sources / "enforcer.c"
    opening = "int tc_to_pod(struct __sk_buff *skb)\n{\n"
    assert opening in main.read_text()
    # A packet read without a bounds check: the verifier refuses the program.
    main.write_text(main.read_text().replace(
        opening, opening + "    if (skb->len == 12345)\n        return *(int *)(long)skb->data;\n"))
    monkeypatch.setenv(BPF_DIR_ENV, str(sources))
    root = Path("/sys/fs/bpf") / f"enf-test-refused-{secrets.token_hex(4)}"
    try:
        with pytest.raises(Exception, match=r"(?i)permission denied|failed to load"):
            Datapath.open(root, KERNEL_TEST_CONFIG)
        assert root.is_dir()  # the root itself may hold other versions' pins: kept
        assert not (root / f"v{LAYOUT_VERSION}").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)
