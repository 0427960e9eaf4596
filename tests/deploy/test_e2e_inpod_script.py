"""The e2e suite's in-pod prober and packet injector (tests/e2e/inpod.py), run for real here:
in a network namespace of its own, against TCP and answering UDP servers on its loopback."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .render import REPO

INPOD = REPO / "tests" / "e2e" / "inpod.py"

# Servers like agnhost's serve-hostname (TCP accepts, UDP answers), on v4 and v6 loopback.
SERVERS = textwrap.dedent(
    """
    import socket, threading

    def tcp(family, addr, port):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port)); s.listen(64)
        def loop():
            while True:
                c, _ = s.accept(); c.close()
        threading.Thread(target=loop, daemon=True).start()

    def udp(family, addr, port):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind((addr, port))
        def loop():
            while True:
                _, peer = s.recvfrom(65535); s.sendto(b"server", peer)
        threading.Thread(target=loop, daemon=True).start()

    for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        tcp(fam, addr, 80)
        udp(fam, addr, 80)
    """
)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"enf-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _run_in(netns: str, body: str) -> dict[str, object]:
    """Start the servers in the namespace, then run `body` (which prints JSON) there."""
    script = f"{SERVERS}\nimport sys, json\nsys.path.insert(0, {str(INPOD.parent)!r})\n"
    script += "import inpod\n" + textwrap.dedent(body)
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.kernel
def test_probe_tells_open_from_closed_on_both_families(netns: str) -> None:
    targets = [
        ["tcp4-open", "127.0.0.1", 80, "TCP"],
        ["udp4-open", "127.0.0.1", 80, "UDP"],
        ["tcp4-closed", "127.0.0.1", 81, "TCP"],
        ["udp4-closed", "127.0.0.1", 81, "UDP"],
        ["tcp6-open", "::1", 80, "TCP"],
        ["udp6-open", "::1", 80, "UDP"],
        ["tcp6-closed", "::1", 81, "TCP"],
    ]
    out = _run_in(netns, f"print(json.dumps(inpod.probe({targets!r})))")
    assert out == {t[0]: t[0].endswith("-open") for t in targets}


@pytest.mark.kernel
def test_main_speaks_json_like_the_exec_call(netns: str) -> None:
    """The suite runs `python3 -c SOURCE probe JSON`: the same entry point, here."""
    arg = json.dumps([["k", "127.0.0.1", 80, "TCP"]])
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", INPOD.read_text(), "probe", arg],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"k": False}  # no server in this run: refused


VARIANTS = [
    ("127.0.0.1", "ipv4-fragments"),
    ("127.0.0.1", "ipv4-fragments-reversed"),
    ("127.0.0.1", "ipv4-tiny-first-fragment"),
    ("::1", "ipv6-destopt"),
    ("::1", "ipv6-hop-destopt"),
    ("::1", "ipv6-fragments"),
]


@pytest.mark.kernel
def test_crafted_packets_reach_an_answering_server_and_not_a_closed_port(netns: str) -> None:
    """Without any enforcer the kernel reassembles and answers: the injector sees the answer;
    to a port where nothing listens it sees none. (In a cluster, the verdicts come from the
    policy.)"""
    body = "out = {}\n"
    for dst, variant in VARIANTS:
        for port in (80, 81):
            spec = {"dst": dst, "port": port, "variant": variant, "iface": "lo", "wait": 1}
            body += f"out['{variant}:{port}'] = inpod.inject({spec!r})['delivered']\n"
    body += "print(json.dumps(out))\n"
    out = _run_in(netns, body)
    assert out == {f"{v}:{p}": p == 80 for _, v in VARIANTS for p in (80, 81)}


def test_every_injected_variant_is_known_to_the_script() -> None:
    sys.path.insert(0, str(INPOD.parent))
    try:
        import inpod  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    for variant in {v for _, v in VARIANTS} | {"ipv6-too-many-destopts"}:
        dst = "::1" if variant.startswith("ipv6") else "127.0.0.1"
        assert inpod._packets(dst, 40000, 80, variant)
    with pytest.raises(ValueError):
        inpod._packets("127.0.0.1", 40000, 80, "nonsense")


def test_script_is_standalone() -> None:
    """It runs in the pod with only the standard library and scapy."""
    source = INPOD.read_text()
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith(("import ", "from ")):
            module = stripped.split()[1].split(".")[0]
            assert module in {
                "__future__", "json", "socket", "sys", "time", "concurrent", "typing", "scapy",
            }, line  # fmt: skip
    assert Path(INPOD).is_file()
