"""The agent's view of the cluster is not readable from the network without an authorized
token: the real HTTP server, the real kubernetes client asking a TokenReview and a
SubjectAccessReview of an API server that speaks the protocol; metrics and health stay open."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from enforcer.agent.authn import RefuseAll, TokenReviewAuthorizer
from enforcer.agent.http import AgentHTTPServer, EventHub
from enforcer.agentclient import AgentEndpoint
from enforcer.flows.store import FlowStore
from tests.fakeapi.server import FakeKubeAPI

CONSOLE = "system:serviceaccount:enforcer:enforcer-console"
OTHER = "system:serviceaccount:default:someone"


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as server:
        server.tokens = {"console-token": CONSOLE, "other-token": OTHER}
        server.grants = {(CONSOLE, "enforcer.dev", "agents", sub, "get")
                         for sub in ("status", "events", "flows")}
        yield server


def _serve(tmp_path: Path, authorizer: object) -> AgentHTTPServer:
    server = AgentHTTPServer(
        "127.0.0.1:0", CollectorRegistry(), lambda: True, lambda: {"node": "n1", "ready": True},
        EventHub(), FlowStore(), authorizer=authorizer,  # type: ignore[arg-type]
        api_socket=str(tmp_path / "agent.sock"))
    server.start()
    return server


def _client(api: FakeKubeAPI) -> object:
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = api.url
    return client.ApiClient(cfg)


def test_only_an_authorized_token_reads_status_and_flows_on_the_network(
    api: FakeKubeAPI, tmp_path: Path
) -> None:
    server = _serve(tmp_path, TokenReviewAuthorizer(_client(api), "n1"))
    addr = f"127.0.0.1:{server.port}"
    try:
        for path in ("/status", "/flows?limit=1"):
            assert AgentEndpoint(addr=addr).get_text(path)[0] == 401  # no token
            forged = AgentEndpoint(addr=addr, token=secrets.token_urlsafe(32))
            assert forged.get_text(path)[0] == 401
            code, body = AgentEndpoint(addr=addr, token="other-token").get_text(path)
            assert code == 403 and OTHER in body  # authenticated, not granted
            assert AgentEndpoint(addr=addr, token="console-token").get_text(path)[0] == 200
        assert AgentEndpoint(addr=addr, token="console-token").get_json("/status")["node"] == "n1"
        for path in ("/metrics", "/healthz", "/readyz"):  # open, as Prometheus and kubelet need
            assert AgentEndpoint(addr=addr).get_text(path)[0] == 200
        # The node's own socket serves everything, no token.
        local = AgentEndpoint(socket=str(tmp_path / "agent.sock"))
        assert local.get_json("/status")["ready"] is True
        assert oct((tmp_path / "agent.sock").stat().st_mode & 0o777) == "0o600"
    finally:
        server.stop()
    assert not (tmp_path / "agent.sock").exists()


def test_decisions_are_cached_and_an_unreachable_api_server_means_no(
    api: FakeKubeAPI, tmp_path: Path
) -> None:
    authorizer = TokenReviewAuthorizer(_client(api), "n1")
    assert authorizer.decide("console-token", "flows").allowed
    asked = len(api.requests)
    assert authorizer.decide("console-token", "flows").allowed
    assert len(api.requests) == asked  # from the cache
    api.stop()
    fresh = TokenReviewAuthorizer(_client(api), "n1")
    decision = fresh.decide("console-token", "flows")
    assert not decision.allowed and decision.code == 503


def test_without_token_checks_the_network_serves_no_one(tmp_path: Path) -> None:
    server = _serve(tmp_path, RefuseAll())
    try:
        code, body = AgentEndpoint(addr=f"127.0.0.1:{server.port}",
                                   token="anything").get_text("/events")
        assert code == 403 and "unix socket" in body
    finally:
        server.stop()
