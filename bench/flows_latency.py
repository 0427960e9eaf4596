"""Flows: how soon a new flow is visible to `enforcer flows --follow`, and what the flow store
holds at its memory cap.

    .venv/bin/python -m bench.flows_latency [--connections 200] [--store-mb 64]

Latency: a one-node lab (routed) with a client and a server pod and the real agent; a
`/flows?follow=1` stream (what `enforcer flows -f` reads) is open while the client opens
--connections new TCP connections, one at a time. Each one's latency is from just before its
connect() to the arrival of its flow record on the stream: the SYN's kernel event, the ring
buffer, attribution, the store and the HTTP stream. Reported: median, p99, max.

Store: a FlowStore with the agent's default cap is filled with distinct flows (each its own
aggregate) until it evicts; the process's resident memory before and after, the store's own
estimate and what it holds.
"""

from __future__ import annotations

import argparse
import resource
import secrets
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from enforcer.flows.record import FlowRecord
from enforcer.flows.store import FlowStore

PORT = 8080


def _pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": "bench", "name": name, "labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": PORT}]}]}}


def latency(connections: int) -> list[float]:
    from enforcer.lab import lab
    from enforcer.netnsutil import run_in_netns

    folder = Path(tempfile.mkdtemp(prefix="flows-latency-"))
    manifests = folder / "pods.yaml"
    manifests.write_text(yaml.safe_dump_all(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}},
         _pod("client"), _pod("server")]))
    name = f"fl{secrets.token_hex(3)}"
    state = lab.up([manifests], name, "routed", nodes=1)
    try:
        node = state.node_nets()[0]
        client = next(e for e in lab.probe_endpoints(state) if e.key == "bench/client")
        server = next(e for e in lab.probe_endpoints(state) if e.key == "bench/server")
        arrivals: list[tuple[float, dict[str, Any]]] = []
        seen = threading.Condition()
        path = "/flows?follow=1&limit=1&from=bench/client&direction=egress"

        def follow() -> None:
            for doc in lab.agent_endpoints(state)[node.name].stream(path):
                with seen:
                    arrivals.append((time.time(), doc))
                    seen.notify_all()

        threading.Thread(target=follow, daemon=True).start()
        time.sleep(1.0)
        with seen:
            arrivals.clear()
        out = []
        for _ in range(connections):
            with seen:
                count = len(arrivals)
            began = time.time()

            def connect() -> None:
                with socket.create_connection((str(server.ip), PORT), timeout=2):
                    pass

            run_in_netns(client.netns, connect)
            with seen:
                if not seen.wait_for(lambda c=count: len(arrivals) > c, timeout=5):
                    raise RuntimeError("a flow never reached the stream")
                out.append(arrivals[count][0] - began)
            time.sleep(0.02)
        return out
    finally:
        lab.down(name)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def store_at_cap(cap_mb: int) -> dict[str, float]:
    store = FlowStore(max_bytes=cap_mb * 2**20)
    before = _rss_mb()
    now = time.time()
    added = 0
    while store.stats().evicted_records == 0 or added % 100_000:
        store.add(FlowRecord(
            source=f"shop/web-{added % 977}", destination=f"10.{added // 65536 % 256}."
            f"{added // 256 % 256}.{added % 256}", port=1024 + added % 60000, protocol="TCP",
            direction="egress", verdict="allowed", policies=("shop/allow-out",),
            reason="forwarded", source_workload="shop/web", node="node1",
            first_seen=now, last_seen=now))
        added += 1
    stats = store.stats()
    return {"added": added, "held": stats.records, "estimate_mb": stats.bytes / 2**20,
            "rss_growth_mb": _rss_mb() - before, "evicted": stats.evicted_records}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=200)
    p.add_argument("--store-mb", type=int, default=64)
    args = p.parse_args(argv)
    times = sorted(latency(args.connections))
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"event to `enforcer flows -f`: median {statistics.median(times) * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms ({len(times)} connections)")
    s = store_at_cap(args.store_mb)
    print(f"flow store at its {args.store_mb} MB cap: {s['held']:.0f} aggregates held of "
          f"{s['added']:.0f} added ({s['evicted']:.0f} evicted), estimate "
          f"{s['estimate_mb']:.1f} MB, process RSS grew {s['rss_growth_mb']:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
