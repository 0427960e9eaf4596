"""What the agent needs and exposes (its CLI contract): the manifests are checked against it."""

from __future__ import annotations

KUBERNETES_VERSION = "1.31.0"  # schemas shipped by kubernetes-validate; kind's node image too

PIN_DIR = "/sys/fs/bpf/enforcer"
METRICS_PORT = 9830

# Exactly these, each justified in daemonset/daemonset.yaml.
AGENT_CAPABILITIES = {"BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN", "SYS_RESOURCE"}

# (apiGroup, resource) the agent lists and watches; nothing else, and only these verbs.
AGENT_READS = {
    ("", "pods"),
    ("", "namespaces"),
    ("", "nodes"),
    ("", "services"),
    ("networking.k8s.io", "networkpolicies"),
    ("discovery.k8s.io", "endpointslices"),
    ("enforcer.dev", "stagednetworkpolicies"),
    ("policy.networking.k8s.io", "clusternetworkpolicies"),
    ("policy.networking.k8s.io", "adminnetworkpolicies"),
    ("policy.networking.k8s.io", "baselineadminnetworkpolicies"),
}
READ_VERBS = {"get", "list", "watch"}
# The automatic quarantine's writes (enforcer agent --auto-quarantine, enforcer/quarantine/):
# the pod's annotation, and an Event on it. (apiGroup, resource, verb).
AGENT_QUARANTINE_WRITES = {("", "pods", "patch"), ("", "events", "create")}

# Node paths the agent mounts, and whether read-only.
AGENT_HOST_PATHS = {
    "/sys/fs/bpf": False,  # pins are written here
    "/run/netns": True,
    "/lib/modules": True,
    "/usr/src": True,
    "/run/enforcer": False,  # the agent's API socket
}

# Every metric the agent exports (a histogram also has _bucket, _sum and _count series).
METRICS = {
    "enforcer_drop_count_total",
    "enforcer_forward_count_total",
    "enforcer_policy_implementation_delay_seconds",
    "enforcer_policy_implementation_cpu_seconds",
    "enforcer_bpf_map_pressure",
    "enforcer_endpoints",
    "enforcer_watch_restarts_total",
    "enforcer_last_sync_timestamp_seconds",
    "enforcer_ready",
    "enforcer_map_full_total",
}
HISTOGRAMS = {
    "enforcer_policy_implementation_delay_seconds",
    "enforcer_policy_implementation_cpu_seconds",
}


def series_names() -> set[str]:
    """Every series name a query may use."""
    names = set(METRICS)
    for h in HISTOGRAMS:
        names |= {f"{h}_bucket", f"{h}_sum", f"{h}_count"}
    return names
