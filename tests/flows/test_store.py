"""The flow store: aggregation by key across time buckets, a measured memory cap, eviction
counted, subscribers that never hold up `add`, and exact totals under concurrent use."""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
from dataclasses import replace

import pytest

from enforcer.flows.filters import FlowFilter
from enforcer.flows.record import FlowRecord, RuleRef, StagedVerdict
from enforcer.flows.store import BUCKET_BYTES, FlowStore, estimated_bytes, key_of

T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def flow(at: float, **changes: object) -> FlowRecord:
    base = FlowRecord(
        source="frontend/web-7d4b9-aaaaa", destination="backend/api-0", port=8080,
        protocol="TCP", direction="ingress", verdict="allowed",
        policies=("backend/allow-web",), rules=(RuleRef("backend/allow-web", "ingress", 0),),
        reason="forwarded", source_ip="10.0.0.1", destination_ip="10.0.1.2",
        source_workload="frontend/web", destination_workload="backend/api", node="node1",
        first_seen=at, last_seen=at,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def realistic(i: int, policies: int = 1, rules: int = 1, staged: bool = False,
              at: float = T0) -> FlowRecord:
    """A record whose every string is its own object, as the agent builds them per event."""
    ns = f"team-{i % 97:03d}"
    names = tuple(f"{ns}/allow-from-frontend-{i}-{k}" for k in range(policies))
    return FlowRecord(
        source=f"frontend/web-7d4b9c8f6-{i:06d}", destination=f"{ns}/api-{i}-5f9c7b-abcde",
        port=1024 + i % 60000, protocol="TCP", direction="ingress", verdict="allowed",
        policies=names,
        rules=tuple(RuleRef(f"{ns}/allow-from-frontend-{i}-{k}", "ingress", k)
                    for k in range(rules)),
        reason="forwarded", source_ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
        destination_ip=f"10.128.{i >> 8 & 255}.{i & 255}", source_workload=f"frontend/web-{i}",
        destination_workload=f"{ns}/api-{i}", node=f"node-{i % 50}.cluster.local",
        first_seen=at, last_seen=at,
        staged=StagedVerdict("would-deny", (f"{ns}/lockdown-{i}",)) if staged else None,
    )


def one_bucket_store(**kwargs: object) -> FlowStore:
    return FlowStore(bucket_seconds=1e6, clock=Clock(T0 + 10), **kwargs)  # type: ignore[arg-type]


# Aggregation


def test_records_of_one_key_aggregate_with_count_and_first_and_last_seen() -> None:
    store = FlowStore(clock=Clock(T0 + 100))
    store.add(flow(T0 + 3))
    store.add(flow(T0 + 1))
    store.add(flow(T0 + 2, count=5, first_seen=T0 + 0.5))
    [record] = store.query()
    assert (record.count, record.first_seen, record.last_seen) == (7, T0 + 0.5, T0 + 3)


def test_the_key_is_workloads_port_protocol_direction_verdict_policies_reason_staged() -> None:
    store = FlowStore(clock=Clock(T0 + 100))
    store.add(flow(T0))
    store.add(flow(T0, source="frontend/web-7d4b9-bbbbb", source_ip="10.0.0.9"))  # same key
    variants = [
        {"source_workload": "frontend/other"}, {"destination_workload": "backend/db"},
        {"port": 9090}, {"protocol": "UDP"}, {"direction": "egress"}, {"verdict": "denied"},
        {"policies": ("backend/allow-all",)}, {"reason": "policy_denied"},
        {"staged": StagedVerdict("would-deny", ("backend/lockdown",))},
    ]
    for change in variants:
        store.add(flow(T0, **change))
    records = store.query()
    assert len(records) == 1 + len(variants)
    assert sum(r.count for r in records) == 2 + len(variants)


def test_without_a_workload_the_endpoint_itself_is_the_key() -> None:
    outside = flow(T0, source="203.0.113.9", source_workload="", source_ip="203.0.113.9")
    assert key_of(outside)[0] == "203.0.113.9"
    store = FlowStore(clock=Clock(T0 + 100))
    store.add(outside)
    store.add(replace(outside, source="203.0.113.10", source_ip="203.0.113.10"))
    assert len(store.query()) == 2


def test_a_key_in_several_buckets_is_merged_and_keeps_the_latest_pod_names() -> None:
    clock = Clock(T0 + 1000)
    store = FlowStore(bucket_seconds=15, clock=clock)
    store.add(flow(T0 + 1, source="frontend/web-7d4b9-first", source_ip="10.0.0.1"))
    store.add(flow(T0 + 100, source="frontend/web-7d4b9-last", source_ip="10.0.0.7",
                   node="node2", rules=(RuleRef("backend/allow-web", "ingress", 3),)))
    store.add(flow(T0 + 50, source="frontend/web-7d4b9-middle", source_ip="10.0.0.5"))
    assert store.stats().records == 3  # three buckets
    [record] = store.query()
    assert (record.count, record.first_seen, record.last_seen) == (3, T0 + 1, T0 + 100)
    assert (record.source, record.source_ip, record.node) == (
        "frontend/web-7d4b9-last", "10.0.0.7", "node2")
    assert record.rules == (RuleRef("backend/allow-web", "ingress", 3),)


def test_a_late_record_counts_but_does_not_replace_the_latest_names() -> None:
    store = FlowStore(clock=Clock(T0 + 100))
    store.add(flow(T0 + 2, source="frontend/web-7d4b9-new"))
    store.add(flow(T0 + 1, source="frontend/web-7d4b9-old"))
    [record] = store.query()
    assert (record.source, record.count) == ("frontend/web-7d4b9-new", 2)


def test_query_sorts_by_last_seen_filters_windows_and_keeps_the_newest_limit() -> None:
    store = FlowStore(bucket_seconds=10, clock=Clock(T0 + 1000))
    for i in (5, 1, 4, 2, 3):
        store.add(flow(T0 + 100 * i, port=i))
    assert [r.port for r in store.query()] == [1, 2, 3, 4, 5]
    assert [r.port for r in store.query(limit=2)] == [4, 5]
    assert store.query(limit=0) == []
    assert [r.port for r in store.query(since=T0 + 200, until=T0 + 400)] == [2, 3, 4]
    assert [r.port for r in store.query(FlowFilter(ports=(1, 5)))] == [1, 5]


def test_the_filter_sees_the_merged_record() -> None:
    store = FlowStore(bucket_seconds=10, clock=Clock(T0 + 1000))
    store.add(flow(T0, source="frontend/web-7d4b9-old"))
    store.add(flow(T0 + 100, source="frontend/web-7d4b9-new"))
    [record] = store.query(FlowFilter(from_pods=("frontend/web",)))
    assert record.count == 2
    assert store.query(FlowFilter(from_pods=("frontend/web-7d4b9-old",))) == []


# The ring: age and memory


def test_records_older_than_the_ring_are_dropped_and_counted() -> None:
    store = FlowStore(bucket_seconds=15, buckets=4, clock=Clock(T0 + 600))
    store.add(flow(T0))
    store.add(flow(T0 + 600 - 59, port=1))  # four buckets back: out of the ring
    store.add(flow(T0 + 600 - 44, port=2))  # three back: in
    assert [r.port for r in store.query()] == [2]
    assert store.stats().evicted_records == 2


def test_a_clock_ahead_of_ours_lands_in_the_current_bucket() -> None:
    clock = Clock(T0)
    store = FlowStore(bucket_seconds=15, buckets=4, clock=clock)
    store.add(flow(T0 + 3600))
    clock.now = T0 + 60  # the current bucket leaves the ring; the record with it
    assert store.query() == []
    assert store.stats().evicted_buckets == 1


def test_buckets_that_age_out_of_the_ring_are_dropped_and_counted() -> None:
    clock = Clock(T0)
    store = FlowStore(bucket_seconds=15, buckets=4, clock=clock)
    store.add(flow(T0, port=1))
    store.add(flow(T0, port=2))
    clock.now = T0 + 45
    store.add(flow(T0 + 45, port=3))
    assert len(store.query()) == 3
    clock.now = T0 + 60  # the first bucket is now older than four buckets
    assert [r.port for r in store.query()] == [3]
    stats = store.stats()
    assert (stats.records, stats.evicted_records, stats.evicted_buckets) == (1, 2, 1)


def test_over_the_cap_the_oldest_bucket_goes_whole_and_is_counted() -> None:
    cost = estimated_bytes(flow(T0))
    # Room for the buckets' own bytes and five aggregates, not six.
    store = FlowStore(max_bytes=5 * cost + 3 * BUCKET_BYTES + 10, bucket_seconds=10,
                      clock=Clock(T0 + 100), replay_bytes=0)  # the cap all the aggregates'

    for port in (1, 2):
        store.add(flow(T0, port=port))
    for port in (3, 4):
        store.add(flow(T0 + 10, port=port))
    store.add(flow(T0 + 20, port=5))
    assert store.stats().evicted_records == 0
    store.add(flow(T0 + 20, port=6))  # evicts the oldest bucket (ports 1 and 2)
    assert sorted(r.port for r in store.query()) == [3, 4, 5, 6]
    stats = store.stats()
    assert (stats.records, stats.evicted_records, stats.evicted_buckets) == (4, 2, 1)
    assert stats.bytes <= store.max_bytes


def test_a_full_current_bucket_refuses_new_keys_but_still_counts_known_ones() -> None:
    cost = estimated_bytes(flow(T0))
    store = FlowStore(max_bytes=2 * cost + BUCKET_BYTES + 10, clock=Clock(T0 + 1),
                      replay_bytes=0)
    for port in (1, 2, 3, 4):
        store.add(flow(T0, port=port))
    store.add(flow(T0 + 0.5, port=1))
    assert {r.port: r.count for r in store.query()} == {1: 2, 2: 1}
    stats = store.stats()
    assert (stats.records, stats.evicted_records, stats.evicted_buckets) == (2, 2, 0)


def test_a_late_record_never_evicts_newer_buckets() -> None:
    cost = estimated_bytes(flow(T0))
    store = FlowStore(max_bytes=2 * cost + 2 * BUCKET_BYTES + 10, bucket_seconds=10,
                      clock=Clock(T0 + 100), replay_bytes=0)
    store.add(flow(T0 + 50, port=1))
    store.add(flow(T0 + 60, port=2))
    store.add(flow(T0 + 10, port=3))  # older than everything held: refused
    assert sorted(r.port for r in store.query()) == [1, 2]
    assert store.stats().evicted_records == 1


def _traced(build: object) -> int:
    """Bytes still allocated after calling `build` (what it keeps)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        build()  # type: ignore[operator]
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "shape",
    [
        {"policies": 1, "rules": 1},
        {"policies": 0, "rules": 0},
        {"policies": 3, "rules": 3, "staged": True},
        {"policies": 2, "rules": 6, "staged": True},
    ],
)
def test_the_estimate_is_not_below_measured_memory(shape: dict[str, object]) -> None:
    # 11,000 aggregates: just after the bucket's dict doubled (at 2**14 * 2/3), its most
    # wasteful point, so the measured bytes per aggregate are near their largest.
    n = 11_000
    store = one_bucket_store(max_bytes=2**40)

    def build() -> None:
        for i in range(n):
            store.add(realistic(i, **shape))  # type: ignore[arg-type]

    measured = _traced(build)
    stats = store.stats()
    assert stats.records == n
    print(f"{shape}: per aggregate {measured // n} B measured, {stats.bytes // n} B estimated")
    assert stats.bytes >= measured


# Tracing makes each record cost about 150 us to build and add: the floods are kept short,
# still many times what the cap holds.
@pytest.mark.parametrize(
    ("spread", "n"), [("over many buckets", 50_000), ("in one bucket", 15_000)])
def test_a_flood_of_distinct_keys_stays_under_the_cap(spread: str, n: int) -> None:
    cap = 2**20  # about 700 aggregates: the flood is seventy times that
    clock = Clock(T0)
    store = FlowStore(max_bytes=cap, bucket_seconds=1, buckets=240, clock=clock)

    def flood() -> None:
        for i in range(n):
            at = T0 + i / 250 if spread == "over many buckets" else T0  # 200 buckets
            clock.now = at
            store.add(realistic(i, at=at))

    measured = _traced(flood)
    stats = store.stats()
    assert measured < cap
    assert stats.bytes <= cap
    assert stats.records + stats.evicted_records == n
    assert stats.evicted_records > n * 0.9
    if spread == "over many buckets":
        assert stats.evicted_buckets > 100
        # What is kept is the newest.
        assert min(r.last_seen for r in store.query()) > T0 + 190
    else:
        assert stats.evicted_buckets == 0
    assert sum(r.count for r in store.query()) == stats.records


# Subscribers


def test_subscribers_get_each_record_as_added() -> None:
    store = FlowStore(clock=Clock(T0 + 100))
    sub = store.subscribe()
    records = [flow(T0 + i, port=i) for i in range(3)]
    for r in records:
        store.add(r)
    assert [sub.get(timeout=1) for _ in range(3)] == records
    assert sub.get(timeout=0.01) is None


def test_a_filtered_subscription_gets_only_what_matches() -> None:
    store = FlowStore(clock=Clock(T0 + 100))
    sub = store.subscribe(maxsize=1, flt=FlowFilter(verdicts=("denied",)))
    store.add(flow(T0))
    store.add(flow(T0, verdict="denied"))
    assert [r.verdict for r in sub.drain()] == ["denied"]
    assert sub.lost == 0


def test_a_subscriber_that_never_reads_loses_records_counted_and_never_blocks_add() -> None:
    store = FlowStore(clock=Clock(T0 + 100))
    stuck = store.subscribe(maxsize=10)
    reader = store.subscribe(maxsize=1000)
    done = threading.Event()

    def adder() -> None:
        for i in range(500):
            store.add(flow(T0, port=i))
        done.set()

    threading.Thread(target=adder, daemon=True).start()
    assert done.wait(10), "add blocked on a full subscriber"
    assert stuck.lost == 490
    assert len(stuck.drain()) == 10
    assert len(reader.drain()) == 500 and reader.lost == 0
    assert store.stats().lost_to_subscribers == 490
    store.unsubscribe(stuck)
    store.add(flow(T0))
    assert stuck.drain() == []
    assert store.stats().lost_to_subscribers == 490  # losses stay counted after unsubscribe


def test_unsubscribe_wakes_a_waiting_reader() -> None:
    store = FlowStore()
    sub = store.subscribe()
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(sub.get(timeout=10)))
    reader.start()
    store.unsubscribe(sub)
    reader.join(5)
    assert not reader.is_alive() and got == [None]


# Threads


def test_several_threads_adding_while_one_queries_keep_exact_totals() -> None:
    store = FlowStore(bucket_seconds=1, clock=Clock(T0 + 100))
    sub = store.subscribe(maxsize=1_000_000)
    threads, per_thread, keys = 4, 5000, 50
    start = threading.Barrier(threads + 1)
    adding = threading.Event()
    adding.set()
    errors: list[str] = []

    def add(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            store.add(flow(T0 + (i % 20), port=i % keys, source=f"frontend/web-{t}-{i}"))

    def query() -> None:
        start.wait()
        while adding.is_set():
            total = sum(r.count for r in store.query())
            if total > threads * per_thread:
                errors.append(f"a query saw {total} flows")

    workers = [threading.Thread(target=add, args=(t,)) for t in range(threads)]
    querier = threading.Thread(target=query)
    for w in [*workers, querier]:
        w.start()
    for w in workers:
        w.join()
    adding.clear()
    querier.join()
    assert errors == []
    records = store.query()
    assert len(records) == keys
    assert sum(r.count for r in records) == threads * per_thread
    assert all(r.count == threads * per_thread // keys for r in records)
    assert len(sub.drain()) == threads * per_thread
    stats = store.stats()
    assert stats.evicted_records == 0 and stats.lost_to_subscribers == 0
    # Each key in each one-second bucket it was seen in.
    assert stats.records == len({(i % 20, i % keys) for i in range(per_thread)})


def test_a_follower_sees_every_record_exactly_once_across_its_query_and_its_queue() -> None:
    """Followers connecting while others add (the console, adding up counts): the answer and
    the subscription are taken at one instant."""
    store = FlowStore(bucket_seconds=1, clock=Clock(T0 + 100))
    threads, per_thread = 3, 4000
    start = threading.Barrier(threads + 1)
    followers: list[tuple[int, object]] = []

    def add(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            store.add(flow(T0 + (i % 20), port=i % 30, source=f"frontend/web-{t}"))

    workers = [threading.Thread(target=add, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    while any(w.is_alive() for w in workers) and len(followers) < 20:  # while they add
        records, sub = store.query_and_subscribe(maxsize=1_000_000)
        followers.append((sum(r.count for r in records), sub))
        time.sleep(0.005)
    for w in workers:
        w.join()
    assert len(followers) > 3
    for counted, sub in followers:
        queued = sub.drain()  # type: ignore[attr-defined]
        assert counted + len(queued) == threads * per_thread
        store.unsubscribe(sub)  # type: ignore[arg-type]


# Resuming a follower


def test_a_follower_resumes_with_exactly_the_records_after_its_cursor() -> None:
    store = FlowStore(clock=Clock(T0 + 100), replay_records=5)
    first = store.resume()
    assert (first.mode, first.cursor, first.records) == ("snapshot", 0, [])
    for port in (1, 1, 2):
        store.add(flow(T0, port=port))
    seen = [first.subscription.get_numbered(0) for _ in range(3)]
    assert [n for n, _ in seen] == [1, 2, 3]  # type: ignore[misc]
    store.add(flow(T0 + 1, port=1))  # the aggregate extended while the follower was away
    store.add(flow(T0 + 1, port=3))
    again = store.resume(epoch=store.epoch, after=3)
    assert again.mode == "replay" and again.cursor == 5
    assert [(n, r.port, r.count) for n, r in again.records] == [(4, 1, 1), (5, 3, 1)]
    # What comes next is on the new subscription, numbered on.
    store.add(flow(T0 + 2, port=4))
    assert again.subscription.get_numbered(0) == (6, flow(T0 + 2, port=4))


def test_a_cursor_of_another_store_gets_the_whole_store_and_one_past_the_ring_gets_since() -> (
    None
):
    store = FlowStore(clock=Clock(T0 + 100), replay_records=2)
    for port in (1, 2, 3):
        store.add(flow(T0 + port, port=port))
    other = store.resume(epoch="another-agent", after=3)
    assert other.mode == "snapshot" and other.cursor == 3
    assert sorted(r.port for _, r in other.records) == [1, 2, 3]
    old = store.resume(epoch=store.epoch, after=0, since=T0 + 2)  # the ring holds 2 and 3
    assert old.mode == "since"
    assert sorted(r.port for _, r in old.records) == [2, 3]
    assert store.resume(epoch=store.epoch, after=1).mode == "replay"
    assert store.resume(epoch=store.epoch, after=9).mode == "since"  # not a cursor of ours


def test_the_replay_ring_stays_within_its_share_of_the_cap() -> None:
    cost = estimated_bytes(flow(T0))
    store = FlowStore(max_bytes=80 * cost, clock=Clock(T0 + 1), replay_bytes=10 * cost)
    for _ in range(50):
        store.add(flow(T0, port=1))  # one aggregate, 50 records
    assert store.stats().bytes <= cost + BUCKET_BYTES + 10 * cost
    assert store.resume(epoch=store.epoch, after=40).mode == "replay"
    assert store.resume(epoch=store.epoch, after=39).mode == "since"
