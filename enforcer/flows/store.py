"""The node's flow aggregator: flows in, queries and streams out, memory capped.

Calico Goldmane's design: one owner of a ring of time buckets (15 s each, 240 of them: an
hour), each bucket a table of aggregates keyed by the two workloads, destination port,
protocol, direction, verdict, the deciding policies, the drop reason and the staged verdict.
An aggregate keeps the count, first and last seen, and the latest record (its pod names, IPs,
node and rules). A key seen in several buckets is merged when queried.

Memory is estimated per aggregate (a constant measured with tracemalloc, see
tests/flows/test_store.py, plus the lengths of its strings) and capped: the oldest buckets are
evicted whole; when the bucket being written alone reaches the cap, new keys are refused.
Everything dropped (evicted buckets, refused keys, records older than the ring, buckets that
aged out of it) is counted.

Thread-safe: the agent's event thread adds while HTTP threads query and stream. One lock guards
the ring and is held only for dictionary work: no I/O, no sorting, no merging under it.
Subscribers get every added record on their own bounded queue; a full queue loses the record
(counted), so a slow reader never holds up `add`.

Resuming a follower (Hubble's ring, for the console): every record added gets a sequence number,
and the newest `replay_records` of them are kept as added, within an eighth of the cap. A
follower that lost its connection names the store's epoch (random per store: a restarted
agent's store is another one) and the last number it merged; if the ring still holds
everything after it, it gets exactly those records, so an aggregate extended across the
disconnect is counted once (see `resume`).
"""

from __future__ import annotations

import bisect
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from enforcer.flows.filters import FlowFilter
from enforcer.flows.record import FlowRecord, StagedVerdict

# Bytes of one aggregate besides its strings' characters: the bucket's dict entry and key
# tuple, the (count, first, last, record) tuple and its floats, the FlowRecord and its tuples,
# the string objects' headers. Measured with tracemalloc on CPython 3.11 at about 1,120 bytes
# for a record with one policy and one rule (830 with neither), just after the bucket's dict
# doubled, its most wasteful point (tests/flows/test_store.py::
# test_the_estimate_is_not_below_measured_memory); rounded up.
AGGREGATE_BYTES = 1200
# Each further policy, rule or staged policy: a string header and a tuple slot, or a RuleRef
# (measured about 60 bytes for a policy name, 130 for a rule with its own name string).
ITEM_BYTES = 160
# One bucket: its dict, its entry in the ring and the sorted list of bucket numbers.
BUCKET_BYTES = 400
# Records kept as added for resuming followers: at the agent's default event budget (1,000
# a second) 8 s of a node's busiest traffic, minutes of a usual one. They take at most an
# eighth of the store's memory cap (the aggregates the rest).
REPLAY_RECORDS = 8192
REPLAY_SHARE = 8

Key = tuple[str, str, int, str, str, str, tuple[str, ...], str, StagedVerdict | None]
# count, first_seen, last_seen, latest record. A tuple, replaced on update: a query copies
# the references under the lock and reads them after it without racing with add().
Aggregate = tuple[int, float, float, FlowRecord]


def key_of(record: FlowRecord) -> Key:
    return (
        record.source_workload or record.source,
        record.destination_workload or record.destination,
        record.port,
        record.protocol,
        record.direction,
        record.verdict,
        record.policies,
        record.reason,
        record.staged,
    )


def estimated_bytes(record: FlowRecord) -> int:
    """What one aggregate holding `record` costs (an upper bound when strings are shared)."""
    strings = (
        len(record.source) + len(record.destination) + len(record.protocol)
        + len(record.direction) + len(record.verdict) + len(record.reason)
        + len(record.source_ip) + len(record.destination_ip) + len(record.source_workload)
        + len(record.destination_workload) + len(record.node)
        + sum(len(p) for p in record.policies) + sum(len(r.policy) for r in record.rules)
    )
    items = len(record.policies) + len(record.rules)
    if record.staged is not None:
        strings += len(record.staged.verdict) + sum(len(p) for p in record.staged.policies)
        items += 1 + len(record.staged.policies)
    return AGGREGATE_BYTES + ITEM_BYTES * max(items - 2, 0) + strings


