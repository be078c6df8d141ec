"""The benchmark harness: loading peers, collecting repeated measurements, the table.

Pure helpers (statistics, number formatting, table rendering) are kept free of any peer
or database so that they can be unit-tested (tests/unit/test_bench_harness.py).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import platform
import re
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import PG_DSN, REDIS_URL
from bench.peers.base import NotSupported, Peer

#: Driver modules, in the order of the table's columns; tasktrail's first.
PEER_MODULES = (
    "tasktrail_peer",
    "procrastinate_peer",
    "pgqueuer_peer",
    "oban_peer",
    "celery_peer",
    "rq_peer",
    "huey_peer",
)
TASKTRAIL_MODULE = "tasktrail_peer"
#: The pseudo-peer of machine references (limits, multiprocessing.Pool): shown in the
#: tasktrail column of rows marked ``reference``.
MACHINE = "machine"


# -- statistics and numbers ----------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Repeated measurements of one figure."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


def fmt_number(value: float, digits: int | None = None) -> str:
    """A figure for people: thousands separators, and as many decimals as its size needs
    (``digits`` forces them)."""
    if digits is None:
        magnitude = abs(value)
        if magnitude >= 100:
            digits = 0
        elif magnitude >= 10:
            digits = 1
        elif magnitude >= 1:
            digits = 2
        else:
            digits = 3
    return f"{value:,.{digits}f}"


def fmt_stat(stat: Stat, digits: int | None = None) -> str:
    """``median (min–max)``; just the value when it was measured once (or never varied)."""
    if digits is None:
        # one format for the three numbers, chosen by the median
        median = fmt_number(stat.median)
        digits = len(median.partition(".")[2])
    text = fmt_number(stat.median, digits)
    if len(stat.values) > 1:
        low, high = fmt_number(stat.low, digits), fmt_number(stat.high, digits)
        if (low, high) != (text, text):
            text += f" ({low}–{high})"
    return text


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:.2f}×"


# -- the figures and their results ---------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One row of the table.

    ``better`` is "higher" or "lower" for a measured figure, None for text and for
    references (machine limits), which are shown in the tasktrail column and never ranked.
    ``store`` picks the tasktrail driver whose value goes in the tasktrail column.
    """

    key: str
    label: str
    unit: str
    better: str | None = "higher"
    store: str = "server"  # "server" (PostgreSQL or Redis peers) or "sqlite"
    reference: bool = False
    scale: float = 1.0  # measured values are multiplied by this for display (s -> ms)

    def title(self) -> str:
        arrow = {"higher": " ↑", "lower": " ↓"}.get(self.better or "", "")
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.label}{unit}{arrow}"


@dataclass(frozen=True)
class Failure:
    """A cell with no figure: the peer cannot do it (n/a) or it failed (error)."""

    kind: str  # "n/a" or "error"
    reason: str


Cell = Stat | Failure | str


@dataclass
class Column:
    key: str
    name: str
    store: str
    configuration: str = ""
    tasktrail: bool = False


@dataclass
class Results:
    """Every measurement of a run: values by (figure key, peer key)."""

    figures: dict[str, Figure] = field(default_factory=dict)
    values: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    texts: dict[tuple[str, str], str] = field(default_factory=dict)
    failures: dict[tuple[str, str], Failure] = field(default_factory=dict)
    columns: dict[str, Column] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def figure(self, figure: Figure) -> None:
        self.figures.setdefault(figure.key, figure)

    def add(self, figure: Figure, peer: str, value: float) -> None:
        self.figure(figure)
        self.values.setdefault((figure.key, peer), []).append(value * figure.scale)

    def text(self, figure: Figure, peer: str, value: str) -> None:
        self.figure(figure)
        self.texts[(figure.key, peer)] = value

    def fail(self, figure: Figure, peer: str, failure: Failure) -> None:
        self.figure(figure)
        self.failures.setdefault((figure.key, peer), failure)

    def cell(self, figure_key: str, peer: str) -> Cell | None:
        key = (figure_key, peer)
        if key in self.values:
            return Stat(tuple(self.values[key]))
        if key in self.texts:
            return self.texts[key]
        return self.failures.get(key)

    def failed(self, figure_key: str, peer: str) -> bool:
        return (figure_key, peer) in self.failures

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def _cell_text(cell: Cell | None) -> str:
    if cell is None:
        return "—"
    if isinstance(cell, Stat):
        return fmt_stat(cell)
    if isinstance(cell, Failure):
        return cell.kind
    return cell


