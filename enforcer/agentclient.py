"""Talk to a running agent's HTTP endpoint, optionally inside a network namespace (the lab).

`AgentEndpoint` names where one agent's API is; get_json and get_text take an address and a
namespace (metrics, health, and other HTTP servers such as Prometheus in tests)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from typing import Any

from enforcer.netnsutil import netns_path, run_in_netns

DEFAULT_AGENT = "unix:/run/enforcer/agent.sock"  # the agent's --api-socket on this node


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
    """A JSON document from HOST:PORT (an agent's, or any HTTP server's: Prometheus)."""
    return AgentEndpoint(addr=addr, netns=netns).get_json(path, timeout)


def get_text(
    addr: str, path: str, netns: str | None = None, timeout: float = 5.0
) -> tuple[int, str]:
    return AgentEndpoint(addr=addr, netns=netns).get_text(path, timeout)


class _UnixHTTPConnection(HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


@dataclass(frozen=True)
class AgentEndpoint:
    """Where one agent's API is: a unix socket on its node (`socket`), or a network address
    (`addr`, reached inside `netns` in the lab), with a bearer token for the network."""

    name: str = ""  # the node, for messages
    addr: str | None = None
    netns: str | None = None
    socket: str | None = None
    token: str | None = None

    def __str__(self) -> str:
        where = f"unix:{self.socket}" if self.socket else str(self.addr)
        return f"{self.name} ({where})" if self.name else where

    def connect(self, timeout: float | None) -> HTTPConnection:
        if self.socket:
            return _UnixHTTPConnection(self.socket, timeout)
        if not self.addr:
            raise ValueError("an agent endpoint needs a socket or an address")
        return _connect(self.addr, self.netns, timeout)

    def _request(self, conn: HTTPConnection, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        conn.request("GET", path, headers=headers)
        return conn.getresponse()

    def get_text(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        conn = self.connect(timeout)
        try:
            resp = self._request(conn, path)
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def get_json(self, path: str, timeout: float = 5.0) -> Any:
        status, body = self.get_text(path, timeout)
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}: {body[:200]!r}")
        return json.loads(body)

    def stream(self, path: str, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """The JSON objects of an NDJSON response as they arrive (RuntimeError on an HTTP
        error, with the agent's message)."""
        conn = self.connect(timeout)
        try:
            resp = self._request(conn, path)
            if resp.status != 200:
                raise RuntimeError(resp.read().decode(errors="replace").strip()
                                   or f"{path}: HTTP {resp.status}")
            for raw in resp:
                line = raw.strip()
                if line:
                    yield json.loads(line)
        finally:
            conn.close()


def endpoint(agent: str, netns: str | None = None, token_file: str | None = None) -> AgentEndpoint:
    """What the CLI's --agent names: `unix:PATH` (the node's socket) or HOST:PORT (the network,
    which needs a token for /status, /events and /flows: --token-file)."""
    token = None
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise ValueError(f"--token-file {token_file}: {exc.strerror or exc}") from None
    if agent.startswith("unix:"):
        if netns:
            raise ValueError(
                "--netns reaches a HOST:PORT agent inside a network namespace; a unix: socket "
                "needs none (a lab node's agent: `enforcer lab monitor --name LAB --node NODE`)"
            )
        return AgentEndpoint(socket=agent[5:], token=token)
    host, sep, port = agent.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--agent: expected unix:PATH or HOST:PORT, got {agent!r}")
    if netns and not netns_path(netns).exists():
        raise ValueError(
            f"--netns {netns}: no such network namespace (`ip netns list` lists them; "
            "`enforcer lab status --name LAB` shows a lab node's)"
        )
    return AgentEndpoint(addr=agent, netns=netns, token=token)
