"""`enforcer quarantine NS/POD --reason TEXT` and `enforcer quarantine release NS/POD`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

DESCRIPTION = """\
Isolate a pod completely, above every policy (Admin-tier Accepts included): nothing in,
nothing out, except its own node's traffic (kubelet probes). Established flows are cut at
their next packet, within a second on every node's agent.

The quarantine is the pod's annotation policy.enforcer.dev/quarantine, whose value is the
reason: it lives in the pod object, so it survives agent restarts and any tool sees it
(kubectl get pod -o yaml). Each change also records an Event on the pod (reason Quarantined
or QuarantineReleased, source component enforcer): kubectl describe pod shows it.

  enforcer quarantine shop/web-0 --reason "beaconing to 203.0.113.9, ticket SEC-112"
  enforcer quarantine release shop/web-0

Needs patch on pods and create on events (RBAC) in the pod's namespace."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quarantine",
        help="isolate a pod completely (or release it): the pod's quarantine annotation",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="enforcer quarantine [release] NS/POD [--reason TEXT] [--kubeconfig FILE] "
              "[--context NAME]",
    )
    p.add_argument("target", nargs="+", metavar="[release] NS/POD",
                   help="the pod, as NAMESPACE/NAME; 'release NS/POD' lifts its quarantine")
    p.add_argument("--reason", default=None,
                   help="why (required to quarantine): the annotation's value and the "
                        "Event's message; with release, said in its Event")
    p.add_argument("--kubeconfig", default=None,
                   help="kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", default=None,
                   help="the kubeconfig's context to use (default: its current context)")
    p.set_defaults(func=run)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from enforcer.quarantine.api import parse_pod_ref

    target = list(args.target)
    release = target[0] == "release" and len(target) == 2
    if release:
        target = target[1:]
    if len(target) != 1:
        return _fail(f"expected one pod (NS/POD, or release NS/POD), got: {' '.join(args.target)}",
                     2)
    try:
        namespace, name = parse_pod_ref(target[0])
    except ValueError as exc:
        return _fail(str(exc), 2)
    reason = (args.reason or "").strip()
    if not release and not reason:
        return _fail("--reason TEXT is required to quarantine a pod (it is kept in the pod's "
                     "annotation and its Event)", 2)
    if "\n" in reason or len(reason) > 1024:
        return _fail("--reason: one line of at most 1024 characters", 2)
    if args.kubeconfig and not Path(args.kubeconfig).is_file():
        return _fail(f"--kubeconfig {args.kubeconfig}: no such file", 2)
    try:
        from enforcer.sources.kubernetes import api_client

        api, origin = api_client(args.kubeconfig, args.context)
    except Exception as exc:  # the kubernetes client's config errors have no common base
        return _fail(f"cannot configure the Kubernetes client: {exc} (give --kubeconfig or "
                     "--context)", 2)
    try:
        return _apply(api, namespace, name, None if release else reason, reason)
    except _ApiError as exc:
        return _fail(f"{exc} (API server {api.configuration.host}, from {origin})", 1)


class _ApiError(Exception):
    pass


def _apply(api: Any, namespace: str, name: str, quarantine: str | None, reason: str) -> int:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from enforcer.quarantine import api as qapi

    key = f"{namespace}/{name}"
    step = "reading"
    try:
        pod = qapi.read_pod(api, namespace, name)
        if quarantine is None and pod.quarantine is None:
            print(f"pod/{key} was not quarantined")
            return 0
        step = "patching"
        pod = qapi.set_annotation(api, namespace, name, quarantine)
        step = "recording an Event on"
        if quarantine is not None:
            qapi.record_event(api, pod, qapi.REASON_QUARANTINED,
                              f"Quarantined by enforcer quarantine: {quarantine}")
        else:
            qapi.record_event(api, pod, qapi.REASON_RELEASED,
                              "Quarantine released by enforcer quarantine release"
                              + (f": {reason}" if reason else ""), warning=False)
    except (ApiException, HTTPError, OSError) as exc:
        if isinstance(exc, ApiException) and exc.status == 404 and step == "reading":
            raise _ApiError(f"pod {key} not found") from None
        if isinstance(exc, ApiException):
            why = f"{step} pod {key}: {exc.status} {exc.reason}{_message(exc)}"
        else:
            why = f"cannot reach the Kubernetes API ({step} pod {key}): {exc}"
        if step.startswith("recording"):  # the annotation is in place: said, then the error
            print(f"pod/{key} {'quarantined' if quarantine is not None else 'released'}")
            why += " (the annotation is set; only the Event is missing)"
        raise _ApiError(why) from None
    print(f"pod/{key} {'quarantined' if quarantine is not None else 'released'}")
    return 0


def _message(exc: Any) -> str:
    """The API's Status message, when its body has one."""
    import json

    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        return ""
    return f": {message}" if message else ""
