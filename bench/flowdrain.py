"""Flow events drained as the agent drains them: a thread polls a benchmark datapath's ring
buffer into the agent's flow pipeline (attribution, then the flow store), so a benchmark with
flow events on pays for them in the kernel and in the agent's CPU time alike."""

from __future__ import annotations

import threading
from collections.abc import Callable

from enforcer.datapath import Datapath
from enforcer.datapath.types import DropEvent
from enforcer.topology import Pod


class BenchFlowContext:
    """The two benchmark pods as the agent would name them."""

    node = "bench"

    def __init__(self, dp: Datapath, client: Pod, server: Pod) -> None:
        from ipaddress import ip_address as ip

        from enforcer.model.objects import Pod as ModelPod

        self._dp = dp
        self._pods = {client.ipv4: ModelPod("bench", "client", ips=(ip(client.ipv4),)),
                      server.ipv4: ModelPod("bench", "server", ips=(ip(server.ipv4),))}

    def pod_at(self, address: str) -> object:
        return self._pods.get(address)

    def endpoint(self, endpoint_id: int) -> None:
        return None

    def rule_set(self, ident: int) -> object:
        return self._dp.rule_set(ident)

    def service_frontend(self, address: str, port: int, protocol: str) -> bool:
        return False


def flow_drain(dp: Datapath, client: Pod, server: Pod) -> Callable[[], int]:
    """Drain dp's events through the agent's flow pipeline on a thread; returns its stop,
    which returns how many events were drained."""
    from enforcer.flows.collector import FlowCollector
    from enforcer.flows.store import FlowStore

    context = BenchFlowContext(dp, client, server)
    collector = FlowCollector(context, FlowStore())  # type: ignore[arg-type]
    stop = threading.Event()
    drained = 0

    def on_event(event: DropEvent) -> None:
        nonlocal drained
        drained += 1
        collector.on_event(event)

    def run() -> None:
        while not stop.is_set():
            dp.poll_events(100, on_event)

    thread = threading.Thread(target=run, name="flow-drain", daemon=True)
    thread.start()

    def halt() -> int:
        stop.set()
        thread.join()
        return drained

    return halt
