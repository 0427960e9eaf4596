"""The automatic quarantine's judgement (enforcer/quarantine/detector.py) and its glue to the
agent's drop events (enforcer/quarantine/auto.py), without a kernel."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_address

import pytest

from enforcer.datapath.types import Direction, DropEvent, DropReason
from enforcer.quarantine.auto import AutoQuarantine, offender
from enforcer.quarantine.detector import Denial, Detector, Trigger

TCP, UDP, ICMP = 6, 17, 1
SYN, ACK = 0x02, 0x10


def denial(dst: str = "10.0.0.2", port: int = 80, proto: int = TCP, flags: int = SYN,
           pod: str = "x/scanner", reason: DropReason = DropReason.POLICY_DENIED) -> Denial:
    return Denial(pod, reason, "10.0.0.9", dst, proto, port, flags)


def test_no_trigger_at_n_distinct_targets_a_trigger_past_n() -> None:
    d = Detector(max_targets=5, window=10.0)
    for port in range(5):
        assert d.observe(denial(port=port), now=float(port) * 0.1) is None
    got = d.observe(denial(port=99), now=0.6)
    assert got is not None and got.pod == "x/scanner" and got.kind == "scan"
    assert "6 distinct destinations or ports within 0.6 s" in got.reason
    assert got.reason.endswith("10.0.0.2:0/TCP, 10.0.0.2:1/TCP, 10.0.0.2:2/TCP, 10.0.0.2:3/TCP, "
                               "10.0.0.2:4/TCP and 1 more")
    assert got.annotation().startswith("auto: scan: ")
    # Once said, that pod's window starts over.
    assert d.observe(denial(port=100), now=0.7) is None and d.tracked() == 1


def test_retries_toward_one_target_count_once() -> None:
    d = Detector(max_targets=3, window=10.0)
    for i in range(100):  # a client retrying one denied service, SYN after SYN
        assert d.observe(denial(port=443), now=i * 0.05) is None
    for i in range(100):
        assert d.observe(denial(dst="10.0.0.3", port=53, proto=UDP, flags=0), i * 0.05) is None


def test_distinct_destinations_and_protocols_count() -> None:
    d = Detector(max_targets=3, window=10.0)
    seen = [denial(dst="10.0.0.2", port=80), denial(dst="10.0.0.3", port=80),
            denial(dst="10.0.0.2", port=80, proto=UDP, flags=0)]
    for i, one in enumerate(seen):
        assert d.observe(one, now=i) is None
    sweep = d.observe(denial(dst="10.0.0.4", port=0, proto=ICMP, flags=0), now=3.0)
    assert sweep is not None and "10.0.0.4 ICMP" in sweep.reason


def test_only_targets_within_the_window_count() -> None:
    d = Detector(max_targets=3, window=2.0)
    # One new target a second: never more than 3 within 2 s, however long it goes on.
    for i in range(50):
        assert d.observe(denial(port=i), now=float(i)) is None
    # The same four within the window: a scan.
    d2 = Detector(max_targets=3, window=2.0)
    assert [d2.observe(denial(port=p), now=10 + p * 0.5) for p in range(3)] == [None] * 3
    assert d2.observe(denial(port=3), now=11.9) is not None


def test_established_flows_cut_do_not_count_only_new_ones() -> None:
    d = Detector(max_targets=2, window=10.0)
    for port in range(10):  # a narrowing policy cuts ten established connections
        assert d.observe(denial(port=port, flags=ACK), now=0.1) is None
        assert d.observe(denial(port=port, flags=SYN | ACK), now=0.1) is None
    assert d.tracked() == 0


def test_pods_are_judged_apart() -> None:
    d = Detector(max_targets=3, window=10.0)
    for port in range(3):
        for pod in ("x/a", "x/b", "x/c"):
            assert d.observe(denial(pod=pod, port=port), now=port) is None
    assert d.observe(denial(pod="x/b", port=9), now=4.0) == Trigger(
        "x/b", "scan", d.observe(denial(pod="x/c", port=9), now=4.0).reason)  # type: ignore[union-attr]


def test_one_spoofed_source_triggers_and_other_drops_do_not() -> None:
    d = Detector(max_targets=3, window=10.0)
    for reason in (DropReason.FLOW_BUDGET, DropReason.TRUNCATED, DropReason.MAP_FULL,
                   DropReason.UNKNOWN_ENDPOINT, DropReason.AUDIT):
        for port in range(10):
            assert d.observe(denial(port=port, reason=reason), now=0.0) is None
    got = d.observe(Denial("x/liar", DropReason.SPOOFED_SOURCE, "10.0.0.66", "10.0.0.2", UDP,
                           53), now=0.0)
    assert got == Trigger("x/liar", "spoofed-source",
                          "spoofed source: sent from 10.0.0.66, not its own address")


def test_sweep_forgets_quiet_pods() -> None:
    d = Detector(max_targets=3, window=1.0)
    d.observe(denial(pod="x/a"), now=0.0)
    d.observe(denial(pod="x/b"), now=0.5)
    d.sweep(now=1.2)
    assert d.tracked() == 1
    d.sweep(now=2.0)
    assert d.tracked() == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Detector(max_targets=0)
    with pytest.raises(ValueError):
        Detector(window=0)


# -- the glue: drop events named, the pod quarantined once ----------------------------------

@dataclass
class FakeAgent:
    """Pods x/a (ifindex 10, 10.0.0.1), x/b (11, 10.0.0.2) local; 10.9.0.1 a remote pod."""

    quarantined: dict[str, str] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)
    ifindexes: dict[int, str] = field(default_factory=lambda: {10: "x/a", 11: "x/b"})
    ips: dict[str, str] = field(default_factory=lambda: {"10.0.0.1": "x/a", "10.0.0.2": "x/b",
                                                         "10.9.0.1": "y/remote"})

    def pod_for_ifindex(self, ifindex: int) -> str | None:
        return self.ifindexes.get(ifindex)

    def pod_for_ip(self, ip: str) -> str | None:
        return self.ips.get(ip)

    def is_local(self, pod: str) -> bool:
        return pod in self.ifindexes.values()

    def quarantine_of(self, pod: str) -> str | None:
        return self.quarantined.get(pod)

    def quarantine_local(self, pod: str, reason: str) -> None:
        self.asked.append((pod, reason))
        self.quarantined[pod] = reason


def event(ifindex: int, direction: Direction, reason: DropReason, src: str, dst: str,
          dport: int = 80, flags: int = SYN) -> DropEvent:
    return DropEvent(0, ifindex, 1, direction, reason, 0, TCP, ip_address(src), ip_address(dst),
                     40000, dport, flags)


def test_who_sent_it() -> None:
    agent = FakeAgent()
    denied = DropReason.POLICY_DENIED
    # At x/a's own egress: x/a sent it.
    got = offender(event(10, Direction.EGRESS, denied, "10.0.0.1", "10.0.0.2"), agent)
    assert got is not None and got.pod == "x/a"
    # At x/b's ingress, from x/a's address: x/a sent it.
    got = offender(event(11, Direction.INGRESS, denied, "10.0.0.1", "10.0.0.2"), agent)
    assert got is not None and got.pod == "x/a"
    # From a pod of another node: its own node's agent judges it.
    assert offender(event(11, Direction.INGRESS, denied, "10.9.0.1", "10.0.0.2"), agent) is None
    # Spoofed, at x/b's own hook: x/b, whatever address it wore.
    got = offender(event(11, Direction.EGRESS, DropReason.SPOOFED_SOURCE, "10.0.0.1",
                         "10.0.0.5"), agent)
    assert got is not None and got.pod == "x/b" and got.reason is DropReason.SPOOFED_SOURCE
    # Dropped because the destination is quarantined: nothing against the sender.
    agent.quarantined["x/b"] = "r"
    assert offender(event(11, Direction.INGRESS, denied, "10.0.0.1", "10.0.0.2"), agent) is None


def test_a_trigger_quarantines_once_and_is_persisted() -> None:
    agent = FakeAgent()
    persisted: list[tuple[str, Trigger]] = []
    fired: list[Trigger] = []
    now = [0.0]
    auto = AutoQuarantine(agent, Detector(max_targets=3, window=10.0),
                          lambda pod, t: persisted.append((pod, t)), on_trigger=fired.append,
                          clock=lambda: now[0])
    for port in range(10):
        now[0] += 0.01
        auto.on_drop(event(11, Direction.INGRESS, DropReason.POLICY_DENIED, "10.0.0.1",
                           "10.0.0.2", dport=port))
    assert [p for p, _ in agent.asked] == ["x/a"] and len(fired) == 1
    assert agent.asked[0][1].startswith("auto: scan: denied new flows toward 4 distinct")
    for _ in range(100):
        if persisted and auto.records["x/a"]["api"] == "persisted":
            break
        import time
        time.sleep(0.01)
    assert persisted == [("x/a", fired[0])]
    (entry,) = auto.status([{"pod": "x/a", "reason": "r", "by": "agent"}])
    assert entry["auto"]["trigger"] == "scan" and entry["auto"]["api"] == "persisted"


def test_a_refused_write_is_said_and_the_pod_stays_quarantined_here() -> None:
    class Forbidden(Exception):
        status, reason = 403, "Forbidden"

    def refuse(pod: str, trigger: Trigger) -> None:
        raise Forbidden()

    agent = FakeAgent()
    auto = AutoQuarantine(agent, Detector(), refuse)
    auto.on_drop(event(10, Direction.EGRESS, DropReason.SPOOFED_SOURCE, "10.0.0.7", "10.0.0.2"))
    assert agent.quarantined == {"x/a": "auto: spoofed source: sent from 10.0.0.7, not its "
                                          "own address"}
    import time
    for _ in range(200):
        if auto.records["x/a"]["api"] != "pending":
            break
        time.sleep(0.01)
    assert auto.records["x/a"]["api"].startswith("failed: 403 Forbidden")
