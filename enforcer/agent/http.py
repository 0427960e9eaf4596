"""The agent's HTTP endpoints: /metrics, /healthz, /readyz, /status, /events (drop stream) and
/flows (the flow store: a query, or with follow=1 a query then a live stream; with cursor=1
and after=EPOCH:SEQ a follower resumes where it left off: FlowStore.resume).

On the network address every path is open except /status, /events and /flows, which show pods,
policies and traffic: those need a token the Authorizer accepts (enforcer.agent.authn). On the
agent's unix socket (the node's root only) everything is served."""

from __future__ import annotations

import json
import os
import queue
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from enforcer.agent.authn import SUBRESOURCES, Authorizer

if TYPE_CHECKING:
    from enforcer.flows.record import FlowRecord
    from enforcer.flows.store import FlowStore, FlowSubscription, Resumed


class EventHub:
    """Fans drop events out to /events subscribers; a slow subscriber loses events, never blocks."""

    def __init__(self, on_lost: Callable[[], None] | None = None) -> None:
        self._subs: list[queue.Queue[dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._on_lost = on_lost

    def publish(self, event: dict[str, Any]) -> None:
        with self._lock:
            subs = list(self._subs)
        for q in subs:
            try:
                q.put_nowait(event)
            except queue.Full:
                if self._on_lost:
                    self._on_lost()

    def subscribe(self) -> queue.Queue[dict[str, Any]]:
        q: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=10000)
        with self._lock:
            self._subs.append(q)
        return q

    def unsubscribe(self, q: queue.Queue[dict[str, Any]]) -> None:
        with self._lock:
            self._subs.remove(q)


class AgentHTTPServer:
    def __init__(
        self,
        addr: str,
        registry: CollectorRegistry,
        is_ready: Callable[[], bool],
        status: Callable[[], dict[str, Any]],
        events: EventHub,
        flows: FlowStore | None = None,
        authorizer: Authorizer | None = None,
        api_socket: str | None = None,
    ) -> None:
        """authorizer: who may read the sensitive paths on the network (None: no one);
        api_socket: a unix socket path serving every path (None: none)."""
        host, _, port = addr.rpartition(":")
        network = _make_handler(registry, is_ready, status, events, flows, authorizer, True)
        self.server = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), network)
        self.server.daemon_threads = True
        self.servers: list[socketserver.BaseServer] = [self.server]
        self.api_socket = api_socket
        if api_socket:
            local = _make_handler(registry, is_ready, status, events, flows, None, False)
            self.servers.append(_unix_server(api_socket, local))
        self.threads = [threading.Thread(target=s.serve_forever, name="http", daemon=True)
                        for s in self.servers]

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        if self.api_socket:
            try:
                os.unlink(self.api_socket)
            except FileNotFoundError:
                pass


