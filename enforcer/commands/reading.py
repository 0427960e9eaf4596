"""Flags shared by the commands that read manifests: which API groups' NetworkPolicies they
read (`--accept-group`, enforcer.model.groups) and whether objects not read may pass
(`--allow-ignored`)."""

from __future__ import annotations

import argparse

from enforcer.model.groups import check_groups


def add_accept_group(p: argparse.ArgumentParser, what: str = "read") -> None:
    p.add_argument(
        "--accept-group",
        action="append",
        default=[],
        metavar="GROUP",
        help=f"{what} NetworkPolicies of this API group (e.g. security.aqua.io, any version) as "
        "networking.k8s.io/v1 ones, named NAME.GROUP: for policies written for another "
        "enforcer with the v1 schema. Repeatable; none by default",
    )


def add_allow_ignored(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-ignored",
        action="store_true",
        help="objects not read (other kinds, other groups' NetworkPolicies) and files without "
        "objects are notes, not an exit 2",
    )


def accept_groups(args: argparse.Namespace) -> tuple[str, ...] | str:
    """The groups given, in order and once each; or an error message for a bad one."""
    groups = tuple(dict.fromkeys(getattr(args, "accept_group", None) or ()))
    return check_groups(groups) or groups