def render_table(results: Results) -> str:
    """One markdown table: a row per figure; columns tasktrail, each peer, the best peer
    and tasktrail ÷ best peer (with whether that is ahead or behind, by the figure's
    direction)."""
    tasktrail_cols = {c.store: c for c in results.columns.values() if c.tasktrail}
    peers = [c for c in results.columns.values() if not c.tasktrail]
    header = ["figure", "tasktrail", *[c.name for c in peers], "best peer", "tasktrail / best peer"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for figure in results.figures.values():
        own = _tasktrail_column(tasktrail_cols, figure.store)
        if figure.reference:
            mine = results.cell(figure.key, MACHINE)
        else:
            mine = results.cell(figure.key, own.key) if own else None
        if mine is None and all(results.cell(figure.key, c.key) is None for c in peers):
            continue  # nothing measured it in this run
        row = [figure.title(), _cell_text(mine)]
        best: tuple[float, Column] | None = None
        for column in peers:
            cell = results.cell(figure.key, column.key)
            row.append(_cell_text(cell))
            if isinstance(cell, Stat) and figure.better in ("higher", "lower"):
                value = cell.median
                if (
                    best is None
                    or (figure.better == "higher" and value > best[0])
                    or (figure.better == "lower" and value < best[0])
                ):
                    best = (value, column)
        if best is None:
            row += ["—", "—"]
        else:
            row.append(f"{fmt_number(best[0])} ({best[1].name})")
            if isinstance(mine, Stat) and best[0] > 0:
                ratio = mine.median / best[0]
                ahead = ratio > 1 if figure.better == "higher" else ratio < 1
                row.append(f"{fmt_ratio(ratio)} ({'ahead' if ahead else 'behind'})")
            else:
                row.append("—")
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


def _tasktrail_column(columns: dict[str, Column], store: str) -> Column | None:
    if store == "sqlite":
        return columns.get("sqlite")
    return columns.get("postgresql") or columns.get("redis")


# -- peers ---------------------------------------------------------------------------------


@dataclass
class LoadedPeer:
    key: str
    module: str
    peer: Peer

    @property
    def tasktrail(self) -> bool:
        return self.module == TASKTRAIL_MODULE


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def peers_of_module(module: Any) -> list[Peer]:
    """The drivers a module offers: its ``peers()`` if it has one, else an instance of
    each concrete, public :class:`Peer` subclass it defines (constructed without
    arguments)."""
    factory = getattr(module, "peers", None)
    if callable(factory):
        return list(factory())
    found = []
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if (
            issubclass(cls, Peer)
            and cls is not Peer
            and not cls.__name__.startswith("_")
            and cls.__module__ == module.__name__
            and not inspect.isabstract(cls)
        ):
            found.append(cls())
    return found


def peer_key(module_name: str, peer: Peer) -> str:
    key = getattr(peer, "key", None)
    if isinstance(key, str) and key:
        return key
    return slug(getattr(peer, "name", "") or module_name.removesuffix("_peer"))


def matches(key: str, name: str, module: str, wanted: str) -> bool:
    """Does ``wanted`` (one item of --peers) select this peer? A key, a key's prefix up to
    a dash ("huey" selects "huey-sqlite"), the slug of its name, or its module's name."""
    wanted = slug(wanted)
    return (
        wanted == key
        or key.startswith(wanted + "-")
        or wanted == slug(name)
        or wanted == slug(module.removesuffix("_peer"))
    )


def load_peers(
    wanted: Sequence[str] | None, log: Callable[[str], None]
) -> tuple[list[LoadedPeer], list[str]]:
    """Import the driver modules lazily; a missing or broken one is skipped with why."""
    loaded: list[LoadedPeer] = []
    skipped: list[str] = []
    used: set[str] = set()
    modules = list(PEER_MODULES)
    if wanted is not None:
        # Import only the drivers a wanted name points at ("huey" -> huey_peer); a name
        # that points at none (a peer's display name) makes every driver load.
        def stem(module_name: str) -> str:
            return slug(module_name.removesuffix("_peer"))

        hits = {w: [m for m in PEER_MODULES if slug(w).split("-")[0] == stem(m)] for w in wanted}
        if all(hits.values()):
            modules = [m for m in PEER_MODULES if any(m in found for found in hits.values())]
    for module_name in modules:
        try:
            module = importlib.import_module(f"bench.peers.{module_name}")
            instances = peers_of_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.peers.{module_name}":
                reason = "no driver written yet"
            else:
                reason = f"not installed ({exc.name}: pip install -e '.[bench]')"
            skipped.append(f"{module_name.removesuffix('_peer')}: {reason}")
            log(f"skipping {module_name}: {reason}")
            continue
        except NotSupported as exc:
            skipped.append(f"{module_name.removesuffix('_peer')}: {exc}")
            continue
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            skipped.append(f"{module_name.removesuffix('_peer')}: driver failed to load ({reason})")
            log(f"skipping {module_name}: {reason}")
            continue
        for peer in instances:
            key = peer_key(module_name, peer)
            if key in used:
                key = f"{key}-{len(used)}"
            if wanted is not None and not any(
                matches(key, peer.name, module_name, w) for w in wanted
            ):
                continue
            used.add(key)
            loaded.append(LoadedPeer(key, module_name, peer))
    return loaded, skipped


# -- running one measurement ---------------------------------------------------------------


class Deadline(Exception):
    """A measurement ran past its time limit."""


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`Deadline` in the main thread after ``seconds`` (SIGALRM)."""
    if not seconds or seconds <= 0:
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise Deadline(f"took more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def attempt(
    call: Callable[[], Any], timeout: float | None, log: Callable[[str], None], what: str
) -> Any | Failure:
    """Run one measurement; NotSupported becomes "n/a", any other error "error"."""
    began = time.perf_counter()
    try:
        with deadline(timeout):
            return call()
    except NotSupported as exc:
        log(f"{what}: not supported: {exc}")
        return Failure("n/a", str(exc) or "not supported")
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        reason = (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )
        log(f"{what}: failed after {time.perf_counter() - began:.1f} s: {reason}")
        traceback.print_exc(file=sys.stderr)
        return Failure("error", reason)


# -- the machine, for the reports ------------------------------------------------------


def machine_line() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    pg = "PostgreSQL ?"
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            settings = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN"
                    " ('shared_buffers', 'synchronous_commit', 'fsync')"
                ).fetchall()
            )
        pg = (
            f"PostgreSQL {row[0].split()[0] if row else '?'} on loopback (fsync={settings.get('fsync')}, "
            f"synchronous_commit={settings.get('synchronous_commit')}, "
            f"shared_buffers={int(settings.get('shared_buffers', 0)) * 8 // 1024} MB)"
        )
    redis_version = "Redis ?"
    with contextlib.suppress(Exception):
        import redis

        info = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).info("server")
        redis_version = f"Redis {info['redis_version']}"
    return (
        f"{os.cpu_count()} cores ({cpu or platform.processor() or '?'}), {memory}, "
        f"Linux {platform.release()}; {pg}; {redis_version}; "
        f"Python {platform.python_version()}"
    )


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
