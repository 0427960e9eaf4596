"""`enforcer lint`: warn about the NetworkPolicy mistakes people actually make."""

from __future__ import annotations

import argparse
import json
from ipaddress import ip_network

from enforcer.analysis.inputs import (
    EXIT_INVALID_INPUT,
    load_for_command,
    unread,
)
from enforcer.analysis.lint import ERROR, WARNING, Finding, lint
from enforcer.commands.reading import accept_groups, add_accept_group, add_allow_ignored


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "lint",
        help="check NetworkPolicy manifests for common mistakes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Warn about the NetworkPolicy mistakes people actually make. Checks:\n"
            "  dns-not-allowed, dns-tcp-only, selects-no-pod, named-port-undeclared,\n"
            "  named-port-protocol (error), named-port-ipblock (error), rules-ignored (error),\n"
            "  egress-only-isolates-ingress, empty-egress-without-policytypes, broad-selector,\n"
            "  or-instead-of-and, ipblock-overlaps-pods, duplicate.\n"
            "Cluster-scoped policies (ClusterNetworkPolicy, AdminNetworkPolicy,\n"
            "BaselineAdminNetworkPolicy): cluster-shadowed-rule, pass-without-networkpolicy,\n"
            "  baseline-deny-not-overridden, equal-priority, domain-names-not-enforced,\n"
            "  cluster-policy-selects-no-pod.\n"
            "Checks about pods need Pods in the input (kubectl get pods -A -o yaml).\n"
            "StagedNetworkPolicies are validated as NetworkPolicies (errors name their kind);\n"
            "the checks above run on NetworkPolicies.\n"
            "Objects nothing reads (other kinds, another group's NetworkPolicy) and files\n"
            "without objects are named on stderr (JSON: \"ignored\") and exit 2 unless\n"
            "--allow-ignored; --accept-group GROUP reads that group's NetworkPolicies.\n"
            "Exit: 0 clean, 1 findings at --fail-on level or worse, 2 invalid input or\n"
            "objects not read."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help="manifests (YAML or JSON)")
    p.add_argument("--output", choices=["text", "json"], default="text")
    p.add_argument(
        "--fail-on",
        choices=[WARNING, ERROR],
        default=ERROR,
        help="exit 1 when findings of this level or worse exist (default: error)",
    )
    p.add_argument(
        "--pod-cidr",
        action="append",
        default=[],
        metavar="CIDR",
        help="the cluster's pod network, for the ipBlock overlap check (repeatable)",
    )
    add_accept_group(p)
    add_allow_ignored(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        pod_cidrs = [ip_network(c, strict=False) for c in args.pod_cidr]
    except ValueError as exc:
        print(f"error: --pod-cidr: {exc}")
        return EXIT_INVALID_INPUT
    groups = accept_groups(args)
    if isinstance(groups, str):
        print(f"error: {groups}")
        return EXIT_INVALID_INPUT
    result, ok = load_for_command(args.paths, strict=True, report_errors=False,
                                  accept_groups=groups, allow_ignored=args.allow_ignored)
    invalid = [Finding.from_error(e) for e in result.errors]
    findings = invalid + (lint(result, pod_cidrs) if ok else [])
    not_read = len(result.ignored) + len(result.empty)
    if args.output == "json":
        print(json.dumps({
            "findings": [f.to_dict() for f in findings],
            "ignored": [i.to_dict() for i in result.ignored],
            "empty": result.empty,
        }, indent=2))
    else:
        for f in findings:
            print(f.render())
        errors = sum(f.level == ERROR for f in findings)
        print(f"{len(findings)} finding(s): {errors} error(s), {len(findings) - errors} warning(s)"
              + (f"; {not_read} object(s) or file(s) not read (see stderr)" if not_read else ""))
    if not ok or (unread(result) and not args.allow_ignored):
        return EXIT_INVALID_INPUT
    worst = {f.level for f in findings}
    if ERROR in worst or (args.fail_on == WARNING and WARNING in worst):
        return 1
    return 0
