"""The agent's flow pipeline: kernel events in, records to the store, drops to `monitor`.

Runs on the ring-buffer thread. It names each event (attribute.flow_record), lets the staged
policies say what they would change, counts the verdict, and adds the record to the store.
"""

from __future__ import annotations

from collections.abc import Callable

from enforcer.datapath.types import DropEvent, DropReason
from enforcer.flows.attribute import (
    FlowContext,
    MonotonicToWall,
    flow_record,
    unjudged_service_flow,
)
from enforcer.flows.record import FlowRecord
from enforcer.flows.store import FlowStore


class FlowCollector:
    def __init__(
        self,
        ctx: FlowContext,
        store: FlowStore,
        on_drop: Callable[[DropEvent], None] = lambda _e: None,
        on_record: Callable[[FlowRecord], None] = lambda _r: None,
        staged: Callable[[FlowRecord], FlowRecord] | None = None,
    ) -> None:
        """on_drop: a real drop (not an allowed flow, not an audit pass), for `monitor`;
        on_record: every record, as stored (metrics); staged: the record with what the
        staged policies would change (None: no staged policies)."""
        self._ctx = ctx
        self._store = store
        self._on_drop = on_drop
        self._on_record = on_record
        self.staged = staged
        self._wall = MonotonicToWall()

    def on_event(self, event: DropEvent) -> None:
        if event.reason is not None and event.reason is not DropReason.AUDIT:
            self._on_drop(event)
        if unjudged_service_flow(event, self._ctx):
            return
        record = flow_record(event, self._ctx, self._wall(event.timestamp_ns))
        if self.staged is not None:
            record = self.staged(record)
        self._store.add(record)
        self._on_record(record)
