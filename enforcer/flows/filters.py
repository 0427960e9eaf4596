"""Which flow records to show: `hubble observe`'s filter semantics, and `--since` times.

Values of one field OR, fields AND (`--verdict denied --verdict audit --port 53` is "denied or
audit, and on port 53"); an empty field matches everything. The CLI sends a filter to the agent
as URL query parameters (`to_query`) and the agent rebuilds it (`from_query`).

An endpoint (`--pod`, `--from`, `--to`) is written one of three ways:

- `NS/NAME`: the pod `NS/NAME`, or every pod of the workload `NS/NAME` (a record keeps the last
  pod seen of an aggregate, so the workload is what matches all of its flows);
- `NS/`: any pod of namespace NS;
- an address or a prefix (`10.0.1.5`, `10.0.0.0/16`, `fd00::/64`): the end's IP address, or
  for a peer outside the cluster the address the record names it by.

Namespace names cannot hold a `.` or `:`, so an address is never mistaken for `NS/NAME`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from enforcer.flows.record import DIRECTIONS, PROTOCOLS, STAGED_VERDICTS, VERDICTS, FlowRecord

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A staged verdict filters too: `--verdict would-deny` shows what staging would cut.
FILTER_VERDICTS = VERDICTS + STAGED_VERDICTS

# Field of FlowFilter -> its query parameter (the CLI flag without dashes).
PARAMETERS = {
    "namespaces": "namespace",
    "pods": "pod",
    "from_pods": "from",
    "to_pods": "to",
    "ports": "port",
    "protocols": "protocol",
    "verdicts": "verdict",
    "policies": "policy",
    "directions": "direction",
}


def _address(text: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _endpoint(param: str, text: str) -> str:
    """Checks an endpoint's form; returns it unchanged (addresses normalized)."""
    if (net := _address(text)) is not None:
        return str(net) if "/" in text else str(net.network_address)
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or "/" in name:
        raise ValueError(f"{param}: expected NS/NAME, NS/ or an address, got {text!r}")
    return text


def _protocol(param: str, text: str) -> str:
    for known in PROTOCOLS:
        if text.upper() == known.upper():
            return known
    if text.isdigit() and int(text) <= 255:  # another IP protocol, by number as records say
        return str(int(text))
    raise ValueError(
        f"{param}: expected one of {', '.join(PROTOCOLS)} or a protocol number, got {text!r}")


def _port(param: str, text: str | int) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"{param}: not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{param}: not a port number 0-65535: {text!r}")
    return port


def _choice(param: str, text: str, allowed: tuple[str, ...]) -> str:
    if text not in allowed:
        raise ValueError(f"{param}: expected one of {', '.join(allowed)}, got {text!r}")
    return text


def _policy(param: str, text: str) -> str:
    namespace, slash, name = text.partition("/")
    if not (slash and namespace and name) or "/" in name:
        raise ValueError(f"{param}: expected NS/NAME, got {text!r}")
    return text


class _Endpoint:
    """One endpoint form, ready to test a record's end."""

    __slots__ = ("name", "namespace", "network")

    def __init__(self, text: str) -> None:
        self.network = _address(text)
        namespace, _, name = text.partition("/")
        self.namespace = namespace if self.network is None else ""
        self.name = text if self.network is None and name else ""

    def matches(self, endpoint: str, workload: str, ip: str) -> bool:
        if self.network is not None:
            address = _address(ip) if ip else _address(endpoint)
            return (
                address is not None
                and address.version == self.network.version
                and address.network_address in self.network
            )
        if self.name:
            return self.name in (endpoint, workload)
        return _namespace(endpoint, workload) == self.namespace


def _namespace(endpoint: str, workload: str) -> str:
    """The end's namespace; "" for an address outside the cluster."""
    if workload:
        return workload.partition("/")[0]
    namespace, slash, _ = endpoint.partition("/")
    return namespace if slash and _address(endpoint) is None else ""


def _any_end(ends: tuple[_Endpoint, ...], endpoint: str, workload: str, ip: str) -> bool:
    return any(e.matches(endpoint, workload, ip) for e in ends)


