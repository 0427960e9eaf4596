"""The console's HTTP server: the JSON API (see the package docstring) and the page's files.

Stdlib only (ThreadingHTTPServer, as the agent's endpoint): one thread per request, the
Server-Sent Events stream holding its thread while the page is open.
"""

from __future__ import annotations

import json
import mimetypes
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from enforcer.console.cluster import ClusterView
from enforcer.console.collector import NodeHealth
from enforcer.console.graph import graph_document
from enforcer.console.policies import UnknownPolicy, policy_detail, policy_list, record_json
from enforcer.flows.filters import FlowFilter
from enforcer.flows.record import rfc3339
from enforcer.flows.store import FlowStore
from enforcer.model.objects import KIND_NETWORK_POLICY, KIND_STAGED_NETWORK_POLICY

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_FLOWS_LIMIT = 1000  # /api/flows without `limit`; limit=0 is everything held
KEEPALIVE_SECONDS = 15.0
CONTENT_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css"}


class BadRequest(ValueError):
    pass


def _float(params: dict[str, list[str]], name: str) -> float | None:
    if name not in params:
        return None
    try:
        return float(params[name][-1])
    except ValueError:
        raise BadRequest(f"{name}: not a number: {params[name][-1]!r}") from None


def _limit(params: dict[str, list[str]]) -> int | None:
    if "limit" not in params:
        return DEFAULT_FLOWS_LIMIT
    text = params["limit"][-1]
    if not text.isdigit():
        raise BadRequest(f"limit: not a count: {text!r}")
    return int(text) or None


def _filter(params: dict[str, list[str]]) -> FlowFilter:
    try:
        return FlowFilter.from_query(params)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def node_json(node: NodeHealth) -> dict[str, Any]:
    status = node.status or {}
    endpoints = status.get("endpoints")
    ready = status.get("ready")
    return {
        "name": node.name,
        "reachable": node.reachable,
        "error": node.error,
        "last_record": rfc3339(node.last_record) if node.last_record is not None else None,
        "ready": bool(ready) if ready is not None else None,
        "endpoints": len(endpoints) if isinstance(endpoints, list) else None,
        "inexact_resumes": node.inexact_resumes,
        "lost": node.lost,
    }


class ConsoleHTTPServer:
    def __init__(
        self,
        addr: str,
        store: FlowStore,
        nodes: Callable[[], list[NodeHealth]],
        view: ClusterView,
        static_dir: Path = STATIC_DIR,
        keepalive: float = KEEPALIVE_SECONDS,
    ) -> None:
        host, _, port = addr.rpartition(":")
        api = ConsoleAPI(store, nodes, view, static_dir, keepalive)
        self.server = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)),
                                          _make_handler(api))
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="console-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ConsoleAPI:
    """The documents, each from a path's parameters (the handler only moves bytes)."""

    def __init__(
        self,
        store: FlowStore,
        nodes: Callable[[], list[NodeHealth]],
        view: ClusterView,
        static_dir: Path,
        keepalive: float,
    ) -> None:
        self.store = store
        self.nodes = nodes
        self.view = view
        self.static_dir = static_dir
        self.keepalive = keepalive

    def flows(self, params: dict[str, list[str]]) -> dict[str, Any]:
        records = self.store.query(
            _filter(params), since=_float(params, "since"), limit=_limit(params)
        )
        stats = {**asdict(self.store.stats()), "max_bytes": self.store.max_bytes}
        return {"flows": [record_json(r) for r in records], "stats": stats}

    def node_list(self) -> dict[str, Any]:
        return {"nodes": [node_json(n) for n in self.nodes()]}

    def graph(self, params: dict[str, list[str]]) -> dict[str, Any]:
        namespaces = _filter({"namespace": params.get("namespace", [])}).namespaces
        records = self.store.query(since=_float(params, "since"))
        return graph_document(records, namespaces)

    def policies(self) -> dict[str, Any]:
        return policy_list(self.view)

    def policy(self, namespace: str, name: str, params: dict[str, list[str]]) -> dict[str, Any]:
        kind = params.get("kind", [KIND_NETWORK_POLICY])[-1]
        if kind not in (KIND_NETWORK_POLICY, KIND_STAGED_NETWORK_POLICY):
            raise BadRequest(
                f"kind: expected {KIND_NETWORK_POLICY} or {KIND_STAGED_NETWORK_POLICY}, "
                f"got {kind!r}")
        return policy_detail(self.view, self.store, namespace, name, kind)

    def static_file(self, rel: str) -> Path | None:
        """A file under the static folder (never outside it), or None."""
        root = self.static_dir.resolve()
        path = (root / rel).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path


def _make_handler(api: ConsoleAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # access logs are noise
            return

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, doc: Any, code: int = 200) -> None:
            self._send(code, json.dumps(doc).encode() + b"\n", "application/json")

        def _error(self, code: int, message: str) -> None:
            self._json({"error": message}, code)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            path, params = url.path, parse_qs(url.query)
            try:
                self._route(path, params)
            except BadRequest as exc:
                self._error(400, str(exc))
            except UnknownPolicy as exc:
                self._error(404, str(exc))
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _route(self, path: str, params: dict[str, list[str]]) -> None:
            if path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/api/flows":
                self._json(api.flows(params))
            elif path == "/api/flows/stream":
                self._stream(_filter(params))
            elif path == "/api/nodes":
                self._json(api.node_list())
            elif path == "/api/graph":
                self._json(api.graph(params))
            elif path == "/api/policies":
                self._json(api.policies())
            elif path.startswith("/api/policies/"):
                parts = [unquote(p) for p in path[len("/api/policies/"):].split("/")]
                if len(parts) != 2 or not all(parts):
                    self._error(404, f"expected /api/policies/NAMESPACE/NAME, got {path}")
                    return
                self._json(api.policy(parts[0], parts[1], params))
            elif path.startswith("/api/"):
                self._error(404, f"no such API path: {path}")
            elif path in ("/", "/index.html"):
                self._file("index.html")
            elif path.startswith("/static/"):
                self._file(unquote(path[len("/static/"):]))
            else:
                self._send(404, b"not found\n")

        def _file(self, rel: str) -> None:
            found = api.static_file(rel)
            if found is None:
                missing = "the console's page is not built yet" if rel == "index.html" else ""
                self._send(404, f"not found {missing}\n".encode())
                return
            ctype = CONTENT_TYPES.get(found.suffix) or mimetypes.guess_type(found.name)[0]
            self._send(200, found.read_bytes(), ctype or "application/octet-stream")

        def _stream(self, flt: FlowFilter) -> None:
            sub = api.store.subscribe(flt=flt)
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(b": connected\n\n")
                self.wfile.flush()
                quiet_since = time.monotonic()
                while True:
                    record = sub.get(timeout=min(1.0, api.keepalive))
                    if record is not None:
                        data = json.dumps(record_json(record))
                        self.wfile.write(f"data: {data}\n\n".encode())
                    elif time.monotonic() - quiet_since >= api.keepalive:
                        self.wfile.write(b": keepalive\n\n")
                    else:
                        continue
                    self.wfile.flush()
                    quiet_since = time.monotonic()
            finally:
                api.store.unsubscribe(sub)

    return Handler
