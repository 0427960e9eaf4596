"""`--source dir:PATH`: a folder of manifests, watched by polling, as a stream of object events.

Every `*.yaml`, `*.yml` and `*.json` below PATH (recursively; PATH may also be one file) is read:
multi-document YAML, JSON, `kind: List` and typed lists (`PodList`...), so `kubectl get -o yaml`
output works as is. Only Namespace, Pod, NetworkPolicy, Node, Service, EndpointSlice and
StagedNetworkPolicy are kept, and the cluster-scoped policies (ClusterNetworkPolicy,
AdminNetworkPolicy, BaselineAdminNetworkPolicy); other kinds are logged once per file version
and skipped.

Rules (written for users in the README too):
- Objects are identified by (kind, namespace, name); a namespaced object without a namespace is
  in `default`, as `kubectl apply` would put it.
- The same object in two files: the file that sorts LAST (by path relative to PATH) wins. When it
  goes away, the other file's version takes over.
- A file that fails to parse keeps its previous objects until a version of it parses: an editor
  saving in place or a half-written file never removes or half-applies anything. A truncation
  that happens to fall on a document boundary still parses, so write files atomically: write to
  a temporary name (hidden, or without a manifest suffix, e.g. `.pods.yaml.tmp`) and rename it
  into place. Hidden files and directories (leading `.`) are ignored.
- Changes are found by polling (every 20 ms): a file whose mtime, size and inode did not change
  is not read again; one that did is re-read and ignored if its content hash is the same. A
  mounted ConfigMap works: its atomic `..data` symlink swap is seen as a change. On Linux,
  inotify wakes the poll as soon as a file is closed after writing, renamed or deleted in a
  folder it reads (enforcer.sources.inotify), so a change is usually seen within a millisecond.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from enforcer import log
from enforcer.model.clusterpolicy import is_cluster_policy
from enforcer.model.groups import source_kind
from enforcer.sources.base import KNOWN_KINDS, Emit, EventType, SourceEvent, object_key
from enforcer.sources.gcpause import gc_paused
from enforcer.sources.inotify import FolderWatch

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
NAMESPACED_KINDS = frozenset(
    {"Pod", "NetworkPolicy", "Service", "EndpointSlice", "StagedNetworkPolicy"}
)
# Emission order within one scan: what others refer to first.
_KIND_RANK = {k: i for i, k in enumerate(("Namespace", "Node", "Pod", "Service", "EndpointSlice"))}

try:  # libyaml is much faster on big files
    _YamlLoader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _YamlLoader = yaml.SafeLoader

Key = tuple[str, str | None, str]


class ManifestError(Exception):
    """The file's content cannot be read as manifests (YAML/JSON syntax, top-level shape)."""


@dataclass
class _File:
    rel: str  # path relative to the source's root: the sort key for "last file wins"
    stat: tuple[int, int, int]  # (mtime_ns, size, inode): a rename or symlink swap changes it
    digest: bytes
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None  # the current content's parse error (previous objects kept)


def parse_manifests(text: str, origin: str) -> tuple[dict[Key, dict[str, Any]], list[str]]:
    """The kept objects of one file by key, and notes on what was skipped. Raises ManifestError."""
    try:
        with gc_paused():
            docs = _documents(text, origin)
    except (yaml.YAMLError, ValueError) as exc:
        raise ManifestError(f"{origin}: cannot parse: {exc}") from exc
    objects: dict[Key, dict[str, Any]] = {}
    notes: list[str] = []
    for doc in docs:
        for item in _flatten(doc):
            if not isinstance(item, Mapping):
                notes.append(f"{origin}: skipped a {type(item).__name__} (not an object)")
                continue
            kind = item.get("kind")
            if kind not in KNOWN_KINDS and not is_cluster_policy(item):
                notes.append(f"{origin}: skipped kind {kind!r} (not used for policy)")
                continue
            obj = dict(item)
            meta = obj.get("metadata")
            if kind in NAMESPACED_KINDS and isinstance(meta, Mapping) and not meta.get("namespace"):
                obj["metadata"] = {**meta, "namespace": "default"}
            # Another group's NetworkPolicy is its own kind here (NetworkPolicy.GROUP): it
            # never takes the place of networking.k8s.io's of the same name, and the agent
            # reads it only if told to (--accept-group).
            objects[object_key(source_kind(kind, obj), obj)] = obj  # the last one wins
    return objects, notes


