"""The labels that name a workload's pods for as long as the workload exists.

A Deployment's pods differ in `pod-template-hash` from one rollout to the next, a
StatefulSet's by pod name and index, a DaemonSet's by revision: selectors built on those
would stop matching at the next rollout. What is left of the labels every pod shares is the
workload's stable selector.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from enforcer.model.cluster import ClusterState
from enforcer.model.objects import SERVICE_ACCOUNT_LABEL, LabelSelector, NetworkPolicy, Pod

UNSTABLE_LABEL_KEYS = frozenset({
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "kubernetes.io/hostname",
    # The model's own label, set from spec.serviceAccountName on every pod: selecting by it is
    # the author's choice. Advice stays a NetworkPolicy any enforcer reads the same way (on
    # another, no pod carries this label and the policy would select nothing).
    SERVICE_ACCOUNT_LABEL,
})
# Where a pod was scheduled is not who it is.
UNSTABLE_LABEL_PREFIXES = ("topology.kubernetes.io/", "failure-domain.beta.kubernetes.io/")


def is_stable_label(key: str) -> bool:
    return key not in UNSTABLE_LABEL_KEYS and not key.startswith(UNSTABLE_LABEL_PREFIXES)


def stable_labels(pods: Iterable[Pod]) -> dict[str, str]:
    """Labels (key and value) that every pod carries, minus the unstable ones; sorted."""
    common: dict[str, str] | None = None
    for pod in pods:
        labels = {k: v for k, v in pod.labels.items() if is_stable_label(k)}
        common = labels if common is None else {
            k: v for k, v in common.items() if labels.get(k) == v
        }
    return dict(sorted((common or {}).items()))


def pods_matching(state: ClusterState, namespace: str, labels: Mapping[str, str]) -> set[str]:
    """Endpoint pods of `namespace` that a podSelector of `labels` selects."""
    probe = NetworkPolicy(namespace=namespace, name="probe",
                          pod_selector=LabelSelector(match_labels=labels))
    return state.pods_selected_by(probe)


def selector_manifest(labels: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """A podSelector as written: `{}` (every pod) when there are no labels."""
    return {"matchLabels": dict(labels)} if labels else {}
