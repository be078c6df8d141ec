"""``python -m bench``: run the benchmark scenarios and print one markdown table.

See bench/README.md for what each scenario measures and how.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import dashboard
from bench import scenarios as sc
from bench.config import ROOT
from bench.harness import (
    MACHINE,
    Column,
    Failure,
    LoadedPeer,
    Results,
    attempt,
    load_peers,
    loadavg,
    machine_line,
    render_table,
)
from bench.peers.base import Peer
from bench.peers.tasktrail_peer import TasktrailPeer

SCENARIOS = (
    "enqueue", "drain", "latency", "sleep", "sqlite", "scale", "memory", "limits", "map",
    "mixed", "dashboard",
)  # fmt: skip
SERVER_SCENARIOS = ("enqueue", "drain", "latency", "sleep")


class _Machine(Peer):
    """The pseudo-peer that holds the machine's reference figures."""

    name = "machine"
    store = "postgresql"

    def enqueue_single(self, count: int) -> float:  # pragma: no cover - never called
        raise NotImplementedError

    enqueue_bulk = drain = latency = sleep_jobs = enqueue_single  # type: ignore[assignment]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="tasktrail's benchmarks against its peers (issue 5); see bench/README.md.",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, of: {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--peers",
        default=None,
        help="comma-separated peer keys or names, e.g. tasktrail-pg,tasktrail-sqlite,pgqueuer,"
        "huey (default: every driver that loads)",
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs of each figure (default 3; 1 with --quick)"
    )
    parser.add_argument("--jobs", type=int, default=None, help="jobs per drain (default 10,000)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--scale-jobs", type=int, default=None, help="queued backlog (1,000,000)")
    parser.add_argument(
        "--scale-events", type=int, default=None, help="history events present (10,000,000)"
    )
    parser.add_argument(
        "--memory-jobs", type=int, default=None, help="jobs of the memory drain (100,000)"
    )
    parser.add_argument(
        "--dashboard-jobs", type=int, default=None, help="jobs of the dashboard's data (1,000,000)"
    )
    parser.add_argument(
        "--dashboard-events",
        type=int,
        default=None,
        help="about how many events the dashboard's data has (10,000,000)",
    )
    parser.add_argument(
        "--dashboard-requests", type=int, default=None, help="requests of each dashboard page (50)"
    )
    parser.add_argument(
        "--dashboard-keep",
        action="store_true",
        help="keep the dashboard's schema afterwards (its DSN is logged)",
    )
    parser.add_argument(
        "--dashboard-schema",
        default=None,
        metavar="NAME",
        help="time the dashboard on a schema kept by an earlier run (no fill; kept)",
    )
    parser.add_argument(
        "--tasktrail-reserve",
        type=int,
        default=None,
        metavar="N",
        help="tasktrail workers' reserve per process (-r N x P; default 256 on PostgreSQL, "
        "64 on SQLite: see bench/README.md, tasktrail's settings)",
    )
    parser.add_argument(
        "--tasktrail-history",
        default=None,
        metavar="DIR",
        help="write the job histories of tasktrail's mixed runs to DIR (JSON, one file a run)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds one measurement may take before it counts as an error (default 900)",
    )
    parser.add_argument(
        "--out",
        default=str(ROOT / "bench" / "results" / "latest.md"),
        help="markdown file to write (default bench/results/latest.md)",
    )
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()] if args.peers else None
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.tasktrail_reserve is not None and args.tasktrail_reserve < 1:
        parser.error("--tasktrail-reserve must be at least 1")
    return args


def sizes_of(args: argparse.Namespace) -> sc.Sizes:
    sizes = sc.QUICK if args.quick else sc.Sizes()
    changes: dict[str, Any] = {}
    if args.jobs:
        changes.update(drain=args.jobs, scale_drain=args.jobs)
    if args.scale_jobs is not None:
        changes["scale_jobs"] = args.scale_jobs
    if args.scale_events is not None:
        changes["scale_events"] = args.scale_events
    if args.memory_jobs is not None:
        changes["memory_jobs"] = args.memory_jobs
    for option in ("dashboard_jobs", "dashboard_events", "dashboard_requests"):
        if getattr(args, option) is not None:
            changes[option] = getattr(args, option)
    return sc.Sizes(**{**sizes.__dict__, **changes})


_T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def applies(scenario: str, lp: LoadedPeer) -> bool:
    store = getattr(lp.peer, "store", "")
    if scenario in SERVER_SCENARIOS:
        return store != "sqlite"
    if scenario == "sqlite":
        return store == "sqlite"
    if scenario in ("scale", "memory", "dashboard"):
        return lp.key == "tasktrail-pg"
    # mixed: every store, its rows by store (as drain's and sqlite's)
    return scenario == "mixed"


