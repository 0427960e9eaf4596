"""`make bench` / `make bench-quick`: run every benchmark in one go, write the results and plots.

    .venv/bin/python -m bench.run [--quick | --profile full|quick|smoke] [--only NAME ...]
                                  [--out DIR] [--no-plots] [--list]

Benchmarks run one after the other (never at the same time: they would measure each other),
each in a fresh child process: a broken or crashing benchmark is reported and the others still
run, and none inherits another's memory (a child's ru_maxrss starts at its parent's RSS, so
this parent stays small and imports matplotlib only to plot).
Writes DIR/latest.json (schema: bench/README.md), DIR/*.png and DIR/latest.md (the README's
performance section for these results). Exit status 1 when any
benchmark failed or did not yield every figure it promises.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import entries, markdown, report
from bench.progress import Progress

RESULTS = report.REPO_ROOT / "bench" / "results"


NOTE = "@@note "  # a child's stderr line carrying a progress note


def run_one(
    bench: entries.Benchmark, profile: str, note: entries.Note
) -> tuple[report.BenchmarkRecord, list[report.Figure]]:
    """Run one benchmark in this process (the child's side)."""
    cfg = bench.config(profile)
    command = bench.command(profile)
    start = time.monotonic()
    record = report.BenchmarkRecord(bench.name, bench.module, "ok", 0.0, cfg, command)
    figures: list[report.Figure] = []
    try:
        module = bench.load()
    except ImportError as exc:
        record.status, record.error = "missing", f"cannot import {bench.module}: {exc}"
    else:
        try:
            figures = bench.collect(module, cfg, note)
        except Exception as exc:  # one broken benchmark must not stop the others
            record.status = "failed"
            record.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
    for fig in figures:
        fig.benchmark = bench.name
        fig.command = command
    empty = [f.key for f in figures if not f.values]
    figures = [f for f in figures if f.values]
    if record.status == "ok" and empty:
        record.status, record.error = "failed", "figures without values: " + ", ".join(empty)
    if record.status == "ok":
        have = {f.key for f in figures}
        missing = [k for k in bench.promises(cfg) if k not in have]
        if missing:
            record.status = "failed"
            record.error = "promised figures missing: " + ", ".join(missing)
    record.duration_s = time.monotonic() - start
    record.figures = len(figures)
    return record, figures


def _child_main(name: str, profile: str, out: Path) -> int:
    def note(text: str) -> None:
        print(NOTE + text.replace("\n", " "), file=sys.stderr, flush=True)

    record, figures = run_one(entries.by_name(name), profile, note)
    out.write_text(json.dumps({"record": asdict(record), "figures": [asdict(f) for f in figures]}))
    return 0


def _figure(data: dict[str, Any]) -> report.Figure:
    target = data.pop("target")
    return report.Figure(**data, target=report.Target(**target) if target else None)


def spawn_one(
    bench: entries.Benchmark, profile: str, progress: Progress
) -> tuple[report.BenchmarkRecord, list[report.Figure]]:
    """Run one benchmark in a child process, relaying its progress notes."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="enf-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [
            sys.executable,
            "-m",
            "bench.run",
            "--child",
            bench.name,
            "--profile",
            profile,
            "--child-out",
            str(out),
        ]
        proc = subprocess.Popen(
            cmd,
            cwd=report.REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stderr is not None
        tail: list[str] = []
        for line in proc.stderr:
            if line.startswith(NOTE):
                progress.note(line[len(NOTE) :].rstrip())
            else:
                tail = [*tail[-40:], line]
        code = proc.wait()
        if code == 0 and out.exists():
            data = json.loads(out.read_text())
            record = report.BenchmarkRecord(**data["record"])
            if record.error and tail:
                record.error += "\nstderr:\n" + "".join(tail[-15:])
            return record, [_figure(f) for f in data["figures"]]
    record = report.BenchmarkRecord(
        bench.name,
        bench.module,
        "failed",
        time.monotonic() - start,
        bench.config(profile),
        bench.command(profile),
        error=f"child exited with {code}:\n" + "".join(tail[-20:]),
    )
    return record, []


def summary_lines(doc: dict) -> list[str]:
    lines = []
    for f in doc["figures"]:
        ratio = f" ({f['ratio']:.3f} x baseline)" if f["ratio"] is not None else ""
        target = ""
        if f["target"]:
            t = f["target"]
            bound = f"< {t['below']:g}" if "below" in t else f"> {t['above']:g}"
            target = f"  target {t['statistic']} {bound}: {'met' if t['met'] else 'NOT MET'}"
        lines.append(f"  {f['key']:<70} {f['median']:>12.4g} {f['unit']:<8}{ratio}{target}")
    for b in doc["benchmarks"]:
        if b["status"] != "ok":
            first = (b["error"] or "").splitlines()[0] if b["error"] else ""
            lines.append(f"  {b['name']}: {b['status'].upper()}: {first}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="same as --profile quick (< 3 minutes)")
    p.add_argument(
        "--profile",
        choices=["full", "quick", "smoke"],
        default=None,
        help="full (default), quick, or smoke (the smallest run, for tests)",
    )
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"output folder (default {RESULTS})")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--child", metavar="NAME", help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    profile = args.profile or ("quick" if args.quick else "full")
    if args.child:
        return _child_main(args.child, profile, args.child_out)
    if args.list:
        for b in entries.BENCHMARKS:
            print(f"{b.name:<16} {b.description}")
        return 0
    try:
        chosen = [entries.by_name(n) for n in args.only] if args.only else entries.BENCHMARKS
    except KeyError as exc:
        p.error(str(exc))
    started = report.now()
    progress = Progress(len(chosen))
    records: list[report.BenchmarkRecord] = []
    figures: list[report.Figure] = []
    try:
        for i, bench in enumerate(chosen, start=1):
            progress.start(i, bench.name, f"{profile} configuration")
            record, figs = spawn_one(bench, profile, progress)
            records.append(record)
            figures += figs
            outcome = f"{len(figs)} figures" if record.status == "ok" else record.status.upper()
            progress.finish(outcome)
            if record.error:
                print(record.error.rstrip(), file=sys.stderr)
    finally:
        progress.close()
    made: list[str] = []
    if not args.no_plots:
        from bench import plots  # matplotlib: only now, in the parent

        made = [str(path.relative_to(args.out)) for path in plots.make_all(figures, args.out)]
    command = f"{entries.PY} -m bench.run --profile {profile}" + (
        f" --only {' '.join(args.only)}" if args.only else ""
    )
    doc = report.document(
        profile, started, progress.total_elapsed(), command, records, figures, made
    )
    out_file = args.out / "latest.json"
    report.write(doc, out_file)
    (args.out / "latest.md").write_text(markdown.performance_section(doc) + "\n")
    print("\n".join(summary_lines(doc)))
    print(f"wrote {out_file} and {len(made)} plots in {progress.total_elapsed():.0f} s")
    return 0 if all(r.status == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
