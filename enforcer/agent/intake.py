"""The agent's view of the cluster: the last valid version of every object, in the model.

Source events are parsed and validated here and applied to the ClusterState; the agent's loop
then hands the change to the compiler. Before the first full sync nothing is compiled, so the
initial listing can be taken in while the datapath still compiles (PrelistFeed): the two
slowest steps of a cold start overlap (bcc's compile runs in C, without the GIL).

StagedNetworkPolicies are validated like NetworkPolicies but kept apart (`staged`): they never
reach the state the compiler reads, only the shadow that judges flows as if they were applied
(enforcer.agent.staged).

Cluster-scoped policies (ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy)
and the Nodes their `nodes` peers match are validated (enforcer.model.parse_clusterpolicy) and
enter the state like any other object. A policy's `domainNames` peers match nothing (they need
DNS inspection): said once per policy.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from enforcer import log
from enforcer.agent.staged import StagedShadow
from enforcer.digest import object_hash
from enforcer.model.cluster import ClusterState
from enforcer.model.clusterpolicy import ClusterPolicy
from enforcer.model.groups import foreign_policy_group
from enforcer.model.loader import ValidationError, parse_object, parse_staged_policy
from enforcer.model.objects import (
    KIND_NETWORK_POLICY,
    KIND_POD,
    KIND_STAGED_NETWORK_POLICY,
    NetworkPolicy,
    Pod,
)
from enforcer.model.parse_clusterpolicy import parse_cluster_object
from enforcer.model.parse_services import parse_service_object
from enforcer.sources.base import EventType, SourceEvent
from enforcer.sources.gcpause import gc_paused

ObjKey = tuple[str, str | None, str]
QueuedEvent = tuple[float, Any]  # (monotonic time received, event)


def obj_key(kind: str, obj: Mapping[str, Any]) -> ObjKey:
    meta = obj.get("metadata") or {}
    return (kind, meta.get("namespace"), meta.get("name", ""))


@dataclass(frozen=True)
class ObjectChange:
    """One applied change: `new` None for a removal, `old` None for a first version."""

    key: ObjKey
    old: Any
    new: Any


class Intake:
    def __init__(
        self,
        describe_source: Callable[[], str],
        on_invalid: Callable[[str], None] = lambda kind: None,
        accept_groups: Collection[str] = (),
    ) -> None:
        """on_invalid(kind): called for every rejected object (the agent counts them).
        accept_groups: API groups whose NetworkPolicies are enforced as networking.k8s.io's
        (--accept-group, enforcer.model.groups); another group's is logged, not enforced."""
        self.state = ClusterState()
        # Every write to the state goes through the shadow (it keeps the staged preview).
        self.shadow = StagedShadow(self.state)
        self.objects: dict[ObjKey, Any] = {}  # last VALID version of every enforced object
        self.staged: dict[ObjKey, NetworkPolicy] = {}  # last VALID version of each, not enforced
        self.object_hashes: dict[ObjKey, int] = {}
        self.digest = 0  # XOR of object_hash over self.objects: see enforcer.digest
        self.invalid: list[str] = []  # the latest rejections, for /status
        self._describe_source = describe_source
        self._on_invalid = on_invalid
        self._relisting: dict[str, set[ObjKey]] = {}
        self.accept_groups = frozenset(accept_groups)
        self.not_enforced: set[ObjKey] = set()  # other groups' NetworkPolicies, said once each
        self.domain_names: set[ObjKey] = set()  # cluster policies whose domainNames were said
        # Pods this agent quarantined itself (enforcer.quarantine.auto), NS/NAME -> (uid,
        # reason): kept over the source's versions of that pod until one carries a quarantine
        # of its own (the annotation the agent wrote through the API; a later release then
        # releases it).
        self.quarantines: dict[str, tuple[str, str]] = {}
        self.log = log.get("agent")

    def apply(self, event: SourceEvent) -> ObjectChange | None:
        """An ADDED, MODIFIED or DELETED event; None when nothing changed (or it was invalid:
        the previous valid version stays in force, nothing is half-applied)."""
        kind = event.kind or ""
        raw = event.obj or {}
        key = obj_key(kind, raw)
        if kind in self._relisting:
            self._relisting[kind].add(key)
        if event.type is EventType.DELETED:
            return self.remove(key)
        if event.rejected:  # past a sane limit (enforcer.sources.limits): keep the last valid
            self._on_invalid(kind)
            message = f"{kind} {key[1] or ''}/{key[2]}: rejected by the source ({event.rejected})"
            self.invalid = [*self.invalid[-49:], message]
            return None
        try:
            origin = event.origin or self._describe_source()  # a folder's events: the file
            if kind == KIND_STAGED_NETWORK_POLICY:
                self._stage(key, raw, parse_staged_policy(raw, origin=origin))
                return None  # nothing enforced changed
            obj = parse_object(raw, origin, self.accept_groups) or parse_service_object(
                raw, origin=origin
            )
            if obj is None:  # a cluster-scoped policy or a Node
                obj = parse_cluster_object(raw, origin)
        except ValidationError as exc:
            self._on_invalid(kind)
            self.invalid = [*self.invalid[-49:], str(exc)]
            self.log.warning("invalid object rejected", error=str(exc), kind=kind, key=key)
            return None
        if obj is None:
            self._not_enforced(key, raw)
            return None
        if isinstance(obj, Pod) and obj.key in self.quarantines:
            obj = self._held_quarantine(obj)
        old = self.objects.get(key)
        self.objects[key] = obj
        self._track(key, raw)
        self.shadow.upsert(obj)
        if isinstance(obj, ClusterPolicy):
            self._domain_names(key, obj)
        return ObjectChange(key, old, obj)

    def _held_quarantine(self, pod: Pod) -> Pod:
        uid, reason = self.quarantines[pod.key]
        if pod.quarantine is not None or pod.uid != uid:  # the API's own now, or another pod
            del self.quarantines[pod.key]
            return pod
        return replace(pod, quarantine=reason)

    def quarantine_locally(self, pod_key: str, reason: str) -> ObjectChange | None:
        """The agent's own quarantine of a pod, applied as a watch event would be (None: no
        such pod, or quarantined already)."""
        namespace, _, name = pod_key.partition("/")
        key = (KIND_POD, namespace, name)
        pod = self.objects.get(key)
        if not isinstance(pod, Pod) or pod.quarantine is not None:
            return None
        self.quarantines[pod_key] = (pod.uid, reason)
        new = replace(pod, quarantine=reason)
        self.objects[key] = new
        self.shadow.upsert(new)
        return ObjectChange(key, pod, new)

    def _domain_names(self, key: ObjKey, policy: ClusterPolicy) -> None:
        """`domainNames` peers need DNS inspection: they match nothing here (the policy's
        other rules and peers apply). Said once per policy while it has any."""
        names = sorted({name for rule in policy.egress for peer in rule.peers
                        for name in peer.domain_names})
        if not names:
            self.domain_names.discard(key)
        elif key not in self.domain_names:
            self.domain_names.add(key)
            self.log.warning(
                f"{policy.kind} {policy.name}: domainNames peers not enforced (they match "
                "nothing; the policy's other peers apply)", name=policy.name,
                domain_names=names)

    def _not_enforced(self, key: ObjKey, raw: Mapping[str, Any]) -> None:
        """Another group's NetworkPolicy: never enforced silently, said once per object."""
        group = foreign_policy_group(raw)
        if group is None or key in self.not_enforced:
            return
        self.not_enforced.add(key)
        self.log.warning(
            "NetworkPolicy of another API group not enforced",
            api_version=str(raw.get("apiVersion")), namespace=key[1], name=key[2],
            hint=f"--accept-group {group} enforces it as a NetworkPolicy named NAME.{group}",
        )

    def _stage(self, key: ObjKey, raw: Mapping[str, Any], policy: NetworkPolicy | None) -> None:
        if policy is None:  # another group's kind of that name (Calico's): not ours
            return
        self.staged[key] = policy
        self._track(key, raw)
        self.shadow.stage(policy)

    def _track(self, key: ObjKey, raw: Mapping[str, Any]) -> None:
        """The digest covers every valid object taken in, staged ones too (the lab waits on
        it to know a manifest was read)."""
        self.digest ^= self.object_hashes.pop(key, 0)
        self.object_hashes[key] = object_hash(raw)
        self.digest ^= self.object_hashes[key]

    def remove(self, key: ObjKey) -> ObjectChange | None:
        if key in self.staged:
            policy = self.staged.pop(key)
            self.digest ^= self.object_hashes.pop(key, 0)
            self.shadow.unstage(policy.key)
            return None  # nothing enforced changed
        self.not_enforced.discard(key)
        self.domain_names.discard(key)
        if key[0] == KIND_POD:
            self.quarantines.pop(f"{key[1]}/{key[2]}", None)
        old = self.objects.pop(key, None)
        if old is None:
            return None
        self.digest ^= self.object_hashes.pop(key, 0)
        if isinstance(old, NetworkPolicy):  # by its model name (NAME.GROUP if accepted)
            self.shadow.remove(KIND_NETWORK_POLICY, old.namespace, old.name)
        else:
            self.shadow.remove(key[0], key[1], key[2])
        return ObjectChange(key, old, None)

    def begin_relist(self, kind: str) -> None:
        """RESET(kind): the events up to the next SYNCED name every object of that kind."""
        self._relisting[kind] = set()

    def finish_relist(self) -> list[ObjectChange]:
        """SYNCED: remove what the relisted kinds no longer hold."""
        removed = []
        for kind, seen in self._relisting.items():
            known = self.staged if kind == KIND_STAGED_NETWORK_POLICY else self.objects
            for key in [k for k in known if k[0] == kind and k not in seen]:
                change = self.remove(key)
                if change is not None:
                    removed.append(change)
        self._relisting.clear()
        return removed


