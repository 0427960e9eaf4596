"""NetworkPolicies under another API group, read as `networking.k8s.io/v1` when asked.

Some enforcers serve the v1 NetworkPolicy schema under their own group (the brief's first
example is `security.aqua.io/v1alpha1`). Nothing reads them by default: they are reported as
not read. `--accept-group GROUP` (lint, analyze, lab, agent) reads a NetworkPolicy of GROUP,
any version, with the v1 schema and validation, for users migrating from that enforcer.

Such a policy is named `NAME.GROUP` in the model (analyze, explain, flows, metrics), so it can
never replace, or be removed as, the `networking.k8s.io` policy of the same namespace and name;
sources track it as the kind `NetworkPolicy.GROUP` for the same reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from enforcer.model.objects import KIND_NETWORK_POLICY

NETWORK_POLICY_GROUP = "networking.k8s.io"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def api_group(api_version: object) -> str:
    """"security.aqua.io/v1alpha1" -> "security.aqua.io"; the core group ("v1") is ""."""
    return api_version.rpartition("/")[0] if isinstance(api_version, str) else ""


def foreign_policy_group(obj: Mapping[str, Any]) -> str | None:
    """The group of a NetworkPolicy not of networking.k8s.io (None for anything else)."""
    if obj.get("kind") != KIND_NETWORK_POLICY:
        return None
    group = api_group(obj.get("apiVersion"))
    return None if group == NETWORK_POLICY_GROUP else group


def is_accepted(obj: Mapping[str, Any], accept_groups: Iterable[str]) -> bool:
    group = foreign_policy_group(obj)
    return bool(group) and group in accept_groups


def accepted_name(name: str, group: str) -> str:
    """The model's name of policy `name` of `group`."""
    return f"{name}.{group}"


def source_kind(kind: str, obj: Mapping[str, Any]) -> str:
    """The kind sources and the lab track an object under: `NetworkPolicy.GROUP` for another
    group's NetworkPolicy, so it never shares a key with networking.k8s.io's."""
    group = foreign_policy_group(obj) if kind == KIND_NETWORK_POLICY else None
    return f"{kind}.{group}" if group else kind


def check_groups(groups: Sequence[str]) -> str | None:
    """An error message for a bad --accept-group value, else None."""
    for group in groups:
        if group == NETWORK_POLICY_GROUP:
            return f"--accept-group {group}: NetworkPolicies of {group} are always read"
        if "/" in group:
            return f"--accept-group {group}: give the API group alone (every version is read)"
        if len(group) > 253 or "." not in group or not _DNS_SUBDOMAIN.match(group):
            return (f"--accept-group {group!r}: not an API group (a lowercase DNS subdomain "
                    "with a dot, e.g. security.aqua.io)")
    return None



def as_core_policy(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An accepted policy as the networking.k8s.io/v1 NetworkPolicy the model reads it as,
    named NAME.GROUP: for consumers that are not told the groups (the lab's agents read the
    lab's files so)."""
    group = foreign_policy_group(obj)
    if not group:
        raise ValueError("not another group's NetworkPolicy")
    meta = dict(obj.get("metadata") or {})
    meta["name"] = accepted_name(str(meta.get("name")), group)
    return {**obj, "apiVersion": f"{NETWORK_POLICY_GROUP}/v1", "metadata": meta}
