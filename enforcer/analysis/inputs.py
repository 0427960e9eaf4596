"""Load manifests for a command: report invalid objects and ignored kinds on stderr."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from enforcer.model.cluster import ClusterState
from enforcer.model.loader import LoadResult, load_paths

EXIT_INVALID_INPUT = 2


def load_for_command(
    paths: Sequence[str | Path],
    strict: bool,
    err: TextIO | None = None,
    report_errors: bool = True,
) -> tuple[LoadResult, bool]:
    """Load and report. Returns the result and whether the command may go on.

    Invalid objects are skipped with a warning (never half-applied), or fail the command
    with `strict`. A path that does not exist always fails it.
    """
    err = err or sys.stderr
    missing = [str(p) for p in paths if not Path(p).exists()]
    for path in missing:
        print(f"error: {path}: no such file or directory", file=err)
    if missing:
        return LoadResult(), False
    result = load_paths(paths)
    for note in result.notes:
        print(f"note: {note}", file=err)
    fatal = False
    for error in result.errors:
        if strict:
            if report_errors:
                print(f"error: {error}", file=err)
            fatal = True
        elif report_errors:
            print(f"warning: {error} (object skipped)", file=err)
    return result, not fatal


def planned_state(result: LoadResult) -> ClusterState:
    """State for what-if analysis: pods without a status count as endpoints."""
    state = ClusterState(planned_pods=True)
    state.load(result.objects)
    state.load(result.services)
    return state
