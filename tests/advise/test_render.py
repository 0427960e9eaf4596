"""The printed advice: valid YAML the project's loader reads back as proven, comments per rule."""

from __future__ import annotations

import json

import yaml

from enforcer.advise import advise
from enforcer.advise.advice import parse_manifests
from enforcer.advise.render import render_json, render_yaml, summary
from enforcer.model.loader import load_text
from enforcer.model.parse import parse_object

from .builders import API, DB, DNS, WEB, both_sides, flow, shop, state_of

RECORDS = [
    *both_sides(WEB[0], API[0], 8080, count=4, last_seen=1767225600.0),
    flow(WEB[1], API[1], 8080, count=2),
    flow(WEB[0], API[1], 8080),
    flow(WEB[1], API[0], 8080),
    flow(WEB[0], DNS, 53, "UDP"),
    flow(API[0], DB, 5432),
    flow("198.51.100.7", WEB[0], 8080, direction="ingress"),
]


def test_the_yaml_loads_with_the_projects_loader_as_the_proven_policies() -> None:
    advice = advise(state_of(shop()), RECORDS)
    text = render_yaml(advice)
    loaded = load_text(text, "advice.yaml")
    assert loaded.errors == [] and loaded.notes == []
    assert loaded.objects == parse_manifests(advice.policies)
    assert [d for d in yaml.safe_load_all(text)] == advice.manifests


def test_each_rule_is_preceded_by_the_flows_that_justify_it() -> None:
    text = render_yaml(advise(state_of(shop()), RECORDS))
    api_in = text[text.index("name: api-ingress"):text.index("name: api-egress")]
    assert "  # from 4 observed flows:\n" in api_in
    assert (f"  #   {WEB[0]} -> {API[0]} TCP/8080: 4 times, last seen 2026-01-01T00:00:00.000Z"
            in api_in)
    assert "  #   and 1 more\n" in api_in
    assert "# DNS: shop/web resolves names; UDP and TCP 53" in text
    assert "# no egress observed: all egress denied\n  egress: []" in text
    assert text.startswith("---\n# data/db (Deployment), ingress; selects data/db-5d8f7c9b6-0\n")


def test_json_carries_policies_justifications_and_the_proof() -> None:
    advice = advise(state_of(shop()), RECORDS)
    doc = json.loads(render_json(advice))
    assert [parse_object(p) for p in doc["policies"]] == parse_manifests(advice.policies)
    first = doc["rules"][0]
    assert (first["policy"], first["direction"], first["rule"]) == ("data/db-ingress",
                                                                    "ingress", 0)
    assert first["flows"][0]["source"] == API[0]
    assert doc["proof"]["all_allowed"] is True
    assert doc["proof"]["observed_flows"] == 7
    assert doc["proof"]["newly_denied"] == advice.proof.newly_denied > 0


def test_the_summary_says_what_was_advised_and_what_it_takes_away() -> None:
    advice = advise(state_of(shop()), RECORDS)
    line = summary(advice)
    assert line.startswith("advised 8 policies for 4 workloads; every one of 7 observed flows "
                           "stays allowed; ")
    assert f"{advice.proof.newly_denied_pod_pairs} pod pairs newly denied" in line
