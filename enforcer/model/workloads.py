"""A pod's workload: the controller that owns it, as people name it.

A Deployment's pods are owned by a ReplicaSet named `<deployment>-<pod-template-hash>`; the
Deployment is found by removing the pod's own `pod-template-hash` label value from the end of
that name (no ReplicaSet needs listing). StatefulSets, DaemonSets, Jobs and other controllers
name themselves; a CronJob's Job stays a Job (its name changes per run, as the Job does). A pod
without a controller is its own workload.
"""

from __future__ import annotations

from dataclasses import dataclass

from enforcer.model.objects import Pod

TEMPLATE_HASH_LABEL = "pod-template-hash"


@dataclass(frozen=True, order=True)
class Workload:
    namespace: str
    kind: str  # Deployment, StatefulSet, DaemonSet, Job, ReplicaSet, ..., or Pod
    name: str

    @property
    def key(self) -> str:
        """`namespace/name`, as flows print it."""
        return f"{self.namespace}/{self.name}"


def workload_of(pod: Pod) -> Workload:
    if pod.owner is None:
        return Workload(pod.namespace, "Pod", pod.name)
    kind, name = pod.owner
    if kind == "ReplicaSet":
        suffix = pod.labels.get(TEMPLATE_HASH_LABEL)
        if suffix and name.endswith(f"-{suffix}") and len(name) > len(suffix) + 1:
            return Workload(pod.namespace, "Deployment", name[: -len(suffix) - 1])
    return Workload(pod.namespace, kind, name)
