"""The benchmarks `make bench` runs: one entry each, with a quick and a full configuration, and
an adapter that turns the module's own result into figures of the common schema.

Adding a benchmark is one `Benchmark(...)` in BENCHMARKS: its module's `run()`, the two
configurations, `collect` (run it, return figures) and `promises` (the figure keys a run with
that configuration yields; the tests hold every run to it).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from bench.report import Figure, Params, Target

Note = Callable[[str], None]
Config = dict[str, Any]
PY = ".venv/bin/python"


@dataclass(frozen=True)
class Benchmark:
    name: str
    module: str  # imported when the entry runs, so a missing module fails only its entry
    description: str
    quick: Config
    full: Config
    collect: Callable[[ModuleType, Config, Note], list[Figure]]
    promises: Callable[[Config], list[str]]
    smoke: Config | None = None  # smallest configuration that still yields every figure (tests)

    def config(self, profile: str) -> Config:
        if profile == "smoke":
            return self.smoke if self.smoke is not None else self.quick
        return self.quick if profile == "quick" else self.full

    def command(self, profile: str) -> str:
        flag = {"full": "", "quick": " --quick", "smoke": " --profile smoke"}[profile]
        return f"{PY} -m bench.run{flag} --only {self.name}"

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


def key(name: str, params: Params) -> str:
    return Figure(name, "", [], params).key


# -- model scale (bench/model_scale.py) ---------------------------------------------------------

MODEL_FIGURES = {
    # figure name: (result field, unit, scale, description)
    "model.load_time": ("load_s", "s", 1.0, "parse, validate and index every object"),
    "model.resolve_time": ("resolve_s", "s", 1.0, "resolve every policy's subjects and peers"),
    "model.load_resolve_time": ("total_s", "s", 1.0, "load plus resolve"),
    "model.peak_rss": ("peak_rss_mb", "MB", 1.0, "peak RSS of the process, interpreter included"),
    "model.verdict_time": ("evaluate_us", "us", 1.0, "one pod-to-pod verdict (reference model)"),
}


def cluster_size(pods: int, cfg: Config) -> Params:
    """Policies scale alongside pods: cfg's policies per pod and pods per namespace."""
    return {
        "pods": pods,
        "namespaces": max(1, pods // int(cfg["pods_per_namespace"])),
        "policies": round(pods * float(cfg["policies_per_pod"])),
    }


def _model_collect(mod: ModuleType, cfg: Config, note: Note) -> list[Figure]:
    figures = []
    for pods in cfg["sizes"]:
        size = cluster_size(pods, cfg)
        runs = []
        for r in range(cfg["repeats"]):
            note(f"{pods} pods, {size['policies']} policies: run {r + 1}/{cfg['repeats']}")
            # One repeat per fresh process: each run's peak RSS is its own.
            runs.append(mod.run(size["pods"], size["namespaces"], size["policies"], 1))
        for name, (field, unit, scale, text) in MODEL_FIGURES.items():
            target = None
            if pods == 10_000 and name == "model.load_resolve_time":
                target = Target(below=2.0)
            elif pods == 10_000 and name == "model.peak_rss":
                target = Target(below=300.0)
            figures.append(
                Figure(
                    name,
                    unit,
                    [r[field] * scale for r in runs],
                    dict(size),
                    description=text,
                    target=target,
                )
            )
    return figures


def _model_promises(cfg: Config) -> list[str]:
    return [key(n, cluster_size(p, cfg)) for p in cfg["sizes"] for n in MODEL_FIGURES]


MODEL_BASE = {"pods_per_namespace": 20, "policies_per_pod": 0.2}


# -- compiler (bench/compile_latency.py) --------------------------------------------------------

COMPILE_EVENTS = (
    "pod_add",
    "pod_add_new_class",
    "pod_delete",
    "label_change",
    "local_label_change",
    "policy_change",
    "namespace_relabel",
    "ipblock_add_remove",  # every 10th round only: n is events / 10
)


def _compile_collect(mod: ModuleType, cfg: Config, note: Note) -> list[Figure]:
    figures = []
    for pods in cfg["sizes"]:
        size = cluster_size(pods, cfg)
        calls = []
        for r in range(cfg["repeats"]):
            note(
                f"{pods:,} pods: run {r + 1}/{cfg['repeats']} (full compile, {cfg['events']} "
                "events of each kind)"
            )
            calls.append(
                mod.run(
                    size["pods"], size["namespaces"], size["policies"], cfg["nodes"], cfg["events"]
                )
            )
        local = f"{calls[0]['local_endpoints']} local endpoints ({cfg['nodes']} nodes)"
        figures.append(
            Figure(
                "compile.full_time",
                "s",
                [c["full_s"] for c in calls],
                dict(size),
                target=Target(below=5.0) if pods == 10_000 else None,
                description=f"Compiler.full(): identities and every local table; {local}",
            )
        )
        figures.append(
            Figure(
                "compile.relist_time",
                "s",
                [c["relist_s"] for c in calls],
                dict(size),
                description="Compiler.full() again on an unchanged state (a relist)",
            )
        )
        if pods not in cfg["event_sizes"]:
            continue
        for event in COMPILE_EVENTS:
            params: Params = {**size, "event": event}
            n = calls[0]["events"][event]["n"]
            figures.append(
                Figure(
                    "compile.event_compute_time",
                    "ms",
                    [c["events"][event]["median_ms"] for c in calls],
                    params,
                    target=Target(below=5.0) if event == "pod_add" else None,
                    description=f"model update + incremental compile; each value: the "
                    f"median of {n} events; {local}",
                )
            )
            figures.append(
                Figure(
                    "compile.event_compute_p99",
                    "ms",
                    [c["events"][event]["p99_ms"] for c in calls],
                    params,
                    description=f"as event_compute_time; each value: the p99 of {n} events",
                )
            )
    return figures


def _compile_promises(cfg: Config) -> list[str]:
    out = []
    for pods in cfg["sizes"]:
        size = cluster_size(pods, cfg)
        out += [key("compile.full_time", size), key("compile.relist_time", size)]
        if pods in cfg["event_sizes"]:
            for event in COMPILE_EVENTS:
                out += [
                    key("compile.event_compute_time", {**size, "event": event}),
                    key("compile.event_compute_p99", {**size, "event": event}),
                ]
    return out


# -- lab timing (bench/lab_timing.py) -----------------------------------------------------------


def _lab_collect(mod: ModuleType, cfg: Config, note: Note) -> list[Figure]:
    r = mod.run(quick=cfg["quick"], repeats=cfg["repeats"], progress=note)
    size: Params = {"pods": r["pods"]}
    timeout = r["probe_timeout_s"]
    return [
        Figure(
            "lab.up_time",
            "s",
            r["up_s"],
            size,
            target=Target(below=10.0),
            description="`lab up` of the upstream 9-pod model until every agent enforces it",
        ),
        Figure(
            "lab.probe_time",
            "s",
            r["probe_open_s"],
            {**size, "policy": "none"},
            target=Target(below=3.0),
            description="one 81-pair TCP/80 probe, every pair allowed",
        ),
        Figure(
            "lab.probe_time",
            "s",
            r["probe_denied_s"],
            {**size, "policy": "default-deny"},
            description=f"one 81-pair TCP/80 probe, every cross-pod pair denied (each "
            f"denied pair waits the {timeout:g} s probe timeout, in parallel)",
        ),
        Figure(
            "lab.apply_time",
            "s",
            r["apply_s"],
            {**size, "policy": "default-deny"},
            description="`lab apply` of a default-deny policy per namespace until enforced",
        ),
        Figure(
            "lab.down_time",
            "s",
            r["down_s"],
            size,
            description="`lab down`: namespaces, processes and pinned maps removed",
        ),
    ]


def _lab_promises(cfg: Config) -> list[str]:
    size: Params = {"pods": 9}
    return [
        key("lab.up_time", size),
        key("lab.probe_time", {**size, "policy": "none"}),
        key("lab.probe_time", {**size, "policy": "default-deny"}),
        key("lab.apply_time", {**size, "policy": "default-deny"}),
        key("lab.down_time", size),
    ]


# -- agent latency (bench/agent_latency.py) -----------------------------------------------------

AGENT_EVENTS = ("pod_add", "pod_delete", "label_change", "policy_change")


def _agent_collect(mod: ModuleType, cfg: Config, note: Note) -> list[Figure]:
    r = mod.run(
        quick=cfg["quick"],
        latency_size=cfg["latency_size"],
        scale_sizes=cfg["scale_sizes"],
        changes=cfg["changes"],
        cold_starts=cfg["cold_starts"],
        progress=note,
    )
    figures = []
    lat = r["latency"]
    lsize: Params = {"pods": lat["pods"], "policies": lat["policies"]}
    for event in AGENT_EVENTS:
        figures.append(
            Figure(
                "agent.event_to_enforced",
                "ms",
                lat["ms"][event],
                {**lsize, "event": event},
                target=Target(below=100.0, statistic="p99"),
                description="manifest renamed into the agent's folder (polled every 100 ms) "
                "until a probe's verdict flips (fresh TCP connections every "
                f"{lat['probe_interval_ms']:g} ms)",
            )
        )
        figures.append(
            Figure(
                "agent.event_compute_time",
                "ms",
                lat["compute_ms"][event],
                {**lsize, "event": event},
                description="the agent's own histogram (change received to maps written, wall "
                "time: includes the kernel's RCU wait after each policy map swap), mean per "
                "change, scraped around each change",
            )
        )
        figures.append(
            Figure(
                "agent.event_cpu_time",
                "ms",
                lat["cpu_ms"][event],
                {**lsize, "event": event},
                target=Target(below=5.0) if event == "pod_add" else None,
                description="CPU the agent's loop spent on the change (its "
                "enforcer_policy_implementation_cpu_seconds histogram), mean per change",
            )
        )
    figures.append(
        Figure(
            "agent.rss_after_changes",
            "MB",
            [lat["rss_after_changes_mb"]],
            lsize,
            target=Target(below=300.0) if lat["pods"] >= 10_000 else None,
            description="agent VmRSS after every latency round (steady state)",
        )
    )
    for s in r["scale"]:
        size: Params = {"pods": s["pods"], "policies": s["policies"]}
        big = s["pods"] == 10_000
        figures.append(
            Figure(
                "agent.cold_start_time",
                "s",
                s["cold_start_s"],
                size,
                target=Target(below=5.0) if big else None,
                description="agent start (no pinned state, fresh veths) until /readyz is "
                "200 and probes give the policy's verdicts",
            )
        )
        figures.append(
            Figure(
                "agent.rss",
                "MB",
                s["rss_mb"],
                size,
                target=Target(below=300.0) if big else None,
                description="agent VmRSS right after its first full enforcement",
            )
        )
    return figures


def _agent_promises(cfg: Config) -> list[str]:
    pods, policies = cfg["latency_size"]
    lsize: Params = {"pods": pods, "policies": policies}
    out = [key("agent.rss_after_changes", lsize)]
    for e in AGENT_EVENTS:
        out += [
            key("agent.event_to_enforced", {**lsize, "event": e}),
            key("agent.event_compute_time", {**lsize, "event": e}),
            key("agent.event_cpu_time", {**lsize, "event": e}),
        ]
    for pods, policies in cfg["scale_sizes"]:
        out += [
            key("agent.cold_start_time", {"pods": pods, "policies": policies}),
            key("agent.rss", {"pods": pods, "policies": policies}),
        ]
    return out


# -- datapath (bench/datapath.py) --------------------------------------------------------------

DATAPATH_METRICS = {
    # result field: (figure name, unit, target on the ratio to no program)
    # Issue 23's targets (issue 3 had TCP 0.95 and new connections 0.90).
    "tcp_gbps": ("datapath.tcp_throughput", "Gbit/s", Target(above=0.98)),
    "udp_kpps": ("datapath.udp_packet_rate", "kpackets/s", Target(above=0.96)),
    "conn_kps": ("datapath.connection_rate", "kconnections/s", Target(above=0.95)),
}
# The same metrics, ours over the TC hooks with an empty program (bench/datapath.py).
DATAPATH_VS_EMPTY = "datapath.vs_empty_program"
DATAPATH_RULES = [1, 100, 1_000, 10_000]  # ours at each; iptables at the largest
SCENARIO = re.compile(
    r"^(?:(no program)|(TC hooks, empty program)|(ours|iptables\+ipset), (\d+) rules)$")


def _scenario_params(name: str) -> Params:
    m = SCENARIO.match(name)
    if m is None:
        raise ValueError(f"datapath scenario {name!r} not understood")
    if m.group(1):
        return {"variant": "none"}
    if m.group(2):
        return {"variant": "empty program"}
    return {"variant": "ours" if m.group(3) == "ours" else "iptables", "rules": int(m.group(4))}


TEST_RUN_PACKETS = (
    ("established", "established_ns"),
    ("reply", "reply_ns"),
    ("local_to_pod", "local_to_pod_ns"),
    ("denied_new_flow", "denied_new_flow_ns"),
)


def _datapath_collect(mod: ModuleType, cfg: Config, note: Note) -> list[Figure]:
    # The module returns each scenario's median over its own interleaved rounds; one call is
    # one value here, so min/max show the spread between calls.
    calls = []
    for i in range(cfg["calls"]):
        note(f"call {i + 1}/{cfg['calls']}: every scenario")
        calls.append(mod.run(cfg["quick"], tuple(cfg["rules"])))
    first = calls[0]
    def each(field: str) -> str:  # each metric has rounds of its own (bench/datapath.py)
        r = first["rounds"][field]
        return f"each value: the median of {r['rounds']} round(s) of {r['seconds']:g} s"
    figures = []
    for scenario in first["scenarios"]:
        params = _scenario_params(scenario)
        for field, (name, unit, target) in DATAPATH_METRICS.items():
            is_base = params["variant"] == "none"
            figures.append(
                Figure(
                    name,
                    unit,
                    [c["scenarios"][scenario][field] for c in calls],
                    params,
                    description=f"{scenario}; {each(field)}",
                    baseline=None if is_base else key(name, {"variant": "none"}),
                    target=target if params["variant"] == "ours" else None,
                    paired_ratios=None if is_base else
                    [c["ratios"][scenario][field] for c in calls],
                )
            )
    for scenario in first["vs_empty_program"]:
        for field, (name, _, _) in DATAPATH_METRICS.items():
            figures.append(
                Figure(
                    DATAPATH_VS_EMPTY,
                    "x",
                    [c["vs_empty_program"][scenario][field] for c in calls],
                    {**_scenario_params(scenario), "metric": name.split(".", 1)[1]},
                    description=f"{scenario} over the TC hooks with an empty program, the "
                    f"median of the ratios paired by round ({each(field)})",
                )
            )
    for scenario in first["ns_per_packet"]:
        figures.append(
            Figure(
                "datapath.program_time_per_packet",
                "ns",
                [c["ns_per_packet"][scenario] for c in calls],
                _scenario_params(scenario),
                description="our program's run time per packet and hook, from the kernel's "
                "BPF run-time statistics, switched on for one extra run of each metric after "
                "the measured rounds (they cost each program run two clock reads)",
            )
        )
    for scenario in first["test_run"]:
        rules = int(scenario.split()[0])
        for packet, field in TEST_RUN_PACKETS:
            figures.append(
                Figure(
                    "datapath.test_run_time",
                    "ns",
                    [c["test_run"][scenario][field] for c in calls],
                    {"rules": rules, "packet": packet},
                    description="BPF_PROG_TEST_RUN on one packet (no traffic noise): an "
                    "established flow's at its source's hook, its reply's, a flow from another "
                    "local pod at the destination's hook, or a denied new flow's",
                )
            )
    for mode, field in (("one by one", "one_by_one_ms"), ("batched", "batched_ms")):
        figures.append(
            Figure(
                "datapath.table_swap_time",
                "ms",
                [c["swap"][field] for c in calls],
                {"endpoints": mod.SWAP_ENDPOINTS, "mode": mode},
                description="a new table swapped in for each of that many endpoints (a policy "
                "change selecting that many local pods): one set_endpoint each, every one "
                "waiting for the kernel's RCU grace period, or one set_endpoints call (the "
                "agent's way: one wait per plan phase); median of 3",
                baseline=None if mode == "one by one" else key(
                    "datapath.table_swap_time",
                    {"endpoints": mod.SWAP_ENDPOINTS, "mode": "one by one"}),
            )
        )
    # One value per call each.
    for name, unit, field, description in (
        ("datapath.flow_events_drained", "events", "flow_events_drained",
         "flow events the agent's pipeline drained during the call: ours runs as the agent "
         "does by default, every allowed new flow reported"),
        ("datapath.bcc_compile_time", "s", "compile_seconds",
         "bcc compile and load of the TC program"),
        ("datapath.loader_rss", "MB", "rss_mb_after_load",
         "RSS of the benchmark process after loading the program (bcc and LLVM included)"),
    ):
        figures.append(Figure(name, unit, [c[field] for c in calls], description=description))
    return figures


def _datapath_promises(cfg: Config) -> list[str]:
    out = ["datapath.bcc_compile_time", "datapath.loader_rss", "datapath.flow_events_drained"]
    out += [key("datapath.table_swap_time", {"endpoints": 50, "mode": m})
            for m in ("one by one", "batched")]
    variants: list[Params] = [
        {"variant": "none"},
        {"variant": "empty program"},
        *({"variant": "ours", "rules": n} for n in cfg["rules"]),
        {"variant": "iptables", "rules": max(cfg["rules"])},
    ]
    for name, _, _ in DATAPATH_METRICS.values():
        out += [key(name, v) for v in variants]
    out += [key("datapath.program_time_per_packet", v) for v in variants[2:-1]]
    out += [key(DATAPATH_VS_EMPTY, {**v, "metric": name.split(".", 1)[1]})
            for v in variants[2:-1] for name, _, _ in DATAPATH_METRICS.values()]
    out += [
        key("datapath.test_run_time", {"rules": n, "packet": p})
        for n in cfg["rules"]
        for p, _ in TEST_RUN_PACKETS
    ]
    return out


# -- cluster-scoped policies (bench/tiers_*.py, issue 21) ---------------------------------------


def _tiers_datapath_collect(mod: ModuleType, cfg: Config, note: Note) -> list[Figure]:
    calls = []
    for i in range(cfg["calls"]):
        note(f"call {i + 1}/{cfg['calls']}: no program, 0 and {cfg['rules']} cluster rules")
        calls.append(mod.run(cfg["quick"], cfg["rules"], cfg.get("seconds")))
    first = calls[0]
    figures = []
    for scenario in first["scenarios"]:
        is_base = scenario == "no program"
        params: Params = ({"variant": "none"} if is_base else
                          {"variant": "ours", "cluster_rules": int(scenario.split()[1])})
        for field, (name, unit, _) in DATAPATH_METRICS.items():
            tname = "tiers_" + name
            r = first["rounds"][field]
            figures.append(Figure(
                tname, unit, [c["scenarios"][scenario][field] for c in calls], params,
                description=f"{scenario}; each value: the median of {r['rounds']} round(s) of "
                f"{r['seconds']:g} s",
                baseline=None if is_base else key(tname, {"variant": "none"}),
                paired_ratios=None if is_base else [c["ratios"][scenario][field] for c in calls],
            ))
    for scenario in first["vs_none"]:
        n = int(scenario.split()[1])
        for field, (name, _, _) in DATAPATH_METRICS.items():
            figures.append(Figure(
                "tiers_datapath.vs_no_cluster_rules", "x",
                [c["vs_none"][scenario][field] for c in calls],
                {"metric": name.split(".", 1)[1], "cluster_rules": n},
                description="this rate over the same build's with no cluster rules, paired "
                "within each round, median over rounds (0.98: within 0.02)",
                target=Target(above=0.98) if n == max(cfg["rules"]) else None,
            ))
    return figures


def _tiers_datapath_promises(cfg: Config) -> list[str]:
    out = []
    for name, _, _ in DATAPATH_METRICS.values():
        out.append(key("tiers_" + name, {"variant": "none"}))
        out += [key("tiers_" + name, {"variant": "ours", "cluster_rules": n})
                for n in (0, *cfg["rules"])]
        out += [key("tiers_datapath.vs_no_cluster_rules",
                    {"metric": name.split(".", 1)[1], "cluster_rules": n}) for n in cfg["rules"]]
    return out


def _tiers_compile_collect(mod: ModuleType, cfg: Config, note: Note) -> list[Figure]:
    note(f"{cfg['pods']:,} pods: none / {cfg['cluster_policies']} realistic"
         + (f" / {cfg['stress_policies']} stress at {cfg['stress_pods']:,} pods"
            if cfg["stress_policies"] else ""))
    mixes = mod.run(cfg["pods"], cfg["pods"] // 5, 100, cfg["cluster_policies"], cfg["events"],
                    cfg["repeats"], False)
    if cfg["stress_policies"]:
        mixes["stress"] = [mod.measure(cfg["stress_pods"], cfg["stress_pods"] // 5, 100,
                                       cfg["stress_policies"], "stress", 0)
                           for _ in range(cfg["repeats"])]
    figures = []
    for mix, runs in mixes.items():
        first = runs[0]
        params: Params = {"pods": first["pods"], "cluster_policies": first["cluster_policies"],
                          "mix": "none" if mix == "none" else mix}
        local = f"{first['local_endpoints']} local endpoints (node-0 of 100)"
        figures += [
            Figure("tiers_compile.full_time", "s", [x["full_s"] for x in runs], params,
                   description=f"Compiler.full(); {local}"),
            Figure("tiers_compile.peak_rss", "MB", [x["peak_rss_mb"] for x in runs], params,
                   description="peak RSS of a fresh process: generator input, state, compiler"),
            Figure("tiers_compile.entries_per_endpoint", "entries",
                   [x["entries_per_endpoint_mean"] for x in runs], params,
                   description="allow + deny entries per local endpoint's table, mean"),
        ]
        if "change" in first:
            figures += [
                Figure(f"tiers_compile.change_compute_{stat}", "ms",
                       [x["change"][f"{stat}_ms"] for x in runs], params,
                       description="one tenant guardrail's rule toggled Pass <-> Deny: "
                       f"state upsert + incremental compile ({first['change']['n']} changes, "
                       f"{first['change']['tenant_local_endpoints']} local endpoints selected)")
                for stat in ("median", "p99")]
    return figures


def _tiers_compile_promises(cfg: Config) -> list[str]:
    def p(cp: int, mix: str, pods: int) -> Params:
        return {"pods": pods, "cluster_policies": cp, "mix": mix}
    sets = [p(0, "none", cfg["pods"]), p(cfg["cluster_policies"], "realistic", cfg["pods"])]
    if cfg["stress_policies"]:
        sets.append(p(cfg["stress_policies"], "stress", cfg["stress_pods"]))
    out = [key(f"tiers_compile.{n}", s) for s in sets
           for n in ("full_time", "peak_rss", "entries_per_endpoint")]
    if cfg["events"]:
        out += [key(f"tiers_compile.change_compute_{s}", sets[1]) for s in ("median", "p99")]
    return out


def _tiers_agent_collect(mod: ModuleType, cfg: Config, note: Note) -> list[Figure]:
    r = mod.run(quick=True, pods=cfg["pods"], policies=cfg["pods"] // 5,
                cluster_policies=cfg["cluster_policies"], changes=cfg["changes"], progress=note)
    params: Params = {"pods": r["pods"], "policies": r["policies"],
                      "cluster_policies": r["cluster_policies"]}
    return [
        Figure("tiers_agent.event_to_enforced", "ms", r["ms"], params,
               target=Target(below=100.0, statistic="p99"),
               description="a tenant guardrail ClusterNetworkPolicy (rule toggled Pass <-> "
               "Deny) renamed into the agent's folder until a probe's verdict flips"),
        Figure("tiers_agent.event_compute_time", "ms", r["compute_ms"], params,
               description="the agent's own histogram (change received to maps written)"),
        Figure("tiers_agent.event_cpu_time", "ms", r["cpu_ms"], params,
               description="CPU the agent's loop spent on the change"),
        Figure("tiers_agent.cold_start_time", "s", [r["cold_start_s"]], params,
               description="agent start until enforced, with the cluster policies"),
        Figure("tiers_agent.rss", "MB", [r["rss_after_changes_mb"]], params,
               description="agent VmRSS after the changes"),
    ]


def _tiers_agent_promises(cfg: Config) -> list[str]:
    params: Params = {"pods": cfg["pods"], "policies": cfg["pods"] // 5,
                      "cluster_policies": cfg["cluster_policies"]}
    return [key(f"tiers_agent.{n}", params) for n in (
        "event_to_enforced", "event_compute_time", "event_cpu_time", "cold_start_time", "rss")]


# -- the list -----------------------------------------------------------------------------------


def _compile_config(sizes: list[int], events_at: list[int], repeats: int, events: int) -> Config:
    """Full compiles at `sizes`; `events` of each kind at the sizes `events_at`."""
    return {
        **MODEL_BASE,
        "sizes": sizes,
        "event_sizes": events_at,
        "repeats": repeats,
        "events": events,
        "nodes": 100,
    }


def _agent_config(
    latency_size: list[int],
    scale_sizes: list[list[int]],
    changes: int,
    cold_starts: int,
    quick: bool = True,
) -> Config:
    """[pods, policies] of the latency cluster and of each cold-start cluster."""
    return {
        "quick": quick,
        "latency_size": latency_size,
        "scale_sizes": scale_sizes,
        "changes": changes,
        "cold_starts": cold_starts,
    }


BENCHMARKS: list[Benchmark] = [
    Benchmark(
        name="model_scale",
        module="bench.model_scale",
        description="policy model: load and resolve time, memory, against cluster size",
        quick={**MODEL_BASE, "sizes": [1_000, 10_000], "repeats": 3},
        full={**MODEL_BASE, "sizes": [1_000, 10_000, 50_000], "repeats": 5},
        smoke={**MODEL_BASE, "sizes": [1_000, 10_000], "repeats": 1},
        collect=_model_collect,
        promises=_model_promises,
    ),
    Benchmark(
        name="compile_latency",
        module="bench.compile_latency",
        description="compiler: full compile and per-event compute, against cluster size",
        quick=_compile_config([1_000, 10_000], events_at=[10_000], repeats=1, events=50),
        full=_compile_config([1_000, 10_000, 50_000], events_at=[10_000], repeats=3, events=200),
        smoke=_compile_config([1_000], events_at=[1_000], repeats=1, events=20),
        collect=_compile_collect,
        promises=_compile_promises,
    ),
    Benchmark(
        name="datapath",
        module="bench.datapath",
        description="TCP, UDP and new-connection rates: no program / ours by rules / iptables",
        quick={"quick": True, "calls": 1, "rules": DATAPATH_RULES},
        full={"quick": False, "calls": 3, "rules": DATAPATH_RULES},
        # The smallest and the largest table: every kind of figure, two scenarios fewer.
        smoke={"quick": True, "calls": 1, "rules": [1, 10_000]},
        collect=_datapath_collect,
        promises=_datapath_promises,
    ),
    Benchmark(
        name="lab_timing",
        module="bench.lab_timing",
        description="`enforcer lab up` of the upstream 9-pod model and one 81-pair probe",
        quick={"quick": True, "repeats": 2},
        full={"quick": False, "repeats": 5},
        smoke={"quick": True, "repeats": 1},
        collect=_lab_collect,
        promises=_lab_promises,
    ),
    Benchmark(
        name="agent_latency",
        module="bench.agent_latency",
        description="agent: event-to-enforced latency checked with packets, cold start, memory",
        quick=_agent_config([2_000, 400], [[1_000, 200], [2_000, 400]], changes=10, cold_starts=1),
        full=_agent_config(
            [10_000, 2_000],
            [[1_000, 200], [10_000, 2_000], [50_000, 10_000]],
            changes=50,
            cold_starts=3,
            quick=False,
        ),
        # Two cold starts: the second one re-creates pods and pins, so that path is tested.
        smoke=_agent_config([1_000, 200], [[1_000, 200]], changes=3, cold_starts=2),
        collect=_agent_collect,
        promises=_agent_promises,
    ),
    Benchmark(
        name="tiers_compile",
        module="bench.tiers_compile",
        description="cluster policies in the compiler: full compile, memory, entries, a change",
        # A change costs seconds at 10,000 pods today (README): few events.
        quick={"pods": 10_000, "cluster_policies": 500, "events": 10, "repeats": 1,
               "stress_pods": 2_000, "stress_policies": 500},
        full={"pods": 10_000, "cluster_policies": 500, "events": 20, "repeats": 3,
              "stress_pods": 2_000, "stress_policies": 500},
        smoke={"pods": 1_000, "cluster_policies": 100, "events": 10, "repeats": 1,
               "stress_pods": 1_000, "stress_policies": 30},
        collect=_tiers_compile_collect,
        promises=_tiers_compile_promises,
    ),
    Benchmark(
        name="tiers_datapath",
        module="bench.tiers_datapath",
        description="TCP, UDP, new connections: 1 to 1,000 cluster rules against none",
        quick={"quick": True, "calls": 1, "rules": [1, 10, 100, 1000]},
        full={"quick": False, "calls": 1, "rules": [1, 10, 100, 1000]},
        smoke={"quick": True, "calls": 1, "rules": [1000], "seconds": 1},
        collect=_tiers_datapath_collect,
        promises=_tiers_datapath_promises,
    ),
    Benchmark(
        name="tiers_agent",
        module="bench.tiers_agent",
        description="agent: a cluster-policy change to enforced, checked with packets",
        quick={"pods": 2_000, "cluster_policies": 500, "changes": 10},
        full={"pods": 10_000, "cluster_policies": 500, "changes": 50},
        smoke={"pods": 1_000, "cluster_policies": 100, "changes": 2},
        collect=_tiers_agent_collect,
        promises=_tiers_agent_promises,
    ),
]


def by_name(name: str) -> Benchmark:
    for b in BENCHMARKS:
        if b.name == name:
            return b
    raise KeyError(f"no benchmark {name!r}; known: {', '.join(b.name for b in BENCHMARKS)}")
