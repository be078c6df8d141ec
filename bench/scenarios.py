"""The scenarios of the benchmark (issue 5), each filling figures of :class:`Results`.

Peer scenarios call the :class:`~bench.peers.base.Peer` methods of every peer they apply
to (by store); tasktrail-only ones (scale, memory) call the tasktrail driver's own
methods; machine ones (limits, and the ``multiprocessing.Pool`` baseline of sleep) call
nothing but the database and the standard library.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import dashboard, mixed
from bench.config import PG_DSN
from bench.harness import Failure, Figure, LoadedPeer, Results, attempt, fmt_number, fmt_ratio


@dataclass(frozen=True)
class Sizes:
    enqueue_single: int = 3_000
    enqueue_bulk: int = 50_000
    drain: int = 10_000
    latency_count: int = 200
    latency_interval: float = 0.020
    sleep_count: int = 500
    sleep_seconds: float = 0.050
    sleep_processes: int = 8
    scale_jobs: int = 1_000_000
    scale_events: int = 10_000_000
    scale_drain: int = 10_000
    scale_seconds: float = 60.0  # longest a backlog drain is timed (then: jobs done / time)
    memory_jobs: int = 100_000
    raw_inserts: int = 3_000
    pgbench_seconds: int = 10
    map_sleeps: int = 200
    map_trivial: int = 20_000
    map_processes: int = 8
    mixed_long: int = 8
    mixed_long_seconds: float = 2.0
    mixed_short: int = 400
    mixed_short_seconds: float = 0.010
    mixed_workers: int = 2
    mixed_processes: int = 2
    dashboard_jobs: int = 1_000_000
    dashboard_events: int = 10_000_000
    dashboard_requests: int = 50  # per page
    dashboard_page_seconds: float = 60.0  # longest a page is timed (then: at least 5)

    def mixed_durations(self) -> list[float]:
        return mixed.mixed_durations(
            self.mixed_long, self.mixed_long_seconds, self.mixed_short, self.mixed_short_seconds
        )

    @property
    def mixed_slots(self) -> int:
        return self.mixed_workers * self.mixed_processes


QUICK = Sizes(
    enqueue_single=200,
    enqueue_bulk=5_000,
    drain=1_000,
    latency_count=30,
    sleep_count=80,
    scale_jobs=20_000,
    scale_events=100_000,
    scale_drain=1_000,
    scale_seconds=20.0,
    memory_jobs=5_000,
    raw_inserts=300,
    pgbench_seconds=2,
    map_sleeps=80,
    map_trivial=2_000,
    mixed_long=4,
    mixed_long_seconds=0.5,
    mixed_short=100,
    dashboard_jobs=20_000,
    dashboard_events=200_000,
    dashboard_requests=10,
    dashboard_page_seconds=10.0,
)

DRAIN_SHAPES = ((1, 1), (1, 2), (2, 2))


@dataclass
class Context:
    sizes: Sizes
    repeat: int
    timeout: float
    results: Results
    log: Callable[[str], None]
    #: The dashboard scenario: keep its schema afterwards; or reuse one kept before.
    dashboard_keep: bool = False
    dashboard_schema: str | None = None


# -- the figures ---------------------------------------------------------------------------


def _prefix(store: str) -> str:
    return "SQLite: " if store == "sqlite" else ""


def enqueue_figures(store: str) -> tuple[Figure, Figure]:
    p = _prefix(store)
    return (
        Figure(f"{store}.enqueue_single", f"{p}enqueue, one job per transaction", "jobs/s",
               store=store),
        Figure(f"{store}.enqueue_bulk", f"{p}enqueue, bulk", "jobs/s", store=store),
    )  # fmt: skip


def drain_figures(store: str, count: int) -> list[Figure]:
    p = _prefix(store)
    return [
        Figure(
            f"{store}.drain_{w}x{n}",
            f"{p}drain {count:,} jobs, {w} worker{'s' if w > 1 else ''} × {n} "
            f"process{'es' if n > 1 else ''}",
            "jobs/s",
            store=store,
        )
        for w, n in DRAIN_SHAPES
    ]


def latency_figures(store: str, count: int, interval: float) -> list[Figure]:
    p = _prefix(store)
    what = f"{p}latency enqueue → start ({count} jobs {interval * 1000:g} ms apart)"
    return [
        Figure(f"{store}.latency_{q}", f"{what}: {q}", "ms", better="lower", store=store,
               scale=1000.0)
        for q in ("p50", "p95", "max")
    ]  # fmt: skip


def sleep_figures(sizes: Sizes) -> tuple[Figure, Figure, Figure]:
    what = (
        f"{sizes.sleep_count} jobs × {sizes.sleep_seconds * 1000:g} ms sleep, "
        f"{sizes.sleep_processes} processes: wall time"
    )
    return (
        Figure("server.sleep", what, "s", better="lower"),
        Figure(
            "server.sleep_pool",
            f"reference: multiprocessing.Pool({sizes.sleep_processes}) doing the same sleeps",
            "s",
            better=None,
            reference=True,
        ),
        Figure(
            "server.sleep_vs_pool",
            f"sleep wall time ÷ multiprocessing.Pool({sizes.sleep_processes}) (target ≤ 1.10)",
            "",
            better=None,
        ),
    )


def scale_figures(sizes: Sizes) -> tuple[Figure, Figure, Figure, Figure]:
    n = sizes.scale_drain
    return (
        Figure("scale.empty", f"scale: drain {n:,} jobs 1 × 2, empty tables", "jobs/s"),
        Figure(
            "scale.backlog",
            f"scale: drain {n:,} jobs 1 × 2 with {sizes.scale_jobs:,} queued jobs and "
            f"{sizes.scale_events:,} history events present",
            "jobs/s",
        ),
        Figure("scale.ratio", "scale: backlog ÷ empty tables (target ≥ 0.8)", "", better=None),
        Figure("scale.plan", "scale: the claim's plan with the backlog", "", better=None),
    )


def memory_figures(sizes: Sizes) -> tuple[Figure, Figure]:
    what = f"memory over a {sizes.memory_jobs:,}-job drain 1 × 2"
    return (
        Figure("memory.supervisor", f"{what}: supervisor RSS at 10% → 50% → end, peak",
               "MiB", better=None),
        Figure("memory.child", f"{what}: one child RSS at 10% → 50% → end, peak", "MiB",
               better=None),
    )  # fmt: skip


def limit_figures(sizes: Sizes) -> tuple[Figure, Figure, Figure, Figure]:
    return (
        Figure(
            "limits.insert",
            "machine: raw psycopg INSERT + commit, one row per transaction",
            "rows/s",
            better=None,
            reference=True,
        ),
        Figure(
            "limits.pgbench",
            f"machine: pgbench -N -c 2 -j 2 -T {sizes.pgbench_seconds} (scale 1)",
            "TPS",
            better=None,
            reference=True,
        ),
        Figure(
            "limits.enqueue_vs_insert",
            "enqueue one per transaction ÷ raw INSERT + commit (target ≥ 0.9)",
            "",
            better=None,
        ),
        Figure("limits.drain_vs_pgbench", "drain 1 × 2 ÷ pgbench -N TPS", "", better=None),
    )


def map_figures(sizes: Sizes) -> list[Figure]:
    """Micro tasks (issue 7): tasktrail's ``app.map`` against the standard library's
    process pools, same items, same process count; all shown in the tasktrail column."""
    p = sizes.map_processes
    figures = []
    for key, what in (
        ("sleep", f"{sizes.map_sleeps} × 50 ms sleeps"),
        ("trivial", f"{sizes.map_trivial:,} trivial items"),
    ):
        figures += [
            Figure(f"map.{key}", f"micro tasks: app.map of {what}, {p} processes: wall time",
                   "s", better=None, reference=True),
            Figure(f"map.{key}_pool", f"reference: multiprocessing.Pool({p}).map of {what}",
                   "s", better=None, reference=True),
            Figure(f"map.{key}_executor",
                   f"reference: ProcessPoolExecutor({p}).map of {what}", "s", better=None,
                   reference=True),
            Figure(f"map.{key}_vs_pool",
                   f"app.map of {what} ÷ Pool ({'target ≤ 1.10' if key == 'sleep' else 'as small as the design allows'})",
                   "", better=None, reference=True),
        ]  # fmt: skip
    return figures


def mixed_figures(store: str, sizes: Sizes) -> tuple[Figure, Figure]:
    """The makespan and makespan ÷ ideal of the mixed scenario (issue 16)."""
    p = _prefix(store)
    ideal = mixed.ideal_makespan(sizes.mixed_durations(), sizes.mixed_slots)
    what = (
        f"{p}mixed: {sizes.mixed_long} × {sizes.mixed_long_seconds:g} s among "
        f"{sizes.mixed_short} × {sizes.mixed_short_seconds * 1000:g} ms, "
        f"{sizes.mixed_workers} workers × {sizes.mixed_processes} processes"
    )
    return (
        Figure(f"{store}.mixed", f"{what}: makespan", "s", better="lower", store=store),
        Figure(
            f"{store}.mixed_vs_ideal",
            f"{p}mixed: makespan ÷ ideal {ideal:.3g} s (target ≤ 1.05)",
            "",
            better="lower",
            store=store,
        ),
    )


def mixed_bound_figures(sizes: Sizes) -> tuple[Figure, Figure]:
    return (
        Figure(
            "mixed.fifo",
            f"reference: mixed, begun strictly in enqueue order on {sizes.mixed_slots} "
            "processes, nothing lost between jobs (the best makespan for that order)",
            "s",
            better=None,
            reference=True,
        ),
        Figure("mixed.fifo_vs_ideal", "reference: that ÷ ideal", "", better=None,
               reference=True),
    )  # fmt: skip


def all_figures(sizes: Sizes, scenarios: list[str]) -> list[Figure]:
    """Every figure the chosen scenarios may produce, in table order."""
    figures: list[Figure] = []
    for name in scenarios:
        if name == "enqueue":
            figures += enqueue_figures("server")
        elif name == "drain":
            figures += drain_figures("server", sizes.drain)
        elif name == "latency":
            figures += latency_figures("server", sizes.latency_count, sizes.latency_interval)
        elif name == "sleep":
            figures += sleep_figures(sizes)
        elif name == "sqlite":
            figures += enqueue_figures("sqlite")
            figures += drain_figures("sqlite", sizes.drain)
            figures += latency_figures("sqlite", sizes.latency_count, sizes.latency_interval)
        elif name == "scale":
            figures += scale_figures(sizes)
        elif name == "memory":
            figures += memory_figures(sizes)
        elif name == "limits":
            figures += limit_figures(sizes)
        elif name == "map":
            figures += map_figures(sizes)
        elif name == "mixed":
            figures += mixed_figures("server", sizes)
            figures += mixed_bound_figures(sizes)
            figures += mixed_figures("sqlite", sizes)
        elif name == "dashboard":
            figures += dashboard.figures(sizes)
    return figures


# -- running --------------------------------------------------------------------------------


def repeat(
    ctx: Context,
    lp: LoadedPeer,
    figures: list[Figure],
    what: str,
    call: Callable[[], Any],
    record: Callable[[Any], list[tuple[Figure, float]]],
) -> list[Any]:
    """Run ``call`` ``ctx.repeat`` times; record its figures; a failure ends the repeats
    and marks the figures (n/a or error), with the reason in the notes."""
    outs = []
    for index in range(ctx.repeat):
        label = f"{lp.key} {what} [{index + 1}/{ctx.repeat}]"
        out = attempt(call, ctx.timeout, ctx.log, label)
        if isinstance(out, Failure):
            for figure in figures:
                ctx.results.fail(figure, lp.key, out)
            ctx.results.note(f"{lp.peer.name}, {what}: {out.kind}: {out.reason}")
            break
        outs.append(out)
        shown = []
        for figure, value in record(out):
            ctx.results.add(figure, lp.key, value)
            shown.append(f"{fmt_number(value * figure.scale)} {figure.unit}")
        detail = getattr(lp.peer, "detail", None)
        extra = f" {detail}" if detail else ""
        ctx.log(f"{label}: {', '.join(shown)}{extra}")
    return outs


def repeat_one(
    ctx: Context, lp: LoadedPeer, figure: Figure, what: str, call: Callable[[], float]
) -> None:
    """:func:`repeat` for a call whose value is the one figure it measures."""
    repeat(ctx, lp, [figure], what, call, lambda value: [(figure, value)])


def run_enqueue(ctx: Context, lp: LoadedPeer, store: str) -> None:
    single, bulk = enqueue_figures(store)
    s = ctx.sizes
    repeat_one(ctx, lp, single, "enqueue single", lambda: lp.peer.enqueue_single(s.enqueue_single))
    repeat_one(ctx, lp, bulk, "enqueue bulk", lambda: lp.peer.enqueue_bulk(s.enqueue_bulk))


def run_drains(ctx: Context, lp: LoadedPeer, store: str) -> None:
    count = ctx.sizes.drain
    for figure, (workers, processes) in zip(drain_figures(store, count), DRAIN_SHAPES, strict=True):
        repeat_one(
            ctx,
            lp,
            figure,
            f"drain {workers}x{processes}",
            lambda w=workers, p=processes: lp.peer.drain(count, w, p),
        )


def run_latency(ctx: Context, lp: LoadedPeer, store: str) -> None:
    s = ctx.sizes
    figures = latency_figures(store, s.latency_count, s.latency_interval)
    repeat(
        ctx,
        lp,
        figures,
        "latency",
        lambda: lp.peer.latency(s.latency_count, s.latency_interval),
        lambda lat: list(zip(figures, (lat.p50, lat.p95, lat.max), strict=True)),
    )


def run_sleep(ctx: Context, lp: LoadedPeer) -> None:
    s = ctx.sizes
    figure = sleep_figures(s)[0]
    repeat_one(
        ctx,
        lp,
        figure,
        "sleep",
        lambda: lp.peer.sleep_jobs(s.sleep_count, s.sleep_seconds, s.sleep_processes),
    )


def run_mixed(ctx: Context, lp: LoadedPeer) -> None:
    s = ctx.sizes
    store = "sqlite" if getattr(lp.peer, "store", "") == "sqlite" else "server"
    makespan, ratio = mixed_figures(store, s)
    durations = s.mixed_durations()
    ideal = mixed.ideal_makespan(durations, s.mixed_slots)
    repeat(
        ctx,
        lp,
        [makespan, ratio],
        "mixed",
        lambda: lp.peer.mixed_jobs(durations, s.mixed_workers, s.mixed_processes),
        lambda seconds: [(makespan, seconds), (ratio, mixed.makespan_ratio(seconds, ideal))],
    )


def run_mixed_bounds(ctx: Context, machine: LoadedPeer) -> None:
    """The reference rows: the best makespan of any schedule that keeps the enqueue
    order (computed, not measured), and it ÷ ideal."""
    s = ctx.sizes
    durations = s.mixed_durations()
    fifo, fifo_ratio = mixed_bound_figures(s)
    best = mixed.fifo_makespan(durations, s.mixed_slots)
    ctx.results.text(fifo, machine.key, fmt_number(best, 2))
    ratio = mixed.makespan_ratio(best, mixed.ideal_makespan(durations, s.mixed_slots))
    ctx.results.text(fifo_ratio, machine.key, f"{ratio:.3f}")
    positions = mixed.long_positions(len(durations), s.mixed_long)
    starts = mixed.fifo_starts(durations, s.mixed_slots)
    ctx.results.note(
        f"mixed: the long jobs are at positions {', '.join(map(str, positions))} of "
        f"{len(durations)} (0-based: the middle of each {len(durations) // max(1, s.mixed_long)}"
        f"-job stretch). Begun strictly in that order with nothing lost between jobs they "
        f"begin at {', '.join(f'{starts[p]:.2f}' for p in positions)} s and the last ends at "
        f"{best:.2f} s (ideal {mixed.ideal_makespan(durations, s.mixed_slots):.2f} s: below the "
        "first, only a queue that begins long jobs ahead of short ones enqueued before them)."
    )


def pool_sleeps(count: int, seconds: float, processes: int) -> float:
    """Wall time of ``multiprocessing.Pool(processes)`` (fork) sleeping ``count`` times,
    one task per message (chunksize 1, as a queue hands out jobs), from creating the pool
    to the last result."""
    began = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(time.sleep, [seconds] * count, chunksize=1)
        return time.perf_counter() - began


def run_pool_baseline(ctx: Context, machine: LoadedPeer) -> None:
    s = ctx.sizes
    figure = sleep_figures(s)[1]
    repeat_one(
        ctx,
        machine,
        figure,
        f"multiprocessing.Pool({s.sleep_processes})",
        lambda: pool_sleeps(s.sleep_count, s.sleep_seconds, s.sleep_processes),
    )


def tasktrail_map(items: list[Any], function: str, processes: int) -> float:
    """Wall time of ``app.map`` over ``items`` with a fresh state file, from the call to
    the last result (every item must succeed)."""
    import tempfile

    import tasktrail
    from bench.apps import map_app

    with tempfile.TemporaryDirectory(prefix="bench-map-") as directory:
        app = tasktrail.App(f"sqlite:///{directory}/unused.db")
        began = time.perf_counter()
        results = list(app.map(getattr(map_app, function), items, processes=processes,
                               state=f"{directory}/state.db"))  # fmt: skip
        elapsed = time.perf_counter() - began
        app.close()
    failed = [r for r in results if not r.ok]
    if len(results) != len(items) or failed:
        raise RuntimeError(f"app.map: {len(failed)} of {len(results)} items failed")
    return elapsed


def stdlib_map(kind: str, items: list[Any], function: str, processes: int) -> float:
    """Wall time of the standard library's pool (``pool`` or ``executor``, fork) mapping
    ``function`` over ``items`` as a user writes it (default chunk sizes), from creating
    the pool to the last result."""
    from concurrent.futures import ProcessPoolExecutor

    from bench.apps import map_app

    func = getattr(map_app, function)
    context = multiprocessing.get_context("fork")
    began = time.perf_counter()
    if kind == "pool":
        with context.Pool(processes) as pool:
            results = pool.map(func, items)
    else:
        with ProcessPoolExecutor(processes, mp_context=context) as executor:
            results = list(executor.map(func, items))
    elapsed = time.perf_counter() - began
    if len(results) != len(items):
        raise RuntimeError(f"{kind}: {len(results)} results for {len(items)} items")
    return elapsed


def run_map(ctx: Context, machine: LoadedPeer) -> None:
    s = ctx.sizes
    figures = map_figures(s)
    cases = (
        ("sleep", [0.05] * s.map_sleeps, "nap", figures[0:3]),
        ("trivial", list(range(s.map_trivial)), "square", figures[4:7]),
    )
    for what, items, function, (mine, pool, executor) in cases:
        repeat_one(ctx, machine, mine, f"app.map {what}",
                   lambda i=items, f=function: tasktrail_map(i, f, s.map_processes))  # fmt: skip
        repeat_one(ctx, machine, pool, f"Pool.map {what}",
                   lambda i=items, f=function: stdlib_map("pool", i, f, s.map_processes))  # fmt: skip
        repeat_one(ctx, machine, executor, f"ProcessPoolExecutor.map {what}",
                   lambda i=items, f=function: stdlib_map("executor", i, f, s.map_processes))  # fmt: skip


def run_scale(ctx: Context, lp: LoadedPeer) -> None:
    s = ctx.sizes
    empty, backlog, ratio, plan = scale_figures(s)
    peer: Any = lp.peer
    repeat_one(ctx, lp, empty, "scale drain 1x2, empty tables",
               lambda: peer.drain(s.scale_drain, 1, 2))  # fmt: skip
    ctx.log(
        f"scale: generating {s.scale_jobs:,} queued jobs and {s.scale_events:,} events "
        "(set-based SQL)"
    )
    made = attempt(
        lambda: peer.scale_setup(s.scale_jobs, s.scale_events, lambda m: ctx.log(f"scale: {m}")),
        None,
        ctx.log,
        "scale setup",
    )
    try:
        if isinstance(made, Failure):
            for figure in (backlog, plan):
                ctx.results.fail(figure, lp.key, made)
            ctx.results.note(f"scale setup: {made.kind}: {made.reason}")
            return
        timings = ", ".join(f"{k} {v:.0f} s" for k, v in made["seconds"].items())
        ctx.results.note(
            f"scale: the backlog schema held {made['jobs']:,} jobs ({made['queued']:,} queued, "
            f"{made['finished jobs']:,} finished with refs) and {made['events']:,} events, "
            f"{made['size']} with indexes; generated in {timings}."
        )
        ctx.log(f"scale: generated {made}")
        found = attempt(peer.claim_plan, ctx.timeout, ctx.log, "claim plan")
        if isinstance(found, Failure):
            ctx.results.fail(plan, lp.key, found)
        else:
            verdict = (
                "no Seq Scan"
                if not found["seq_scans"]
                else f"**Seq Scan on {', '.join(found['seq_scans'])}**"
            )
            jit = f"; **JIT compiled: {found['jit_ms']:.0f} ms**" if found["jit_ms"] else "; no JIT"
            ctx.results.text(
                plan,
                lp.key,
                f"{verdict}; {', '.join(found['indexes'])}; {found['rows_read']:,} rows read "
                f"for {found['claimed']} claimed; {found['seconds'] * 1000:.0f} ms{jit}",
            )
            statements = "; ".join(f"{d:.2f} ms `{q}…`" for d, q in found["statements"])
            ctx.results.note(
                "scale: claim plan (auto_explain, log_nested_statements, generic plans as the "
                f"worker's connection) of one exchange claiming 100 jobs: {statements}."
            )
            ctx.log(f"scale: claim plan {found['indexes']} seq scans {found['seq_scans']}")
        repeat_one(
            ctx,
            lp,
            backlog,
            "scale drain 1x2 with the backlog",
            lambda: peer.scale_drain(s.scale_drain, 1, 2, max_seconds=s.scale_seconds),
        )
    finally:
        attempt(peer.scale_teardown, None, ctx.log, "scale teardown")
    empty_stat = ctx.results.cell(empty.key, lp.key)
    backlog_stat = ctx.results.cell(backlog.key, lp.key)
    if hasattr(empty_stat, "median") and hasattr(backlog_stat, "median"):
        value = backlog_stat.median / empty_stat.median  # type: ignore[union-attr]
        ctx.results.text(ratio, lp.key, fmt_ratio(value))


def _at(samples: list[tuple[float, int, int]], fraction: float) -> float:
    """RSS (MiB) of the first sample at or past ``fraction`` of the jobs done."""
    for done, rss, _ in samples:
        if done >= fraction:
            return rss / 1024
    return samples[-1][1] / 1024


def run_memory(ctx: Context, lp: LoadedPeer) -> None:
    s = ctx.sizes
    figures = memory_figures(s)
    peer: Any = lp.peer
    runs: list[dict[str, Any]] = []
    for index in range(ctx.repeat):
        label = f"{lp.key} memory [{index + 1}/{ctx.repeat}]"
        out = attempt(lambda: peer.memory_drain(s.memory_jobs, 2), ctx.timeout, ctx.log, label)
        if isinstance(out, Failure):
            for figure in figures:
                ctx.results.fail(figure, lp.key, out)
            ctx.results.note(f"memory: {out.kind}: {out.reason}")
            return
        runs.append(out)
        ctx.log(f"{label}: {out['rate']:,.0f} jobs/s, {_memory_text(out)}")
    for figure, role in zip(figures, ("supervisor", "child"), strict=True):
        points = [_memory_points(run["samples"][role]) for run in runs if run["samples"][role]]
        if not points:
            ctx.results.fail(figure, lp.key, Failure("error", f"no {role} samples"))
            continue
        medians = [sorted(p[i] for p in points)[len(points) // 2] for i in range(4)]
        ctx.results.text(
            figure,
            lp.key,
            f"{medians[0]:.1f} → {medians[1]:.1f} → {medians[2]:.1f}, peak {medians[3]:.1f}",
        )
    rates = ", ".join(f"{run['rate']:,.0f}" for run in runs)
    replaced = any(run["child_replaced"] for run in runs)
    ctx.results.note(
        f"memory: VmRSS/VmHWM from /proc/<pid>/status every 0.2 s over each "
        f"{s.memory_jobs:,}-job drain (rates {rates} jobs/s); per run "
        + "; ".join(_memory_text(run) for run in runs)
        + (" (the watched child was replaced during a run)" if replaced else "")
        + "."
    )


def _memory_points(samples: list[tuple[float, int, int]]) -> tuple[float, float, float, float]:
    return (
        _at(samples, 0.1),
        _at(samples, 0.5),
        samples[-1][1] / 1024,
        max(hwm for _, _, hwm in samples) / 1024,
    )


def _memory_text(run: dict[str, Any]) -> str:
    parts = []
    for role in ("supervisor", "child"):
        samples = run["samples"][role]
        if samples:
            a, b, c, peak = _memory_points(samples)
            parts.append(
                f"{role} {a:.1f}→{b:.1f}→{c:.1f} MiB (peak {peak:.1f}, {len(samples)} samples)"
            )
    return ", ".join(parts)


# -- machine limits ------------------------------------------------------------------------


def raw_insert_rate(count: int) -> float:
    """Rows per second of ``INSERT`` + commit, one row per transaction, into a plain table
    (identity key, a text and a timestamp) over one psycopg connection in autocommit."""
    import psycopg
    from psycopg import sql

    schema = sql.Identifier(f"bench_raw_{os.getpid()}_{secrets.token_hex(3)}")
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        try:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {}.raw (id bigint GENERATED ALWAYS AS IDENTITY"
                    " PRIMARY KEY, payload text NOT NULL, created_at timestamptz NOT NULL"
                    " DEFAULT now())"
                ).format(schema)
            )
            query = sql.SQL("INSERT INTO {}.raw (payload) VALUES (%s)").format(schema)
            for _ in range(20):
                conn.execute(query, ("warm-up",))
            began = time.perf_counter()
            for index in range(count):
                conn.execute(query, (f"row {index}",))
            return count / (time.perf_counter() - began)
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))


class PgBench:
    """A throw-away database initialised with ``pgbench -i -s 1``."""

    def __init__(self) -> None:
        from psycopg.conninfo import conninfo_to_dict

        if shutil.which("pgbench") is None:
            raise FileNotFoundError("pgbench is not installed (apt-get install postgresql-client)")
        info = conninfo_to_dict(PG_DSN)
        self.database = f"bench_pgbench_{os.getpid()}"
        self.args = []
        for option, key in (("-h", "host"), ("-p", "port"), ("-U", "user")):
            if info.get(key):
                self.args += [option, str(info[key])]
        self.env = {**os.environ}
        if info.get("password"):
            self.env["PGPASSWORD"] = str(info["password"])

    def __enter__(self) -> PgBench:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}"')
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self._run(["pgbench", "-i", "-s", "1", "-q", *self.args, self.database])
        return self

    def __exit__(self, *exc: object) -> None:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def _run(self, argv: list[str]) -> str:
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    def tps(self, seconds: int, clients: int = 2, threads: int = 2) -> float:
        out = self._run(
            ["pgbench", "-N", "-c", str(clients), "-j", str(threads), "-T", str(seconds),
             *self.args, self.database]
        )  # fmt: skip
        return parse_pgbench_tps(out)


def parse_pgbench_tps(output: str) -> float:
    """The ``tps = N (without initial connection time)`` figure of pgbench's report."""
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    if match is None:
        match = re.search(r"tps = ([0-9.]+)", output)
    if match is None:
        raise ValueError(f"no tps in pgbench's output: {output[-300:]!r}")
    return float(match.group(1))


