"""The quarantine's state in the cluster: the pod's annotation (its value the reason) and an
Event on the pod, written with the official kubernetes client.

The annotation is set or removed with a JSON merge patch (RFC 7386) of the pod's metadata:
it touches nothing else, needs no resourceVersion, and `null` removes the key. The Event is
a core/v1 Event named as client-go's recorder names them (`POD.<unix nanoseconds in hex>`),
so `kubectl describe pod` and `kubectl get events` show it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from enforcer.model.objects import QUARANTINE_ANNOTATION

COMPONENT = "enforcer"
REASON_QUARANTINED = "Quarantined"
REASON_RELEASED = "QuarantineReleased"
MERGE_PATCH = "application/merge-patch+json"
TIMEOUT = 10.0  # seconds per request

# A namespace is a DNS label; a pod's name a DNS subdomain (as the API server validates them).
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def parse_pod_ref(text: str) -> tuple[str, str]:
    """NS/POD -> (namespace, name); ValueError says what is wrong."""
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise ValueError(f"{text!r}: give the pod as NAMESPACE/NAME (e.g. shop/web-0)")
    if not _LABEL.match(namespace):
        raise ValueError(f"{text!r}: namespace {namespace!r} is not a valid name (lowercase "
                         "letters, digits and '-', at most 63)")
    if not _SUBDOMAIN.match(name) or len(name) > 253:
        raise ValueError(f"{text!r}: pod name {name!r} is not a valid name (lowercase "
                         "letters, digits, '-' and '.', at most 253)")
    return namespace, name


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str
    quarantine: str | None  # the annotation's value now, None: not quarantined

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _ref(pod: Any) -> PodRef:
    meta = pod.metadata
    annotations = meta.annotations or {}
    return PodRef(meta.namespace, meta.name, meta.uid or "",
                  annotations.get(QUARANTINE_ANNOTATION))


def read_pod(api: Any, namespace: str, name: str) -> PodRef:
    """The pod (ApiException 404 when there is none)."""
    pod = client.CoreV1Api(api).read_namespaced_pod(name, namespace, _request_timeout=TIMEOUT)
    return _ref(pod)


def set_annotation(api: Any, namespace: str, name: str, reason: str | None) -> PodRef:
    """Quarantine (reason) or release (None) the pod: the annotation set or removed."""
    body = {"metadata": {"annotations": {QUARANTINE_ANNOTATION: reason}}}
    pod = client.CoreV1Api(api).patch_namespaced_pod(
        name, namespace, body, _content_type=MERGE_PATCH, _request_timeout=TIMEOUT)
    return _ref(pod)


def record_event(api: Any, pod: PodRef, reason: str, message: str,
                 host: str | None = None, warning: bool = True) -> str:
    """A core/v1 Event on the pod; returns its name."""
    now = datetime.now(UTC).replace(microsecond=0)
    name = f"{pod.name}.{time.time_ns():x}"
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(name=name, namespace=pod.namespace),
        involved_object=client.V1ObjectReference(
            api_version="v1", kind="Pod", namespace=pod.namespace, name=pod.name,
            uid=pod.uid or None),
        reason=reason,
        message=message,
        type="Warning" if warning else "Normal",
        source=client.V1EventSource(component=COMPONENT, host=host),
        reporting_component=COMPONENT,
        reporting_instance=host or COMPONENT,
        first_timestamp=now,
        last_timestamp=now,
        count=1,
    )
    client.CoreV1Api(api).create_namespaced_event(pod.namespace, event,
                                                  _request_timeout=TIMEOUT)
    return name
