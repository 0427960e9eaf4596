"""A small Kubernetes API server that speaks the real list and watch protocol over HTTP.

Enough of the API for list+watch clients (the official `kubernetes` Python client, kubectl
get -w): collection GETs with `limit`/`continue` paging, `?watch=true` streams of
newline-delimited JSON events in a chunked HTTP/1.1 response, one global monotonically
increasing resourceVersion, BOOKMARK events, and a bounded event history so that watching from a
resourceVersion that has been compacted away yields an ERROR event with a 410 "Expired" Status,
exactly as kube-apiserver does.

Writes as clients make them: GET of one object, POST to a collection (create, 409 when it
exists), PATCH of one object with a merge patch (JSON merge patch; a strategic merge patch as
far as the two agree: maps merged, null removes, lists replaced), e.g. an annotation set or
removed, an Event recorded (`kubectl annotate`, `enforcer quarantine`).

Tests drive it from the same process: `create`/`update`/`apply`/`delete` objects,
`expire_history()`, `bookmark()`, `drop_connections()` (cut every open stream mid-chunk), `stop()`
and `start()` again on the same port (an API outage), `fail_requests(503)` (up but erroring),
`uninstall_crd(kind)` / `install_crd(kind)` for custom resources (404 while not installed).
As a cluster's API server, for in-cluster clients: `tls=(certfile, keyfile)` serves HTTPS
(tests/fakeapi/tls.py makes a CA and a certificate), and `bearer_token` answers any request
without exactly that `Authorization: Bearer` token with 401 (counted in `unauthorized`).
Garbage, as a broken server or proxy would send it: `send_raw(kind, line)` puts one line as is
into the next watch stream of that kind (once: garbled in transit), `list_body[kind] = bytes`
answers that kind's lists with this body (HTTP 200).
"""

from __future__ import annotations

import bisect
import copy
import json
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Resource:
    kind: str
    api_version: str
    plural: str
    namespaced: bool

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"

    @property
    def path(self) -> str:
        """The cluster-wide collection path, e.g. /api/v1/pods."""
        return f"{self.prefix}/{self.plural}"


RESOURCES = (
    Resource("Namespace", "v1", "namespaces", namespaced=False),
    Resource("Pod", "v1", "pods", namespaced=True),
    Resource("Node", "v1", "nodes", namespaced=False),
    Resource("Service", "v1", "services", namespaced=True),
    Resource("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies", namespaced=True),
    Resource("EndpointSlice", "discovery.k8s.io/v1", "endpointslices", namespaced=True),
    # A custom resource (daemonset/crd-stagednetworkpolicy.yaml): served while installed.
    Resource(
        "StagedNetworkPolicy", "enforcer.dev/v1alpha1", "stagednetworkpolicies", namespaced=True
    ),
    # The Network Policy API's cluster-scoped custom resources (SIG Network's CRDs).
    Resource("ClusterNetworkPolicy", "policy.networking.k8s.io/v1alpha2",
             "clusternetworkpolicies", namespaced=False),
    Resource("AdminNetworkPolicy", "policy.networking.k8s.io/v1alpha1",
             "adminnetworkpolicies", namespaced=False),
    Resource("BaselineAdminNetworkPolicy", "policy.networking.k8s.io/v1alpha1",
             "baselineadminnetworkpolicies", namespaced=False),
    # Written by clients (POST), as kubectl and controllers record what they did.
    Resource("Event", "v1", "events", namespaced=True),
)
BY_KIND = {r.kind: r for r in RESOURCES}

# /api/v1/pods, /api/v1/namespaces/NS/pods, /apis/GROUP/VERSION/networkpolicies, ...
_PATH = re.compile(
    r"^(?P<prefix>/api/v1|/apis/[^/]+/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)/?$"
)

# One object: /api/v1/namespaces/NS/pods/NAME, /api/v1/nodes/NAME, /api/v1/namespaces/NS
_OBJECT_PATH = re.compile(
    r"^(?P<prefix>/api/v1|/apis/[^/]+/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)"
    r"/(?P<name>[^/]+)/?$"
)
# Merge patches: JSON merge patch (RFC 7386), and strategic merge patch for what it shares with
# it (maps merged, null removes a key; lists are replaced whole, as for unkeyed lists).
_MERGE_PATCHES = ("application/merge-patch+json", "application/strategic-merge-patch+json")

