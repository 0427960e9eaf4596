"""Measure KubernetesSource: cold initial sync and watch latency against the fake API server.

    .venv/bin/python -m tests.sources.bench_initial_sync [--pods 10000] [--policies 2000]

The server runs in another process (so it does not share the GIL with the source) and serves
full-size pods (~4.7 kB of JSON each, managedFields, env, volumes...) as a real cluster would.
Prints the time from `run()` to the first SYNCED, the process's peak RSS, the size of what is
kept after stripping, and the latency from a pod write on the server to its event being emitted.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import resource
import threading
import time
from typing import Any

from enforcer import log
from enforcer.sources.base import EventType, SourceEvent
from enforcer.sources.kubernetes import KubernetesSource
from tests.sources.builders import namespace, node, pod, policy
from tests.sources.test_strip import full_pod


def serve(pods: int, policies: int, port_q: Any, cmd_q: Any) -> None:
    from tests.fakeapi import FakeKubeAPI

    api = FakeKubeAPI(history_limit=1000)
    for i in range(100):
        api.create(namespace(f"ns{i}", {"i": str(i)}))
    base = full_pod()
    del base["metadata"]["uid"]
    for i in range(pods):
        p = copy.deepcopy(base)
        p["metadata"] |= {"name": f"p{i}", "namespace": f"ns{i % 100}"}
        ip = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        p["status"] |= {"podIP": ip, "podIPs": [{"ip": ip}]}
        api.create(p)
    for i in range(policies):
        spec = {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"x": str(i)}}}]}],
        }
        api.create(policy(f"pol{i}", f"ns{i % 100}", spec))
    for i in range(50):
        api.create(node(f"n{i}", f"192.168.0.{i}"))
    api.start()
    port_q.put(api.port)
    while (name := cmd_q.get()) is not None:
        api.create(pod(name, "ns1", {"a": "b"}, "10.200.0.1"))
    api.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--policies", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    log.configure("json", "warning")
    port_q: Any = mp.Queue()
    cmd_q: Any = mp.Queue()
    proc = mp.Process(target=serve, args=(args.pods, args.policies, port_q, cmd_q), daemon=True)
    proc.start()
    port = port_q.get(timeout=600)

    events: list[SourceEvent] = []
    synced = threading.Event()
    arrived = threading.Event()

    def emit(e: SourceEvent) -> None:
        events.append(e)
        if e.type is EventType.SYNCED:
            synced.set()
        arrived.set()

    source = KubernetesSource.for_host(f"http://127.0.0.1:{port}")
    stop = threading.Event()
    began = time.monotonic()
    thread = threading.Thread(target=source.run, args=(emit, stop))
    thread.start()
    synced.wait(600)
    took = time.monotonic() - began
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kept = sum(len(json.dumps(e.obj)) for e in events if e.obj)
    print(
        f"initial sync: {len(events) - 1} objects ({args.pods} pods of "
        f"{len(json.dumps(full_pod()))} B JSON, {args.policies} policies) in {took:.2f} s; "
        f"peak RSS {rss:.0f} MB; kept after stripping {kept / 1e6:.1f} MB of JSON"
    )
    time.sleep(0.5)
    lat = []
    for i in range(args.samples):
        arrived.clear()
        n = len(events)
        t = time.monotonic()
        cmd_q.put(f"new{i}")
        while len(events) == n:
            arrived.wait(1)
            arrived.clear()
        lat.append(time.monotonic() - t)
    lat.sort()
    print(
        f"pod write -> event emitted (incl. IPC to the server): median "
        f"{lat[len(lat) // 2] * 1e3:.2f} ms, p99 {lat[int(len(lat) * 0.99) - 1] * 1e3:.2f} ms"
    )
    stop.set()
    thread.join()
    cmd_q.put(None)
    proc.join()


if __name__ == "__main__":
    main()
