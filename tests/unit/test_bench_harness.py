"""The benchmark harness's pure helpers: numbers, medians, the table (no peer, no database)."""

from __future__ import annotations

import types

import pytest

from bench.__main__ import parse_args
from bench.harness import (
    MACHINE,
    Column,
    Failure,
    Figure,
    Results,
    Stat,
    fmt_number,
    fmt_stat,
    matches,
    peers_of_module,
    render_table,
)
from bench.peers.base import Latency, Peer
from bench.scenarios import parse_pgbench_tps


def test_numbers_get_as_many_decimals_as_their_size_needs() -> None:
    assert fmt_number(12345.6) == "12,346"
    assert fmt_number(45.67) == "45.7"
    assert fmt_number(2.345) == "2.35"  # binary floats round as they are stored
    assert fmt_number(0.01234) == "0.012"
    assert fmt_number(3.0, 1) == "3.0"


def test_a_stat_is_its_median_with_min_and_max() -> None:
    stat = Stat((1200.0, 1000.0, 1500.0))
    assert stat.median == 1200.0
    assert fmt_stat(stat) == "1,200 (1,000–1,500)"
    assert fmt_stat(Stat((2.5,))) == "2.50"
    assert fmt_stat(Stat((7.0, 7.0, 7.0))) == "7.00"  # no range when nothing varied
    assert fmt_stat(Stat((1.0, 2.0))) == "1.50 (1.00–2.00)"  # even count: the mean of two


def results_with(*figures: Figure) -> Results:
    results = Results()
    for figure in figures:
        results.figure(figure)
    results.columns = {
        "tt-pg": Column("tt-pg", "tasktrail (PostgreSQL)", "postgresql", tasktrail=True),
        "tt-lite": Column("tt-lite", "tasktrail (SQLite)", "sqlite", tasktrail=True),
        "a": Column("a", "PeerA", "postgresql"),
        "b": Column("b", "PeerB", "redis"),
        "lite": Column("lite", "LitePeer", "sqlite"),
    }
    return results


def row_of(table: str, label: str) -> list[str]:
    [line] = [line for line in table.splitlines() if line.startswith(f"| {label}")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_best_peer_and_the_ratio_follow_the_figures_direction() -> None:
    rate = Figure("server.drain", "drain", "jobs/s")
    delay = Figure("server.p50", "p50", "ms", better="lower", scale=1000.0)
    results = results_with(rate, delay)
    for peer, values in {"tt-pg": (2000, 3000, 2500), "a": (1000,), "b": (1250, 1250)}.items():
        for value in values:
            results.add(rate, peer, value)
    for peer, value in {"tt-pg": 0.002, "a": 0.004, "b": 0.001}.items():
        results.add(delay, peer, value)
    table = render_table(results)
    header = row_of(table, "figure")
    assert header == [
        "figure", "tasktrail", "PeerA", "PeerB", "LitePeer", "best peer", "tasktrail / best peer"
    ]  # fmt: skip
    assert row_of(table, "drain (jobs/s) ↑") == [
        "drain (jobs/s) ↑", "2,500 (2,000–3,000)", "1,000", "1,250", "—", "1,250 (PeerB)",
        "2.00× (ahead)",
    ]  # fmt: skip
    # lower is better: the best peer is the smallest; tasktrail at twice it is behind
    assert row_of(table, "p50 (ms) ↓")[2:] == [
        "4.00",
        "1.00",
        "—",
        "1.00 (PeerB)",
        "2.00× (behind)",
    ]


def test_sqlite_rows_take_tasktrails_sqlite_figure_and_failures_say_so() -> None:
    drain = Figure("sqlite.drain", "SQLite: drain", "jobs/s", store="sqlite")
    results = results_with(drain)
    results.add(drain, "tt-lite", 900.0)
    results.add(drain, "tt-pg", 1.0)  # not this row's store: never shown
    results.fail(drain, "lite", Failure("n/a", "no SQLite storage"))
    row = row_of(render_table(results), "SQLite: drain")
    assert row[1] == "900"
    assert row[4] == "n/a"
    assert row[-2:] == ["—", "—"]  # no peer figure: no best, no ratio


def test_references_text_and_empty_rows() -> None:
    limit = Figure("limits.insert", "machine: INSERT", "rows/s", better=None, reference=True)
    plan = Figure("scale.plan", "claim plan", "", better=None)
    unmeasured = Figure("server.nothing", "never measured", "jobs/s")
    results = results_with(limit, plan, unmeasured)
    results.add(limit, MACHINE, 2100.0)
    results.text(plan, "tt-pg", "no Seq Scan")
    table = render_table(results)
    assert row_of(table, "machine: INSERT (rows/s)")[1:] == ["2,100", "—", "—", "—", "—", "—"]
    assert row_of(table, "claim plan")[1] == "no Seq Scan"
    assert "never measured" not in table


def test_pipes_in_cells_do_not_break_the_table() -> None:
    plan = Figure("scale.plan", "plan", "", better=None)
    results = results_with(plan)
    results.text(plan, "tt-pg", "a | b")
    assert "a \\| b" in render_table(results)


def test_pgbench_tps_is_read_from_its_report() -> None:
    report = (
        "number of transactions actually processed: 21000\n"
        "latency average = 0.950 ms\n"
        "initial connection time = 3.512 ms\n"
        "tps = 2104.889371 (without initial connection time)\n"
    )
    assert parse_pgbench_tps(report) == 2104.889371


def test_peer_selection_by_key_prefix_name_or_module() -> None:
    assert matches("huey-sqlite", "SqliteHuey", "huey_peer", "huey")
    assert matches("huey-sqlite", "SqliteHuey", "huey_peer", "SqliteHuey")
    assert matches("tasktrail-pg", "tasktrail (PostgreSQL)", "tasktrail_peer", "tasktrail-pg")
    assert not matches(
        "tasktrail-pg", "tasktrail (PostgreSQL)", "tasktrail_peer", "tasktrail-sqlite"
    )
    assert not matches("rq", "RQ", "rq_peer", "celery")


class _Fake(Peer):
    name = "Fake"
    store = "redis"

    def enqueue_single(self, count: int) -> float:
        return 1.0

    def enqueue_bulk(self, count: int) -> float:
        return 1.0

    def drain(self, count: int, workers: int, processes: int) -> float:
        return 1.0

    def latency(self, count: int, interval: float) -> Latency:
        return Latency(0.0, 0.0, 0.0)

    def sleep_jobs(self, count: int, seconds: float, processes: int) -> float:
        return 1.0


def test_a_driver_module_offers_its_concrete_peer_classes() -> None:
    module = types.ModuleType("fake_peer")
    module.Fake = type("Fake", (_Fake,), {"__module__": "fake_peer"})  # type: ignore[attr-defined]
    module.Peer = Peer  # type: ignore[attr-defined]  # imported, not defined here
    [peer] = peers_of_module(module)
    assert peer.name == "Fake"
    module.peers = lambda: [_Fake(), _Fake()]  # type: ignore[attr-defined]
    assert len(peers_of_module(module)) == 2


def test_tasktrails_reserve_per_process_can_be_set_and_must_be_positive() -> None:
    assert parse_args(["--tasktrail-reserve", "4"]).tasktrail_reserve == 4
    assert parse_args([]).tasktrail_reserve is None
    with pytest.raises(SystemExit):
        parse_args(["--tasktrail-reserve", "0"])
