"""`enforcer kernel-headers`: find or build the kernel-header tree bcc compiles against."""

from __future__ import annotations

import argparse
from pathlib import Path

from enforcer.kheaders import find_kernel_headers


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kernel-headers", help="find or prepare kernel headers for bcc")
    p.add_argument("--cache-dir", type=Path, default=None, help="where a fallback tree is built")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        choice = find_kernel_headers(args.cache_dir)
    except RuntimeError as exc:
        print(f"error: {exc}")
        return 1
    print(f"kernel headers: {choice.how}: {choice.path or '(running kernel)'}")
    return 0