@dataclass(frozen=True)
class FlowFilter:
    """Empty fields match everything. Values are checked and normalized on construction
    (ValueError naming the query parameter and the value)."""

    namespaces: tuple[str, ...] = ()  # either end in one of these namespaces
    pods: tuple[str, ...] = ()  # either end is one of these endpoints
    from_pods: tuple[str, ...] = ()  # the source is one of these endpoints
    to_pods: tuple[str, ...] = ()  # the destination is one of these endpoints
    ports: tuple[int, ...] = ()  # destination port
    protocols: tuple[str, ...] = ()
    verdicts: tuple[str, ...] = ()  # allowed, denied, audit, or a staged would-deny/would-allow
    policies: tuple[str, ...] = ()  # NS/NAME in the deciding policies or the staged ones
    directions: tuple[str, ...] = ()
    # The endpoint forms parsed once, for matches().
    _pods: tuple[_Endpoint, ...] = field(default=(), init=False, repr=False, compare=False)
    _from: tuple[_Endpoint, ...] = field(default=(), init=False, repr=False, compare=False)
    _to: tuple[_Endpoint, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checked = {
            "namespaces": [_namespace_name("namespace", v) for v in self.namespaces],
            "pods": [_endpoint("pod", v) for v in self.pods],
            "from_pods": [_endpoint("from", v) for v in self.from_pods],
            "to_pods": [_endpoint("to", v) for v in self.to_pods],
            "ports": [_port("port", v) for v in self.ports],
            "protocols": [_protocol("protocol", v) for v in self.protocols],
            "verdicts": [_choice("verdict", v, FILTER_VERDICTS) for v in self.verdicts],
            "policies": [_policy("policy", v) for v in self.policies],
            "directions": [_choice("direction", v, DIRECTIONS) for v in self.directions],
        }
        for name, values in checked.items():
            # Frozen: normalized values (ports as int, protocols spelled as records do) go in
            # through object.__setattr__; duplicates are dropped, order kept.
            object.__setattr__(self, name, tuple(dict.fromkeys(values)))
        object.__setattr__(self, "_pods", tuple(_Endpoint(v) for v in self.pods))
        object.__setattr__(self, "_from", tuple(_Endpoint(v) for v in self.from_pods))
        object.__setattr__(self, "_to", tuple(_Endpoint(v) for v in self.to_pods))

    def is_empty(self) -> bool:
        return not any(getattr(self, name) for name in PARAMETERS)

    def matches(self, record: FlowRecord) -> bool:
        source = (record.source, record.source_workload, record.source_ip)
        destination = (record.destination, record.destination_workload, record.destination_ip)
        staged = record.staged
        return (
            (not self.ports or record.port in self.ports)
            and (not self.protocols or record.protocol in self.protocols)
            and (not self.directions or record.direction in self.directions)
            and (
                not self.verdicts
                or record.verdict in self.verdicts
                or (staged is not None and staged.verdict in self.verdicts)
            )
            and (
                not self.policies
                or any(p in self.policies for p in record.policies)
                or (staged is not None and any(p in self.policies for p in staged.policies))
            )
            and (
                not self.namespaces
                or _namespace(source[0], source[1]) in self.namespaces
                or _namespace(destination[0], destination[1]) in self.namespaces
            )
            and (
                not self._pods
                or _any_end(self._pods, *source)
                or _any_end(self._pods, *destination)
            )
            and (not self._from or _any_end(self._from, *source))
            and (not self._to or _any_end(self._to, *destination))
        )

    def to_query(self) -> list[tuple[str, str]]:
        """URL query parameters, one per value (`urllib.parse.urlencode` takes the list)."""
        return [
            (param, str(value)) for name, param in PARAMETERS.items()
            for value in getattr(self, name)
        ]

    @classmethod
    def from_query(cls, params: Mapping[str, Iterable[str]]) -> FlowFilter:
        """The filter of parsed query parameters (`urllib.parse.parse_qs`'s mapping).
        Parameters that are not the filter's (since, limit, ...) are left to the caller."""
        return cls(**{name: tuple(params.get(param, ())) for name, param in PARAMETERS.items()})


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _namespace_name(param: str, text: str) -> str:
    if not _NAMESPACE.fullmatch(text) or len(text) > 63:
        raise ValueError(f"{param}: not a namespace name: {text!r}")
    return text


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float) -> float:
    """Unix seconds of `--since`: a duration back from now (`30s`, `5m`, `2h`, `1d`, or
    combined as `1h30m`) or an RFC 3339 time (`2026-08-01T10:00:00Z`, with a zone)."""
    value = text.strip()
    if value and _DURATION.sub("", value) == "":
        return now - sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(value))
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError(
            f"not a duration (30s, 5m, 2h, 1d) or an RFC 3339 time with a zone: {text!r}")
    return moment.timestamp()
