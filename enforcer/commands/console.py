"""`enforcer console`: the cluster-wide flow service and its web page."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING

from enforcer.commands.agent import _at_least
from enforcer.sources.base import (
    KIND_NAMESPACE,
    KIND_NETWORK_POLICY,
    KIND_POD,
    KIND_STAGED_NETWORK_POLICY,
)

if TYPE_CHECKING:
    from enforcer.sources.base import Source

DEFAULT_LISTEN = "127.0.0.1:9840"
# What the policy view shows, and all the console's role lets it read (daemonset/).
CONSOLE_KINDS = (KIND_NAMESPACE, KIND_POD, KIND_NETWORK_POLICY, KIND_STAGED_NETWORK_POLICY)


def register(sub: argparse._SubParsersAction) -> None:
    from enforcer.console.agents import DEFAULT_NAMESPACE, DEFAULT_SELECTOR

    p = sub.add_parser(
        "console",
        help="serve every node's flows, the workload map and the policies (JSON API and page)",
        description="Follow every node agent's flows and status, merge them (memory capped), "
        "read the cluster's policies and pods, and serve the JSON API and the web page. "
        "Holds nothing a restart cannot rebuild from the agents.",
    )
    p.add_argument("--listen", default=DEFAULT_LISTEN,
                   help=f"HOST:PORT to serve on (default {DEFAULT_LISTEN})")
    p.add_argument(
        "--agents", default="k8s",
        help="how agents are found: 'k8s' (the DaemonSet's pods, through the API; "
        "default) or 'lab:NAME' (the nodes of `enforcer lab` NAME)",
    )
    p.add_argument(
        "--source", default="k8s",
        help="the cluster's objects: 'k8s' (in-cluster or kubeconfig) or 'dir:PATH' "
        "(a folder of manifests, watched)",
    )
    p.add_argument("--agent-namespace", default=DEFAULT_NAMESPACE,
                   help=f"namespace of the agents' pods, with --agents k8s "
                   f"(default {DEFAULT_NAMESPACE})")
    p.add_argument("--agent-selector", default=DEFAULT_SELECTOR,
                   help="label selector of the agents' pods, with --agents k8s "
                   f"(default {DEFAULT_SELECTOR})")
    p.add_argument("--max-mb", type=_at_least(1), default=64,
                   help="memory cap of the merged flow store in MB; the oldest flows go "
                   "first (default 64)")
    p.add_argument("--kubeconfig", default=None,
                   help="kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)")
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _listen_addr(text: str) -> str:
    _, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT")
    return text


def _check_paths(args: argparse.Namespace) -> None:
    """The files and folders named on the command line exist (ValueError says which not)."""
    from pathlib import Path

    if args.kubeconfig and not Path(args.kubeconfig).is_file():
        raise ValueError(f"--kubeconfig {args.kubeconfig}: no such file")
    folder = args.source[len("dir:") :] if args.source.startswith("dir:") else None
    if folder and not Path(folder).is_dir():
        raise ValueError(f"--source {args.source}: no such directory")


def _existing_lab(name: str) -> None:
    from enforcer.lab import lab

    try:
        lab.LabState.load(name)
    except lab.LabError as exc:
        raise ValueError(f"--agents lab:{name}: {exc}") from None


def console_source(spec: str, kubeconfig: str | None) -> Source:
    """The agent's sources, but from the API only the kinds the policy view shows (the
    console's RBAC grants no more)."""
    from enforcer.sources.base import source_from_spec

    if spec == "k8s":
        from enforcer.sources.kubernetes import KubernetesSource

        return KubernetesSource.from_config(kubeconfig=kubeconfig, kinds=CONSOLE_KINDS)
    return source_from_spec(spec, kubeconfig=kubeconfig, node_name=None)


def run(args: argparse.Namespace) -> int:
    from enforcer import log
    from enforcer.console.agents import kubernetes_agents, lab_agents
    from enforcer.console.service import Console

    logger = log.get("console")
    try:
        listen = _listen_addr(args.listen)
        _check_paths(args)
        if args.agents == "k8s":
            agents = kubernetes_agents(args.agent_namespace, args.agent_selector, args.kubeconfig)
        elif args.agents.startswith("lab:") and args.agents[4:]:
            agents = lab_agents(args.agents[4:])
        else:
            return _fail(f"--agents {args.agents!r}: use 'k8s' or 'lab:NAME'")
        source = console_source(args.source, args.kubeconfig)
        if args.agents.startswith("lab:"):
            _existing_lab(args.agents[4:])
    except ValueError as exc:
        return _fail(str(exc))
    except Exception as exc:  # the kubernetes client's config errors have no common base
        return _fail(
            f"cannot reach the Kubernetes API: {exc} (give --kubeconfig, or for a lab "
            "--agents lab:NAME --source dir:PATH)"
        )
    try:
        console = Console(listen, agents, source, max_bytes=args.max_mb * 2**20)
    except OSError as exc:
        return _fail(f"cannot listen on {listen}: {exc}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    console.start()
    host = listen.rpartition(":")[0]
    logger.info("console started", url=f"http://{host}:{console.port}/",
                agents=args.agents, source=source.describe(), max_mb=args.max_mb)
    stop.wait()
    console.stop()
    logger.info("console stopped")
    return 0
