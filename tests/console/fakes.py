"""A fake node agent speaking the flows and status API the collector reads, and records."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from enforcer.flows.record import FlowRecord, StagedVerdict

T0 = 1_700_000_000.0  # records' times; stores in tests run their clock at T0 + 60


def record(
    src: str = "a/web",
    dst: str = "b/api",
    port: int = 80,
    at: float = T0,
    verdict: str = "allowed",
    policies: tuple[str, ...] = (),
    staged: StagedVerdict | None = None,
    node: str = "",
    direction: str = "ingress",
    count: int = 1,
) -> FlowRecord:
    def workload(end: str) -> str:
        return end if "/" in end else ""  # an address is outside the cluster

    return FlowRecord(
        source=src, destination=dst, port=port, protocol="TCP", direction=direction,
        verdict=verdict, policies=policies, source_workload=workload(src),
        destination_workload=workload(dst), node=node, count=count, first_seen=at,
        last_seen=at, staged=staged,
    )  # fmt: skip


# What a live stream may carry: a record, an exception to raise, or END (the agent closes).
END = object()


class FakeAgent:
    """`held` is the agent's store, answered to a query as the agent does (records seen at
    or after `since`); then `live` items, until END or an exception. While `down`, every
    call is refused."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.held: list[FlowRecord] = []
        self.live: queue.Queue[Any] = queue.Queue()
        self.paths: list[str] = []
        self.down = threading.Event()
        self.status: dict[str, Any] = {"node": name, "ready": True, "endpoints": [{}, {}]}

    def get_json(self, path: str, timeout: float = 5.0) -> Any:
        if self.down.is_set():
            raise ConnectionRefusedError(111, "Connection refused")
        return self.status

    def stream(self, path: str, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        self.paths.append(path)
        if self.down.is_set():
            raise ConnectionRefusedError(111, "Connection refused")
        params = parse_qs(urlsplit(path).query)
        since = float(params["since"][-1]) if "since" in params else None
        for held in self.held:
            if since is None or held.last_seen >= since:
                yield held.to_json()
        while True:
            try:
                item = self.live.get(timeout=0.05)
            except queue.Empty:
                if self.down.is_set():
                    raise ConnectionResetError(104, "Connection reset by peer") from None
                continue
            if item is END:
                return
            if isinstance(item, BaseException):
                raise item
            self.held.append(item)
            yield item.to_json()
