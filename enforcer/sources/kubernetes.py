"""List then watch the Kubernetes API with the official client, one thread per kind.

Per kind, the loop is client-go's reflector: a paged, consistent list; a watch from the list's
resourceVersion with bookmarks (so a quiet kind's resourceVersion stays fresh and a reconnect
rarely needs a relist); on a dropped or timed-out watch, resume from the last resourceVersion
seen; on 410 Gone (history compacted while we were away), relist and hand the consumer the whole
kind again between RESET and SYNCED. Errors back off exponentially with full jitter.

A custom resource (StagedNetworkPolicy, and the Network Policy API's ClusterNetworkPolicy,
AdminNetworkPolicy and BaselineAdminNetworkPolicy) may not be installed: a 404 (or 403, RBAC from
an older release) on its list is no outage. The kind counts as listed and empty, the source stays
healthy, says so once, and lists again every 30 s, backing off to 5 min, until the CRD appears.

Responses are read raw (`_preload_content=False`) and parsed as JSON, so objects stay the
camelCase dicts the API sends; they are stripped to what policy needs before being emitted.

What a broken or hostile server sends is bounded and counted (`rejected[(kind, reason)]`,
enforcer.sources.limits): a watch line longer than MAX_OBJECT_BYTES is skipped unread; a line
that is not JSON ends the watch, which resumes from the last resourceVersion (as client-go's
reflector does: a line garbled in transit comes again); a list body that is not JSON fails the
list (retried with backoff); a list page over MAX_LIST_PAGE_BYTES is asked for again in
halves; an object past a limit is emitted as `rejected`, its kind and name only.
"""

from __future__ import annotations

import functools
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from enforcer import log
from enforcer.model.clusterpolicy import (
    CLUSTER_POLICY_API,
    KIND_ADMIN_NETWORK_POLICY,
    KIND_BASELINE_ADMIN_NETWORK_POLICY,
    KIND_CLUSTER_NETWORK_POLICY,
)
from enforcer.sources import limits
from enforcer.sources.base import (
    KIND_ENDPOINT_SLICE,
    KIND_NAMESPACE,
    KIND_NETWORK_POLICY,
    KIND_NODE,
    KIND_POD,
    KIND_SERVICE,
    KIND_STAGED_NETWORK_POLICY,
    Emit,
    EventType,
    SourceEvent,
)
from enforcer.sources.gcpause import gc_paused
from enforcer.sources.strip import strip_object


@dataclass(frozen=True)
class WatchedKind:
    kind: str
    api_version: str
    plural: str  # the resource name, as RBAC rules name it
    api_class: str  # attribute of kubernetes.client
    list_method: str  # cluster-wide list (and watch) method of that API class
    custom: bool = False  # a custom resource: its CRD may be absent (see CRD_RETRY)

    @property
    def group(self) -> str:
        """The API group ("" for the core group)."""
        return self.api_version.rpartition("/")[0]

    def list_function(self, api_client: Any) -> Any:
        method = getattr(getattr(client, self.api_class)(api_client), self.list_method)
        if self.custom:  # CustomObjectsApi takes the resource as arguments
            version = self.api_version.rpartition("/")[2]
            return functools.partial(method, self.group, version, self.plural)
        return method


