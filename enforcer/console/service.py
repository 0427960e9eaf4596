"""The console put together: agents into the store, the source into the view, both served."""

from __future__ import annotations

import threading

from enforcer.console.cluster import ClusterView, follow_source
from enforcer.console.collector import Collector, ListAgents
from enforcer.console.http import ConsoleHTTPServer
from enforcer.flows.store import FlowStore
from enforcer.sources.base import Source


class Console:
    def __init__(
        self,
        listen: str,
        list_agents: ListAgents,
        source: Source | None,
        max_bytes: int = 64 * 2**20,
        **collector_options: float,
    ) -> None:
        self.store = FlowStore(max_bytes=max_bytes)
        self.collector = Collector(list_agents, self.store, **collector_options)
        self.view = ClusterView(source.describe if source is not None else lambda: "none")
        self.source = source
        self.http = ConsoleHTTPServer(listen, self.store, self.collector.nodes, self.view)
        self._stop = threading.Event()

    @property
    def port(self) -> int:
        return self.http.port

    def start(self) -> None:
        self.http.start()
        if self.source is not None:
            follow_source(self.source, self.view, self._stop)
        self.collector.start()

    def stop(self) -> None:
        self._stop.set()
        self.collector.stop()
        self.http.stop()
