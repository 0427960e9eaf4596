"""Lab timings: `enforcer lab up` of the upstream 9-pod model and one full 81-pair probe.
Targets (issue 7): up under 10 s, one probe under 3 s.

    .venv/bin/python -m bench.lab_timing [--quick] [--repeats N] [--json]

The model is the upstream NetworkPolicy e2e one: namespaces x, y, z with pods a, b, c, each
declaring ports 80 and 81 on TCP and UDP. Each repeat brings up a fresh lab (unique name),
probes TCP/80 with every pair allowed (no policy), applies a default-deny ingress policy in
every namespace, probes again (only each pod's connection to itself passes), and tears the
lab down. A denied pair costs the probe's per-pair timeout (pairs run in parallel), so the
denied probe takes about that timeout; both are reported. Every probe's matrix is checked,
so a broken lab cannot look fast.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
PORTS = ((80, "TCP"), (81, "TCP"), (80, "UDP"), (81, "UDP"))
PROBE_TIMEOUT_S = 1.0  # the `lab probe` default

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def cluster_objects() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"ns": ns}}}
        for ns in NAMESPACES
    ]
    ports = [
        {"name": f"serve-{p}-{proto.lower()}", "containerPort": p, "protocol": proto}
        for p, proto in PORTS
    ]
    for ns in NAMESPACES:
        for name in PODS:
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"namespace": ns, "name": name, "labels": {"pod": name}},
                    "spec": {"containers": [{"name": "c", "image": "agnhost", "ports": ports}]},
                }
            )
    return objects


def deny_objects() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": "default-deny-ingress"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        }
        for ns in NAMESPACES
    ]


def _write(path: Path, objects: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path


def _allowed(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s, d) for s, row in doc["matrix"].items() for d, ok in row.items() if ok]


def _timed_probe(state: Any, timeout: float) -> tuple[float, list[tuple[str, str]]]:
    from enforcer.commands.lab import probe_documents

    t0 = time.perf_counter()
    docs = probe_documents(state, 80, "TCP", 4, timeout)
    took = time.perf_counter() - t0
    return took, _allowed(docs[0])


def one_round(folder: Path, timeout: float, progress: Progress) -> dict[str, float]:
    from enforcer.lab import lab

    cluster = _write(folder / "cluster.yaml", cluster_objects())
    deny = _write(folder / "deny.yaml", deny_objects())
    name = f"bench-{secrets.token_hex(3)}"
    out: dict[str, float] = {}
    try:
        progress(f"lab {name}: up")
        t0 = time.perf_counter()
        state = lab.up([cluster], name)
        out["up_s"] = time.perf_counter() - t0
        progress(f"lab {name}: probe, no policy")
        out["probe_open_s"], allowed = _timed_probe(state, timeout)
        pairs = len(state.pods) ** 2
        if len(allowed) != pairs:
            raise RuntimeError(f"with no policy only {len(allowed)} of {pairs} pairs connected")
        progress(f"lab {name}: apply default-deny")
        t0 = time.perf_counter()
        lab.apply(state, [deny])
        out["apply_s"] = time.perf_counter() - t0
        progress(f"lab {name}: probe, default-deny")
        out["probe_denied_s"], allowed = _timed_probe(state, timeout)
        if sorted(allowed) != sorted((k, k) for k in state.pods):
            raise RuntimeError(f"under default-deny these pairs connected: {allowed}")
    finally:
        progress(f"lab {name}: down")
        t0 = time.perf_counter()
        lab.down(name)
        out["down_s"] = time.perf_counter() - t0
    return out


def run(
    quick: bool = False,
    repeats: int | None = None,
    probe_timeout: float = PROBE_TIMEOUT_S,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Every round's timings (seconds), as lists in round order."""
    rounds = repeats or (2 if quick else 5)
    fields = ("up_s", "probe_open_s", "apply_s", "probe_denied_s", "down_s")
    result: dict[str, Any] = {
        "pods": len(NAMESPACES) * len(PODS),
        "pairs": (len(NAMESPACES) * len(PODS)) ** 2,
        "repeats": rounds,
        "probe_timeout_s": probe_timeout,
        **{f: [] for f in fields},
    }
    with tempfile.TemporaryDirectory(prefix="enf-bench-lab-") as tmp:
        for i in range(rounds):
            r = one_round(Path(tmp), probe_timeout, lambda m, i=i: progress(f"[{i + 1}] {m}"))
            for f in fields:
                result[f].append(r[f])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.lab_timing", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = run(args.quick, args.repeats, progress=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    med = {k: statistics.median(v) for k, v in r.items() if isinstance(v, list)}
    ok = med["up_s"] < 10 and med["probe_open_s"] < 3
    print(
        f"lab timing: upstream model, {r['pods']} pods (median of {r['repeats']})\n"
        f"  lab up until enforced:        {med['up_s']:6.2f} s   (target < 10 s)\n"
        f"  81-pair probe, all allowed:   {med['probe_open_s']:6.2f} s   (target < 3 s)\n"
        f"  apply default-deny:           {med['apply_s']:6.2f} s\n"
        f"  81-pair probe, cross denied:  {med['probe_denied_s']:6.2f} s   "
        f"(per-pair timeout {r['probe_timeout_s']:g} s)\n"
        f"  lab down:                     {med['down_s']:6.2f} s\n"
        f"  {'within target' if ok else 'OVER TARGET'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
