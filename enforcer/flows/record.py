"""One flow record: the JSON line `enforcer flows --output json` prints, read back exactly.

A record is one aggregate: flows between two endpoints on one destination port and protocol,
judged in one direction with one verdict by the same policies, with a count and the first and
last time seen. `source`/`destination` are `namespace/pod` (the last pod seen) or, for a peer
outside the cluster, its address. `direction` is the side that judged it: `egress` is the
source pod's egress, `ingress` the destination pod's ingress. `policies` names what decided:
for an allow, the policies whose rules allow it (`rules` says which rule of each); for a deny,
the policies that isolate the pod in that direction (no rule of theirs allows it).

Files of records (`--flows FLOWS.jsonl`) are read line by line; a bad line is reported with its
line number and field, and skipped (or fails the whole read with strict=True).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

VERDICTS = ("allowed", "denied", "audit")
STAGED_VERDICTS = ("would-deny", "would-allow")
DIRECTIONS = ("ingress", "egress")
PROTOCOLS = ("TCP", "UDP", "SCTP", "ICMP", "ICMPv6")


@dataclass(frozen=True)
class RuleRef:
    """Rule `rule` (0-based, in written order) of `policy`'s rules in `direction`."""

    policy: str  # namespace/name
    direction: str  # ingress | egress
    rule: int


@dataclass(frozen=True)
class StagedVerdict:
    """What the staged policies would change for this flow, and which of them."""

    verdict: str  # would-deny | would-allow
    policies: tuple[str, ...]


@dataclass(frozen=True)
class FlowRecord:
    source: str
    destination: str
    port: int
    protocol: str
    direction: str
    verdict: str
    policies: tuple[str, ...] = ()
    rules: tuple[RuleRef, ...] = ()
    reason: str = ""  # forwarded, policy_denied, spoofed_source, ...; the kernel's words
    source_ip: str = ""
    destination_ip: str = ""
    source_workload: str = ""  # namespace/name of the owning controller; "" outside the cluster
    destination_workload: str = ""
    node: str = ""
    count: int = 1
    first_seen: float = 0.0  # unix seconds; RFC 3339 in JSON
    last_seen: float = 0.0
    staged: StagedVerdict | None = None
    extra: tuple[tuple[str, Any], ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("extra")
        doc["policies"] = list(self.policies)
        doc["rules"] = [asdict(r) for r in self.rules]
        doc["first_seen"] = rfc3339(self.first_seen)
        doc["last_seen"] = rfc3339(self.last_seen)
        if self.staged is None:
            doc.pop("staged")
        else:
            doc["staged"] = {"verdict": self.staged.verdict,
                             "policies": list(self.staged.policies)}
        return doc

    def to_line(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class FlowFormatError(ValueError):
    def __init__(self, origin: str, line: int, field: str, message: str) -> None:
        super().__init__(f"{origin}:{line}: {field}: {message}")
        self.origin, self.line, self.field, self.message = origin, line, field, message


def _str(doc: dict[str, Any], key: str, fail: Any, required: bool = True) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        fail(key, f"must be a non-empty string, got {value!r}")
    return value


def _choice(doc: dict[str, Any], key: str, allowed: Iterable[str], fail: Any) -> str:
    value = _str(doc, key, fail)
    if value not in allowed:
        fail(key, f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _time(doc: dict[str, Any], key: str, fail: Any) -> float:
    value = doc.get(key)
    if value is None:
        return 0.0
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_time(str(value))
    except ValueError:
        fail(key, f"not an RFC 3339 time: {value!r}")
    raise AssertionError  # unreachable: fail raises


def parse_record(doc: Any, origin: str = "<input>", line: int = 0) -> FlowRecord:
    """One record from its JSON object; raises FlowFormatError naming the line and field."""

    def fail(key: str, message: str) -> None:
        raise FlowFormatError(origin, line, key, message)

    if not isinstance(doc, dict):
        fail("(line)", f"expected a JSON object, got {type(doc).__name__}")
    port = doc.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        fail("port", f"must be a port number 0-65535, got {port!r}")
    policies = doc.get("policies", [])
    if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
        fail("policies", "must be a list of namespace/name strings")
    rules = []
    for i, raw in enumerate(doc.get("rules") or []):
        if not isinstance(raw, dict) or not isinstance(raw.get("policy"), str) or not (
            isinstance(raw.get("rule"), int) and raw.get("direction") in DIRECTIONS
        ):
            fail(f"rules[{i}]", "must be {policy: namespace/name, direction, rule: index}")
        rules.append(RuleRef(raw["policy"], raw["direction"], raw["rule"]))
    count = doc.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        fail("count", f"must be a positive integer, got {count!r}")
    staged = None
    if (raw_staged := doc.get("staged")) is not None:
        if not isinstance(raw_staged, dict):
            fail("staged", "must be an object {verdict, policies}")
        staged = StagedVerdict(_choice(raw_staged, "verdict", STAGED_VERDICTS, fail),
                               tuple(raw_staged.get("policies") or ()))
    protocol = _str(doc, "protocol", fail).upper()
    protocol = "ICMPv6" if protocol == "ICMPV6" else protocol
    if protocol not in PROTOCOLS and not protocol.isdigit():  # other IP protocols by number
        fail("protocol", f"must be one of {', '.join(PROTOCOLS)}, got {doc['protocol']!r}")
    return FlowRecord(
        source=_str(doc, "source", fail),
        destination=_str(doc, "destination", fail),
        port=port,
        protocol=protocol,
        direction=_choice(doc, "direction", DIRECTIONS, fail),
        verdict=_choice(doc, "verdict", VERDICTS, fail),
        policies=tuple(policies),
        rules=tuple(rules),
        reason=_str(doc, "reason", fail, required=False),
        source_ip=_str(doc, "source_ip", fail, required=False),
        destination_ip=_str(doc, "destination_ip", fail, required=False),
        source_workload=_str(doc, "source_workload", fail, required=False),
        destination_workload=_str(doc, "destination_workload", fail, required=False),
        node=_str(doc, "node", fail, required=False),
        count=count,
        first_seen=_time(doc, "first_seen", fail),
        last_seen=_time(doc, "last_seen", fail),
        staged=staged,
    )


@dataclass
class FlowsFile:
    records: list[FlowRecord]
    errors: list[FlowFormatError]


def read_lines(lines: Iterable[str], origin: str, strict: bool = False) -> FlowsFile:
    """Records of a JSON-lines text; blank lines are skipped. With strict, the first bad line
    raises; otherwise bad lines are collected in `errors` and skipped."""
    out = FlowsFile([], [])
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as e:
                raise FlowFormatError(origin, number, "(line)", f"not JSON: {e.msg}") from e
            out.records.append(parse_record(doc, origin, number))
        except FlowFormatError as e:
            if strict:
                raise
            out.errors.append(e)
    return out


def read_file(path: str | Path, strict: bool = False) -> FlowsFile:
    """`-` reads standard input."""
    if str(path) == "-":
        import sys

        return read_lines(sys.stdin, "<stdin>", strict)
    with open(path, encoding="utf-8") as f:
        return read_lines(f, str(path), strict)


def write_lines(records: Iterable[FlowRecord]) -> Iterator[str]:
    for r in records:
        yield r.to_line() + "\n"
