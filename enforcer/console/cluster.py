"""The cluster's objects in: pods, namespaces, policies and staged policies, as the agent
sees them (the same source events, validated by the same Intake), for the policy view.

Source threads apply events while HTTP threads read: one lock covers both. The manifests'
specs are kept too (the model's objects do not keep how a policy was written), only for the
versions the Intake accepted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from enforcer.agent.intake import Intake, ObjKey, obj_key
from enforcer.digest import object_hash
from enforcer.model.cluster import ClusterState
from enforcer.model.objects import (
    KIND_NETWORK_POLICY,
    KIND_STAGED_NETWORK_POLICY,
    NetworkPolicy,
)
from enforcer.sources.base import EventType, Source, SourceEvent

POLICY_KINDS = (KIND_NETWORK_POLICY, KIND_STAGED_NETWORK_POLICY)
T = TypeVar("T")


class ClusterView:
    """The last valid version of every object a source delivered. Use it as the source's
    `emit`; read it through `read`."""

    def __init__(self, describe_source: Callable[[], str] = lambda: "console") -> None:
        self._intake = Intake(describe_source)
        self._specs: dict[ObjKey, Mapping[str, Any]] = {}
        self._lock = threading.Lock()
        self.synced = threading.Event()  # set at the source's first SYNCED

    def __call__(self, event: SourceEvent) -> None:
        with self._lock:
            if event.type is EventType.RESET:
                if event.kind:
                    self._intake.begin_relist(event.kind)
            elif event.type is EventType.SYNCED:
                self._intake.finish_relist()
                kept = {*self._intake.objects, *self._intake.staged}
                self._specs = {k: v for k, v in self._specs.items() if k in kept}
                self.synced.set()
            else:
                self._apply(event)

    def _apply(self, event: SourceEvent) -> None:
        self._intake.apply(event)
        kind, raw = event.kind or "", event.obj or {}
        if kind not in POLICY_KINDS:
            return
        key = obj_key(kind, raw)
        if event.type is EventType.DELETED:
            self._specs.pop(key, None)
        elif self._intake.object_hashes.get(key) == object_hash(raw):  # accepted as valid
            self._specs[key] = raw.get("spec") or {}

    def read(self, fn: Callable[[ClusterState, Mapping[str, NetworkPolicy]], T]) -> T:
        """fn(state, staged policies by namespace/name), under the lock: keep it short."""
        with self._lock:
            staged = {p.key: p for p in self._intake.staged.values()}
            return fn(self._intake.state, staged)

    def spec(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        with self._lock:
            return self._specs.get((kind, namespace, name))


def follow_source(source: Source, view: ClusterView, stop: threading.Event) -> threading.Thread:
    """Runs the source into the view on a thread of its own."""
    thread = threading.Thread(
        target=source.run, args=(view, stop), name="console-source", daemon=True
    )
    thread.start()
    return thread
