"""The one interface every object source implements, and the factory for `--source SPEC`.

A source turns some view of the cluster (the Kubernetes API, a folder of manifests) into a
stream of `SourceEvent`s. The consumer applies them in order; `RESET(kind)` followed by ADDED
events and `SYNCED` replaces everything of that kind, so a source never has to compute deletions
it could not observe (a watch that expired while the agent was away).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, runtime_checkable

# The kinds a source delivers; anything else is noted and dropped at the source.
KIND_NAMESPACE = "Namespace"
KIND_POD = "Pod"
KIND_NETWORK_POLICY = "NetworkPolicy"
KIND_NODE = "Node"
KIND_SERVICE = "Service"
KIND_ENDPOINT_SLICE = "EndpointSlice"
# enforcer.dev/v1alpha1, a custom resource: judged in a shadow, never enforced.
KIND_STAGED_NETWORK_POLICY = "StagedNetworkPolicy"
KNOWN_KINDS = (
    KIND_NAMESPACE,
    KIND_POD,
    KIND_NETWORK_POLICY,
    KIND_NODE,
    KIND_SERVICE,
    KIND_ENDPOINT_SLICE,
    KIND_STAGED_NETWORK_POLICY,
)


class EventType(Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    # Every kind has completed its initial list (or a relist completed): the consumer's view is
    # now a complete state of the cluster.
    SYNCED = "SYNCED"
    # A relist of `kind` starts: the ADDED events up to the next SYNCED are all of that kind;
    # objects of that kind not among them are gone.
    RESET = "RESET"


@dataclass(frozen=True)
class SourceEvent:
    type: EventType
    kind: str | None  # None for SYNCED; the relisted kind for RESET
    obj: Mapping[str, Any] | None  # raw camelCase dict; for DELETED the last known object
    resource_version: str | None = None
    # Set when the object broke a sane limit (enforcer.sources.limits: why): `obj` then holds
    # only its kind and name, and the consumer keeps the object's last valid version.
    rejected: str | None = None
    # Where the object was read, when the source knows better than its describe() (a folder
    # source: the file): validation errors name it.
    origin: str | None = None


Emit = Callable[[SourceEvent], None]


@runtime_checkable
class Source(Protocol):
    def run(self, emit: Emit, stop: threading.Event) -> None:
        """Emit events until `stop` is set. Never raises on transient errors."""
        ...

    @property
    def healthy(self) -> bool:
        """False while the source cannot observe the cluster (API unreachable, watch broken)."""
        ...

    def describe(self) -> str: ...


def object_key(kind: str, obj: Mapping[str, Any]) -> tuple[str, str | None, str]:
    """(kind, namespace, name): the identity sources and consumers track objects by."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    ns = meta.get("namespace")
    name = meta.get("name")
    return (kind, ns if isinstance(ns, str) and ns else None, name if isinstance(name, str) else "")


def source_from_spec(spec: str, *, kubeconfig: str | None, node_name: str | None) -> Source:
    """`k8s` (in-cluster config, else the kubeconfig) or `dir:PATH` (a folder of manifests)."""
    if spec == "k8s":
        from enforcer.sources.kubernetes import (
            CLUSTER_POLICY_KINDS,
            DEFAULT_KINDS,
            KubernetesSource,
        )

        # Services and EndpointSlices: the datapath judges egress to a Service after DNAT
        # and needs its frontends (bpf/lib/services.h). StagedNetworkPolicies when their CRD
        # is installed (the source waits for it otherwise): flows judged in a shadow. The
        # cluster-scoped policies likewise, each when its CRD is installed.
        kinds = (*DEFAULT_KINDS, KIND_SERVICE, KIND_ENDPOINT_SLICE, KIND_STAGED_NETWORK_POLICY,
                 *CLUSTER_POLICY_KINDS)
        return KubernetesSource.from_config(kubeconfig=kubeconfig, node_name=node_name, kinds=kinds)
    if spec.startswith("dir:"):
        from enforcer.sources.directory import DirectorySource

        path = spec[len("dir:") :]
        if not path:
            raise ValueError("--source dir:PATH needs a path")
        return DirectorySource(path)
    raise ValueError(f"unknown source {spec!r}: use 'k8s' or 'dir:PATH'")
