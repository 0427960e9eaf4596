"""The agent's HTTP endpoint: /metrics, /healthz, /readyz, /status, /events (drop stream) and
/flows (the flow store: a query, or with follow=1 a query then a live stream)."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

if TYPE_CHECKING:
    from enforcer.flows.store import FlowStore


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
    ) -> None:
        host, _, port = addr.rpartition(":")
        handler = _make_handler(registry, is_ready, status, events, flows)
        self.server = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _make_handler(
    registry: CollectorRegistry,
    is_ready: Callable[[], bool],
    status: Callable[[], dict[str, Any]],
    events: EventHub,
    flows: FlowStore | None,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # access logs are noise
            return

        def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
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
            except ValueError as exc:
                self._send(400, f"{exc}\n".encode())
                return
            follow = params.get("follow", ["0"])[-1] in ("1", "true")
            # Subscribed before the query, so nothing falls between the two.
            sub = store.subscribe(flt=flt) if follow else None
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()
                for record in store.query(flt, since=since, limit=limit):
                    self.wfile.write((record.to_line() + "\n").encode())
                self.wfile.flush()
                while sub is not None:
                    record = sub.get(timeout=1.0)
                    # A bare newline: keepalive, also detects a gone client.
                    line = "\n" if record is None else record.to_line() + "\n"
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
