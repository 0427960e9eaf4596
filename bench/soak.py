"""Soak: a lab under pod-label and policy churn with traffic for a long time (30 minutes by
default; not part of `make bench`, not in CI). Reports whether the agents' resources stay flat
and whether any probe ever disagreed with the model.

Each step changes the lab (a pod relabelled to one of a few label sets, or one of the upstream
policy cases swapped for another), waits until every agent reports it enforced (`lab apply`),
then probes a random sample of pod pairs on TCP/80 and compares each verdict with the model's
for the lab's objects at that moment. Between steps a flood of short connections keeps the
conntrack table, flow store and event path busy. Every `--sample` seconds it records, per
agent process: RSS, open file descriptors, threads; and per node: conntrack entries and
identities in the pinned maps. The slopes are least-squares fits per hour over the run's
second half (after warm-up): flat means near zero against the level. The agents run with a
2 MB flow store, so that it is full early and its growth is not taken for a leak.

    .venv/bin/python -m bench.soak [--minutes 30] [--sample 15] [--pairs 12] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from enforcer.analysis.explain import verdict_for
from enforcer.datapath import bpfsys
from enforcer.lab import lab
from enforcer.lab.probe import probe_pair
from tests.lab import upstream

PORT, PROTOCOL = 80, "TCP"
FLOW_STORE_MB = 2
LABEL_SETS = ({}, {"role": "web"}, {"role": "db"}, {"tier": "1"})
CASES = ("default-deny-ingress", "pod-or-namespace-selector", "default-deny-all",
         "allow-from-other-namespace", "pod-and-namespace-selector", "match-expressions",
         "ingress-and-egress")


def _proc(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def _entries(pin: Path) -> int:
    fd = bpfsys.obj_get(str(pin))
    info = bpfsys.map_info(fd)
    table = bpfsys.Map(fd, info.key_size, info.value_size)
    try:
        return len(table.keys_raw()) // info.key_size
    finally:
        table.close()


def sample(state: lab.LabState) -> dict[str, float]:
    out: dict[str, float] = {}
    for node, pid in state.agent_pids.items():
        for key, value in _proc(pid).items():
            out[f"{node}.{key}"] = value
        pins = lab.pin_dir(state.name, node)
        for name in ("ct", "ident4"):
            found = next(pins.rglob(name), None)
            if found is not None:
                out[f"{node}.{name}_entries"] = _entries(found)
    return out


def slope_per_hour(times: list[float], values: list[float]) -> float:
    """Least-squares slope, per hour."""
    if len(times) < 2:
        return 0.0
    mt, mv = statistics.fmean(times), statistics.fmean(values)
    den = sum((t - mt) ** 2 for t in times)
    return 0.0 if den == 0 else sum((t - mt) * (v - mv) for t, v in zip(times, values,
                                                                       strict=True)) / den * 3600


class Churn:
    """The lab's changing objects: each step a relabel or a policy case swapped."""

    def __init__(self, state: lab.LabState, folder: Path, rng: random.Random) -> None:
        self.state = state
        self.folder = folder
        self.rng = rng
        self.pods = sorted(state.pods)
        ends = {e.key: e for e in lab.probe_endpoints(state)}
        self.cases = upstream.cases({"x/a": str(ends["x/a"].ip), "x/b": str(ends["x/b"].ip)})
        self.case: str | None = None
        self.step_no = 0

    def _write(self, objects: list[dict[str, Any]]) -> Path:
        self.step_no += 1
        path = self.folder / f"step{self.step_no}.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        return path

    def step(self) -> str:
        if self.rng.random() < 0.5:
            key = self.rng.choice(self.pods)
            ns, name = key.split("/")
            labels = self.rng.choice(LABEL_SETS)
            lab.apply(self.state, [self._write([upstream.pod(ns, name, dict(labels))])])
            return f"relabel {key} {labels}"
        new = self.rng.choice([c for c in CASES if c in self.cases and c != self.case])
        if self.case is not None:
            lab.delete(self.state, [self._write(self.cases[self.case])])
        lab.apply(self.state, [self._write(self.cases[new])])
        self.case = new
        return f"policy case {new}"


def wrong_verdicts(state: lab.LabState, rng: random.Random, pairs: int) -> list[str]:
    ends = lab.probe_endpoints(state)
    model = lab.model_state(state)
    wrong = []
    for _ in range(pairs):
        src, dst = rng.sample(ends, 2)
        want = verdict_for(model, src.key, dst.key, PORT, PROTOCOL).allowed
        got = probe_pair(src, dst, PORT, PROTOCOL, 0.5)
        if got != want:
            wrong.append(f"{src.key} -> {dst.key}: kernel {got}, model {want}")
    return wrong


def traffic(state: lab.LabState, rng: random.Random, connections: int) -> None:
    """Short connections between random pairs: conntrack, events and the flow store work."""
    ends = lab.probe_endpoints(state)
    for _ in range(connections):
        src, dst = rng.sample(ends, 2)
        probe_pair(src, dst, PORT, PROTOCOL, 0.05)


def run(minutes: float, sample_every: float, pairs: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    name = f"soak-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = folder / "cluster.yaml"
        base.write_text(yaml.safe_dump_all(upstream.cluster()))
        # A small flow store: it fills within minutes, after which a flat RSS means no leak
        # (at the default 64 MB it would still be filling after 30 minutes, by design).
        state = lab.up([base], name, nodes=2,
                       agent_args=["--flow-store-max-mb", str(FLOW_STORE_MB)])
        try:
            churn = Churn(state, folder, rng)
            start = time.monotonic()
            end = start + minutes * 60
            next_sample = start
            samples: list[tuple[float, dict[str, float]]] = []
            steps, probes, wrong = 0, 0, []
            while time.monotonic() < end:
                what = churn.step()
                steps += 1
                found = wrong_verdicts(state, rng, pairs)
                probes += pairs
                wrong += [f"step {steps} ({what}): {w}" for w in found]
                traffic(state, rng, 20)
                now = time.monotonic()
                if now >= next_sample:
                    state = lab.LabState.load(name)  # agent pids may change on restart
                    samples.append((now - start, sample(state)))
                    next_sample = now + sample_every
                    print(f"{(now - start) / 60:5.1f} min  steps {steps}  probes {probes}  "
                          f"wrong {len(wrong)}  {samples[-1][1]}", file=sys.stderr)
        finally:
            lab.down(name)
    half = [(t, s) for t, s in samples if t >= samples[-1][0] / 2] if samples else []
    metrics = sorted({k for _, s in samples for k in s})
    report = {
        "minutes": minutes, "steps": steps, "probes": probes, "wrong_verdicts": wrong,
        "metrics": {
            k: {
                "first": samples[0][1].get(k), "last": samples[-1][1].get(k),
                "slope_per_hour_second_half": round(slope_per_hour(
                    [t for t, s in half if k in s], [s[k] for _, s in half if k in s]), 3),
            }
            for k in metrics
        },
    }
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--pairs", type=int, default=12, help="pairs probed after each step")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the report (JSON) here")
    args = parser.parse_args()
    # A TERM (timeout, Ctrl-C's cousin) still takes the lab down: finally blocks run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run(args.minutes, args.sample, args.pairs, args.seed)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 1 if report["wrong_verdicts"] else 0


if __name__ == "__main__":
    sys.exit(main())
