"""An in-process Kubernetes API server speaking the real list/watch protocol, for tests."""

from tests.fakeapi.server import BY_KIND, RESOURCES, FakeKubeAPI, RequestRecord, Resource

__all__ = ["BY_KIND", "RESOURCES", "FakeKubeAPI", "RequestRecord", "Resource"]
