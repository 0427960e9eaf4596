"""Put a results document's performance section into the README, in place of the old one.

    .venv/bin/python -m bench.readme [--results bench/results/latest.md] [--readme README.md]

The section runs from its "## Performance" heading to the next "## " heading; nothing else in
the README changes. `make bench` runs this after the benchmarks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.report import REPO_ROOT

HEADING = "## Performance"


def splice(readme: str, section: str) -> str:
    """The README with its performance section replaced by `section` (which starts with the
    heading). Raises ValueError when either text has no such section."""
    if not section.startswith(HEADING):
        raise ValueError(f"the results section does not start with {HEADING!r}")
    lines = readme.splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.rstrip() == HEADING)
    except StopIteration:
        raise ValueError(f"the README has no {HEADING!r} section") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    body = section.rstrip("\n") + "\n\n"
    return "".join(lines[:start]) + body + "".join(lines[end:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.readme", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=REPO_ROOT / "bench/results/latest.md")
    p.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    args = p.parse_args(argv)
    try:
        text = splice(args.readme.read_text(), args.results.read_text())
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    args.readme.write_text(text)
    print(f"{args.readme}: performance section from {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
