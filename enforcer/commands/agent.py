"""`enforcer agent`: the node daemon."""

from __future__ import annotations

import argparse
import os
import queue
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enforcer.commands.reading import accept_groups, add_accept_group

if TYPE_CHECKING:
    from enforcer.datapath import DatapathConfig

DEFAULT_PIN_DIR = "/sys/fs/bpf/enforcer"
DEFAULT_METRICS_ADDR = "0.0.0.0:9830"
DEFAULT_API_SOCKET = "/run/enforcer/agent.sock"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "agent",
        help="run the node agent (watch the cluster, enforce policy on local pods)",
        description="Watch pods, namespaces and policies; enforce them on this node's pods.",
    )
    p.add_argument(
        "--node-name",
        default=os.environ.get("NODE_NAME"),
        help="this node's name; pods with this spec.nodeName are enforced (default: $NODE_NAME)",
    )
    p.add_argument(
        "--source",
        default="k8s",
        help="'k8s' (in-cluster or kubeconfig) or 'dir:PATH' (a folder of manifests, watched)",
    )
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file (with --source k8s)")
    p.add_argument("--pin-dir", default=DEFAULT_PIN_DIR, help="bpffs folder for pinned maps")
    p.add_argument(
        "--metrics-addr",
        default=DEFAULT_METRICS_ADDR,
        help="HOST:PORT for /metrics, /healthz and /readyz, and for /status, /events and "
        "/flows to authorized callers (--authn)",
    )
    p.add_argument(
        "--api-socket",
        default=DEFAULT_API_SOCKET,
        help="unix socket serving /status, /events and /flows to the node's root (what "
        f"`enforcer status`, `monitor` and `flows` use on the node; default {DEFAULT_API_SOCKET}; "
        "'' for none)",
    )
    p.add_argument(
        "--authn",
        choices=["auto", "k8s", "none"],
        default="auto",
        help="who may read /status, /events and /flows on --metrics-addr: k8s, callers whose "
        "service-account token the API server authenticates and authorizes for get on "
        "agents/flows (group enforcer.dev); none, no one (the socket only); auto (default): "
        "k8s with --source k8s, else none",
    )
    p.add_argument("--authn-kubeconfig", default=None,
                   help="kubeconfig for the token checks (default: as --kubeconfig)")
    p.add_argument(
        "--unknown-endpoint-verdict",
        choices=["deny", "allow"],
        default="deny",
        help="verdict for interfaces whose pod is not known yet (default: deny, fail closed)",
    )
    from enforcer.agent.interfaces import DEFAULT_INTERFACE_PATTERN

    p.add_argument(
        "--interface-pattern",
        default=DEFAULT_INTERFACE_PATTERN,
        help="regular expression for host-side pod interfaces to enforce on",
    )
    from enforcer.agent.services import DEFAULT_NODE_INTERFACE_PATTERN

    p.add_argument(
        "--node-interface-pattern",
        default=DEFAULT_NODE_INTERFACE_PATTERN,
        help="regular expression for the node's uplinks and tunnels, where local pods' "
        "traffic to Services with backends elsewhere is judged after DNAT",
    )
    from enforcer.datapath.layout import DatapathConfig as Defaults

    d = Defaults()
    sizes = p.add_argument_group("map sizes (changing one needs a new --pin-dir)")
    for flag, what, default in (
        ("--max-endpoints", "local pods", d.max_endpoints),
        ("--max-identities", "identity prefixes per address family", d.max_identities),
        ("--max-policy-entries", "entries in one pod's table", d.max_policy_entries),
        ("--max-conntrack", "tracked flows", d.max_conntrack),
    ):
        sizes.add_argument(flag, type=_at_least(1), default=None,
                           help=f"{what} (default {default})")
    p.add_argument(
        "--events-per-second",
        type=_at_least(0),
        default=None,
        help="flow and drop events per second per CPU for the node; what the limit refuses is "
        f"counted in enforcer_flow_events_lost_total (default {d.events_per_second})",
    )
    p.add_argument(
        "--endpoint-events-per-second",
        type=_at_least(0),
        default=None,
        help="each pod's own share of those, so one pod's flood leaves the others theirs "
        f"(default {d.endpoint_events_per_second}; 0: no per-pod limit)",
    )
    p.add_argument(
        "--pod-flows-per-second",
        type=_at_least(0),
        default=None,
        help="new flows each pod may open per second (per CPU); past that (and a burst of "
        "--pod-flow-burst) its new flows drop as flow_budget, so one pod cannot churn the "
        "conntrack table into evicting other pods' quiet flows "
        f"(default {d.pod_flows_per_second}; 0: no budget)",
    )
    p.add_argument(
        "--pod-flow-burst",
        type=_at_least(1),
        default=None,
        help=f"new flows a pod may open at once (default {d.pod_flow_burst})",
    )
    p.add_argument(
        "--flow-events",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="report every allowed new flow too, not only drops (default: on; `enforcer "
        "flows` shows them)",
    )
    p.add_argument(
        "--flow-store-max-mb",
        type=_at_least(1),
        default=64,
        help="memory cap of the agent's flow store in MB; the oldest flows go first (default 64)",
    )
    p.add_argument(
        "--policy-mode",
        choices=["enforce", "audit"],
        default="enforce",
        help="audit: judge every policy, but let what it denies pass and report it as audit; "
        "a namespace's or pod's policy.enforcer.dev/mode annotation overrides it "
        "(default: enforce)",
    )
    add_accept_group(p, "enforce")
    from enforcer.quarantine.detector import DEFAULT_MAX_TARGETS, DEFAULT_WINDOW

    q = p.add_argument_group("automatic quarantine (enforcer/quarantine/)")
    q.add_argument(
        "--auto-quarantine", action="store_true",
        help="quarantine a local pod at once (isolated completely, as `enforcer quarantine` "
        "does) when this node's datapath drops a packet it sent from an address not its own "
        "(spoofed source), or policy denies its new flows toward more than "
        "--quarantine-scan-destinations distinct destinations or ports within "
        "--quarantine-scan-seconds (a scan); then write the pod's annotation and an Event "
        "through the API (RBAC: patch pods, create events). Default: off",
    )
    q.add_argument("--quarantine-scan-destinations", type=_at_least(1),
                   default=DEFAULT_MAX_TARGETS, metavar="N",
                   help=f"more distinct (destination, port) denied than this is a scan "
                        f"(default {DEFAULT_MAX_TARGETS})")
    q.add_argument("--quarantine-scan-seconds", type=_positive_seconds, default=DEFAULT_WINDOW,
                   metavar="T", help=f"... within this many seconds (default {DEFAULT_WINDOW:g})")
    p.set_defaults(func=run)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 3600, got {text}")
    return value


