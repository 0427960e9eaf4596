"""Text rendering of reachability matrices and of rows under column headers, readable at a
glance in a terminal."""

from __future__ import annotations

from collections.abc import Sequence

from enforcer.analysis.matrix import Matrix

ALLOWED = "OK"
DENIED = "--"
LEGEND = f"rows: from, columns: to.  {ALLOWED} = allowed   {DENIED} = denied"


def render_table(port: int, protocol: str, matrix: Matrix, via_service: bool = False) -> str:
    """Rows are sources; columns are the first row's destinations (all pods for a pod matrix,
    the pods some Service fronts for a matrix through Services)."""
    rows = list(matrix)
    cols = list(next(iter(matrix.values()), {}))
    through = " through Services" if via_service else ""
    lines = [f"Port {port}/{protocol}{through}   ({LEGEND})"]
    if not rows or not cols:
        lines.append("  (no pods)" if not rows else "  (no Service fronts a pod on this port)")
        return "\n".join(lines)
    names = list(dict.fromkeys(rows + cols))  # one number per pod, rows first
    number = {k: f"[{i + 1}]" for i, k in enumerate(names)}
    cell = max(len(n) for n in number.values())
    label = max(len(f"{number[k]} {k}") for k in rows)
    if cols != rows:
        lines += [f"  {number[k]} {k}" for k in cols if k not in rows]
    lines.append(" " * (label + 2) + " ".join(number[k].rjust(cell) for k in cols))
    allowed = pairs = 0
    for src in rows:
        cells = []
        for dst in cols:
            ok = matrix[src][dst]
            allowed += ok and src != dst
            pairs += src != dst
            cells.append((ALLOWED if ok else DENIED).rjust(cell))
        lines.append(f"{number[src]} {src}".ljust(label + 2) + " ".join(cells))
    lines.append(f"{allowed} of {pairs} pairs allowed (a pod may always reach itself)")
    return "\n".join(lines)


def render_columns(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows under upper-case headers, columns three spaces apart (as kubectl prints)."""
    widths = [max(len(c) for c in column) for column in zip(headers, *rows, strict=True)]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    )