class _UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def _unix_server(path: str, handler: type[BaseHTTPRequestHandler]) -> _UnixHTTPServer:
    """Listening on `path`, readable and writable by root only (a stale socket of an earlier
    run is replaced)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    old = os.umask(0o177)
    try:
        return _UnixHTTPServer(path, handler)
    finally:
        os.umask(old)


def _make_handler(
    registry: CollectorRegistry,
    is_ready: Callable[[], bool],
    status: Callable[[], dict[str, Any]],
    events: EventHub,
    flows: FlowStore | None,
    authorizer: Authorizer | None,
    guarded: bool,
) -> type[BaseHTTPRequestHandler]:
    """guarded: the sensitive paths need the authorizer's yes (the network server)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # access logs are noise
            return

        def address_string(self) -> str:  # a unix socket's peer has no address
            return str(self.client_address[0]) if self.client_address else "unix"

        def _refused(self, path: str) -> bool:
            """True (and answered) when the caller may not read `path` here."""
            subresource = SUBRESOURCES.get(path)
            if not guarded or subresource is None:
                return False
            auth = self.headers.get("Authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
            if authorizer is None:
                self._send(403, b"served on the agent's unix socket only\n")
                return True
            decision = authorizer.decide(token, subresource)
            if not decision.allowed:
                self._send(decision.code, f"{decision.reason}\n".encode())
            return not decision.allowed

        def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if self._refused(path):
                return
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                ready = is_ready()
                self._send(200 if ready else 503, b"ready\n" if ready else b"not ready\n")
            elif path == "/status":
                body = json.dumps(status(), indent=2, sort_keys=True).encode() + b"\n"
                self._send(200, body, "application/json")
            elif path == "/events":
                self._stream_events()
            elif path == "/flows" and flows is not None:
                self._flows(flows, parse_qs(self.path.partition("?")[2]))
            else:
                self._send(404, b"not found\n")

        def _flows(self, store: FlowStore, params: dict[str, list[str]]) -> None:
            from enforcer.flows.filters import FlowFilter

            try:
                flt = FlowFilter.from_query(params)
                since = float(params["since"][-1]) if "since" in params else None
                # limit=0 or none: everything the store has
                limit = int(params["limit"][-1]) if "limit" in params else None
                limit = limit or None
                epoch, after = _cursor(params.get("after", [""])[-1])
            except ValueError as exc:
                self._send(400, f"{exc}\n".encode())
                return
            follow = params.get("follow", ["0"])[-1] in ("1", "true")
            if follow and params.get("cursor", ["0"])[-1] in ("1", "true"):
                self._resume(store, store.resume(flt, epoch, after, since))
                return
            # Following: the answer and the subscription at one instant, so every record is
            # sent once (a console adding up counts relies on it).
            if follow:
                records, sub = store.query_and_subscribe(flt, since=since, limit=limit)
            else:
                records, sub = store.query(flt, since=since, limit=limit), None
            self._ndjson(store, [r.to_line() for r in records], sub, numbered=False)

        def _resume(self, store: FlowStore, resumed: Resumed) -> None:
            """The cursor protocol (the console's): a header line naming the mode and the
            store's epoch, the answer, a line with the cursor it is complete up to, then live
            records each with its cursor."""
            head = json.dumps({"resume": resumed.mode, "epoch": resumed.epoch})
            lines = [head, *(_numbered_line(n, r) for n, r in resumed.records),
                     json.dumps({"cursor": resumed.cursor})]
            self._ndjson(store, lines, resumed.subscription, numbered=True)

        def _ndjson(self, store: FlowStore, lines: list[str], sub: FlowSubscription | None,
                    numbered: bool) -> None:
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()
                for line in lines:
                    self.wfile.write((line + "\n").encode())
                self.wfile.flush()
                while sub is not None:
                    entry = sub.get_numbered(timeout=1.0)
                    # A bare newline: keepalive, also detects a gone client.
                    if entry is None:
                        line = "\n"
                    else:
                        seq, record = entry
                        line = (_numbered_line(seq, record) if numbered else record.to_line())
                        line += "\n"
                    self.wfile.write(line.encode())
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                if sub is not None:
                    store.unsubscribe(sub)

        def _stream_events(self) -> None:
            q = events.subscribe()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()
                while True:
                    try:
                        event = q.get(timeout=1.0)
                        line = json.dumps(event, sort_keys=True) + "\n"
                    except queue.Empty:
                        line = "\n"  # keepalive, also detects a gone client
                    self.wfile.write(line.encode())
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                events.unsubscribe(q)

    return Handler


def _cursor(value: str) -> tuple[str | None, int]:
    """`after=EPOCH:SEQ` (what the cursor protocol's lines carry); empty: none."""
    if not value:
        return None, 0
    epoch, sep, seq = value.rpartition(":")
    if not sep or not epoch or not seq.isdigit():
        raise ValueError(f"after: expected EPOCH:SEQ, got {value!r}")
    return epoch, int(seq)


def _numbered_line(seq: int, record: FlowRecord) -> str:
    """A record's JSON line with its number in the store (0: part of a snapshot)."""
    doc = record.to_json()
    doc["cursor"] = seq
    return json.dumps(doc, sort_keys=True)
