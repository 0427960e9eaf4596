"""The agent's shadow: its StagedNetworkPolicies and the state as if they were applied.

The enforced state and the preview change on the thread that applies source events (the loop,
or a source thread before the first sync); flow records are judged on the ring-buffer thread.
So every write to the enforced state goes through here (`upsert`, `remove`), under one lock
that a verdict also holds while it reads both states: a verdict never sees half a change, and
either side waits at most one object change or one flow's two evaluations (microseconds).

The preview is kept current incrementally, never copied again: each change to the enforced
state is repeated on it, except a NetworkPolicy that a staged policy of the same namespace/name
shadows (the staged one stands in for it). With no staged policy there is no preview and no
view: a flow record passes through with one attribute read.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace

from enforcer import log
from enforcer.flows.record import FlowRecord
from enforcer.flows.staged import StagedView
from enforcer.model.cluster import ClusterState
from enforcer.model.clusterpolicy import ClusterPolicy
from enforcer.model.nodes import Node
from enforcer.model.objects import KIND_NETWORK_POLICY, ModelObject, NetworkPolicy
from enforcer.model.services import ServiceObject
from enforcer.model.staged import as_if_applied


class _LiveView(StagedView):
    """A StagedView over the preview the shadow keeps current (StagedView's own constructor
    copies the state, and its preview is rebuilt whenever the state's generation moves)."""

    def __init__(
        self, state: ClusterState, staged: tuple[NetworkPolicy, ...], preview: ClusterState
    ) -> None:
        self.state = state
        self.staged = staged
        self._staged_keys = frozenset(p.key for p in staged)
        self._live_preview = preview

    @property
    def preview(self) -> ClusterState:
        return self._live_preview


class StagedShadow:
    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.lock = threading.Lock()
        self._policies: dict[str, NetworkPolicy] = {}  # namespace/name -> staged policy
        self._preview: ClusterState | None = None  # None while nothing is staged
        self._view: _LiveView | None = None
        self.errors = 0  # verdicts that failed (a bug): the record is stored without one
        self.log = log.get("agent.staged")

    @property
    def policies(self) -> Mapping[str, NetworkPolicy]:
        return self._policies

    def names(self) -> list[str]:
        """The staged policies' namespace/name, sorted (for /status, from any thread)."""
        with self.lock:
            return sorted(self._policies)

    @property
    def preview(self) -> ClusterState | None:
        """The state as if the staged policies were applied (read it under `lock`)."""
        return self._preview

    # -- the enforced state (every write to it) -----------------------------------------------

    def upsert(self, obj: ModelObject | ServiceObject | ClusterPolicy | Node) -> None:
        with self.lock:
            self.state.upsert(obj)
            if self._preview is not None and not self._shadowed(obj):
                self._preview.upsert(obj)

    def remove(self, kind: str, namespace: str | None, name: str) -> None:
        with self.lock:
            self.state.remove(kind, namespace, name)
            if self._preview is None:
                return
            if kind == KIND_NETWORK_POLICY and f"{namespace}/{name}" in self._policies:
                return  # the staged policy of that name stays in the preview
            self._preview.remove(kind, namespace, name)

    def _shadowed(self, obj: ModelObject | ServiceObject | ClusterPolicy | Node) -> bool:
        return isinstance(obj, NetworkPolicy) and obj.key in self._policies

    # -- the staged policies ------------------------------------------------------------------

    def stage(self, policy: NetworkPolicy) -> None:
        """Add or replace a staged policy."""
        with self.lock:
            self._policies[policy.key] = policy
            if self._preview is None:  # the first: one copy, then incremental
                self._preview = as_if_applied(self.state, self._policies.values())
            else:
                self._preview.upsert(policy)
            self._new_view()

    def unstage(self, key: str) -> None:
        """Remove the staged policy `namespace/name`: the enforced one of that name, if any,
        is back in the preview."""
        with self.lock:
            policy = self._policies.pop(key, None)
            if policy is None:
                return
            if not self._policies:  # nothing staged: no preview to keep, no work per flow
                self._preview = None
                self._view = None
                return
            assert self._preview is not None
            self._preview.remove(KIND_NETWORK_POLICY, policy.namespace, policy.name)
            enforced = self.state.policies.get(key)
            if enforced is not None:
                self._preview.upsert(enforced)
            self._new_view()

    def _new_view(self) -> None:
        assert self._preview is not None
        staged = tuple(self._policies[k] for k in sorted(self._policies))
        self._view = _LiveView(self.state, staged, self._preview)

    # -- flow records (the ring-buffer thread) ------------------------------------------------

    def __call__(self, record: FlowRecord) -> FlowRecord:
        """The record with what the staged policies would change (FlowCollector's `staged`)."""
        if self._view is None:
            return record
        try:
            with self.lock:
                view = self._view
                verdict = view.verdict(record) if view is not None else None
        except Exception:  # observing never gets in the way: the record goes on without it
            self.errors += 1
            if self.errors == 1:
                self.log.exception("staged verdict failed", record=record.to_line()[:300])
            return record
        return replace(record, staged=verdict) if verdict is not None else record
