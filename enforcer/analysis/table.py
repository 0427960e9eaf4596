"""Text rendering of reachability matrices: readable at a glance in a terminal."""

from __future__ import annotations

from enforcer.analysis.matrix import Matrix

ALLOWED = "OK"
DENIED = "--"
LEGEND = f"rows: from, columns: to.  {ALLOWED} = allowed   {DENIED} = denied"


def render_table(port: int, protocol: str, matrix: Matrix) -> str:
    keys = list(matrix)
    lines = [f"Port {port}/{protocol}   ({LEGEND})"]
    if not keys:
        lines.append("  (no pods)")
        return "\n".join(lines)
    numbers = [f"[{i + 1}]" for i in range(len(keys))]
    cell = max(len(n) for n in numbers)
    label = max(len(f"{n} {k}") for n, k in zip(numbers, keys, strict=True))
    header = " " * (label + 2) + " ".join(n.rjust(cell) for n in numbers)
    lines.append(header)
    allowed = 0
    for number, src in zip(numbers, keys, strict=True):
        cells = []
        for dst in keys:
            ok = matrix[src][dst]
            allowed += ok and src != dst
            cells.append((ALLOWED if ok else DENIED).rjust(cell))
        lines.append(f"{number} {src}".ljust(label + 2) + " ".join(cells))
    pairs = len(keys) * (len(keys) - 1)
    lines.append(f"{allowed} of {pairs} pairs allowed (a pod may always reach itself)")
    return "\n".join(lines)