ObjKey = tuple[str | None, str]
_TYPE_KEYS = ("kind", "apiVersion")


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    kind: str
    type: str  # ADDED | MODIFIED | DELETED
    obj: dict[str, Any]


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]

    @property
    def watch(self) -> bool:
        return self.query.get("watch") in ("true", "1")


@dataclass
class _Snapshot:
    rv: int
    items: list[dict[str, Any]]
    taken: float = field(default_factory=time.monotonic)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class FakeKubeAPI:
    """The server plus the cluster state it serves; thread-safe."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        history_limit: int = 1000,
        bookmark_interval: float | None = None,
        gone_as_http_status: bool = False,
        tls: tuple[str, str] | None = None,
        bearer_token: str | None = None,
    ) -> None:
        self.host = host
        self.tls = tls
        self.bearer_token = bearer_token
        self.unauthorized = 0  # requests answered 401 (no token, or another one)
        self.port = port
        self.history_limit = history_limit
        self.bookmark_interval = bookmark_interval
        # How a watch from a compacted resourceVersion fails: kube-apiserver's watch cache sends
        # HTTP 200 then an ERROR event with a 410 Status (the default); served from etcd, the
        # request itself fails with HTTP 410. Clients must handle both.
        self.gone_as_http_status = gone_as_http_status
        self.list_delay: dict[str, float] = {}  # kind -> seconds to wait before answering a list
        self.max_watch_seconds: float | None = None  # cap on timeoutSeconds (0: end at once)
        self.requests: list[RequestRecord] = []
        self.list_body: dict[str, bytes] = {}  # kind -> the body its lists answer (garbage)
        self._raw: dict[str, list[bytes]] = {}  # kind -> lines for its next watch stream
        self._cond = threading.Condition()
        self._rv = 1000
        self._objects: dict[str, dict[ObjKey, dict[str, Any]]] = {r.kind: {} for r in RESOURCES}
        self._history: list[WatchEvent] = []
        self._history_rvs: list[int] = []
        self._compacted = 0  # a watch from a resourceVersion below this gets 410 Expired
        self._epoch = 0  # bumped to cut every open watch stream
        self._bookmark_seq = 0
        self._fail_status: int | None = None
        self._uninstalled: set[str] = set()  # custom kinds whose CRD is not installed
        self._snapshots: dict[str, _Snapshot] = {}
        self._connections: set[socket.socket] = set()
        self._open_watches: dict[str, int] = {r.kind: 0 for r in RESOURCES}
        # TokenReview and SubjectAccessReview (the agent's authn): token -> user name, and
        # the grants an RBAC role would give: (user, API group, resource, subresource, verb).
        self.tokens: dict[str, str] = {}
        self.grants: set[tuple[str, str, str, str, str]] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._bookmark_thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeKubeAPI:
        """Listen (again) on `port`; the first start picks a free port when port is 0."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.api = self
        server.tls = None
        if self.tls is not None:
            server.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server.tls.load_cert_chain(*self.tls)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        if self.bookmark_interval and self._bookmark_thread is None:
            self._bookmark_thread = threading.Thread(target=self._bookmark_loop, daemon=True)
            self._bookmark_thread.start()
        return self

    def stop(self) -> None:
        """Go down: stop listening and cut every open connection. The state is kept."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _bookmark_loop(self) -> None:
        assert self.bookmark_interval
        while True:
            time.sleep(self.bookmark_interval)
            self.bookmark()

    # -- what tests do to the cluster -----------------------------------------------------------

    @property
    def resource_version(self) -> str:
        with self._cond:
            return str(self._rv)

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return self._write(obj, must_exist=False)

    def update(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return self._write(obj, must_exist=True)

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update."""
        return self._write(obj, must_exist=None)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        res = BY_KIND[kind]
        key = ((namespace or "default") if res.namespaced else None, name)
        with self._cond:
            obj = self._objects[kind].pop(key, None)
            if obj is None:
                raise KeyError(f"{kind} {key} not found")
            obj = copy.deepcopy(obj)
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self._record(WatchEvent(self._rv, kind, "DELETED", obj))
            return copy.deepcopy(obj)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        res = BY_KIND[kind]
        key = ((namespace or "default") if res.namespaced else None, name)
        with self._cond:
            obj = self._objects[kind].get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, kind: str) -> list[dict[str, Any]]:
        with self._cond:
            return [copy.deepcopy(o) for o in self._objects[kind].values()]

    def touch(self) -> str:
        """Advance the global resourceVersion without an event here (a write to another
        resource, like a Lease renewal, which moves etcd's revision all the time)."""
        with self._cond:
            self._rv += 1
            return str(self._rv)

    def expire_history(self) -> None:
        """Compact the event history at the current revision (after a `touch`), so that every
        client's last resourceVersion is too old: open watches get ERROR 410 and end, and
        resuming from any earlier resourceVersion gets 410 too, forcing a relist."""
        with self._cond:
            self._rv += 1
            self._compacted = self._rv
            self._history.clear()
            self._history_rvs.clear()
            self._snapshots.clear()
            self._cond.notify_all()

    def bookmark(self) -> None:
        """Send a BOOKMARK with the current resourceVersion on every watch that allows them."""
        with self._cond:
            self._bookmark_seq += 1
            self._cond.notify_all()

    def send_raw(self, kind: str, line: bytes) -> None:
        """One line, sent as is (no JSON encoding; a newline is added) on the next watch
        stream of `kind` that is open or opens, and only on that one."""
        with self._cond:
            self._raw.setdefault(kind, []).append(line)
            self._cond.notify_all()

    def drop_connections(self) -> None:
        """Cut every open connection abruptly (a watch ends mid-stream, without its final
        chunk), like a load balancer or apiserver restart does."""
        with self._cond:
            self._epoch += 1
            conns = list(self._connections)
            self._cond.notify_all()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def fail_requests(self, status: int | None) -> None:
        """Answer every new request with this HTTP status (None: serve normally again)."""
        with self._cond:
            self._fail_status = status
            if status is not None:
                self._epoch += 1
                self._cond.notify_all()

    def uninstall_crd(self, kind: str) -> None:
        """Remove a custom resource's CRD: its objects are deleted (watchers see DELETED), its
        open watches end, and its paths answer 404 until `install_crd`."""
        with self._cond:
            for key in sorted(self._objects[kind], key=lambda k: (k[0] or "", k[1])):
                obj = copy.deepcopy(self._objects[kind].pop(key))
                self._rv += 1
                obj["metadata"]["resourceVersion"] = str(self._rv)
                self._record(WatchEvent(self._rv, kind, "DELETED", obj))
            self._uninstalled.add(kind)
            self._cond.notify_all()

    def install_crd(self, kind: str) -> None:
        with self._cond:
            self._uninstalled.discard(kind)

    def open_watches(self, kind: str | None = None) -> int:
        with self._cond:
            if kind is None:
                return sum(self._open_watches.values())
            return self._open_watches[kind]

    def wait_for_watches(self, count: int, kind: str | None = None, timeout: float = 5.0) -> None:
        """Block until at least `count` watches (of `kind`) are open."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                n = sum(self._open_watches.values()) if kind is None else self._open_watches[kind]
                if n >= count:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{n} open watches of {kind or 'any kind'}, want {count}")
                self._cond.wait(left)

    def watch_requests(self, kind: str) -> list[RequestRecord]:
        res = BY_KIND[kind]
        return [r for r in list(self.requests) if r.watch and r.path == res.path]

    def list_requests(self, kind: str) -> list[RequestRecord]:
        res = BY_KIND[kind]
        return [r for r in list(self.requests) if not r.watch and r.path == res.path]

    # -- internals ------------------------------------------------------------------------------

    def _write(self, obj: Mapping[str, Any], must_exist: bool | None) -> dict[str, Any]:
        kind = obj.get("kind")
        if kind not in BY_KIND:
            raise ValueError(f"kind {kind!r} is not served")
        if kind in self._uninstalled:
            raise KeyError(f"the server could not find the requested resource ({kind})")
        res = BY_KIND[kind]
        new = copy.deepcopy(dict(obj))
        new["apiVersion"] = res.api_version
        meta = new.setdefault("metadata", {})
        if res.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        key = (meta.get("namespace"), meta["name"])
        with self._cond:
            old = self._objects[kind].get(key)
            if must_exist is True and old is None:
                raise KeyError(f"{kind} {key} not found")
            if must_exist is False and old is not None:
                raise ValueError(f"{kind} {key} already exists")
            if old is not None:
                meta.setdefault("uid", old["metadata"]["uid"])
                meta.setdefault("creationTimestamp", old["metadata"]["creationTimestamp"])
            else:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault(
                    "creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                )
            if kind == "Namespace":
                # As the API server does: the immutable name label.
                meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            self._objects[kind][key] = new
            self._record(WatchEvent(self._rv, kind, "ADDED" if old is None else "MODIFIED", new))
            return copy.deepcopy(new)

    def _record(self, event: WatchEvent) -> None:
        # Called with the lock held. Stored objects are never mutated (a write stores a new
        # dict), so events, snapshots and the store can share them.
        self._history.append(event)
        self._history_rvs.append(event.rv)
        while len(self._history) > self.history_limit:
            dropped = self._history.pop(0)
            self._history_rvs.pop(0)
            self._compacted = dropped.rv
        self._cond.notify_all()

    def _events_after(self, kind: str, rv: int) -> list[WatchEvent]:
        start = bisect.bisect_right(self._history_rvs, rv)
        return [e for e in self._history[start:] if e.kind == kind]

    def _list(
        self, res: Resource, namespace: str | None, query: Mapping[str, str]
    ) -> tuple[int, dict[str, Any]]:
        limit = int(query.get("limit") or 0)
        token = query.get("continue")
        if token and query.get("resourceVersion"):
            return 400, _status(
                400, "BadRequest", "specifying resource version is not allowed when using continue"
            )
        with self._cond:
            if token:
                snap = self._snapshots.get(token)
                if snap is None or snap.rv < self._compacted:
                    return 410, _status(
                        410, "Expired", "The provided continue parameter is too old"
                    )
                del self._snapshots[token]
            else:
                items = []
                for obj in sorted(self._objects[res.kind].values(), key=_sort_key):
                    if namespace is not None and obj["metadata"].get("namespace") != namespace:
                        continue
                    # Like the real API: items of a list carry no kind/apiVersion.
                    items.append({k: v for k, v in obj.items() if k not in _TYPE_KEYS})
                snap = _Snapshot(self._rv, items)
            page, rest = (snap.items[:limit], snap.items[limit:]) if limit else (snap.items, [])
            meta: dict[str, Any] = {"resourceVersion": str(snap.rv)}
            if rest:
                next_token = secrets.token_urlsafe(12)
                self._snapshots[next_token] = _Snapshot(snap.rv, rest)
                meta["continue"] = next_token
                meta["remainingItemCount"] = len(rest)
        body = {
            "kind": f"{res.kind}List",
            "apiVersion": res.api_version,
            "metadata": meta,
            "items": page,
        }
        return 200, body

    def _watch(
        self, res: Resource, namespace: str | None, query: Mapping[str, str]
    ) -> Iterator[dict[str, Any] | bytes | None]:
        """Yield watch events to send (bytes: a raw line); None means 'cut the connection
        now' (dropped)."""
        rv_param = query.get("resourceVersion", "")
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(query.get("timeoutSeconds") or 1800)
        if self.max_watch_seconds is not None:
            timeout = min(timeout, self.max_watch_seconds)
        deadline = time.monotonic() + timeout

        def visible(ev: WatchEvent) -> bool:
            return namespace is None or ev.obj["metadata"].get("namespace") == namespace

        with self._cond:
            epoch = self._epoch
            seen_bookmark = self._bookmark_seq
            initial: list[dict[str, Any]] = []
            if rv_param in ("", "0"):
                # Unset/0: synthetic ADDED events for the current state, then changes.
                pos = self._rv
                for obj in sorted(self._objects[res.kind].values(), key=_sort_key):
                    if namespace is None or obj["metadata"].get("namespace") == namespace:
                        initial.append({"type": "ADDED", "object": obj})
            else:
                pos = int(rv_param)
                if pos < self._compacted:
                    initial.append(_expired(pos, self._compacted))
                    pos = -1
            self._open_watches[res.kind] += 1
            self._cond.notify_all()
        try:
            yield from initial
            if pos < 0:
                return
            while True:
                with self._cond:
                    while True:
                        if self._epoch != epoch:
                            yield None
                            return
                        if res.kind in self._uninstalled and not self._events_after(
                            res.kind, pos
                        ):
                            return  # the CRD is gone: its watches end, cleanly
                        if pos < self._compacted:
                            out = [_expired(pos, self._compacted)]
                            break
                        raw = self._raw.pop(res.kind, [])
                        if raw:
                            out = raw
                            break
                        events = [e for e in self._events_after(res.kind, pos) if visible(e)]
                        if events:
                            pos = events[-1].rv
                            out = [{"type": e.type, "object": e.obj} for e in events]
                            break
                        if bookmarks and self._bookmark_seq != seen_bookmark:
                            seen_bookmark = self._bookmark_seq
                            # Caught up with every event of this kind up to the global revision.
                            pos = self._rv
                            out = [_bookmark(res, self._rv)]
                            break
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return  # timeoutSeconds reached: a clean end of the stream
                        self._cond.wait(min(left, 1.0))
                yield from out
                if isinstance(out[0], dict) and out[0]["type"] == "ERROR":
                    return
        finally:
            with self._cond:
                self._open_watches[res.kind] -= 1
                self._cond.notify_all()


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: a map merges key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _served(api: FakeKubeAPI, m: re.Match[str] | None) -> Resource | None:
    """The served resource a path match names (None: none, or its CRD is not installed)."""
    if m is None:
        return None
    res = next((r for r in RESOURCES if r.prefix == m["prefix"] and r.plural == m["plural"]),
               None)
    with api._cond:
        return None if res is None or res.kind in api._uninstalled else res


