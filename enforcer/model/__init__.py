"""The pure NetworkPolicy model: objects, loading, the indexed cluster state, verdicts."""

from enforcer.model.cluster import ClusterState, state_from
from enforcer.model.evaluate import DirectionVerdict, Verdict, evaluate, evaluate_ip
from enforcer.model.loader import LoadResult, ValidationError, load_paths, parse_object
from enforcer.model.objects import (
    ContainerPort,
    IPBlock,
    LabelRequirement,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Pod,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
)

__all__ = [
    "ClusterState",
    "ContainerPort",
    "DirectionVerdict",
    "IPBlock",
    "LabelRequirement",
    "LabelSelector",
    "LoadResult",
    "Namespace",
    "NetworkPolicy",
    "Pod",
    "PolicyPeer",
    "PolicyPort",
    "PolicyRule",
    "ValidationError",
    "Verdict",
    "evaluate",
    "evaluate_ip",
    "load_paths",
    "parse_object",
    "state_from",
]
