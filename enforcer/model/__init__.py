"""The pure NetworkPolicy model: objects, loading, the indexed cluster state, verdicts, and
Services (verdicts through a Service are those of the backend kube-proxy chooses); cluster-scoped
policies (ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy) in their tiers
around NetworkPolicy (enforcer.model.clusterpolicy)."""

from enforcer.model.cluster import ClusterState, state_from
from enforcer.model.clusterpolicy import ClusterPolicy
from enforcer.model.evaluate import DirectionVerdict, Verdict, evaluate, evaluate_ip
from enforcer.model.evaluate_service import BackendVerdict, evaluate_frontend, evaluate_service
from enforcer.model.loader import LoadResult, ValidationError, load_paths, parse_object
from enforcer.model.nodes import Node
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
from enforcer.model.parse_clusterpolicy import parse_cluster_object
from enforcer.model.parse_services import parse_service_object
from enforcer.model.services import Backend, EndpointSlice, Service, ServicePort

__all__ = [
    "Backend",
    "BackendVerdict",
    "ClusterPolicy",
    "ClusterState",
    "ContainerPort",
    "DirectionVerdict",
    "EndpointSlice",
    "IPBlock",
    "LabelRequirement",
    "LabelSelector",
    "LoadResult",
    "Namespace",
    "NetworkPolicy",
    "Node",
    "Pod",
    "PolicyPeer",
    "PolicyPort",
    "PolicyRule",
    "Service",
    "ServicePort",
    "ValidationError",
    "Verdict",
    "evaluate",
    "evaluate_frontend",
    "evaluate_ip",
    "evaluate_service",
    "load_paths",
    "parse_cluster_object",
    "parse_object",
    "parse_service_object",
    "state_from",
]
