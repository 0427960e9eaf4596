"""A watch storm (issue 22, faults): 10,000 pod updates in about a second reach the agent's
loop through the real Kubernetes source and the fake API server; the loop coalesces them (far
fewer compiles and write passes than events) and converges to exactly the tables a fresh
compile of the final state gives. Timing is not asserted: `bench/watch_storm.py` reports the
p99 event-to-enforced latency under the storm."""

from __future__ import annotations

import random
import threading
import time

from enforcer.agent.http import EventHub
from enforcer.agent.metrics import AgentMetrics
from enforcer.agent.runtime import Agent
from enforcer.compiler import Compiler
from enforcer.model.cluster import state_from
from enforcer.model.loader import parse_object
from tests.agent.fakes import MemoryDatapath, StaticInterfaces
from tests.fakeapi import FakeKubeAPI
from tests.sources.builders import k8s_source, namespace, pod, policy
from tests.sources.recorder import wait_until

NODE = "n1"
PODS = 100
UPDATES = 10_000


def _policy() -> dict:
    """Pods labelled app=web take ingress from role=client only: a relabel changes tables."""
    return policy("web", "prod", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}],
    })


def _pod(i: int, app: str, role: str) -> dict:
    return pod(f"p{i}", "prod", {"app": app, "role": role}, f"10.1.{i // 250}.{i % 250 + 1}",
               node=NODE if i % 2 == 0 else "n2", uid=f"uid-{i}")


def test_a_storm_of_pod_updates_is_coalesced_and_converges() -> None:
    rng = random.Random(22)
    with FakeKubeAPI(history_limit=4 * UPDATES) as api:
        api.create(namespace("prod"))
        api.create(_policy())
        current = {i: _pod(i, "web", "client") for i in range(PODS)}
        for obj in current.values():
            api.create(obj)
        ifindexes = {obj["status"]["podIP"]: 100 + i for i, obj in current.items()}
        datapath = MemoryDatapath()
        source = k8s_source(api, kinds=("Namespace", "Pod", "NetworkPolicy", "Node"))
        agent = Agent(NODE, source, datapath, StaticInterfaces(ifindexes),  # type: ignore[arg-type]
                      AgentMetrics(), EventHub())
        stop = threading.Event()
        loop = threading.Thread(target=agent.run, args=(stop,), daemon=True)
        loop.start()
        try:
            wait_until(agent.is_ready, timeout=10, what="first sync enforced")
            assert len(datapath.tables) == PODS // 2
            compiles, writes = agent.status.compiles, datapath.table_writes

            # The storm: each update relabels one pod (its app and role flip at random).
            began = time.monotonic()
            for _ in range(UPDATES):
                i = rng.randrange(PODS)
                current[i] = _pod(i, rng.choice(("web", "api")), rng.choice(("client", "x")))
                api.update(current[i])
            storm = time.monotonic() - began
            final = api.resource_version
            wait_until(lambda: source.resource_versions.get("Pod") == final and
                       agent.queue.empty(), timeout=30, what="storm delivered")
            wait_until(lambda: _converged(agent, datapath, current), timeout=10,
                       what="tables of the final state")
        finally:
            stop.set()
            loop.join(timeout=5)
        events = source.events_received["Pod"]
        assert events >= UPDATES  # every update went through the watch (none relisted)
        assert source.relists["Pod"] == 0
        rounds = agent.status.compiles - compiles
        passes = datapath.table_writes - writes
        print(f"storm of {UPDATES} updates in {storm:.2f} s: {rounds} compiles, "
              f"{passes} write passes")
        # Coalesced: a compile per run of queued events, not per event.
        assert rounds <= UPDATES // 10, rounds
        assert passes <= 2 * rounds


def _converged(agent: Agent, datapath: MemoryDatapath, current: dict[int, dict]) -> bool:
    """Each local pod's table is what a fresh compile of the final objects gives it (the
    same isolation and rules; identity numbers differ between compilers, so entries are
    compared by the peers they name)."""
    objects = [parse_object(o, "test") for o in (namespace("prod"), _policy(),
                                                 *current.values())]
    state = state_from([o for o in objects if o is not None])
    fresh = Compiler(state, NODE)
    fresh.full()
    for key, want in fresh.policies().items():
        record = agent.endpoints.get(key)
        if record is None or record.ifindex is None:
            return False
        got = datapath.tables.get(record.ifindex)
        if got is None or _shape(got, agent.compiler.identities()) != _shape(
                want, fresh.identities()):
            return False
    return True


def _shape(table: object, identities: object) -> tuple:
    """A table in terms of addresses: (isolation, for each entry its direction, port and the
    prefixes its peer identity names)."""
    by_id: dict[int, set[str]] = {}
    for prefix, ident in identities.items():  # type: ignore[attr-defined]
        by_id.setdefault(ident, set()).add(str(prefix))
    entries = sorted(
        (str(e.direction), e.protocol, e.port_lo, e.port_hi,
         tuple(sorted(by_id.get(e.peer, {"*"}))))
        for e in table.entries  # type: ignore[attr-defined]
    )
    return (table.ingress_isolated, table.egress_isolated, tuple(entries))  # type: ignore[attr-defined]