class PrelistFeed:
    """The source's callback from the agent's start: the events before the first SYNCED are
    applied to the intake at once, in the source's threads (nothing is compiled before the
    first full sync, so this is exactly what the loop would do with them); that SYNCED and
    everything after it is queued for the loop, which starts from a state already built.

    At that SYNCED, the relist it ends is finished and `on_synced` runs (the first full
    compile, see enforcer.agent.runtime.EarlyCompile) before the SYNCED is queued: the loop
    sees the state exactly as it was compiled.

    The cyclic GC is paused until then: building the state allocates only long-lived objects,
    and collections triggered by the allocation count would walk the whole growing state
    again and again (the agent freezes it once it is enforced)."""

    def __init__(
        self,
        intake: Intake,
        out: queue.Queue[QueuedEvent],
        on_synced: Callable[[], None] | None = None,
    ) -> None:
        self.intake = intake
        self.queue = out
        self.on_synced = on_synced
        self._lock = threading.Lock()  # a source may emit from several threads (one per kind)
        self._prelisting = True
        self._gc_pause = contextlib.ExitStack()
        self._gc_pause.enter_context(gc_paused())

    def __call__(self, event: SourceEvent) -> None:
        with self._lock:
            if self._prelisting and event.type is not EventType.SYNCED:
                if event.type is EventType.RESET:
                    if event.kind:
                        self.intake.begin_relist(event.kind)
                else:
                    self.intake.apply(event)
                return
            if self._prelisting:
                self._prelisting = False
                try:
                    self.intake.finish_relist()  # before the first sync nothing is compiled
                    if self.on_synced is not None:
                        self.on_synced()
                except Exception:  # a bug: the loop compiles again (EarlyCompile.delta None)
                    self.intake.log.exception("compiling the first full sync failed")
                finally:
                    self._gc_pause.close()
            self.queue.put((time.monotonic(), event))
