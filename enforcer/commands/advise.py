"""`enforcer advise`: least-privilege NetworkPolicies from observed flows, proven first; or,
with --baseline, a Baseline-tier ClusterNetworkPolicy default per namespace."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from enforcer.advise import AdviceError, AdviseOptions, Prefixes, advise
from enforcer.advise.advice import Advice, parse_baseline, parse_manifests
from enforcer.advise.render import render_json, render_yaml, summary
from enforcer.analysis.inputs import EXIT_INVALID_INPUT, load_for_command, planned_state
from enforcer.flows.record import FlowFormatError, FlowsFile, parse_record, read_file
from enforcer.model.loader import load_text

EXIT_UNPROVEN = 3
EXIT_UNREACHABLE = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "advise",
        help="least-privilege NetworkPolicies from observed flows (proven in the model)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Write one NetworkPolicy per workload and direction that allows exactly the\n"
            "observed flows: peers by namespace and stable pod labels (no hash labels),\n"
            "addresses outside the cluster as ipBlocks, ports as observed (named when every\n"
            "destination pod declares the port under one name), DNS (UDP and TCP 53) to the\n"
            "resolvers a workload used. Every workload seen in a learned flow gets both\n"
            "policies (ingress only with --ingress-only); a direction with no flows denies\n"
            "all. Address blocks except the pods' own addresses. Each rule's comment names\n"
            "the flows behind it.\n\n"
            "Learned: flows every recording side let through (verdict allowed or audit).\n"
            "Denied flows are not learned unless --include-denied (policy denials only).\n\n"
            "Before printing, the model checks that every learned flow is allowed with the\n"
            "advice in place, and counts the pod pairs it newly denies (stderr).\n\n"
            "--baseline writes instead one ClusterNetworkPolicy (v1alpha2, tier Baseline,\n"
            "priority 1000) per namespace seen in a learned flow, advised-baseline-NS: it\n"
            "accepts the observed namespace-to-namespace and to-address traffic by port and\n"
            "protocol and denies the rest. It decides only where no NetworkPolicy isolates a\n"
            "pod, so any NetworkPolicy a team writes overrides it. Within the schema's limits\n"
            "(25 rules a direction, 25 peers and protocols a rule): peers with the same ports\n"
            "share a rule; when that is not enough, namespaces are merged into sets (said).\n"
            "Proven the same way; what it newly denies is counted on the observed and declared\n"
            "ports and listed by namespace pair.\n\n"
            "--lab NAME reads a lab (`enforcer lab up`): its manifests as CLUSTER_DIR and\n"
            "every flow its agents hold as --flows; either, when given, is used instead.\n"
            "Exit: 0 advised, 1 a lab agent unreachable, 2 invalid input, 3 the advice failed\n"
            "its own proof (a bug)."
        ),
    )
    p.add_argument("paths", nargs="*", metavar="CLUSTER_DIR",
                   help="the cluster's Namespaces, Pods and existing NetworkPolicies "
                   "(default with --lab: the lab's)")
    p.add_argument("--flows", metavar="FLOWS.jsonl",
                   help="flow records, one JSON object a line (`-`: standard input; default "
                   "with --lab: every flow the lab's agents hold)")
    p.add_argument("--lab", metavar="NAME",
                   help="advise for a lab: its manifests and its agents' flows")
    p.add_argument("--cidr-prefix", type=int, default=32, metavar="N",
                   help="aggregate IPv4 addresses outside the cluster to /N (default 32)")
    p.add_argument("--cidr-prefix-v6", type=int, default=128, metavar="N",
                   help="aggregate IPv6 addresses outside the cluster to /N (default 128)")
    p.add_argument("--ingress-only", action="store_true",
                   help="ingress policies only (adopt ingress first, egress later)")
    p.add_argument("--namespace", action="append", default=[], metavar="NS",
                   help="only workloads of this namespace get policies (repeatable)")
    p.add_argument("--include-denied", action="store_true",
                   help="learn flows that policy denied, too")
    p.add_argument("--baseline", action="store_true",
                   help="propose a Baseline-tier default per namespace (ClusterNetworkPolicy "
                   "v1alpha2) instead of NetworkPolicies")
    p.add_argument("--strict", action="store_true",
                   help="fail (exit 2) on any invalid object or flow line")
    p.add_argument("--output", choices=["yaml", "json"], default="yaml",
                   help="yaml: manifests with comments (default); json: {policies, rules with "
                   "their flows, proof, notes, warnings}")
    p.set_defaults(func=run)


def _options(args: argparse.Namespace) -> AdviseOptions | None:
    for flag, value, top in (("--cidr-prefix", args.cidr_prefix, 32),
                             ("--cidr-prefix-v6", args.cidr_prefix_v6, 128)):
        if not 0 <= value <= top:
            print(f"error: {flag} {value} out of range 0-{top}", file=sys.stderr)
            return None
    return AdviseOptions(
        prefixes=Prefixes(args.cidr_prefix, args.cidr_prefix_v6),
        ingress_only=args.ingress_only,
        namespaces=frozenset(args.namespace),
        include_denied=args.include_denied,
        baseline=args.baseline,
    )


def _check_rendered(advice: Advice, text: str) -> None:
    """What we print must read back, with the project's loader, as what we proved."""
    loaded = load_text(text, "<advice>")
    if (loaded.errors or loaded.objects != parse_manifests(advice.policies)
            or loaded.cluster_policies != parse_baseline(advice.baseline)):
        problems = "; ".join(str(e) for e in loaded.errors) or "objects differ"
        raise AdviceError(f"the printed YAML does not read back as the advice: {problems}")


