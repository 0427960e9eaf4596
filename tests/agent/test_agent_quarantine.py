"""Quarantine with packets: the real agent (--auto-quarantine) and datapath on a node in network
namespaces, the fake API server in the node's namespace, `enforcer quarantine` run as a
process against it.

- A TCP stream and a UDP exchange between x/b and x/a run; `enforcer quarantine x/b`: both
  stop at their next packet, within a second of the annotation's write; the node's own
  traffic to x/b (kubelet probes) still passes; `release`: both resume.
- Quarantined again, the agent killed and started again: still quarantined (new flows both
  ways dropped, status, flows and metrics say so), the Event on the pod; released: open.
- Automatic: y/c probing more ports of x/a (ingress isolated) than the threshold allows is
  quarantined by the agent, which says why and writes the annotation and an Event; x/b
  sending one packet from an address not its own likewise.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.all import IP, UDP, raw

from enforcer.lab.probe import ProbeEndpoint, probe_pair
from enforcer.model.objects import QUARANTINE_ANNOTATION
from enforcer.netnsutil import run_in_netns
from tests.agent.harness import NODE, NodeHarness, eventually, policy
from tests.datapath.net import EchoServers

pytestmark = pytest.mark.kernel

TCP_PORT, UDP_PORT = 9000, 9001
SCAN_N = 8  # --quarantine-scan-destinations
INTERVAL = 0.005


class Stream:
    """A client's messages and their echoes, every 5 ms: the times echoes arrived."""

    def __init__(self, sock: socket.socket, tcp: bool) -> None:
        self.sock, self.tcp = sock, tcp
        self.answers: list[float] = []
        self.stop = threading.Event()
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sent = 0
        try:
            while not self.stop.is_set():
                msg = f"{sent:08d}".encode()
                sent += 1
                self.sock.send(msg)
                got = b""
                while len(got) < len(msg) and not self.stop.is_set():
                    try:
                        chunk = self.sock.recv(64)
                    except TimeoutError:
                        if self.tcp:
                            continue  # TCP retransmits it: keep waiting for this echo
                        break  # UDP: lost, send the next one
                    if self.tcp and not chunk:
                        raise ConnectionError("closed")
                    got = got + chunk if self.tcp else chunk
                    if not self.tcp and got != msg:
                        got = b""  # a late echo of an earlier datagram
                if got == msg:
                    self.answers.append(time.monotonic())
                time.sleep(INTERVAL)
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def last(self) -> float:
        return self.answers[-1] if self.answers else 0.0

    def answered_after(self, t: float) -> int:
        return sum(1 for a in self.answers if a > t)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeHarness]:
    harness = NodeHarness(tmp_path, agent_args=(
        "--auto-quarantine", "--quarantine-scan-destinations", str(SCAN_N),
        "--quarantine-scan-seconds", "5"))
    try:
        yield harness.start()
    finally:
        harness.stop()


def _cli(node: NodeHarness, *argv: str) -> subprocess.CompletedProcess[str]:
    """`enforcer quarantine` as a process in the node's namespace (where the API listens)."""
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{node.node.netns}", sys.executable, "-m", "enforcer.cli",
         "quarantine", *argv, "--kubeconfig", str(node.kubeconfig)],
        capture_output=True, text=True, timeout=60)


def _annotated_at(node: NodeHarness, key: str, want: bool, out: list[float],
                  stop: threading.Event) -> None:
    """Notes when the API's pod first has (want) or lacks the annotation (polled each ms)."""
    ns, name = key.split("/")
    while not stop.is_set():
        pod = node.api.get("Pod", name, ns) or {}
        if (QUARANTINE_ANNOTATION in (pod.get("metadata", {}).get("annotations") or {})) == want:
            out.append(time.monotonic())
            return
        time.sleep(0.001)


def _timed_cli(node: NodeHarness, *argv: str) -> tuple[float, float]:
    """Runs the CLI; returns (when the API's pod changed, when the CLI had exited)."""
    changed: list[float] = []
    stop = threading.Event()
    release = argv[0] == "release"
    key = argv[1] if release else argv[0]
    watcher = threading.Thread(target=_annotated_at, args=(node, key, not release, changed,
                                                           stop))
    watcher.start()
    done = _cli(node, *argv)
    exited = time.monotonic()
    watcher.join(2)
    stop.set()
    assert done.returncode == 0, done.stderr
    assert changed, f"the API's pod {key} did not change"
    return changed[0], exited