WATCHED_KINDS = {
    w.kind: w
    for w in (
        WatchedKind(KIND_NAMESPACE, "v1", "namespaces", "CoreV1Api", "list_namespace"),
        WatchedKind(KIND_POD, "v1", "pods", "CoreV1Api", "list_pod_for_all_namespaces"),
        WatchedKind(
            KIND_NETWORK_POLICY,
            "networking.k8s.io/v1",
            "networkpolicies",
            "NetworkingV1Api",
            "list_network_policy_for_all_namespaces",
        ),
        WatchedKind(KIND_NODE, "v1", "nodes", "CoreV1Api", "list_node"),
        WatchedKind(
            KIND_SERVICE, "v1", "services", "CoreV1Api", "list_service_for_all_namespaces"
        ),
        WatchedKind(
            KIND_ENDPOINT_SLICE,
            "discovery.k8s.io/v1",
            "endpointslices",
            "DiscoveryV1Api",
            "list_endpoint_slice_for_all_namespaces",
        ),
        WatchedKind(
            KIND_STAGED_NETWORK_POLICY,
            "enforcer.dev/v1alpha1",
            "stagednetworkpolicies",
            "CustomObjectsApi",
            "list_cluster_custom_object",
            custom=True,
        ),
        # The Network Policy API's cluster-scoped policies (policy.networking.k8s.io), each
        # served only where its CRD is installed.
        *(
            WatchedKind(kind, CLUSTER_POLICY_API[kind], plural, "CustomObjectsApi",
                        "list_cluster_custom_object", custom=True)
            for kind, plural in (
                (KIND_CLUSTER_NETWORK_POLICY, "clusternetworkpolicies"),
                (KIND_ADMIN_NETWORK_POLICY, "adminnetworkpolicies"),
                (KIND_BASELINE_ADMIN_NETWORK_POLICY, "baselineadminnetworkpolicies"),
            )
        ),
    )
}
CLUSTER_POLICY_KINDS = (
    KIND_CLUSTER_NETWORK_POLICY, KIND_ADMIN_NETWORK_POLICY, KIND_BASELINE_ADMIN_NETWORK_POLICY,
)
DEFAULT_KINDS = (KIND_NAMESPACE, KIND_POD, KIND_NETWORK_POLICY, KIND_NODE)
# A custom resource whose CRD is not installed is listed again after this many seconds,
# doubling up to CRD_RETRY_MAX: thousands of nodes asking cost the API server little.
CRD_RETRY = 30.0
CRD_RETRY_MAX = 300.0
# What a custom resource's list answers when the agent cannot use it: not installed (404),
# or not granted (403: RBAC from a release before the CRD). Neither stops the agent.
_UNAVAILABLE = (403, 404)


class _Expired(Exception):
    """The resourceVersion (or list continue token) is too old: relist."""


def _unavailable(wk: WatchedKind, exc: BaseException) -> bool:
    """A custom resource the API does not serve us (CRD not installed, or not granted)."""
    return wk.custom and isinstance(exc, ApiException) and exc.status in _UNAVAILABLE


class _Backoff:
    """Exponential backoff with full jitter (AWS architecture blog): sleep U(0, min(cap, b*2^n))."""

    def __init__(self, base: float, cap: float) -> None:
        self.base, self.cap, self.attempt = base, cap, 0

    def next(self) -> float:
        delay = random.uniform(0, min(self.cap, self.base * (2**self.attempt)))
        self.attempt = min(self.attempt + 1, 30)
        return delay

    def reset(self) -> None:
        self.attempt = 0


class _Garbled(ValueError):
    """A watch line that is not a JSON event."""


READ_BYTES = 64 * 1024  # read at most this much at once: a huge chunk is not taken whole


def _lines(resp: Any, max_line: int) -> Iterator[bytes | None]:
    """Newline-delimited JSON from a streamed response, whatever the chunk boundaries; None
    for a line longer than max_line, which is skipped without being kept."""
    buf = bytearray()
    skipping = False
    for chunk in resp.stream(amt=READ_BYTES, decode_content=False):
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                if not skipping:
                    buf += chunk[start:]
                    if len(buf) > max_line:
                        skipping = True
                        buf.clear()
                break
            if skipping:
                skipping = False
                yield None
            else:
                buf += chunk[start:nl]
                if len(buf) > max_line:
                    yield None
                elif buf.strip():
                    yield bytes(buf)
                buf.clear()
            start = nl + 1
    if skipping:
        yield None
    elif buf.strip():
        yield bytes(buf)


class _PageTooLarge(Exception):
    pass


def _read_bounded(resp: Any, limit: int) -> bytes:
    """A whole response body, or _PageTooLarge (the connection dropped) past `limit` bytes."""
    parts, total = [], 0
    for chunk in resp.stream(amt=READ_BYTES, decode_content=True):
        total += len(chunk)
        if total > limit:
            _abort(resp)
            raise _PageTooLarge(f"more than {limit} bytes")
        parts.append(chunk)
    resp.release_conn()
    return b"".join(parts)


def _rv_of(obj: Any) -> str | None:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return rv if isinstance(rv, str) and rv else None