def run_peer(ctx: sc.Context, lp: LoadedPeer, chosen: list[str]) -> None:
    todo = [s for s in chosen if applies(s, lp)]
    if not todo:
        return
    log(f"== {lp.peer.name} ({lp.key}): {', '.join(todo)}")
    ready = attempt(lp.peer.setup, ctx.timeout, log, f"{lp.key} setup")
    try:
        if isinstance(ready, Failure):
            ctx.results.note(f"{lp.peer.name}: {ready.kind} at setup: {ready.reason}")
            for figure in sc.all_figures(ctx.sizes, todo):
                if not figure.reference and figure.key.split(".")[0] in (
                    "server",
                    "sqlite",
                    "scale",
                    "memory",
                    "dashboard",
                ):
                    ctx.results.fail(figure, lp.key, ready)
            return
        for scenario in todo:
            if scenario == "enqueue":
                sc.run_enqueue(ctx, lp, "server")
            elif scenario == "drain":
                sc.run_drains(ctx, lp, "server")
            elif scenario == "latency":
                sc.run_latency(ctx, lp, "server")
            elif scenario == "sleep":
                sc.run_sleep(ctx, lp)
            elif scenario == "sqlite":
                sc.run_enqueue(ctx, lp, "sqlite")
                sc.run_drains(ctx, lp, "sqlite")
                sc.run_latency(ctx, lp, "sqlite")
            elif scenario == "scale":
                sc.run_scale(ctx, lp)
            elif scenario == "memory":
                sc.run_memory(ctx, lp)
            elif scenario == "mixed":
                sc.run_mixed(ctx, lp)
            elif scenario == "dashboard":
                dashboard.run(ctx, lp)
    finally:
        attempt(lp.peer.teardown, ctx.timeout, log, f"{lp.key} teardown")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_of(args)
    command = "python -m bench" + (
        " " + shlex.join(sys.argv[1:] if argv is None else argv)
        if (argv is None and sys.argv[1:]) or argv
        else ""
    )
    started = datetime.now(timezone.utc)
    load_before = loadavg()
    results = Results()
    for figure in sc.all_figures(sizes, args.scenarios):
        results.figure(figure)
    ctx = sc.Context(
        sizes,
        args.repeat,
        args.timeout,
        results,
        log,
        dashboard_keep=args.dashboard_keep,
        dashboard_schema=args.dashboard_schema,
    )

    peers, skipped = load_peers(args.peers, log)
    if args.tasktrail_reserve is not None:
        for lp in peers:
            if isinstance(lp.peer, TasktrailPeer):
                lp.peer.reserve_per_process = args.tasktrail_reserve
    if args.tasktrail_history is not None:
        for lp in peers:
            if isinstance(lp.peer, TasktrailPeer):
                lp.peer.history_dir = Path(args.tasktrail_history)
    for reason in skipped:
        results.note(f"skipped {reason}")
    for lp in peers:
        configuration = attempt(lp.peer.configuration, 60, log, f"{lp.key} configuration")
        results.columns[lp.key] = Column(
            lp.key,
            lp.peer.name,
            lp.peer.store,
            configuration if isinstance(configuration, str) else "",
            lp.tasktrail,
        )
    if not peers:
        log("no peer selected or loadable")

    machine = LoadedPeer(MACHINE, "machine", _Machine())
    if "limits" in args.scenarios:
        log("== machine limits")
        sc.run_limits(ctx, machine)
    if "sleep" in args.scenarios:
        log("== multiprocessing.Pool baseline")
        sc.run_pool_baseline(ctx, machine)
    if "map" in args.scenarios:
        log("== micro tasks: app.map against the standard library's pools")
        sc.run_map(ctx, machine)
    if "mixed" in args.scenarios:
        sc.run_mixed_bounds(ctx, machine)
    for lp in peers:
        run_peer(ctx, lp, args.scenarios)
    sc.derive(results, sizes, args.scenarios, list(results.columns.values()))

    finished = datetime.now(timezone.utc)
    report = render_report(args, sizes, results, command, started, finished, load_before)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
    log(f"written to {out}")
    return 0


def render_report(
    args: argparse.Namespace,
    sizes: sc.Sizes,
    results: Results,
    command: str,
    started: datetime,
    finished: datetime,
    load_before: str,
) -> str:
    lines = [render_table(results), ""]
    lines.append(
        f"Each figure: median of {args.repeat} run{'s' if args.repeat > 1 else ''}"
        + (" (min–max)" if args.repeat > 1 else "")
        + "; ↑ higher is better, ↓ lower is better; the ratio is tasktrail ÷ the best peer "
        "of the row (ahead/behind by the row's direction). Rows marked machine/reference are "
        "not tasktrail: they show what the machine or plain Python does, in the tasktrail "
        "column. No-op jobs unless said."
    )
    lines.append("")
    lines.append("**Configurations**")
    lines.append("")
    for column in results.columns.values():
        lines.append(f"- {column.name} (`{column.key}`): {column.configuration or '—'}")
    lines.append("")
    lines.append(f"**Machine**: {machine_line()}; load average {load_before} at the start, "
                 f"{loadavg()} at the end.")  # fmt: skip
    duration = (finished - started).total_seconds()
    lines.append("")
    lines.append(
        f"**Date**: {started:%Y-%m-%d %H:%M} UTC (took {duration / 60:.1f} min). "
        f"**Command**: `{command}`"
    )
    if results.notes:
        lines.append("")
        lines.append("**Notes**")
        lines.append("")
        lines.extend(f"- {note}" for note in results.notes)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