def _sort_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


def _expired(pos: int, compacted: int) -> dict[str, Any]:
    return {
        "type": "ERROR",
        "object": _status(410, "Expired", f"too old resource version: {pos} ({compacted})"),
    }


def _bookmark(res: Resource, rv: int) -> dict[str, Any]:
    return {
        "type": "BOOKMARK",
        "object": {
            "kind": res.kind,
            "apiVersion": res.api_version,
            "metadata": {"resourceVersion": str(rv)},
        },
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: FakeKubeAPI
    tls: ssl.SSLContext | None

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.tls is None:
            return sock, addr
        # The handshake runs in the request's own thread (_Handler.setup), not in the one
        # accepting connections.
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read records
        pass

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()
        # As Go's net/http does: no Nagle delay on small writes (watch events, final chunks).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.api._cond:
            self.server.api._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.api._cond:
            self.server.api._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def _authorized(self) -> bool:
        """With a bearer token set, only requests carrying it; else 401, as kube-apiserver."""
        api = self.server.api
        if api.bearer_token is None:
            return True
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip() == api.bearer_token:  # as kube-apiserver
            return True
        with api._cond:
            api.unauthorized += 1
        self.close_connection = True
        self._send_json(401, _status(401, "Unauthorized", "Unauthorized"))
        return False

    def do_POST(self) -> None:
        """TokenReview and SubjectAccessReview, as the authentication and authorization APIs
        answer them (the body's `status` filled in)."""
        api = self.server.api
        if not self._authorized():
            return
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        api.requests.append(RequestRecord("POST", url.path, {}))
        spec = body.get("spec") or {}
        if url.path == "/apis/authentication.k8s.io/v1/tokenreviews":
            user = api.tokens.get(spec.get("token", ""))
            body["status"] = ({"authenticated": True,
                               "user": {"username": user, "groups": ["system:authenticated"]}}
                              if user else {"authenticated": False, "error": "invalid token"})
        elif url.path == "/apis/authorization.k8s.io/v1/subjectaccessreviews":
            attrs = spec.get("resourceAttributes") or {}
            want = (spec.get("user", ""), attrs.get("group", ""), attrs.get("resource", ""),
                    attrs.get("subresource", ""), attrs.get("verb", ""))
            body["status"] = {"allowed": want in api.grants}
        else:
            self._create(url.path, body)
            return
        self._send_json(201, body)

    def _create(self, path: str, body: dict[str, Any]) -> None:
        """POST to a served collection: create the object (409 if it exists), as the API
        server does; kind and apiVersion come from the path when the body lacks them."""
        api = self.server.api
        m = _PATH.match(path)
        res = _served(api, m)
        if m is None or res is None or (m["ns"] and not res.namespaced):
            self._send_json(404, _status(404, "NotFound", f"no resource at {path}"))
            return
        meta = body.setdefault("metadata", {})
        if m["ns"]:
            meta["namespace"] = m["ns"]
        if not meta.get("name"):
            self._send_json(422, _status(422, "Invalid", "metadata.name: Required value"))
            return
        body.update(kind=res.kind, apiVersion=res.api_version)
        try:
            created = api.create(body)
        except ValueError:
            self._send_json(409, _status(409, "AlreadyExists",
                                         f'{res.plural} "{meta["name"]}" already exists'))
            return
        self._send_json(201, created)

    def _named(self, path: str) -> tuple[Resource, str | None, str] | None:
        """The resource, namespace and name of a path naming one object; None (404 sent)
        when it names nothing served."""
        api = self.server.api
        m = _OBJECT_PATH.match(path)
        res = _served(api, m)
        if m is None or res is None or bool(m["ns"]) != res.namespaced:
            self._send_json(404, _status(404, "NotFound", f"no resource at {path}"))
            return None
        return res, m["ns"], m["name"]

    def _get_one(self, path: str) -> None:
        named = self._named(path)
        if named is None:
            return
        res, namespace, name = named
        obj = self.server.api.get(res.kind, name, namespace)
        if obj is None:
            self._send_json(404, _status(404, "NotFound", f'{res.plural} "{name}" not found'))
            return
        self._send_json(200, obj)

    def do_PATCH(self) -> None:
        """A merge patch of one object (see _MERGE_PATCHES); a JSON patch or server-side
        apply is answered 415, as a server not offering it would."""
        api = self.server.api
        if not self._authorized():
            return
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        api.requests.append(RequestRecord("PATCH", url.path, {}))
        named = self._named(url.path)
        if named is None:
            return
        res, namespace, name = named
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type not in _MERGE_PATCHES:
            self._send_json(415, _status(415, "UnsupportedMediaType",
                                         f"the body of the request was in an unknown format: "
                                         f"{content_type or 'none'}"))
            return
        patch = json.loads(raw or b"{}")
        with api._cond:  # read, merge and write as one step, as etcd's transaction
            obj = api.get(res.kind, name, namespace)
            if obj is None:
                self._send_json(404, _status(404, "NotFound",
                                             f'{res.plural} "{name}" not found'))
                return
            merged = merge_patch(obj, patch)
            merged["metadata"].update(name=name, namespace=obj["metadata"].get("namespace"))
            merged.update(kind=res.kind, apiVersion=res.api_version)
            updated = api.update(merged)
        self._send_json(200, updated)

    def do_GET(self) -> None:
        api = self.server.api
        if not self._authorized():
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        api.requests.append(RequestRecord("GET", url.path, query))
        with api._cond:
            fail = api._fail_status
        if fail is not None:
            self._send_json(fail, _status(fail, "ServiceUnavailable", "injected failure"))
            return
        m = _PATH.match(url.path)
        if m is None and _OBJECT_PATH.match(url.path):
            self._get_one(url.path)
            return
        res = None
        if m:
            res = next(
                (r for r in RESOURCES if r.prefix == m["prefix"] and r.plural == m["plural"]),
                None,
            )
        with api._cond:
            uninstalled = res is not None and res.kind in api._uninstalled
        if res is None or uninstalled or (m and m["ns"] and not res.namespaced):
            self._send_json(404, _status(404, "NotFound", f"no resource at {url.path}"))
            return
        namespace = m["ns"] if m else None
        if query.get("watch") in ("true", "1"):
            rv = query.get("resourceVersion", "")
            with api._cond:
                gone = rv not in ("", "0") and int(rv) < api._compacted
            if gone and api.gone_as_http_status:
                self._send_json(410, _expired(int(rv), api._compacted)["object"])
                return
            self._stream(api._watch(res, namespace, query))
        else:
            delay = api.list_delay.get(res.kind)
            if delay:
                time.sleep(delay)
            garbage = api.list_body.get(res.kind)
            if garbage is not None:
                self._send_raw(200, garbage)
                return
            code, body = api._list(res, namespace, query)
            self._send_json(code, body)

    def _send_json(self, code: int, body: Mapping[str, Any]) -> None:
        self._send_raw(code, json.dumps(body).encode())

    def _send_raw(self, code: int, data: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, events: Iterator[dict[str, Any] | bytes | None]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            for event in events:
                if event is None:  # dropped: no final chunk, the client sees a broken stream
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                line = (event if isinstance(event, bytes) else json.dumps(event).encode()) + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True
        finally:
            events_close = getattr(events, "close", None)
            if events_close is not None:
                events_close()
