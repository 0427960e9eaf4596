"""Who may read the agent's view of the cluster over the network (the kube-rbac-proxy pattern).

`/status`, `/events` and `/flows` show pods, policies and traffic, so on the network they are
served only to callers that present a Kubernetes service-account token the API server
authenticates (TokenReview) and authorizes (SubjectAccessReview) for `get` on the resource
`agents` of API group `enforcer.dev`, subresource `status`, `events` or `flows`, named by the
node (daemonset/rbac.yaml grants it to the console's service account, and to no one else). On the
node itself they are served on a unix socket (root only). Decisions are cached briefly; an API
server that cannot be asked means no (fail closed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

API_GROUP = "enforcer.dev"
RESOURCE = "agents"
SUBRESOURCES = {"/status": "status", "/events": "events", "/flows": "flows"}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    code: int  # 200, 401 (no or bad token), 403 (authenticated, not authorized), 503
    reason: str


class Authorizer(Protocol):
    def decide(self, token: str | None, subresource: str) -> Decision: ...


class RefuseAll:
    """No way to check tokens (a node without an API server): the socket only."""

    def decide(self, token: str | None, subresource: str) -> Decision:
        return Decision(False, 403, "served on the agent's unix socket only (this agent checks "
                        "no tokens: --authn none)")


class TokenReviewAuthorizer:
    """TokenReview then SubjectAccessReview against the API server, cached for `ttl` s."""

    def __init__(self, api_client: Any, node: str, ttl: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from kubernetes import client

        self._authn = client.AuthenticationV1Api(api_client)
        self._authz = client.AuthorizationV1Api(api_client)
        self._node = node
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Decision]] = {}
        self._lock = threading.Lock()

    def decide(self, token: str | None, subresource: str) -> Decision:
        if not token:
            return Decision(False, 401, "a bearer token is required (Authorization: Bearer ...)")
        key = (token, subresource)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                return hit[1]
        decision = self._ask(token, subresource)
        if decision.code != 503:  # an unreachable API server is asked again next time
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()  # bounded: a flood of forged tokens cannot grow it
                self._cache[key] = (now + self._ttl, decision)
        return decision

    def _ask(self, token: str, subresource: str) -> Decision:
        from kubernetes import client

        try:
            review = self._authn.create_token_review(
                client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)))
            status = review.status
            if not status or not status.authenticated or not status.user:
                return Decision(False, 401, "the token was not authenticated")
            user = status.user
            sar = self._authz.create_subject_access_review(client.V1SubjectAccessReview(
                spec=client.V1SubjectAccessReviewSpec(
                    user=user.username, groups=user.groups, uid=user.uid, extra=user.extra,
                    resource_attributes=client.V1ResourceAttributes(
                        group=API_GROUP, resource=RESOURCE, subresource=subresource,
                        verb="get", name=self._node))))
        except Exception as exc:  # API unreachable or refusing: no
            return Decision(False, 503, f"cannot check the token with the API server: {exc}")
        if sar.status and sar.status.allowed:
            return Decision(True, 200, "")
        return Decision(False, 403, f"{user.username} may not get {RESOURCE}/{subresource} "
                        f"in {API_GROUP}")
