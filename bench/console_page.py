"""The console page under load, in a real browser: first render and a filter change.

    .venv/bin/python -m bench.console_page [--flows 10000 --workloads 500 --runs 5]

A console HTTP server (enforcer.console.http, the real one, in a process of its own) over a
flow store loaded directly
with `--flows` distinct records between `--workloads` workloads in 25 namespaces (every verdict,
several ports, two nodes, the last 50 minutes); headless Chromium (Debian's, driven by
Playwright) opens the page. Timed inside the page (performance marks the page sets once the rows
are painted, see static/flows.js):

- first render: navigation start to the flow table's first rows painted (the page, its modules,
  the newest 1,000 matching flows fetched, the first screenful drawn); all rows: to the last of
  the 1,000 drawn (the page draws them in chunks after the first screenful);
- filter change: a namespace and a verdict typed in the filters to the narrowed table painted
  (the server's query over the whole store included);
- map: the workload map of one namespace, and of all namespaces, fetched, laid out by dagre and
  drawn.

Medians (min-max) of `--runs` fresh page loads. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import statistics
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from enforcer.console.cluster import ClusterView
from enforcer.console.collector import NodeHealth
from enforcer.console.http import ConsoleHTTPServer
from enforcer.flows.record import FlowRecord, RuleRef, StagedVerdict
from enforcer.flows.store import FlowStore

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]
NAMESPACES = 25
PORTS = ((80, "TCP"), (443, "TCP"), (5432, "TCP"), (53, "UDP"), (8080, "TCP"))


def make_records(flows: int, workloads: int, seed: int = 1) -> list[FlowRecord]:
    """`flows` records with distinct aggregation keys, between `workloads` workloads."""
    rng = random.Random(seed)
    names = [f"ns-{i % NAMESPACES:02d}/app-{i:03d}" for i in range(workloads)]
    now = time.time()
    out = []
    seen: set[tuple[str, str, int]] = set()
    while len(out) < flows:
        src, dst = rng.choice(names), rng.choice(names)
        port, proto = rng.choice(PORTS)
        if src == dst or (src, dst, port) in seen:
            continue
        seen.add((src, dst, port))
        roll = rng.random()
        dst_ns = dst.split("/")[0]
        policy = f"{dst_ns}/default-deny"
        if roll < 0.7:
            verdict, policies, reason = "allowed", (f"{dst_ns}/allow-{port}",), "forwarded"
        elif roll < 0.9:
            verdict, policies, reason = "denied", (policy,), "policy_denied"
        else:
            verdict, policies, reason = "audit", (policy,), "audit"
        staged = StagedVerdict("would-deny", (f"{dst_ns}/tighten",)) if roll < 0.05 else None
        last = now - rng.uniform(0, 3000)
        out.append(
            FlowRecord(
                source=f"{src}-{rng.randrange(3)}",
                destination=f"{dst}-{rng.randrange(3)}",
                port=port,
                protocol=proto,
                direction="ingress",
                verdict=verdict,
                policies=policies,
                rules=tuple(RuleRef(p, "ingress", 0) for p in policies if verdict == "allowed"),
                reason=reason,
                source_ip=f"10.{len(out) // 65536}.{len(out) // 256 % 256}.{len(out) % 256}",
                destination_ip="10.200.0.1",
                source_workload=src,
                destination_workload=dst,
                node=f"node{1 + len(out) % 2}",
                count=rng.randrange(1, 500),
                first_seen=last - rng.uniform(0, 600),
                last_seen=last,
                staged=staged,
            )
        )
    return out


def serve(records: list[FlowRecord]) -> ConsoleHTTPServer:
    store = FlowStore(max_bytes=512 * 2**20)
    for r in records:
        store.add(r)
    now = time.time()
    nodes = [
        NodeHealth("node1", True, None, now, {"ready": True, "endpoints": []}),
        NodeHealth("node2", True, None, now, {"ready": True, "endpoints": []}),
    ]
    server = ConsoleHTTPServer("127.0.0.1:0", store, lambda: nodes, ClusterView())
    server.start()
    return server


def _serve_forever(flows: int, workloads: int, conn: Connection) -> None:
    server = serve(make_records(flows, workloads))
    conn.send(server.port)
    threading.Event().wait()


def serve_in_a_process(flows: int, workloads: int) -> tuple[multiprocessing.Process, int]:
    """The server in a process of its own, as the real console is: in this one it would share
    the interpreter lock with Playwright's client, and be timed slower than it is."""
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_serve_forever, args=(flows, workloads, theirs), daemon=True)
    proc.start()
    return proc, int(ours.recv())


def mark(page: Any, name: str, timeout_ms: float = 60_000) -> float:
    page.wait_for_function(
        f"performance.getEntriesByName({json.dumps(name)}).length > 0", timeout=timeout_ms
    )
    return float(page.evaluate(f"performance.getEntriesByName({json.dumps(name)})[0].startTime"))


def one_run(browser: Any, url: str) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        page.goto(url + "#flows")
        first = mark(page, "flows-drawn-1")
        all_rows = mark(page, "flows-all-1")
        rows_all = page.locator("#flow-table tbody tr").count()
        t0 = page.evaluate(
            """() => {
                const f = document.getElementById('filters');
                f.elements.namespace.value = 'ns-03';
                f.elements.verdict.value = 'denied';
                const t = performance.now();
                f.dispatchEvent(new Event('change'));
                return t;
            }"""
        )
        changed = mark(page, "flows-drawn-2") - float(t0)
        mark(page, "flows-all-2")
        rows_filtered = page.locator("#flow-table tbody tr").count()
        page.goto(url + "#map")
        page.evaluate("() => document.getElementById('map-form').elements.namespace")
        t1 = float(page.evaluate("performance.now()"))
        map_all = mark(page, "map-drawn-1") - t1
        page.select_option("#map-form select[name=namespace]", "ns-03")
        t2 = float(page.evaluate("performance.now()"))
        map_one = mark(page, "map-drawn-2") - t2
        return {
            "first_render_ms": first,
            "all_rows_ms": all_rows,
            "filter_change_ms": changed,
            "map_all_ms": map_all,
            "map_one_namespace_ms": map_one,
            "rows_all": rows_all,
            "rows_filtered": rows_filtered,
        }
    finally:
        page.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=10_000)
    ap.add_argument("--workloads", type=int, default=500)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    proc, port = serve_in_a_process(args.flows, args.workloads)
    url = f"http://127.0.0.1:{port}/"
    runs = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                one_run(browser, url)  # warm-up: the server's and the browser's caches
                runs = [one_run(browser, url) for _ in range(args.runs)]
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.join()
    summary = {
        key: {
            "median": statistics.median(r[key] for r in runs),
            "min": min(r[key] for r in runs),
            "max": max(r[key] for r in runs),
        }
        for key in runs[0]
    }
    if args.json:
        print(json.dumps({"flows": args.flows, "workloads": args.workloads, **summary}, indent=2))
        return
    print(f"console page, {args.flows:,} flows in the store, {args.workloads} workloads, "
          f"{args.runs} runs (median, min-max):")
    for key, s in summary.items():
        unit = " ms" if key.endswith("_ms") else ""
        print(f"  {key:22} {s['median']:8.0f}{unit}   ({s['min']:.0f}-{s['max']:.0f})")


if __name__ == "__main__":
    main()
