"""Object sources: the Kubernetes API (list+watch) or a folder of manifests, one event stream."""

from enforcer.sources.base import EventType, Source, SourceEvent, source_from_spec

__all__ = ["EventType", "Source", "SourceEvent", "source_from_spec"]