@dataclass(frozen=True)
class StoreStats:
    records: int  # aggregates held (a key in several buckets counts once per bucket)
    bytes: int  # their estimated memory
    evicted_records: int  # aggregates and records dropped: evicted, refused or too old
    evicted_buckets: int  # whole buckets dropped, for the cap or aged out of the ring
    lost_to_subscribers: int  # records a full subscriber queue could not take


class FlowSubscription:
    """A bounded queue of records as they are added. Read it with `get`; a record that finds
    it full is lost and counted in `lost`."""

    def __init__(self, maxsize: int, flt: FlowFilter | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self.filter = flt
        self.lost = 0
        self.closed = False
        self._items: deque[tuple[int, FlowRecord]] = deque()
        self._ready = threading.Condition(threading.Lock())

    def offer(self, record: FlowRecord, seq: int = 0) -> bool:
        """Never blocks (beyond a reader's brief hold of the queue). `seq`: the record's
        number in its store."""
        if self.filter is not None and not self.filter.matches(record):
            return True
        with self._ready:
            if self.closed:
                return False
            if len(self._items) >= self.maxsize:
                self.lost += 1
                return False
            self._items.append((seq, record))
            self._ready.notify()
            return True

    def get(self, timeout: float | None = None) -> FlowRecord | None:
        """The next record; None after `timeout` seconds or once closed and drained."""
        entry = self.get_numbered(timeout)
        return entry[1] if entry is not None else None

    def get_numbered(self, timeout: float | None = None) -> tuple[int, FlowRecord] | None:
        """The next record with its sequence number in the store."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._items or self.closed, timeout):
                return None
            return self._items.popleft() if self._items else None

    def drain(self) -> list[FlowRecord]:
        """Every record waiting, without waiting."""
        with self._ready:
            items = [record for _, record in self._items]
            self._items.clear()
            return items

    def close(self) -> None:
        """Wakes a reader waiting in `get`; nothing more is queued."""
        with self._ready:
            self.closed = True
            self._ready.notify_all()


ResumeMode = Literal["replay", "snapshot", "since"]


@dataclass(frozen=True)
class Resumed:
    """What `FlowStore.resume` answers.

    mode "replay": `records` are exactly the records added after the follower's cursor, each
    with its number. "snapshot": the follower's cursor is from another store (or it had
    none): `records` are the store's merged aggregates, all new to it (number 0). "since": the
    cursor is older than the ring: the aggregates seen at or after `since` (the follower
    skips those it merged; an aggregate extended meanwhile comes back whole). Then
    `subscription` carries what is added next; `cursor` is the number the answer is complete
    up to."""

    mode: ResumeMode
    epoch: str
    cursor: int
    records: list[tuple[int, FlowRecord]]
    subscription: FlowSubscription


class _Bucket:
    __slots__ = ("aggregates", "bytes")

    def __init__(self) -> None:
        self.aggregates: dict[Key, Aggregate] = {}
        self.bytes = BUCKET_BYTES


class FlowStore:
    def __init__(
        self,
        max_bytes: int = 64 * 2**20,
        bucket_seconds: float = 15.0,
        buckets: int = 240,
        clock: Callable[[], float] = time.time,
        replay_records: int = REPLAY_RECORDS,
        replay_bytes: int | None = None,
    ) -> None:
        """replay_bytes: the replay ring's part of `max_bytes` (None: an eighth; 0: no ring,
        so a follower resumes by time)."""
        if replay_bytes is None:
            replay_bytes = max_bytes // REPLAY_SHARE
        if max_bytes < 1 or bucket_seconds <= 0 or buckets < 1 or replay_records < 0:
            raise ValueError("max_bytes, bucket_seconds and buckets must be positive")
        if not 0 <= replay_bytes < max_bytes:
            raise ValueError(f"replay_bytes must be 0 to max_bytes-1, got {replay_bytes}")
        self.max_bytes = max_bytes
        self.bucket_seconds = bucket_seconds
        self.buckets = buckets
        self._clock = clock
        self._lock = threading.Lock()
        self._ring: dict[int, _Bucket] = {}
        self._order: list[int] = []  # bucket numbers in the ring, oldest first
        self._bytes = 0
        self._records = 0
        self._evicted_records = 0
        self._evicted_buckets = 0
        # Replaced, never mutated: add() reads it without the lock.
        self._subscribers: tuple[FlowSubscription, ...] = ()
        self._lost_by_gone = 0  # losses of subscriptions already unsubscribed
        self.epoch = secrets.token_hex(8)
        self._seq = 0  # the number of the newest record added
        self._replay: deque[tuple[int, FlowRecord, int]] = deque()  # number, record, bytes
        self._replay_max = replay_records
        self._replay_budget = replay_bytes
        self._replay_bytes = 0
        self._aggregates_max = max_bytes - self._replay_budget

    def _number(self, ts: float) -> int:
        return math.floor(ts / self.bucket_seconds)

    def add(self, record: FlowRecord) -> None:
        now = self._number(self._clock())
        # A clock ahead of ours lands in the current bucket, not in one the ring keeps for
        # an hour from now.
        number = min(self._number(record.last_seen), now)
        key = key_of(record)
        cost = estimated_bytes(record)  # once per record: the aggregate's and the ring's
        with self._lock:
            self._expire(now)
            if number <= now - self.buckets:
                self._evicted_records += 1
            else:
                self._put(number, key, record, cost)
            seq = self._remember(record, cost)
            # Read with the insert: a query_and_subscribe sees this record in its snapshot or
            # on its queue, never both, never neither.
            subscribers = self._subscribers
        for sub in subscribers:
            sub.offer(record, seq)

    def _remember(self, record: FlowRecord, cost: int) -> int:
        """Numbers `record` and keeps it in the replay ring (under the lock)."""
        self._seq += 1
        self._replay.append((self._seq, record, cost))
        self._replay_bytes += cost
        while self._replay and (len(self._replay) > self._replay_max
                                or self._replay_bytes > self._replay_budget):
            self._replay_bytes -= self._replay.popleft()[2]
        return self._seq

    def _put(self, number: int, key: Key, record: FlowRecord, cost: int) -> None:
        bucket = self._ring.get(number)
        old = bucket.aggregates.get(key) if bucket is not None else None
        if old is None:
            grow = cost + (BUCKET_BYTES if bucket is None else 0)
            if not self._make_room(number, grow):
                self._evicted_records += 1
                return
            if bucket is None:
                bucket = self._ring[number] = _Bucket()
                bisect.insort(self._order, number)
                self._bytes += BUCKET_BYTES
            bucket.aggregates[key] = (record.count, record.first_seen, record.last_seen, record)
            bucket.bytes += cost
            self._bytes += cost
            self._records += 1
            return
        assert bucket is not None
        count, first, last, latest = old
        grow = cost - estimated_bytes(latest)
        if record.last_seen >= last and self._make_room(number, grow):
            latest = record
            bucket.bytes += grow
            self._bytes += grow
        # else: an older record, or longer names than the cap leaves room for: the counts
        # and times still move, the latest names stay.
        bucket.aggregates[key] = (
            count + record.count, min(first, record.first_seen), max(last, record.last_seen),
            latest,
        )

    def _make_room(self, number: int, grow: int) -> bool:
        """Evicts buckets older than `number`, oldest first, until `grow` more bytes fit."""
        while (self._bytes + grow > self._aggregates_max and self._order
               and self._order[0] < number):
            self._drop_oldest()
        return self._bytes + grow <= self._aggregates_max

    def _expire(self, now: int) -> None:
        while self._order and self._order[0] <= now - self.buckets:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        bucket = self._ring.pop(self._order.pop(0))
        self._bytes -= bucket.bytes
        self._records -= len(bucket.aggregates)
        self._evicted_records += len(bucket.aggregates)
        self._evicted_buckets += 1

    def query(
        self,
        flt: FlowFilter | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[FlowRecord]:
        """Aggregates merged across buckets, sorted by last_seen, the newest `limit` kept.

        `since`/`until` keep the buckets' aggregates seen in that window (an aggregate seen
        partly inside counts whole: the time resolution is a bucket). The filter applies to
        merged records, so pod names are the latest ones."""
        with self._lock:
            snapshot = self._snapshot()
        return self._merged(snapshot, flt, since, until, limit)

    def query_and_subscribe(
        self,
        flt: FlowFilter | None = None,
        since: float | None = None,
        limit: int | None = None,
        maxsize: int = 10000,
    ) -> tuple[list[FlowRecord], FlowSubscription]:
        """A query's answer and a subscription to what is added after it, taken at one
        instant: each record added is in the answer or on the queue, exactly once (what a
        follower that adds up counts, the console, needs)."""
        sub = FlowSubscription(maxsize, flt)
        with self._lock:
            snapshot = self._snapshot()
            self._subscribers = (*self._subscribers, sub)
        return self._merged(snapshot, flt, since, None, limit), sub

    def resume(
        self,
        flt: FlowFilter | None = None,
        epoch: str | None = None,
        after: int = 0,
        since: float | None = None,
        maxsize: int = 10000,
    ) -> Resumed:
        """A follower's answer and subscription at one instant, from its cursor (`epoch`,
        `after`: the last number it merged) if the ring still reaches back to it."""
        sub = FlowSubscription(maxsize, flt)
        with self._lock:
            oldest = self._replay[0][0] if self._replay else self._seq + 1
            if epoch == self.epoch and oldest - 1 <= after <= self._seq:
                mode: ResumeMode = "replay"
                numbered = [(n, r) for n, r, _ in self._replay if n > after]
            else:
                mode = "since" if epoch == self.epoch else "snapshot"
                snapshot = self._snapshot()
            cursor = self._seq
            self._subscribers = (*self._subscribers, sub)
        if mode == "replay":
            if flt is not None:
                numbered = [(n, r) for n, r in numbered if flt.matches(r)]
        else:
            merged = self._merged(snapshot, flt, since if mode == "since" else None, None, None)
            numbered = [(0, r) for r in merged]
        return Resumed(mode, self.epoch, cursor, numbered, sub)

    def _snapshot(self) -> list[list[tuple[Key, Aggregate]]]:
        """The buckets' aggregates (call under the lock; merged outside it)."""
        self._expire(self._number(self._clock()))
        return [list(self._ring[n].aggregates.items()) for n in self._order]

    def _merged(
        self,
        snapshot: list[list[tuple[Key, Aggregate]]],
        flt: FlowFilter | None,
        since: float | None,
        until: float | None,
        limit: int | None,
    ) -> list[FlowRecord]:
        merged: dict[Key, Aggregate] = {}
        for items in snapshot:
            for key, (count, first, last, latest) in items:
                if (since is not None and last < since) or (until is not None and first > until):
                    continue
                seen = merged.get(key)
                if seen is not None:
                    if seen[2] > last:
                        latest = seen[3]
                    count, first, last = count + seen[0], min(first, seen[1]), max(last, seen[2])
                merged[key] = (count, first, last, latest)
        records = [
            replace(latest, count=count, first_seen=first, last_seen=last)
            for count, first, last, latest in merged.values()
        ]
        if flt is not None:
            records = [r for r in records if flt.matches(r)]
        records.sort(key=lambda r: r.last_seen)
        if limit is not None:
            records = records[-limit:] if limit > 0 else []
        return records

    def subscribe(self, maxsize: int = 10000, flt: FlowFilter | None = None) -> FlowSubscription:
        """A queue of the records added from now on (those `flt` matches, if given)."""
        sub = FlowSubscription(maxsize, flt)
        with self._lock:
            self._subscribers = (*self._subscribers, sub)
        return sub

    def unsubscribe(self, sub: FlowSubscription) -> None:
        """Closes `sub`; its losses stay counted in the store's stats."""
        sub.close()
        with self._lock:
            if sub in self._subscribers:
                self._subscribers = tuple(s for s in self._subscribers if s is not sub)
                self._lost_by_gone += sub.lost

    def stats(self) -> StoreStats:
        with self._lock:
            lost = self._lost_by_gone + sum(s.lost for s in self._subscribers)
            return StoreStats(
                records=self._records,
                bytes=self._bytes + self._replay_bytes,
                evicted_records=self._evicted_records,
                evicted_buckets=self._evicted_buckets,
                lost_to_subscribers=lost,
            )