def _documents(text: str, origin: str) -> list[Any]:
    if origin.endswith(".json") or text.lstrip().startswith(("{", "[")):
        try:
            doc = json.loads(text)
            return doc if isinstance(doc, list) else [doc]
        except json.JSONDecodeError:
            pass  # YAML is a superset of JSON: let the YAML parser decide and report
    return [d for d in yaml.load_all(text, Loader=_YamlLoader) if d is not None]


def _flatten(doc: Any) -> Iterator[Any]:
    """Expand bare arrays, `kind: List` and typed lists (whose items may lack kind)."""
    if isinstance(doc, list):
        for item in doc:
            yield from _flatten(item)
        return
    if isinstance(doc, Mapping):
        kind = doc.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
            item_kind = kind[: -len("List")] or None
            for item in doc["items"]:
                if isinstance(item, Mapping) and item_kind and "kind" not in item:
                    item = {**item, "kind": item_kind, "apiVersion": doc.get("apiVersion")}
                yield from _flatten(item)
            return
    yield doc


class DirectorySource:
    """The Source for a folder (or one file) of manifests. Attributes read by metrics/status:
    `revision` (bumps on every scan that changed something), `last_sync_time`, `file_errors`."""

    # 20 ms: an idle scan costs well under 0.1 ms (stat only), and the poll interval is the
    # largest part of a change's time to enforcement with this source.
    def __init__(self, path: str | os.PathLike[str], *, interval: float = 0.02) -> None:
        self.path = Path(path).expanduser()
        self.interval = interval
        self.log = log.get("sources.directory")
        self.revision = 0
        self.last_sync_time: float | None = None
        self.file_errors: dict[str, str] = {}  # relative path -> parse error, while it lasts
        self.watch_restarts: dict[str, int] = {}  # the Kubernetes source's counters, never used
        self.resource_versions: dict[str, str] = {}  # kind -> revision of its last change
        self._healthy = False
        self._files: dict[Path, _File] = {}
        self._holders: dict[Key, set[Path]] = {}  # which files hold each key
        self._view: dict[Key, dict[str, Any]] = {}  # what the consumer has been told
        self._folders: list[Path] = []  # the folders the last listing walked

    @property
    def healthy(self) -> bool:
        return self._healthy

    def describe(self) -> str:
        return f"dir:{self.path}"

    def run(self, emit: Emit, stop: threading.Event) -> None:
        watch = FolderWatch()
        try:
            self._run(emit, stop, watch)
        finally:
            watch.close()

    def _run(self, emit: Emit, stop: threading.Event, watch: FolderWatch) -> None:
        synced = False

        def pause() -> None:  # until the next poll, or a change inotify reports before it
            if watch.active:
                watch.wait(self.interval)
            else:
                stop.wait(self.interval)

        while not stop.is_set():
            try:
                changed = self.scan(emit)
            except OSError as exc:  # the folder itself vanished or is unreadable: keep state
                if self._healthy or not synced:
                    self.log.warning("cannot read manifests", path=str(self.path), error=str(exc))
                self._healthy = False
                pause()
                continue
            except Exception:  # a bug (or the consumer failing): keep polling, say so
                self.log.exception("scan failed", path=str(self.path))
                pause()
                continue
            watch.watch(self._folders)
            if not self._healthy:
                self._healthy = True
                self.log.info("reading manifests", path=str(self.path), files=len(self._files))
            if not synced:
                emit(SourceEvent(EventType.SYNCED, None, None, str(self.revision)))
                self.last_sync_time = time.time()
                synced = True
            elif changed:
                self.last_sync_time = time.time()
            pause()

    # -- one poll -------------------------------------------------------------------------------

    def _manifest_paths(self) -> list[Path]:
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} does not exist")
        if self.path.is_file():
            self._folders = [self.path.parent]
            return [self.path]
        found = []
        folders = []
        seen: set[tuple[int, int]] = set()  # folders by (device, inode): symlink loops end
        for root, dirs, files in os.walk(self.path, followlinks=True):
            st = os.stat(root)
            if (st.st_dev, st.st_ino) in seen:
                dirs[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            folders.append(Path(root))
            # Hidden folders are skipped, which also skips a mounted ConfigMap's `..data`
            # and timestamped folders; its visible files are symlinks into them, followed.
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if not name.startswith(".") and name.lower().endswith(MANIFEST_SUFFIXES):
                    found.append(Path(root) / name)
        self._folders = folders
        return found

    def _rel(self, path: Path) -> str:
        return path.name if path == self.path else str(path.relative_to(self.path))

    def scan(self, emit: Emit) -> bool:
        """Read what changed since the last scan and emit the differences. True if any."""
        paths = set(self._manifest_paths())
        touched: set[Key] = set()
        for gone in [p for p in self._files if p not in paths]:
            old = self._files.pop(gone)
            self.file_errors.pop(old.rel, None)
            self._set_holder(gone, old.objects, {}, touched)
        for path in paths:
            self._read(path, touched)
        return self._emit_changes(touched, emit)

    def _read(self, path: Path, touched: set[Key]) -> None:
        try:
            st = path.stat()
            stat = (st.st_mtime_ns, st.st_size, st.st_ino)
            prev = self._files.get(path)
            if prev is not None and prev.stat == stat:
                return
            data = path.read_bytes()
            after = path.stat()
        except FileNotFoundError:
            return  # removed between listing and reading: the next scan sees it gone
        if (after.st_mtime_ns, after.st_size, after.st_ino) != stat:
            return  # being written right now: read it on a later poll
        digest = hashlib.sha256(data).digest()
        if prev is not None and prev.digest == digest:
            prev.stat = stat
            return
        rel = self._rel(path)
        try:
            with gc_paused():  # nested with the one inside: counted
                objects, notes = parse_manifests(data.decode("utf-8"), rel)
        except (ManifestError, UnicodeDecodeError) as exc:
            # Keep the previous objects; do not retry this exact content (stat/digest stored).
            kept = prev.objects if prev is not None else {}
            self._files[path] = _File(rel, stat, digest, kept, str(exc))
            self.file_errors[rel] = str(exc)
            self.log.warning(
                "manifest file unreadable, keeping its previous objects",
                file=rel,
                kept=len(kept),
                error=str(exc)[:300],
            )
            return
        for note in notes:
            self.log.info("manifest note", note=note)
        if prev is not None and prev.error:
            self.log.info("manifest file readable again", file=rel)
        self.file_errors.pop(rel, None)
        self._files[path] = _File(rel, stat, digest, objects)
        self._set_holder(path, prev.objects if prev else {}, objects, touched)

    def _set_holder(
        self,
        path: Path,
        old: Mapping[Key, Any],
        new: Mapping[Key, Any],
        touched: set[Key],
    ) -> None:
        for key in old.keys() - new.keys():
            holders = self._holders.get(key)
            if holders is not None:
                holders.discard(path)
                if not holders:
                    del self._holders[key]
        for key in new:
            self._holders.setdefault(key, set()).add(path)
        touched.update(old.keys(), new.keys())

    def _winner(self, key: Key) -> dict[str, Any] | None:
        path = self._winner_path(key)
        return None if path is None else self._files[path].objects[key]

    def _winner_path(self, key: Key) -> Path | None:
        holders = self._holders.get(key)
        if not holders:
            return None
        if len(holders) == 1:
            (only,) = holders
            return only
        return max(holders, key=lambda p: self._files[p].rel)  # the last file in order wins

    def _emit_changes(self, touched: set[Key], emit: Emit) -> bool:
        deleted: list[tuple[Key, dict[str, Any]]] = []
        upserts: list[tuple[EventType, Key, dict[str, Any]]] = []
        for key in touched:
            new = self._winner(key)
            old = self._view.get(key)
            if new is None and old is not None:
                deleted.append((key, old))
            elif new is not None and old is None:
                upserts.append((EventType.ADDED, key, new))
            elif new is not None and new != old:
                upserts.append((EventType.MODIFIED, key, new))
        if not deleted and not upserts:
            return False
        self.revision += 1
        rv = str(self.revision)
        # Deletions first (an IP or name freed before it is reused), then upserts, referred
        # objects (namespaces, nodes) before the ones that refer to them, policies last.
        for key, obj in sorted(deleted, key=lambda item: _order(item[0])):
            del self._view[key]
            self.resource_versions[key[0]] = rv
            emit(SourceEvent(EventType.DELETED, key[0], obj, rv))
        for etype, key, obj in sorted(upserts, key=lambda item: _order(item[1])):
            self._view[key] = obj
            self.resource_versions[key[0]] = rv
            path = self._winner_path(key)
            emit(SourceEvent(etype, key[0], obj, rv, origin=str(path) if path else None))
        return True


def _order(key: Key) -> tuple[int, str, str]:
    return (_KIND_RANK.get(key[0], len(_KIND_RANK)), key[1] or "", key[2])
