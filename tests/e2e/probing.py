"""Probe every pair of the model's pods with real connections from inside the pods."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from .kube import Cluster, Deployed, inpod_command
from .workloads import TOOLBOX

Matrix = dict[str, dict[str, bool]]
Probe = tuple[int, str, int]  # port, protocol, family


def probe_matrix(
    cluster: Cluster, deployed: Deployed, probes: list[Probe], only: set[tuple[str, str]] | None
) -> dict[Probe, Matrix]:
    """{probe: {from: {to: connected}}} over logical keys; `only` limits the (from, to) pairs."""
    keys = sorted(deployed.pods)

    def from_source(src: str) -> dict[str, bool]:
        targets = []
        for dst in keys:
            if only is not None and (src, dst) not in only:
                continue
            for port, protocol, family in probes:
                ip = deployed.pods[dst].ip(family)
                assert ip, f"{dst} has no IPv{family} address: the cluster must be dual-stack"
                targets.append([f"{dst}|{port}|{protocol}|{family}", ip, port, protocol])
        if not targets:
            return {}
        return cluster.exec_json(deployed.pods[src], TOOLBOX, inpod_command("probe", targets))

    with ThreadPoolExecutor(max_workers=len(keys)) as pool:
        results = dict(zip(keys, pool.map(from_source, keys), strict=True))
    out: dict[Probe, Matrix] = {p: {} for p in probes}
    for src, row in results.items():
        for cell, ok in row.items():
            dst, port, protocol, family = cell.split("|")
            out[(int(port), protocol, int(family))].setdefault(src, {})[dst] = ok
    return out


def converge(
    cluster: Cluster,
    deployed: Deployed,
    expected: dict[Probe, Matrix],
    attempts: int = 4,
    pause: float = 2.0,
) -> dict[Probe, list[tuple[str, str, bool, bool]]]:
    """Probe until the cluster matches `expected` or attempts run out (policy takes effect
    asynchronously); only cells that still differ are probed again. Returns what differs:
    {probe: [(from, to, expected, observed)]}."""
    pending: set[tuple[str, str]] | None = None
    wrong: dict[Probe, list[tuple[str, str, bool, bool]]] = {}
    for attempt in range(attempts):
        observed = probe_matrix(cluster, deployed, list(expected), pending)
        wrong = {}
        for probe, matrix in observed.items():
            for src, row in matrix.items():
                for dst, ok in row.items():
                    if ok != expected[probe][src][dst]:
                        wrong.setdefault(probe, []).append(
                            (src, dst, expected[probe][src][dst], ok)
                        )
        if not wrong:
            return {}
        pending = {(s, d) for cells in wrong.values() for s, d, _, _ in cells}
        if attempt + 1 < attempts:
            time.sleep(pause)
    return wrong


def describe(wrong: dict[Probe, list[tuple[str, str, bool, bool]]]) -> str:
    lines = []
    for (port, protocol, family), cells in sorted(wrong.items()):
        for src, dst, want, got in sorted(cells):
            lines.append(
                f"{src} -> {dst} {port}/{protocol} IPv{family}: model {_verdict(want)}, "
                f"cluster {_verdict(got)}"
            )
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "allowed" if ok else "denied"