def run_limits(ctx: Context, machine: LoadedPeer) -> None:
    s = ctx.sizes
    insert, pgbench, _, _ = limit_figures(s)
    repeat_one(ctx, machine, insert, "raw INSERT+commit", lambda: raw_insert_rate(s.raw_inserts))
    bench = attempt(PgBench, None, ctx.log, "pgbench")
    if isinstance(bench, Failure):
        ctx.results.fail(pgbench, machine.key, bench)
        ctx.results.note(f"pgbench: {bench.reason}")
        return
    try:
        entered = attempt(bench.__enter__, ctx.timeout, ctx.log, "pgbench -i -s 1")
        if isinstance(entered, Failure):
            ctx.results.fail(pgbench, machine.key, entered)
            ctx.results.note(f"pgbench -i: {entered.reason}")
            return
        repeat_one(ctx, machine, pgbench, "pgbench -N", lambda: bench.tps(s.pgbench_seconds))
    finally:
        attempt(lambda: bench.__exit__(None, None, None), None, ctx.log, "pgbench cleanup")


def derive(results: Results, sizes: Sizes, scenarios: list[str], columns: list[Any]) -> None:
    """Figures computed from others: fractions of the machine's limits, and tasktrail's
    sleep wall time over multiprocessing.Pool's."""
    _, _, enqueue_ratio, drain_ratio = limit_figures(sizes)
    insert = results.cell("limits.insert", "machine")
    tps = results.cell("limits.pgbench", "machine")
    drain_key = "server.drain_1x2"
    for column in columns:
        if column.store != "postgresql":
            continue
        single = results.cell("server.enqueue_single", column.key)
        if hasattr(insert, "median") and hasattr(single, "median"):
            results.text(enqueue_ratio, column.key, fmt_ratio(single.median / insert.median))  # type: ignore[union-attr]
        drain = results.cell(drain_key, column.key)
        if hasattr(tps, "median") and hasattr(drain, "median"):
            results.text(drain_ratio, column.key, fmt_ratio(drain.median / tps.median))  # type: ignore[union-attr]
    for key in ("sleep", "trivial"):
        mine = results.cell(f"map.{key}", "machine")
        pool = results.cell(f"map.{key}_pool", "machine")
        if hasattr(pool, "median") and hasattr(mine, "median"):
            ratio = next(f for f in map_figures(sizes) if f.key == f"map.{key}_vs_pool")
            results.text(ratio, "machine", fmt_ratio(mine.median / pool.median))  # type: ignore[union-attr]
    _, _, vs_pool = sleep_figures(sizes)
    pool = results.cell("server.sleep_pool", "machine")
    for column in columns:
        mine = results.cell("server.sleep", column.key)
        if hasattr(pool, "median") and hasattr(mine, "median"):
            results.text(vs_pool, column.key, fmt_ratio(mine.median / pool.median))  # type: ignore[union-attr]
