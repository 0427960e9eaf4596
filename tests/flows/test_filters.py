"""Flow filters: values of one field OR, fields AND; every field; the query-parameter round
trip the CLI and the agent share; `--since` times."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, urlencode

import pytest

from enforcer.flows.filters import FlowFilter, parse_since
from enforcer.flows.record import FlowRecord, StagedVerdict

WEB_TO_API = FlowRecord(
    source="frontend/web-7d4b9-aaaaa", destination="backend/api-0", port=8080, protocol="TCP",
    direction="ingress", verdict="denied", policies=("backend/default-deny",),
    reason="policy_denied", source_ip="10.0.0.1", destination_ip="10.0.1.2",
    source_workload="frontend/web", destination_workload="backend/api", node="node1",
)
API_TO_WORLD = FlowRecord(
    source="backend/api-0", destination="203.0.113.9", port=443, protocol="UDP",
    direction="egress", verdict="allowed", policies=("backend/allow-out",),
    source_ip="10.0.1.2", destination_ip="203.0.113.9", source_workload="backend/api",
    staged=StagedVerdict("would-deny", ("backend/lockdown",)),
)
WORLD_TO_DB = FlowRecord(
    source="2001:db8::7", destination="data/db-0", port=5432, protocol="TCP",
    direction="ingress", verdict="audit", policies=("data/isolate",),
    destination_ip="fd00::5", destination_workload="data/db",
)
ALL = [WEB_TO_API, API_TO_WORLD, WORLD_TO_DB]


def shown(**fields: object) -> list[FlowRecord]:
    flt = FlowFilter(**fields)  # type: ignore[arg-type]
    return [r for r in ALL if flt.matches(r)]


def test_an_empty_filter_matches_everything() -> None:
    assert FlowFilter().is_empty()
    assert shown() == ALL


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"namespaces": ("frontend",)}, [WEB_TO_API]),
        ({"namespaces": ("backend",)}, [WEB_TO_API, API_TO_WORLD]),
        ({"namespaces": ("data", "frontend")}, [WEB_TO_API, WORLD_TO_DB]),
        # A pod, its workload, a namespace, an address: at either end.
        ({"pods": ("backend/api-0",)}, [WEB_TO_API, API_TO_WORLD]),
        ({"pods": ("frontend/web",)}, [WEB_TO_API]),
        ({"pods": ("data/",)}, [WORLD_TO_DB]),
        ({"pods": ("203.0.113.9",)}, [API_TO_WORLD]),
        ({"pods": ("10.0.0.0/8",)}, [WEB_TO_API, API_TO_WORLD]),
        ({"pods": ("fd00::/64",)}, [WORLD_TO_DB]),
        # From and to: one end each.
        ({"from_pods": ("backend/api",)}, [API_TO_WORLD]),
        ({"to_pods": ("backend/api",)}, [WEB_TO_API]),
        ({"from_pods": ("2001:db8::/32",)}, [WORLD_TO_DB]),  # an outside peer by its name
        ({"to_pods": ("203.0.113.0/24", "data/")}, [API_TO_WORLD, WORLD_TO_DB]),
        ({"from_pods": ("frontend/web-7d4b9-aaaaa",)}, [WEB_TO_API]),
        ({"from_pods": ("frontend/web-7d4b9",)}, []),  # not a prefix match
        ({"ports": (443, 5432)}, [API_TO_WORLD, WORLD_TO_DB]),
        ({"protocols": ("udp",)}, [API_TO_WORLD]),
        ({"verdicts": ("denied", "audit")}, [WEB_TO_API, WORLD_TO_DB]),
        ({"verdicts": ("would-deny",)}, [API_TO_WORLD]),
        ({"policies": ("backend/default-deny",)}, [WEB_TO_API]),
        ({"policies": ("backend/lockdown",)}, [API_TO_WORLD]),  # a staged policy
        ({"policies": ("data/isolate", "backend/allow-out")}, [API_TO_WORLD, WORLD_TO_DB]),
        ({"directions": ("egress",)}, [API_TO_WORLD]),
    ],
)
def test_each_field_and_values_of_one_field_or(
    fields: dict[str, object], expected: list[FlowRecord]
) -> None:
    assert shown(**fields) == expected


def test_different_fields_and() -> None:
    assert shown(namespaces=("backend",), directions=("ingress",)) == [WEB_TO_API]
    assert shown(namespaces=("backend",), verdicts=("allowed",), ports=(443,)) == [
        API_TO_WORLD]
    assert shown(from_pods=("frontend/",), to_pods=("data/",)) == []
    assert shown(pods=("backend/api",), protocols=("TCP",), policies=("data/isolate",)) == []


def test_an_address_filter_never_matches_an_address_of_the_other_family() -> None:
    v4_in_v6 = replace(WORLD_TO_DB, source="::ffff:10.0.0.1")
    assert not FlowFilter(from_pods=("10.0.0.0/8",)).matches(v4_in_v6)


def test_values_are_normalized() -> None:
    flt = FlowFilter(ports=("80", 80), protocols=("tcp", "icmpv6", "47"),  # type: ignore[arg-type]
                     pods=("10.0.0.5/8", "10.0.0.5"))
    assert flt.ports == (80,)
    assert flt.protocols == ("TCP", "ICMPv6", "47")
    assert flt.pods == ("10.0.0.0/8", "10.0.0.5")


def test_the_query_parameters_round_trip() -> None:
    flt = FlowFilter(
        namespaces=("a", "b"), pods=("a/web",), from_pods=("a/", "10.0.0.0/8"),
        to_pods=("fd00::1",), ports=(53, 8080), protocols=("UDP",),
        verdicts=("denied", "would-allow"), policies=("a/deny",), directions=("egress",),
    )
    query = flt.to_query()
    assert ("from", "a/") in query and ("port", "53") in query and ("port", "8080") in query
    url = urlencode([*query, ("since", "5m"), ("limit", "20")])
    assert FlowFilter.from_query(parse_qs(url)) == flt  # other parameters are the caller's
    assert FlowFilter.from_query({}) == FlowFilter()
    assert FlowFilter().to_query() == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"port": ["http"]}, "port: not a port number: 'http'"),
        ({"port": ["70000"]}, "port: not a port number 0-65535: '70000'"),
        ({"verdict": ["dropped"]}, "verdict: expected one of allowed, denied, audit, "
                                   "would-deny, would-allow, got 'dropped'"),
        ({"protocol": ["tcpx"]}, "protocol: expected one of TCP, UDP, SCTP, ICMP, ICMPv6 or a "
                                 "protocol number, got 'tcpx'"),
        ({"direction": ["in"]}, "direction: expected one of ingress, egress, got 'in'"),
        ({"from": ["web"]}, "from: expected NS/NAME, NS/ or an address, got 'web'"),
        ({"to": ["a/b/c"]}, "to: expected NS/NAME, NS/ or an address, got 'a/b/c'"),
        ({"pod": ["/web"]}, "pod: expected NS/NAME, NS/ or an address, got '/web'"),
        ({"policy": ["a/"]}, "policy: expected NS/NAME, got 'a/'"),
        ({"namespace": ["Bad_NS"]}, "namespace: not a namespace name: 'Bad_NS'"),
    ],
)
def test_invalid_values_name_the_parameter_and_the_value(
    params: dict[str, list[str]], message: str
) -> None:
    with pytest.raises(ValueError) as err:
        FlowFilter.from_query(params)
    assert str(err.value) == message


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", NOW - 30),
        ("5m", NOW - 300),
        ("2h", NOW - 7200),
        ("1d", NOW - 86400),
        ("1h30m", NOW - 5400),
        ("1.5s", NOW - 1.5),
        ("2026-08-01T10:00:00Z", 1785578400.0),
        ("2026-08-01T12:00:00+02:00", 1785578400.0),
        ("2026-08-01T10:00:00.250Z", 1785578400.25),
    ],
)
def test_since_takes_durations_and_rfc3339_times(text: str, expected: float) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "-5m", "yesterday",
                                  "2026-08-01T10:00:00"])
def test_since_errors_name_the_text(text: str) -> None:
    with pytest.raises(ValueError, match=f"{text!r}$"):
        parse_since(text, NOW)
