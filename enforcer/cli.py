"""The `enforcer` command line. Each subcommand lives in its own module with a `register`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from enforcer import __version__, log

# Modules that define subcommands: each has `register(subparsers) -> None`, and the parser
# it adds sets `func=callable(args) -> int`.
COMMAND_MODULES = [
    "enforcer.commands.kernel_headers",
    "enforcer.commands.agent",
    "enforcer.commands.status",
    "enforcer.commands.lab",
    "enforcer.commands.demo",
    "enforcer.commands.uninstall",
    "enforcer.commands.analyze",
    "enforcer.commands.lint",
    "enforcer.commands.flows",
    "enforcer.commands.advise",
    "enforcer.commands.console",
    "enforcer.commands.quarantine",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="enforcer",
        description="Kubernetes NetworkPolicy enforcer: analyze, lint, run the agent, run a lab.",
    )
    parser.add_argument("--version", action="version", version=f"enforcer {__version__}")
    parser.add_argument("--log-format", choices=["auto", "json", "console"], default="auto")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    log.configure(args.log_format, args.log_level)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
