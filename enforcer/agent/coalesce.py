"""A watch storm coalesced: the object events the loop finds queued together are compiled as
one step (Compiler.on_changes) and written as one pass, not one compile and write per event.

10,000 pod updates in a second then cost a few write passes: the loop drains whatever is
queued while it writes, so the busier the source, the bigger each batch. Within a run of
events:

- a version superseded by a later event of the same object is dropped unparsed (it would
  never be written: the maps go from the state before the run to the state after it; if
  the latest version is invalid, the version before the run is the last valid one);
- an object deleted and then created again (a pod re-created under its name, with a new
  UID and usually a new interface) ends the run: its removal is written first, as one event
  at a time would, so its old interface's table is removed before the new pod gets one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from enforcer.agent.intake import obj_key
from enforcer.sources.base import EventType, SourceEvent

OBJECT_EVENTS = (EventType.ADDED, EventType.MODIFIED, EventType.DELETED)
Queued = tuple[float, Any]  # (monotonic time received, SourceEvent or LinkEvent)


def is_object_event(item: Any) -> bool:
    return isinstance(item, SourceEvent) and item.type in OBJECT_EVENTS


def runs(batch: Iterable[Queued]) -> Iterator[list[Queued]]:
    """The batch split in order into runs: a run of object events compiled together, or one
    other item (a link event, RESET, SYNCED) alone."""
    run: list[Queued] = []
    deleted: set[Any] = set()
    for queued in batch:
        item = queued[1]
        if not is_object_event(item):
            if run:
                yield run
                run, deleted = [], set()
            yield [queued]
            continue
        key = _key(item)
        if key in deleted and item.type is not EventType.DELETED:
            yield run
            run, deleted = [], set()
        run.append(queued)
        if item.type is EventType.DELETED:
            deleted.add(key)
    if run:
        yield run


def latest(run: list[Queued]) -> list[Queued]:
    """The run without versions a later event of the same object supersedes (in order)."""
    seen: set[Any] = set()
    kept = []
    for queued in reversed(run):
        key = _key(queued[1])
        if key not in seen:
            seen.add(key)
            kept.append(queued)
    kept.reverse()
    return kept


def _key(event: SourceEvent) -> Any:
    return obj_key(event.kind or "", event.obj or {})
