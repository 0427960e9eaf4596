"""Bad datapath settings are refused before anything is compiled or pinned, naming the flag
(the agent's command line) or the field (DatapathConfig)."""

from __future__ import annotations

import pytest

from enforcer.cli import build_parser
from enforcer.commands.agent import datapath_config
from enforcer.datapath.layout import MAP_SIZE_FIELDS, DatapathConfig


@pytest.mark.parametrize("argv, message", [
    (["--max-conntrack", "0"], "argument --max-conntrack: must be at least 1, got 0"),
    (["--max-endpoints", "-5"], "argument --max-endpoints: must be at least 1, got -5"),
    (["--max-identities", "many"], "argument --max-identities: not an integer: 'many'"),
    (["--events-per-second", "-1"], "argument --events-per-second: must be at least 0, got -1"),
])
def test_the_agent_refuses_a_bad_size_naming_the_flag(argv: list[str], message: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["agent", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_agents_flags_reach_the_datapath_config() -> None:
    args = build_parser().parse_args(
        ["agent", "--max-conntrack", "1024", "--events-per-second", "0"])
    cfg = datapath_config(args)
    assert cfg.max_conntrack == 1024 and cfg.events_per_second == 0
    assert cfg.max_endpoints == DatapathConfig().max_endpoints


@pytest.mark.parametrize("field", MAP_SIZE_FIELDS)
def test_a_map_size_below_one_is_refused_naming_the_field(field: str) -> None:
    with pytest.raises(ValueError, match=f"^DatapathConfig.{field}: must be at least 1, got 0$"):
        DatapathConfig(**{field: 0})


@pytest.mark.parametrize("kwargs, message", [
    ({"event_pages": 3}, "DatapathConfig.event_pages: must be a power of two, got 3"),
    ({"event_pages": 0}, "DatapathConfig.event_pages: must be a power of two, got 0"),
    ({"event_burst": -1}, "DatapathConfig.event_burst: must not be negative, got -1"),
    ({"events_per_second": -2}, "DatapathConfig.events_per_second: must not be negative, got -2"),
])
def test_other_bad_settings_are_refused_naming_the_field(kwargs: dict[str, int],
                                                         message: str) -> None:
    with pytest.raises(ValueError) as error:
        DatapathConfig(**kwargs)
    assert str(error.value) == message


def test_the_defaults_and_the_smallest_sizes_are_accepted() -> None:
    DatapathConfig()
    DatapathConfig(**dict.fromkeys(MAP_SIZE_FIELDS, 1), event_pages=1, events_per_second=0,
                   event_burst=0)