def _quarantined(node: NodeHarness) -> dict[str, dict[str, Any]]:
    return {q["pod"]: q for q in node.status().get("quarantined", [])}


def _metric(node: NodeHarness, line_start: str) -> float:
    for line in node.metrics().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _events(node: NodeHarness, name: str) -> list[dict[str, Any]]:
    return [e for e in node.api.objects("Event") if e["involvedObject"]["name"] == name]


def test_quarantine_cuts_streams_survives_restart_and_auto_quarantines(
        node: NodeHarness) -> None:
    figures: dict[str, float] = {}
    # x/a's ingress isolated: only x/b may reach it (on every port).
    node.api.create(policy("x", "a-from-b", {
        "podSelector": {"matchLabels": {"app": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}]}))
    node.expect("y/c", "x/a", False)
    node.expect("x/b", "x/a", True)
    kubelet = ProbeEndpoint("node", node.node.netns, node.node.gateway_v4)  # from the node

    # -- manual: the streams stop within a second, the node still reaches x/b, release ------
    echo = EchoServers(node.pods["x/a"].netns, TCP_PORT, UDP_PORT)

    def connect() -> tuple[socket.socket, socket.socket]:
        tcp = socket.create_connection((node.ip("x/a"), TCP_PORT), timeout=0.2)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.settimeout(0.2)
        udp.connect((node.ip("x/a"), UDP_PORT))
        return tcp, udp

    tcp_sock, udp_sock = run_in_netns(node.pods["x/b"].netns, connect)
    streams = {"TCP": Stream(tcp_sock, True), "UDP": Stream(udp_sock, False)}
    try:
        time.sleep(0.5)
        assert all(len(s.answers) > 20 for s in streams.values()), \
            {k: len(s.answers) for k, s in streams.items()}
        started = time.monotonic()
        written, exited = _timed_cli(node, "x/b", "--reason", "incident 42: beaconing")
        time.sleep(1.5)
        for proto, s in streams.items():
            figures[f"{proto} last echo after the write (s)"] = s.last() - written
            assert s.last() - written < 1.0, (proto, s.last() - written)
            assert s.answered_after(exited + 1.0) == 0, proto
        figures["CLI run (s)"] = exited - started
        # Kubelet-style: the node's own connection to the quarantined pod passes.
        assert probe_pair(kubelet, node.endpoint("x/b"), 80, "TCP", 0.5)
        assert not node.reach("x/b", "y/c") and not node.reach("y/c", "x/b")
        released, _ = _timed_cli(node, "release", "x/b")
        eventually(lambda: all(s.answered_after(released) > 5 for s in streams.values()), 5,
                   "both streams resume after release")
        for proto, s in streams.items():
            figures[f"{proto} first echo after release (s)"] = \
                min(a for a in s.answers if a > released) - released
            assert s.error is None, (proto, s.error)
    finally:
        for s in streams.values():
            s.stop.set()
            s.thread.join(5)
        tcp_sock.close()
        udp_sock.close()
        echo.close()

    # -- quarantined across an agent restart; status, flows, metrics, Events ----------------
    _timed_cli(node, "x/b", "--reason", "incident 42: beaconing")
    node.expect("x/b", "x/a", False)
    node.kill_agent()
    assert not node.reach("x/b", "x/a")  # the pinned tables enforce while no agent runs
    node.start_agent()
    for src, dst in (("x/b", "x/a"), ("x/b", "y/c"), ("y/c", "x/b"), ("x/a", "x/b")):
        assert not node.reach(src, dst), (src, dst)
    assert probe_pair(kubelet, node.endpoint("x/b"), 80, "TCP", 0.5)
    assert _quarantined(node) == {"x/b": {"pod": "x/b", "reason": "incident 42: beaconing",
                                          "by": "annotation"}}
    (ep,) = [e for e in node.status()["endpoints"] if e["pod"] == "x/b"]
    assert ep["quarantine"] == "incident 42: beaconing" and ep["entries"] == 0
    assert ep["ingress_isolated"] and ep["egress_isolated"]
    assert _metric(node, "enforcer_quarantined_pods ") == 1
    status_text = subprocess.run(
        [sys.executable, "-m", "enforcer.cli", "status", "--agent",
         f"unix:{node.agent_api.socket}"], capture_output=True, text=True, timeout=30).stdout
    assert "quarantined: x/b by its annotation: incident 42: beaconing" in status_text
    flows = subprocess.run(
        [sys.executable, "-m", "enforcer.cli", "flows", "--agent",
         f"unix:{node.agent_api.socket}", "--pod", "x/b", "--verdict", "denied", "-o", "json",
         "--last", "0"], capture_output=True, text=True, timeout=30).stdout
    records = [json.loads(line) for line in flows.splitlines()]
    assert records and all(r["policies"] == ["quarantine"] for r in records
                           if (r["direction"] == "egress") == (r["source"] == "x/b"))
    table = subprocess.run(
        [sys.executable, "-m", "enforcer.cli", "flows", "--agent",
         f"unix:{node.agent_api.socket}", "--pod", "x/b", "--verdict", "denied"],
        capture_output=True, text=True, timeout=30).stdout
    assert "denied: x/b is quarantined" in table
    reasons = [e["reason"] for e in sorted(_events(node, "b"),
                                           key=lambda e: e["metadata"]["name"])]
    assert reasons == ["Quarantined", "QuarantineReleased", "Quarantined"]
    _timed_cli(node, "release", "x/b")
    node.expect("x/b", "x/a", True)
    node.expect("x/a", "x/b", True)
    assert _metric(node, "enforcer_quarantined_pods ") == 0

    # -- automatic: a scan ----------------------------------------------------------------------
    assert node.reach("y/c", "x/b")  # open before
    ports = list(range(2000, 2000 + SCAN_N + 1))  # one more than the threshold

    def scan() -> None:
        for port in ports:
            with socket.socket() as s:
                s.setblocking(False)
                s.connect_ex((node.ip("x/a"), port))  # a SYN each, denied at x/a's ingress
                time.sleep(0.01)

    scanned = time.monotonic()
    run_in_netns(node.pods["y/c"].netns, scan)
    eventually(lambda: "y/c" in _quarantined(node), 2, "y/c quarantined automatically")
    figures["scan: quarantined in /status after the last SYN within (s)"] = \
        time.monotonic() - scanned
    assert not node.reach("y/c", "x/b")
    auto = _quarantined(node)["y/c"]
    assert auto["reason"].startswith(f"auto: scan: denied new flows toward {SCAN_N + 1} "
                                     "distinct destinations or ports")
    assert f"{node.ip('x/a')}:2000/TCP" in auto["reason"]
    assert auto["auto"]["trigger"] == "scan"
    eventually(lambda: _quarantined(node)["y/c"]["auto"]["api"] == "persisted", 5,
               "the scan's quarantine written to the API")
    pod = node.api.get("Pod", "c", "y") or {}
    assert pod["metadata"]["annotations"][QUARANTINE_ANNOTATION] == auto["reason"]
    (event,) = _events(node, "c")
    assert event["reason"] == "Quarantined" and event["source"] == {"component": "enforcer",
                                                                   "host": NODE}
    assert auto["reason"].removeprefix("auto: ") in event["message"]
    assert _quarantined(node)["y/c"]["by"] == "annotation"  # the API holds it now
    assert _metric(node, 'enforcer_auto_quarantines_total{trigger="scan"}') == 1

    # -- automatic: a spoofed source ------------------------------------------------------------
    assert node.reach("x/b", "x/a")
    forged = raw(IP(src="198.51.100.7", dst=node.ip("x/a")) / UDP(sport=5000, dport=81)
                 / b"not me")

    def spoof() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
            s.sendto(forged, (node.ip("x/a"), 0))

    run_in_netns(node.pods["x/b"].netns, spoof)
    eventually(lambda: "x/b" in _quarantined(node), 2, "x/b quarantined automatically")
    assert _quarantined(node)["x/b"]["reason"] == \
        "auto: spoofed source: sent from 198.51.100.7, not its own address"
    assert not node.reach("x/b", "x/a")
    assert _metric(node, "enforcer_quarantined_pods ") == 2
    eventually(lambda: _quarantined(node)["x/b"]["auto"]["api"] == "persisted", 5,
               "the spoof's quarantine written to the API")
    # Nothing else was quarantined: x/a, whose ingress dropped the scan, is untouched.
    assert set(_quarantined(node)) == {"x/b", "y/c"}
    print("figures:", json.dumps({k: round(v, 3) for k, v in figures.items()}, indent=1))
