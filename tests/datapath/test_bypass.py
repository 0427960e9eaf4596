"""The bypass checklist (DESIGN-NOTES), with crafted packets injected into the source pod's
namespace and the verdict checked at the destination: capture at its eth0 (or a socket)
plus the drop reason our program counted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.all import (
    ICMP,
    SCTP,
    TCP,
    UDP,
    Dot1Q,
    Ether,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
    Raw,
    fragment,
    fragment6,
    raw,
)
from scapy.layers.ipsec import AH

from enforcer.datapath.types import DropReason
from tests.datapath.conftest import Env
from tests.datapath.crafted import Pair, marker
from tests.datapath.net import UdpServer, on_one_cpu, wait_until

pytestmark = pytest.mark.kernel


@pytest.fixture
def pair(env: Env, family: int) -> Iterator[Pair]:
    p = Pair.make(env, family)
    try:
        yield p
    finally:
        p.close()


def test_crafted_allowed_and_denied_baseline(pair: Pair) -> None:
    m_ok, m_no = marker(), marker()
    assert pair.delivered([pair.frame(pair.ip() / UDP(sport=4000, dport=53) / m_ok)], m_ok)
    before = pair.drops(DropReason.POLICY_DENIED)
    assert not pair.delivered([pair.frame(pair.ip() / UDP(sport=4000, dport=54) / m_no)], m_no)
    assert pair.drops(DropReason.POLICY_DENIED) > before


def _fragments(pair: Pair, dport: int, payload: bytes) -> list[bytes]:
    if pair.family == 4:
        frags = fragment(pair.ip(id=0x4242) / UDP(sport=4001, dport=dport) / payload, 512)
    else:
        frags = fragment6(pair.ip() / IPv6ExtHdrFragment(id=0x4242) /
                          UDP(sport=4001, dport=dport) / payload, 600)
    return [pair.frame(f) for f in frags]


def test_fragments_of_an_allowed_flow_pass(pair: Pair) -> None:
    server = UdpServer(pair.dst, pair.family, 53)
    try:
        payload = marker() * 150  # ~2 KB: several fragments
        frames = _fragments(pair, 53, payload)
        assert len(frames) >= 3
        for f in frames:
            pair.injector.send(f)
        assert wait_until(lambda: payload in server.received, timeout=2)
    finally:
        server.close()


def test_fragments_of_a_denied_flow_and_stray_fragments_drop(pair: Pair) -> None:
    m = marker()
    frames = _fragments(pair, 54, m * 150)
    untracked = pair.drops(DropReason.FRAGMENT_UNTRACKED)
    # Later fragments alone (first lost, or out of order): no ports to judge them by.
    assert not pair.delivered(frames[1:], m)
    assert pair.drops(DropReason.FRAGMENT_UNTRACKED) >= untracked + len(frames) - 1
    # The whole denied datagram: the first is denied, so the rest stay untracked.
    assert not pair.delivered(frames, m)


def test_tiny_first_fragment_drops(pair: Pair) -> None:
    """A first fragment too short to hold the TCP header (ports and flags)."""
    m = marker()
    tcp = raw(TCP(sport=4002, dport=80, flags="S"))
    if pair.family == 4:
        l3 = raw(pair.ip(proto=6, flags="MF", frag=0, id=0x77) / Raw(tcp[:8]))
    else:
        l3 = raw(pair.ip() / IPv6ExtHdrFragment(nh=6, m=1, offset=0, id=0x77) / Raw(tcp[:8]))
    before = pair.drops(DropReason.TRUNCATED)
    assert not pair.delivered([pair.frame(l3 + m)], m)
    assert pair.drops(DropReason.TRUNCATED) > before


def test_overlapping_fragment_into_the_tcp_header_drops(pair: Pair) -> None:
    """RFC 1858: a later fragment at offset 8 rewriting TCP flags of an allowed first one."""
    m1, m2 = marker(), marker()
    tcp = raw(TCP(sport=4003, dport=80, flags="A")) + m1 + b"x" * 5
    over = raw(TCP(sport=4003, dport=80, flags="S"))[8:] + m2
    if pair.family == 4:
        first = pair.ip(proto=6, flags="MF", frag=0, id=0x99) / Raw(tcp)
        later = pair.ip(proto=6, frag=1, id=0x99) / Raw(over)
    else:
        first = pair.ip() / IPv6ExtHdrFragment(nh=6, m=1, offset=0, id=0x99) / Raw(tcp)
        later = pair.ip() / IPv6ExtHdrFragment(nh=6, m=0, offset=1, id=0x99) / Raw(over)
    before = pair.drops(DropReason.FRAGMENT_OVERLAP)
    assert pair.delivered([pair.frame(first)], m1)
    assert not pair.delivered([pair.frame(later)], m2)
    assert pair.drops(DropReason.FRAGMENT_OVERLAP) > before


@pytest.mark.parametrize("family", [6], ids=["ipv6"])
@pytest.mark.parametrize("chain", ["hop+dest", "padding-only", "routing", "ah", "six"])
def test_allowed_ipv6_extension_header_chains_are_walked(pair: Pair, chain: str) -> None:
    headers = {
        "hop+dest": IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\0" * 4)]) / IPv6ExtHdrDestOpt(),
        "padding-only": IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0" * 12)]),
        "routing": IPv6ExtHdrRouting(type=0, segleft=0, addresses=[]),
        "ah": AH(nh=17, payloadlen=4, spi=1, seq=1, icv=b"\0" * 12),  # (4 + 2) * 4 bytes
        "six": IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() /
        IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt(),
    }[chain]
    m_ok, m_no = marker(), marker()
    ok = pair.ip() / headers / UDP(sport=4004, dport=53) / m_ok
    denied = pair.ip() / headers / UDP(sport=4004, dport=54) / m_no
    assert pair.delivered([pair.frame(ok)], m_ok)
    assert not pair.delivered([pair.frame(denied)], m_no)  # the ports were really read


@pytest.mark.parametrize("family", [6], ids=["ipv6"])
@pytest.mark.parametrize("chain", ["seven", "no-next-header", "experimental", "mobility"])
def test_bad_ipv6_extension_header_chains_drop(pair: Pair, chain: str) -> None:
    m = marker()
    udp = UDP(sport=4005, dport=53) / m
    pkt = {
        "seven": pair.ip() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() /
        IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() /
        IPv6ExtHdrDestOpt() / udp,
        "no-next-header": pair.ip(nh=59) / Raw(raw(udp)),
        "experimental": pair.ip(nh=253) / Raw(b"\x11\x00" + b"\0" * 6 + raw(udp)),
        "mobility": pair.ip(nh=135) / Raw(b"\x11\x00" + b"\0" * 6 + raw(udp)),
    }[chain]
    before = pair.drops(DropReason.IPV6_EXT_HEADER)
    assert not pair.delivered([pair.frame(pkt)], m)
    assert pair.drops(DropReason.IPV6_EXT_HEADER) > before


def _truncated(pair: Pair, case: str) -> bytes:
    if pair.family == 4:
        good = bytearray(raw(pair.ip(id=0x3131) / UDP(sport=4006, dport=53) / b"payload"))
        if case == "ihl-below-5":
            good[0] = 0x44
            return bytes(good)
        if case == "total-length-too-big":
            good[2:4] = (len(good) + 100).to_bytes(2, "big")
            return bytes(good)
        if case == "total-length-below-header":
            good[2:4] = (12).to_bytes(2, "big")
            return bytes(good)
    else:
        good = bytearray(raw(pair.ip(fl=0x3131) / UDP(sport=4006, dport=53) / b"payload"))
        if case == "payload-length-too-big":
            good[4:6] = (len(good) + 100).to_bytes(2, "big")
            return bytes(good)
        if case == "header-cut":
            return bytes(good[:30])
    tcp = raw(TCP(sport=4006, dport=80, flags="S"))
    udp = raw(UDP(sport=4006, dport=53, len=8))
    l4 = {
        "tcp-cut": (6, tcp[:12]),
        "tcp-data-offset-below-5": (6, tcp[:12] + bytes([0x40]) + tcp[13:]),
        "tcp-data-offset-beyond-packet": (6, tcp[:12] + bytes([0xF0]) + tcp[13:]),
        "udp-cut": (17, udp[:6]),
        "udp-length-too-big": (17, udp[:4] + (200).to_bytes(2, "big") + udp[6:] + b"abc"),
    }
    proto, body = l4[case]
    if pair.family == 4:
        return raw(pair.ip(proto=proto, id=0x3131) / Raw(body))
    return raw(pair.ip(nh=proto, fl=0x3131) / Raw(body))


V4_CASES = ["ihl-below-5", "total-length-too-big", "total-length-below-header"]
V6_CASES = ["payload-length-too-big", "header-cut"]
L4_CASES = ["tcp-cut", "tcp-data-offset-below-5", "tcp-data-offset-beyond-packet", "udp-cut",
            "udp-length-too-big"]


def _check_truncated(pair: Pair, case: str) -> None:
    m = marker()
    before = pair.drops(DropReason.TRUNCATED)
    # The marker trails the IP packet (Ethernet padding): it reaches the destination only
    # if the frame is forwarded, whatever the headers claim.
    assert not pair.delivered([pair.frame(_truncated(pair, case) + m)], m)
    assert pair.drops(DropReason.TRUNCATED) > before


@pytest.mark.parametrize("family", [4], ids=["ipv4"])
@pytest.mark.parametrize("case", V4_CASES)
def test_truncated_and_bogus_ipv4_headers_drop(pair: Pair, case: str) -> None:
    _check_truncated(pair, case)


@pytest.mark.parametrize("family", [6], ids=["ipv6"])
@pytest.mark.parametrize("case", V6_CASES)
def test_truncated_and_bogus_ipv6_headers_drop(pair: Pair, case: str) -> None:
    _check_truncated(pair, case)


@pytest.mark.parametrize("case", L4_CASES)
def test_truncated_and_bogus_l4_headers_drop(pair: Pair, case: str) -> None:
    _check_truncated(pair, case)


def _remembered_then_bogus(pair: Pair, case: str, mark: bytes) -> tuple[bytes, bytes]:
    """A valid packet of a flow, and a packet of the same tuple whose headers lie (the probe
    of the flow memory reads them before the parser does: bpf/lib/flowcache.h); the marker
    in the payload of both."""
    tcp = case.startswith("tcp")
    body = (raw(TCP(sport=4008, dport=80, flags="A")) if tcp
            else raw(UDP(sport=4008, dport=53, len=8 + len(mark)))) + mark
    proto = 6 if tcp else 17
    bogus = bytearray(body)
    if case == "tcp-data-offset-below-5":
        bogus[12] = 0x40
    elif case == "tcp-data-offset-beyond-packet":
        bogus[12] = 0xF0
    elif case == "udp-length-too-big":
        bogus[4:6] = (200).to_bytes(2, "big")
    elif case == "udp-length-below-header":
        bogus[4:6] = (4).to_bytes(2, "big")

    def l3(payload: bytes, total_extra: int = 0) -> bytes:
        if pair.family == 4:
            return raw(pair.ip(proto=proto, id=0x4141,
                               len=20 + len(payload) + total_extra) / Raw(payload))
        return raw(pair.ip(nh=proto, plen=len(payload) + total_extra) / Raw(payload))

    if case == "ip-length-too-big":
        return l3(body), l3(body, 100)
    return l3(body), l3(bytes(bogus))


REMEMBERED_CASES = ["tcp-data-offset-below-5", "tcp-data-offset-beyond-packet",
                    "udp-length-too-big", "udp-length-below-header", "ip-length-too-big"]


# The probe reads the packet the same way whatever the topology: one is enough.
@pytest.mark.parametrize("env", ["routed"], indirect=True)
@pytest.mark.parametrize("case", REMEMBERED_CASES)
def test_a_remembered_flow_s_bogus_packets_still_drop(pair: Pair, case: str) -> None:
    """The flow memory answers before the parser, from the packet's own bytes: a packet of a
    flow it remembers, with lengths the parser refuses, is dropped all the same, not passed
    on the tuple alone. All on one CPU, so the packets meet the memory the first ones filled."""
    with on_one_cpu():
        for _ in range(3):  # the first writes the entry (and the memory), the rest hit it
            m = marker()
            good, _ = _remembered_then_bogus(pair, case, m)
            assert pair.delivered([pair.frame(good)], m)
        m = marker()
        _, bogus = _remembered_then_bogus(pair, case, m)
        before = pair.drops(DropReason.TRUNCATED)
        assert not pair.delivered([pair.frame(bogus)], m)
        assert pair.drops(DropReason.TRUNCATED) > before


@pytest.mark.parametrize("family", [4], ids=["ipv4"])
def test_ipv4_options_are_skipped(pair: Pair) -> None:
    from scapy.all import IPOption_NOP

    m_ok, m_no = marker(), marker()
    opts = [IPOption_NOP()] * 8
    assert pair.delivered([pair.frame(pair.ip(options=opts) / UDP(dport=53) / m_ok)], m_ok)
    assert not pair.delivered([pair.frame(pair.ip(options=opts) / UDP(dport=54) / m_no)], m_no)


def test_sctp_is_judged_by_its_ports(pair: Pair) -> None:
    m_ok, m_no = marker(), marker()
    assert pair.delivered([pair.frame(pair.ip() / SCTP(sport=4007, dport=9) / m_ok)], m_ok)
    assert not pair.delivered([pair.frame(pair.ip() / SCTP(sport=4007, dport=10) / m_no)], m_no)


@pytest.mark.parametrize("proto", [47, 200])
def test_other_protocols_with_port_like_bytes_drop(pair: Pair, proto: int) -> None:
    """Bytes that look like TCP port 80 in a protocol without ports must not match TCP 80."""
    m = marker()
    field = "proto" if pair.family == 4 else "nh"
    pkt = pair.ip(**{field: proto}) / Raw(b"\x0f\xa2\x00\x50" + b"\0" * 16 + m)
    before = pair.drops(DropReason.POLICY_DENIED)
    assert not pair.delivered([pair.frame(pkt)], m)
    assert pair.drops(DropReason.POLICY_DENIED) > before


def test_vlan_tagged_frames_drop_on_isolated_endpoints(pair: Pair) -> None:
    m = marker()
    eth = Ether(src=pair.injector.mac, dst=pair.dst_mac) / Dot1Q(vlan=5)
    frame = raw(eth / pair.ip() / UDP(sport=4008, dport=53) / m)
    before = pair.drops(DropReason.UNSUPPORTED_L3)
    assert not pair.delivered([frame], m)
    assert pair.drops(DropReason.UNSUPPORTED_L3) > before


def test_icmp_error_quoting_an_unrelated_flow_drops(pair: Pair) -> None:
    m = marker()
    inner = pair.ip() / UDP(sport=4009, dport=53)  # a flow never seen
    if pair.family == 4:
        err = pair.ip() / ICMP(type=3, code=3) / raw(inner)[:28] / m
    else:
        from scapy.all import ICMPv6DestUnreach

        err = pair.ip() / ICMPv6DestUnreach() / raw(inner)[:48] / m
    before = pair.drops(DropReason.POLICY_DENIED)
    assert not pair.delivered([pair.frame(err)], m)
    assert pair.drops(DropReason.POLICY_DENIED) > before