def api_client(kubeconfig: str | None = None, context: str | None = None) -> tuple[Any, str]:
    """A client and where its configuration came from: in-cluster when running in a pod (and
    no kubeconfig or context was given), else the kubeconfig file (`--kubeconfig`,
    $KUBECONFIG, ~/.kube/config) at `context` (default: its current context)."""
    cfg = client.Configuration()
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)
        origin = "in-cluster"
    else:
        config.load_kube_config(config_file=kubeconfig, context=context,
                                client_configuration=cfg)
        origin = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        if context:
            origin += f" context {context}"
    cfg.retries = 0  # our loops retry with backoff; urllib3's own retries only add delay
    return client.ApiClient(cfg), origin


class KubernetesSource:
    """The Source for a real cluster. Counters are plain attributes the agent's metrics read:
    `watch_restarts[kind]`, `relists[kind]`, `errors[kind]`, `resource_versions[kind]`,
    `last_sync_time` (Unix time of the last SYNCED)."""

    def __init__(
        self,
        api_client: Any,
        *,
        node_name: str | None = None,
        kinds: tuple[str, ...] = DEFAULT_KINDS,
        watch_timeout: float = 300.0,
        connect_timeout: float = 10.0,
        backoff_base: float = 0.2,
        backoff_max: float = 30.0,
        page_size: int = 500,
        name: str | None = None,
        crd_retry: float = CRD_RETRY,
        crd_retry_max: float = CRD_RETRY_MAX,
        max_object_bytes: int = limits.MAX_OBJECT_BYTES,
        max_list_page_bytes: int = limits.MAX_LIST_PAGE_BYTES,
    ) -> None:
        unknown = [k for k in kinds if k not in WATCHED_KINDS]
        if unknown:
            raise ValueError(f"cannot watch kinds {unknown}")
        self.api_client = api_client
        self.node_name = node_name
        self.kinds = tuple(kinds)
        self.watch_timeout = watch_timeout
        self.connect_timeout = connect_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.page_size = page_size
        self.crd_retry = crd_retry
        self.crd_retry_max = crd_retry_max
        self.max_object_bytes = max_object_bytes
        self.max_list_page_bytes = max_list_page_bytes
        self._name = name or f"k8s:{getattr(api_client.configuration, 'host', '?')}"
        self.log = log.get("sources.kubernetes")
        self.watch_restarts: dict[str, int] = dict.fromkeys(self.kinds, 0)
        self.relists: dict[str, int] = dict.fromkeys(self.kinds, 0)
        self.errors: dict[str, int] = dict.fromkeys(self.kinds, 0)
        self.events_received: dict[str, int] = dict.fromkeys(self.kinds, 0)
        self.resource_versions: dict[str, str | None] = dict.fromkeys(self.kinds)
        # (kind, reason) -> objects or lines refused (enforcer.sources.limits.REASONS)
        self.rejected: dict[tuple[str, str], int] = {}
        self._rejected_said: dict[tuple[str, str], float] = {}
        self.last_sync_time: float | None = None
        self.synced = threading.Event()  # set at the first SYNCED
        self.unavailable: set[str] = set()  # custom kinds the API does not serve (yet)
        self._ok: dict[str, bool] = dict.fromkeys(self.kinds, False)
        self._listed: set[str] = set()
        self._crd_attempts: dict[str, int] = {}  # lists in a row that found a kind unavailable
        self._sync_lock = threading.Lock()  # RESET..ADDED..SYNCED sequences never interleave
        self._responses: dict[str, Any] = {}
        self._responses_lock = threading.Lock()
        self._list_fns = {k: WATCHED_KINDS[k].list_function(api_client) for k in self.kinds}

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, *, kubeconfig: str | None = None, node_name: str | None = None, **kwargs: Any
    ) -> KubernetesSource:
        """In-cluster config when running in a pod (and no kubeconfig was given), else the
        kubeconfig file (`--kubeconfig`, $KUBECONFIG, ~/.kube/config)."""
        api, origin = api_client(kubeconfig)
        kwargs.setdefault("name", f"k8s:{api.configuration.host} ({origin})")
        return cls(api, node_name=node_name, **kwargs)

    @classmethod
    def for_host(cls, host: str, **kwargs: Any) -> KubernetesSource:
        """An unauthenticated client for `host` (tests, `kubectl proxy`)."""
        cfg = client.Configuration()
        cfg.host = host
        cfg.retries = 0
        return cls(client.ApiClient(cfg), **kwargs)

    # -- Source ---------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return all(self._ok.values())

    def describe(self) -> str:
        return self._name

    def run(self, emit: Emit, stop: threading.Event) -> None:
        threads = [
            threading.Thread(
                target=self._run_kind, args=(kind, emit, stop), name=f"watch-{kind}", daemon=True
            )
            for kind in self.kinds
        ]
        for t in threads:
            t.start()
        stop.wait()
        with self._responses_lock:
            responses = list(self._responses.values())
        for resp in responses:  # unblock threads reading a watch stream
            _abort(resp)
        for t in threads:
            t.join(timeout=5)

    # -- one kind -------------------------------------------------------------------------------

    def _run_kind(self, kind: str, emit: Emit, stop: threading.Event) -> None:
        backoff = _Backoff(self.backoff_base, self.backoff_max)
        rv: str | None = None
        list_from: str | None = "0"  # first list from the watch cache; after a 410, fresh
        while not stop.is_set():
            if rv is None:
                try:
                    items, rv = self._list(kind, list_from)
                except Exception as exc:  # any failure: log, back off, retry
                    if stop.is_set():
                        return
                    if _unavailable(WATCHED_KINDS[kind], exc):
                        stop.wait(self._kind_unavailable(kind, exc, emit))
                        continue
                    self._failed(kind, "list", exc)
                    stop.wait(backoff.next())
                    continue
                if kind in self.unavailable:
                    self.unavailable.discard(kind)
                    self.log.info("custom resource available, watching it", kind=kind)
                self._ok[kind] = True
                try:
                    self._deliver_list(kind, items, emit)
                except Exception:  # the consumer failed: keep the thread, relist later
                    self.log.exception("delivering the list failed", kind=kind)
                    self._listed.add(kind)  # so the relist starts with RESET
                    rv = None
                    stop.wait(backoff.next())
                    continue
                backoff.reset()
            try:
                rv, outcome = self._watch(kind, rv, emit, stop)
            except Exception as exc:
                if stop.is_set():
                    return
                self._failed(kind, "watch", exc)
                outcome = "error"
            if stop.is_set():
                return
            self.watch_restarts[kind] += 1
            if outcome == "unavailable":  # the CRD went away: list again, which says so
                rv = None
                list_from = None
            elif outcome == "expired":
                self.relists[kind] += 1
                self.log.info("watch expired, relisting", kind=kind, resource_version=rv)
                rv = None
                list_from = None
            elif outcome == "ok":
                backoff.reset()
            else:
                stop.wait(backoff.next())

    def _kind_unavailable(self, kind: str, exc: BaseException, emit: Emit) -> float:
        """A custom kind the API does not serve: an empty kind, not an outage. The first time
        (in a row) it is delivered as an empty list, so the first SYNCED does not wait for it
        and, when the CRD was deleted, its objects are gone; then it is logged once. Returns
        how long to wait before listing it again."""
        self._ok[kind] = True
        if kind not in self.unavailable:
            self.unavailable.add(kind)
            self._crd_attempts[kind] = 0
            status = getattr(exc, "status", None)
            self.log.warning(
                "custom resource not served: its CRD is not installed"
                if status == 404
                else "custom resource not readable: the agent's RBAC does not grant it",
                kind=kind,
                status=status,
                retry_seconds=self.crd_retry,
            )
            try:
                self._deliver_list(kind, [], emit)
            except Exception:  # the consumer failed: deliver it again next time
                self.log.exception("delivering the list failed", kind=kind)
                self.unavailable.discard(kind)
        attempt = self._crd_attempts.get(kind, 0)
        self._crd_attempts[kind] = attempt + 1
        delay = min(self.crd_retry_max, self.crd_retry * 2**min(attempt, 30))
        return delay * random.uniform(0.75, 1.0)  # jittered: nodes do not ask in lockstep

    def _reject(self, kind: str, reason: str, detail: str = "") -> None:
        """Count one refused object or line; log it at most every 10 s per kind and reason
        (a stream of garbage must not become a stream of log lines)."""
        key = (kind, reason)
        self.rejected[key] = self.rejected.get(key, 0) + 1
        now = time.monotonic()
        if now - self._rejected_said.get(key, -10.0) >= 10.0:
            self._rejected_said[key] = now
            self.log.warning("object from the API rejected", kind=kind, reason=reason,
                             detail=detail[:200], rejected_so_far=self.rejected[key])

    def _checked(self, kind: str, obj: Any) -> tuple[dict[str, Any], str | None]:
        """The object stripped, or its stub and why it was refused."""
        reason = limits.reject_reason(kind, obj)
        if reason is not None:
            meta = obj.get("metadata") if isinstance(obj, dict) else None
            name = meta.get("name") if isinstance(meta, dict) else None
            self._reject(kind, reason, f"{str(name)[:100]}")
            return limits.stub(kind, obj), reason
        return strip_object(kind, obj), None

    def _failed(self, kind: str, what: str, exc: BaseException) -> None:
        self._ok[kind] = False
        self.errors[kind] += 1
        self.log.warning(f"{what} failed", kind=kind, error=f"{type(exc).__name__}: {exc}"[:300])

    def _list(
        self, kind: str, resource_version: str | None
    ) -> tuple[list[tuple[dict[str, Any], str | None]], str]:
        """A paged list whose pages all come from one snapshot (else start over).

        `resource_version="0"` lets the API server answer from its watch cache, as client-go's
        first list does: cheap for the server when every node's agent lists all pods, and the
        watch that follows catches up. After a 410 the list must be fresh: None (a consistent
        read), or the cache could hand back the state the watch just expired from."""
        wk = WATCHED_KINDS[kind]
        for _ in range(5):
            items: list[tuple[dict[str, Any], str | None]] = []
            token: str | None = None
            page = self.page_size
            try:
                while True:
                    resp = self._list_fns[kind](
                        limit=page,
                        _continue=token,
                        # The API refuses a resourceVersion together with a continue token.
                        resource_version=None if token else resource_version,
                        _preload_content=False,
                        _request_timeout=(self.connect_timeout, 60.0),
                    )
                    try:
                        data = _read_bounded(resp, self.max_list_page_bytes)
                    except _PageTooLarge:
                        self._reject(kind, "too_large", f"a list page of {page} objects")
                        if page == 1:
                            raise
                        page = max(1, page // 2)  # the same page again, in halves
                        continue
                    with gc_paused():  # decoding and stripping only; not the network wait
                        try:
                            body = json.loads(data)
                        except ValueError:
                            self._reject(kind, "malformed", "a list body that is not JSON")
                            raise
                        if not isinstance(body, dict) or not isinstance(
                            body.get("items") or [], list
                        ):
                            self._reject(kind, "malformed", "a list body that is no list")
                            raise ValueError(f"the {kind} list is not a list object")
                        for item in body.get("items") or []:
                            if isinstance(item, dict):
                                # List items come without kind/apiVersion: fill them in.
                                item.setdefault("kind", kind)
                                item.setdefault("apiVersion", wk.api_version)
                            items.append(self._checked(kind, item))
                        meta = body.get("metadata") or {}
                        del body, data  # freed by refcount before the GC runs again
                    token = meta.get("continue") or None
                    if token is None:
                        return items, str(meta.get("resourceVersion") or "")
            except ApiException as exc:
                if exc.status == 410:  # the continue token expired mid-list: start over
                    continue
                raise
        raise RuntimeError(f"list of {kind} kept expiring")

    def _deliver_list(
        self, kind: str, items: list[tuple[dict[str, Any], str | None]], emit: Emit
    ) -> None:
        with self._sync_lock:
            if kind in self._listed:
                emit(SourceEvent(EventType.RESET, kind, None, None))
            for item, rejected in items:
                emit(SourceEvent(EventType.ADDED, kind, item, _rv_of(item), rejected))
            self._listed.add(kind)
            if len(self._listed) == len(self.kinds):
                emit(SourceEvent(EventType.SYNCED, None, None, None))
                self.last_sync_time = time.time()
                if not self.synced.is_set():
                    self.log.info("initial sync", source=self._name)
                self.synced.set()
        self.log.debug("listed", kind=kind, count=len(items))

    def _watch(self, kind: str, rv: str, emit: Emit, stop: threading.Event) -> tuple[str, str]:
        """Stream one watch. Returns the last resourceVersion seen and how it ended:
        'ok' (clean end, resume now), 'expired' (relist), 'error' (back off, resume)."""
        self.resource_versions[kind] = rv
        # Randomised like client-go so that many agents do not reconnect in lockstep.
        timeout = int(self.watch_timeout * random.uniform(1.0, 2.0))
        try:
            resp = self._list_fns[kind](
                watch=True,
                resource_version=rv,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout,
                _preload_content=False,
                # A read timeout past the server-side timeout catches a silently dead peer.
                _request_timeout=(self.connect_timeout, timeout + 30),
            )
        except ApiException as exc:
            if exc.status == 410:
                return rv, "expired"
            if _unavailable(WATCHED_KINDS[kind], exc):
                return rv, "unavailable"
            raise
        with self._responses_lock:
            self._responses[kind] = resp
        if stop.is_set():  # run() may have aborted the open streams before this one was known
            _abort(resp)
            return rv, "ok"
        self._ok[kind] = True
        started = time.monotonic()
        quick = min(1.0, timeout / 2)  # a stream that ends sooner than this ended "right away"
        received = 0
        complete = False  # the server ended the stream: the connection can be reused
        try:
            for line in _lines(resp, self.max_object_bytes):
                if stop.is_set():
                    return rv, "ok"
                if line is None:  # past the limit: skipped unread, its last version stays
                    self._reject(kind, "too_large", "a watch event")
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
                if not isinstance(event, dict) or not isinstance(event.get("object") or {}, dict):
                    # Garbled in transit, most likely: resume from the last good resourceVersion.
                    self._reject(kind, "malformed", f"a watch line {line[:80]!r}")
                    raise _Garbled("a watch line that is not a JSON event")
                etype = event.get("type")
                obj = event.get("object") or {}
                if etype == "ERROR":
                    code = obj.get("code")
                    if code == 410:
                        return rv, "expired"
                    self.log.warning(
                        "watch error event", kind=kind, code=code, message=obj.get("message")
                    )
                    return rv, "error"
                new_rv = _rv_of(obj)
                if etype == "BOOKMARK":
                    if new_rv:
                        rv = new_rv
                        self.resource_versions[kind] = rv
                    continue
                if etype not in ("ADDED", "MODIFIED", "DELETED"):
                    self.log.warning("unknown watch event type", kind=kind, type=etype)
                    continue
                received += 1
                self.events_received[kind] += 1
                if etype == "DELETED":  # gone, however big it was
                    stripped, rejected = strip_object(kind, obj), None
                else:
                    stripped, rejected = self._checked(kind, obj)
                emit(SourceEvent(EventType(etype), kind, stripped, new_rv, rejected))
                if new_rv:
                    rv = new_rv
                    self.resource_versions[kind] = rv
            complete = True
        except Exception as exc:  # a dropped stream: resume from rv
            if stop.is_set():
                return rv, "ok"
            self.log.info(
                "watch dropped, resuming",
                kind=kind,
                resource_version=rv,
                error=f"{type(exc).__name__}: {exc}"[:200],
            )
            # A stream that was up a while (or delivered events) resumes at once; one that
            # breaks right away backs off, so a flapping server is not hammered.
            return rv, "ok" if received or time.monotonic() - started > quick else "error"
        finally:
            with self._responses_lock:
                self._responses.pop(kind, None)
            if complete:
                resp.release_conn()
            else:  # unread data may follow: never hand this connection back to the pool
                _abort(resp)
        # A clean end, normally the server-side timeout; one right away (a proxy closing
        # streams) backs off like a drop would.
        return rv, "ok" if received or time.monotonic() - started > quick else "error"


def _abort(resp: Any) -> None:
    for method in ("shutdown", "close"):
        fn = getattr(resp, method, None)
        if fn is not None:
            try:
                fn()
            except Exception:  # best effort while stopping
                pass
