"""Load manifests for a command: report invalid objects and objects not read on stderr.

An object nothing reads (another kind, another group's NetworkPolicy) or a file without any
object never passes silently: each is named (file, apiVersion, kind, namespace/name, why), and
lint and analyze exit 2 unless --allow-ignored.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
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
    accept_groups: Collection[str] = (),
    allow_ignored: bool = True,
) -> tuple[LoadResult, bool]:
    """Load and report. Returns the result and whether the command may go on.

    Invalid objects are skipped with a warning (never half-applied), or fail the command
    with `strict`. A path that does not exist always fails it. Objects not read are named
    as errors, or as notes with `allow_ignored` (the caller decides the exit: `unread`).
    """
    err = err or sys.stderr
    missing = [str(p) for p in paths if not Path(p).exists()]
    for path in missing:
        print(f"error: {path}: no such file or directory", file=err)
    if missing:
        return LoadResult(), False
    result = load_paths(paths, accept_groups)
    report_unread(result, allow_ignored, err)
    fatal = False
    for error in result.errors:
        if strict:
            if report_errors:
                print(f"error: {error}", file=err)
            fatal = True
        elif report_errors:
            print(f"warning: {error} (object skipped)", file=err)
    return result, not fatal


def unread(result: LoadResult) -> bool:
    """Whether anything of the input was not read (ignored objects, files without objects)."""
    return bool(result.ignored or result.empty)


def report_unread(result: LoadResult, allowed: bool, err: TextIO) -> None:
    level = "note" if allowed else "error"
    for ignored in result.ignored:
        print(f"{level}: {ignored.describe()}: {ignored.reason()}", file=err)
    for path in result.empty:
        what = "no manifest file (.yaml, .yml, .json)" if Path(path).is_dir() else "no object"
        print(f"{level}: {path}: nothing read: {what} in it", file=err)
    if unread(result) and not allowed:
        count = len(result.ignored) + len(result.empty)
        print(f"error: {count} object(s) or file(s) of the input not read: exit 2 "
              "(--allow-ignored: go on without them)", file=err)


def planned_state(result: LoadResult) -> ClusterState:
    """State for what-if analysis: pods without a status count as endpoints."""
    state = ClusterState(planned_pods=True)
    state.load(result.objects)
    state.load(result.services)
    state.load(result.nodes)
    state.load(result.cluster_policies)
    return state
