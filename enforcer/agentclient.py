"""Talk to a running agent's HTTP endpoint, optionally inside a network namespace (the lab)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any

from enforcer.netnsutil import run_in_netns

DEFAULT_AGENT = "127.0.0.1:9830"


def _connect(addr: str, netns: str | None, timeout: float | None) -> HTTPConnection:
    host, _, port = addr.rpartition(":")

    def make() -> socket.socket:
        return socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)

    # The socket is created inside the namespace and keeps working from any thread.
    sock = run_in_netns(netns, make) if netns else make()
    conn = HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    conn.sock = sock
    return conn


def get_json(addr: str, path: str, netns: str | None = None, timeout: float = 5.0) -> Any:
    conn = _connect(addr, netns, timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}: {body[:200]!r}")
        return json.loads(body)
    finally:
        conn.close()


def get_text(
    addr: str, path: str, netns: str | None = None, timeout: float = 5.0
) -> tuple[int, str]:
    conn = _connect(addr, netns, timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def stream_events(addr: str, netns: str | None = None) -> Iterator[dict[str, Any]]:
    yield from stream_json_lines(addr, "/events", netns)


def stream_json_lines(
    addr: str, path: str, netns: str | None = None, timeout: float | None = None
) -> Iterator[dict[str, Any]]:
    """The JSON objects of an NDJSON response (/events, /flows), as they arrive; an HTTP error
    raises RuntimeError with the agent's message (a bad filter names its parameter)."""
    conn = _connect(addr, netns, timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(resp.read().decode(errors="replace").strip() or
                               f"{path}: HTTP {resp.status}")
        for raw in resp:
            line = raw.strip()
            if line:
                yield json.loads(line)
    finally:
        conn.close()
