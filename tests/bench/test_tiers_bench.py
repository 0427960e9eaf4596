"""The cluster-policy benchmarks (bench/tiers_*.py) measure what they claim: the realistic mix
is valid and compiles to deny entries, the datapath bench's server table denies the intruder
and lets the client through (with packets, the bench checks it itself before its rounds: the
smoke run of every benchmark, tests/bench/test_bench_quick_run.py, runs it in the kernel)."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address

from bench import entries, tiers_compile, tiers_datapath
from bench.model_scale import generate


def test_realistic_mix_is_valid_and_mixed() -> None:
    docs = generate(2_000, 100, 400)
    tenants = tiers_compile.label_tenants(docs)
    namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    raw = tiers_compile.realistic_policies(namespaces, tenants, 500)
    policies = tiers_compile.parse_policies(raw)
    assert len(policies) == 500 == len({p.name for p in policies})
    actions = Counter(r.action for p in policies for r in (*p.ingress, *p.egress))
    assert set(actions) == {"Accept", "Deny", "Pass"}
    assert {p.tier for p in policies} == {"Admin", "Baseline"}
    assert len({p.priority for p in policies}) > 50  # spread, not one priority
    assert tiers_compile.parse_policies(tiers_compile.stress_policies(30))


def test_compile_bench_small_cluster() -> None:
    r = tiers_compile._child(1_000, 200, 100, 100, "realistic", 4)
    assert r["cluster_policies"] == 100 and r["local_endpoints"] > 0
    assert r["deny_entries_per_endpoint_mean"] > 0
    assert r["change"]["n"] == 4 and r["change"]["endpoints_written_median"] > 0


def test_datapath_bench_tables_deny_the_intruder_only() -> None:
    client, server, intruder = (IPv4Address(f"198.18.200.{i}") for i in (2, 3, 4))
    base = tiers_datapath.cluster_docs(client, server, intruder, 100)
    assert len(tiers_datapath.cluster_policies(100)) == 4  # 25 rules each
    _, none = tiers_datapath.compile_server(base, 0)
    assert not none.denies
    for n in (1, 100):
        idents, table = tiers_datapath.compile_server(base, n)
        assert table.denies
        ident = {str(k): v for k, v in idents.items()}
        bad, good = ident[f"{intruder}/32"], ident[f"{client}/32"]
        assert bad in {e.peer for e in table.denies}
        assert not [e for e in table.entries if e.peer == bad]  # denied on every port
        assert [e for e in table.entries if e.peer == good and e.protocol == 6
                and e.port_lo <= tiers_datapath.IPERF_PORT <= e.port_hi]


def test_promises_cover_every_configuration() -> None:
    for name in ("tiers_compile", "tiers_datapath", "tiers_agent"):
        bench = entries.by_name(name)
        for profile in ("smoke", "quick", "full"):
            assert bench.promises(bench.config(profile)), (name, profile)
