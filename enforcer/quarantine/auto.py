"""The agent's automatic quarantine (`enforcer agent --auto-quarantine`).

Fed every real drop event on the ring-buffer thread (enforcer.flows.collector's on_drop), it
names the pod that sent the packet, lets the Detector judge, and when it triggers:

1. quarantines the pod in this agent at once (Agent.quarantine_local: applied in the loop
   as a watch event carrying the annotation would be, compiled and written within
   milliseconds; no API round trip in the way);
2. writes the pod's annotation (its value "auto: <why>") and a Quarantined Event through the
   API, on a thread of its own, retried with backoff, so the quarantine outlives this agent
   and other tools see it. Until the API's version of the pod carries the annotation, the
   agent holds the quarantine itself (enforcer.agent.intake.Intake.quarantines); if the API
   refuses (RBAC, or a folder source with no API at all), it stays in this agent only, until
   its restart, and `/status` and the log say so.

Only this node's pods are ever quarantined: a denial at a local pod's ingress counts against
its source only when that address is a local pod's. (A pod on another node is judged by its
own node's agent, whose datapath sees its egress.)
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from enforcer import log
from enforcer.datapath.types import Direction, DropEvent, DropReason
from enforcer.quarantine.detector import Denial, Detector, Trigger

# A trigger's pod is not judged again meanwhile: the agent's loop applies the quarantine
# within milliseconds, after which the pod's state says it is quarantined.
HOLD_OFF = 5.0
SWEEP_EVERY = 30.0


class AgentView(Protocol):
    """What of the agent this needs (enforcer.agent.runtime.Agent)."""

    def pod_for_ifindex(self, ifindex: int) -> str | None: ...
    def pod_for_ip(self, ip: str) -> str | None: ...
    def is_local(self, pod: str) -> bool: ...
    def quarantine_of(self, pod: str) -> str | None: ...
    def quarantine_local(self, pod: str, reason: str) -> None: ...


Persist = Callable[[str, Trigger], None]  # writes the annotation and the Event; raises


def offender(event: DropEvent, agent: AgentView) -> Denial | None:
    """The local pod that sent the dropped packet, when the drop is one the detector judges."""
    if event.reason is DropReason.SPOOFED_SOURCE:
        if event.direction is not Direction.EGRESS:
            return None
        pod = agent.pod_for_ifindex(event.ifindex)
    elif event.reason is DropReason.POLICY_DENIED:
        if event.direction is Direction.EGRESS:
            pod = agent.pod_for_ifindex(event.ifindex)
        else:
            at = agent.pod_for_ifindex(event.ifindex)
            if at is None or agent.quarantine_of(at) is not None:
                return None  # dropped because the destination is quarantined: not the sender's
            pod = agent.pod_for_ip(str(event.src))
            if pod == at:
                return None
    else:
        return None
    if pod is None or not agent.is_local(pod):
        return None
    return Denial(pod, event.reason, str(event.src), str(event.dst), event.protocol,
                  event.dport, event.tcp_flags)


class AutoQuarantine:
    def __init__(self, agent: AgentView, detector: Detector, persist: Persist | None,
                 on_trigger: Callable[[Trigger], None] = lambda _t: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """persist: writes the annotation and Event through the API (None: no API, the
        quarantine stays in this agent); on_trigger: counted in metrics."""
        self._agent = agent
        self.detector = detector
        self._persist = persist
        self._on_trigger = on_trigger
        self._clock = clock
        self._held: dict[str, float] = {}  # pod -> when it triggered
        self._next_sweep = 0.0
        self.log = log.get("quarantine")
        self._lock = threading.Lock()
        # pod -> what became of it: for /status ("api": pending, persisted, or the error).
        self.records: dict[str, dict[str, Any]] = {}
        self._work: queue.Queue[tuple[str, Trigger]] = queue.Queue()
        if persist is not None:
            threading.Thread(target=self._persist_loop, name="quarantine-api",
                             daemon=True).start()

    def on_drop(self, event: DropEvent) -> None:
        """Ring-buffer thread: one real drop."""
        denial = offender(event, self._agent)
        if denial is None:
            return
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY
            self.detector.sweep(now)
            self._held = {p: t for p, t in self._held.items() if now - t < HOLD_OFF}
        held = self._held.get(denial.pod)
        if (held is not None and now - held < HOLD_OFF) or \
                self._agent.quarantine_of(denial.pod) is not None:
            self.detector.forget(denial.pod)
            return
        trigger = self.detector.observe(denial, now)
        if trigger is not None:
            self._held[trigger.pod] = now
            self._fire(trigger)

    def _fire(self, trigger: Trigger) -> None:
        self._agent.quarantine_local(trigger.pod, trigger.annotation())
        self._on_trigger(trigger)
        with self._lock:
            self.records[trigger.pod] = {
                "trigger": trigger.kind, "reason": trigger.reason, "time": time.time(),
                "api": "pending" if self._persist is not None
                else "not persisted: the agent has no Kubernetes API (folder source)",
            }
        self.log.warning("pod quarantined automatically", pod=trigger.pod,
                         trigger=trigger.kind, why=trigger.reason)
        if self._persist is not None:
            self._work.put((trigger.pod, trigger))

    def _persist_loop(self) -> None:
        assert self._persist is not None
        while True:
            pod, trigger = self._work.get()
            delay = 0.5
            for attempt in range(1, 6):
                try:
                    self._persist(pod, trigger)
                except Exception as exc:  # any failure is said, and retried unless final
                    status = getattr(exc, "status", None)
                    why = f"{status} {getattr(exc, 'reason', '')}".strip() if status else str(exc)
                    self._note(pod, f"failed: {why} (held by this agent until it restarts)")
                    self.log.error("quarantine not written to the API", pod=pod,
                                   attempt=attempt, error=why)
                    if status in (401, 403, 404, 422):  # retrying will not change that
                        break
                    time.sleep(delay)
                    delay *= 2
                else:
                    self._note(pod, "persisted")
                    self.log.info("quarantine written to the API: annotation and Event",
                                  pod=pod)
                    break

    def _note(self, pod: str, api: str) -> None:
        with self._lock:
            if pod in self.records:
                self.records[pod]["api"] = api

    def status(self, quarantined: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The /status list of quarantined pods with what this agent did about each."""
        with self._lock:
            records = {k: dict(v) for k, v in self.records.items()}
        out = []
        for entry in quarantined:
            record = records.get(entry["pod"])
            out.append({**entry, "auto": record} if record else entry)
        return out


def api_persister(api_client: Any, node: str | None) -> Persist:
    """Writes an automatic quarantine through the API: the annotation, then the Event."""
    from enforcer.quarantine import api as qapi

    def persist(pod: str, trigger: Trigger) -> None:
        namespace, _, name = pod.partition("/")
        ref = qapi.set_annotation(api_client, namespace, name, trigger.annotation())
        qapi.record_event(
            api_client, ref, qapi.REASON_QUARANTINED,
            f"Quarantined automatically by the enforcer agent on node {node or '-'}: "
            f"{trigger.reason}", host=node)

    return persist