def _lab_inputs(name: str) -> tuple[Path, Callable[[], FlowsFile]]:
    """The lab's manifest folder, and a reader of every flow its agents hold (records the
    agents wrote themselves, so any that does not parse is a bug: it fails)."""
    from enforcer.commands.lab import lab_flows
    from enforcer.lab import lab

    state = lab.LabState.load(name)

    def read() -> FlowsFile:
        try:
            docs = list(lab_flows(state, "/flows?limit=0", follow=False))
        except OSError as exc:  # not a file's error: said as the agents' (RuntimeError)
            raise RuntimeError(f"an agent is unreachable: {exc}") from exc
        return FlowsFile([parse_record(doc, f"lab {name}") for doc in docs], [])

    return state.manifest_dir, read


def _inputs(args: argparse.Namespace) -> tuple[list[str], Callable[[], FlowsFile]] | None:
    """The cluster's paths and the flows' reader, from the flags; None: said why on stderr."""
    lab_dir, lab_read = None, None
    if args.lab:
        from enforcer.lab.lab import LabError

        try:
            lab_dir, lab_read = _lab_inputs(args.lab)
        except LabError as exc:
            print(f"error: --lab: {exc}", file=sys.stderr)
            return None
    paths = args.paths or ([str(lab_dir)] if lab_dir else [])
    if not paths:
        print("error: give CLUSTER_DIR (or --lab NAME)", file=sys.stderr)
        return None
    if args.flows:
        return paths, lambda: read_file(args.flows, strict=args.strict)
    if lab_read is None:
        print("error: give --flows FLOWS.jsonl (or --lab NAME)", file=sys.stderr)
        return None
    return paths, lab_read


def run(args: argparse.Namespace) -> int:
    options = _options(args)
    inputs = _inputs(args)
    if options is None or inputs is None:
        return EXIT_INVALID_INPUT
    paths, read_flows = inputs
    result, ok = load_for_command(paths, args.strict)
    if not ok:
        return EXIT_INVALID_INPUT
    try:
        flows = read_flows()
    except FlowFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(f"error: --flows {args.flows}: cannot read: {reason}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except RuntimeError as exc:  # an agent unreachable or refusing the query
        print(f"error: reading the flows of lab {args.lab}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    for error in flows.errors:
        print(f"warning: {error} (line skipped)", file=sys.stderr)
    try:
        advice = advise(planned_state(result), flows.records, options)
        for note in advice.notes:
            print(f"note: {note}", file=sys.stderr)
        for warning in advice.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if not advice.proof.holds:
            print("error: the advice does not allow these observed flows (a bug of advise):",
                  file=sys.stderr)
            for refusal in advice.proof.refused:
                print(f"  {refusal.describe()}", file=sys.stderr)
            return EXIT_UNPROVEN
        if args.output == "json":
            text = render_json(advice)
        else:
            text = render_yaml(advice)
            _check_rendered(advice, text)
    except AdviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNPROVEN
    for refusal in advice.proof.denied_elsewhere:
        print(f"warning: still denied by policies advise does not change: "
              f"{refusal.describe()}", file=sys.stderr)
    if not advice.manifests:
        print("note: no flow to learn: nothing advised", file=sys.stderr)
        return 0
    print(text, end="" if text.endswith("\n") else "\n")
    print(summary(advice), file=sys.stderr)
    return 0