def authorizer(args: argparse.Namespace) -> Any:
    """Who may read the agent's view of the cluster on the network (enforcer.agent.authn)."""
    from enforcer.agent.authn import RefuseAll, TokenReviewAuthorizer

    mode = args.authn
    if mode == "auto":
        mode = "k8s" if args.source == "k8s" else "none"
    if mode == "none":
        return RefuseAll()
    from enforcer.sources.kubernetes import api_client

    api, _ = api_client(args.authn_kubeconfig or args.kubeconfig)
    return TokenReviewAuthorizer(api, args.node_name or "")


def auto_quarantine(args: argparse.Namespace, agent: Any, metrics: Any) -> Any:
    """The automatic quarantine with --auto-quarantine (else None): it writes through the
    API when the agent's source is one."""
    if not args.auto_quarantine:
        return None
    from enforcer import log
    from enforcer.quarantine.auto import AutoQuarantine, api_persister
    from enforcer.quarantine.detector import Detector

    persist = None
    if args.source == "k8s":
        from enforcer.sources.kubernetes import api_client

        persist = api_persister(api_client(args.kubeconfig)[0], args.node_name)
    else:
        log.get("agent").warning("--auto-quarantine without the Kubernetes API (--source "
                                 f"{args.source}): a quarantine holds in this agent only, "
                                 "until it restarts")
    detector = Detector(args.quarantine_scan_destinations, args.quarantine_scan_seconds)
    log.get("agent").info("automatic quarantine on", scan_destinations=detector.max_targets,
                          scan_seconds=detector.window)
    return AutoQuarantine(agent, detector, persist,
                          on_trigger=lambda t: metrics.auto_quarantines.labels(t.kind).inc())


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum` (argparse names the flag)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def datapath_config(args: argparse.Namespace) -> DatapathConfig:
    from enforcer.datapath import DatapathConfig

    overrides = {
        name: getattr(args, name)
        for name in (
            "max_endpoints",
            "max_identities",
            "max_policy_entries",
            "max_conntrack",
            "events_per_second",
            "endpoint_events_per_second",
            "pod_flows_per_second",
            "pod_flow_burst",
        )
        if getattr(args, name, None) is not None
    }
    return DatapathConfig(events_for_allowed_flows=getattr(args, "flow_events", False),
                          **overrides)


def run(args: argparse.Namespace) -> int:
    # Imported here: bcc is heavy, and other subcommands must not pay for it.
    from enforcer import log
    from enforcer.agent.flowcontext import AgentFlowContext
    from enforcer.agent.http import AgentHTTPServer, EventHub
    from enforcer.agent.intake import Intake, PrelistFeed
    from enforcer.agent.interfaces import InterfaceDiscovery
    from enforcer.agent.metrics import (
        AgentMetrics,
        DatapathCollector,
        FlowsCollector,
        SourceCollector,
    )
    from enforcer.agent.preflight import Preflight
    from enforcer.agent.runtime import Agent, EarlyCompile
    from enforcer.agent.upgrade import LayoutUpgrade
    from enforcer.datapath import Datapath
    from enforcer.datapath.pinguard import PinGuard
    from enforcer.flows.collector import FlowCollector
    from enforcer.flows.store import FlowStore
    from enforcer.sources.base import source_from_spec

    logger = log.get("agent")
    if args.source == "k8s" and not args.node_name:
        logger.error("--node-name (or $NODE_NAME) is required with --source k8s")
        return 2
    groups = accept_groups(args)
    if isinstance(groups, str):
        logger.error(groups)
        return 2
    if groups and args.source == "k8s":
        # The Kubernetes source watches a fixed list of resources; another group's
        # NetworkPolicy resource (its version found by discovery) is not among them yet.
        logger.error("--accept-group works with --source dir:PATH; the Kubernetes source "
                     "does not watch other groups' NetworkPolicies yet")
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    metrics = AgentMetrics()
    hub = EventHub(on_lost=metrics.events_lost.inc)
    flows = FlowStore(max_bytes=args.flow_store_max_mb * 2**20)
    # Served from the start: while the node lacks bpffs or kernel headers, /readyz says 503 and
    # /status why (enforcer.agent.preflight); then the agent's own answers.
    agent: Agent | None = None
    auto: Any = None  # enforcer.quarantine.auto.AutoQuarantine with --auto-quarantine
    preflight = Preflight(Path(args.pin_dir), logger, on_faults=metrics.set_faults)

    def is_ready() -> bool:
        return agent is not None and agent.is_ready()

    def snapshot() -> dict[str, Any]:
        if agent is None:
            return preflight.status(args.node_name, args.source)
        status = agent.snapshot()
        if auto is not None:  # what the automatic quarantine did about each pod
            status["quarantined"] = auto.status(status["quarantined"])
        return status

    http = AgentHTTPServer(
        args.metrics_addr, metrics.registry, is_ready, snapshot, hub, flows,
        authorizer=authorizer(args), api_socket=args.api_socket or None,
    )
    http.start()
    headers = preflight.wait(stop)
    if headers is None:  # stopped while waiting: nothing was attached or pinned
        http.stop()
        return 0
    logger.info("kernel headers", how=headers.how, path=str(headers.path or ""))

    source = source_from_spec(args.source, kubeconfig=args.kubeconfig, node_name=args.node_name)
    # The source lists the cluster, the listing is parsed into the cluster state and compiled,
    # while bcc compiles (the slow steps of a cold start); the loop starts at the first SYNCED.
    intake = Intake(source.describe, lambda kind: metrics.invalid_objects.labels(kind=kind).inc(),
                    accept_groups=groups)
    first_compile = EarlyCompile(intake.state, args.node_name, policy_mode=args.policy_mode)
    early: queue.Queue[Any] = queue.Queue()
    feed = PrelistFeed(intake, early, on_synced=first_compile)
    threading.Thread(target=source.run, args=(feed, stop), name="source", daemon=True).start()
    try:
        datapath = Datapath.open(Path(args.pin_dir), datapath_config(args))
    except Exception as exc:
        # Past the node checks, a failure here is a bug or an incompatible kernel, which
        # retrying does not fix: one line and exit (nothing was attached; kubelet restarts).
        logger.error("cannot start the datapath", error=f"{type(exc).__name__}: {exc}")
        stop.set()
        http.stop()
        return 1
    datapath.set_unknown_verdict(args.unknown_endpoint_verdict == "allow")
    agent = Agent(
        args.node_name,
        source,
        datapath,
        InterfaceDiscovery(args.interface_pattern),
        metrics,
        hub,
        started_queue=early,
        node_interface_pattern=args.node_interface_pattern,
        intake=intake,
        early=first_compile,
        policy_mode=args.policy_mode,
        pin_check=PinGuard(datapath.pin_dir, datapath.pinned_fds).check,
        upgrade=LayoutUpgrade.detect(datapath, Path(args.pin_dir), logger),
    )
    metrics.add_collector(
        DatapathCollector(datapath.counters, agent.pod_for_ifindex, datapath.map_pressure)
    )
    metrics.add_collector(SourceCollector(source))
    auto = auto_quarantine(args, agent, metrics)

    def on_drop(event: Any) -> None:
        assert agent is not None
        hub.publish(agent.describe_drop(event))
        if auto is not None:
            auto.on_drop(event)

    collector = FlowCollector(
        AgentFlowContext(agent, datapath),
        flows,
        on_drop=on_drop,
        on_record=metrics.count_verdicts,
        staged=intake.shadow,  # what the StagedNetworkPolicies would change (a no-op without)
    )
    metrics.add_collector(FlowsCollector(datapath.events_lost, flows.stats))

    def pump_events() -> None:
        while not stop.is_set():
            datapath.poll_events(200, collector.on_event)

    threading.Thread(target=pump_events, name="events", daemon=True).start()
    logger.info(
        "agent started",
        node=args.node_name,
        source=source.describe(),
        pin_dir=args.pin_dir,
        metrics=f"{args.metrics_addr.rpartition(':')[0]}:{http.port}",
    )
    try:
        agent.run(stop)
    finally:
        # Never detach programs or remove maps on exit: enforcement continues without us.
        http.stop()
        datapath.close()
        logger.info("agent stopped; datapath left in place")
    return 0
