"""``/metrics``: Prometheus text, read from the database at each scrape.

Every figure comes from the same reads as the pages (queues, per-task statistics of the
last hour, workers, schedules), so a scrape costs what the overview page costs.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..app import App
from ..clock import utcnow

__all__ = ["metrics_text"]


class _Snapshot(Collector):
    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self):  # type: ignore[no-untyped-def]  # prometheus_client's own protocol
        app, now = self.app, utcnow()
        queued = GaugeMetricFamily(
            "tasktrail_jobs", "Jobs by queue and status, now (active statuses)",
            labels=["queue", "status"],
        )  # fmt: skip
        paused = GaugeMetricFamily(
            "tasktrail_queue_paused", "1 if the queue is paused", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "tasktrail_queue_oldest_wait_seconds",
            "How long the queue's longest-waiting due job has waited (0 with none due)",
            labels=["queue"],
        )
        for queue in app.queues():
            queued.add_metric([queue.name, "queued"], queue.queued)
            queued.add_metric([queue.name, "running"], queue.running)
            paused.add_metric([queue.name], 1.0 if queue.paused else 0.0)
            oldest.add_metric([queue.name], queue.oldest_wait(now) or 0.0)
        yield from (queued, paused, oldest)

        finished = GaugeMetricFamily(
            "tasktrail_task_jobs_last_hour",
            "Jobs per task and status: active now, final ones finished in the last hour",
            labels=["task", "status"],
        )
        run = GaugeMetricFamily(
            "tasktrail_task_run_seconds", "Run time of the last hour's attempts per task",
            labels=["task", "quantile"],
        )  # fmt: skip
        wait = GaugeMetricFamily(
            "tasktrail_task_wait_seconds", "Wait from run_at to start, last hour, per task",
            labels=["task", "quantile"],
        )  # fmt: skip
        failure = GaugeMetricFamily(
            "tasktrail_task_failure_ratio", "failed / (succeeded + failed), last hour",
            labels=["task"],
        )  # fmt: skip
        for stats in app.stats():
            for status, count in sorted(stats.counts.items()):
                finished.add_metric([stats.task, status], count)
            for family, quantiles in (
                (run, (stats.run_p50, stats.run_p95, stats.run_p99)),
                (wait, (stats.wait_p50, stats.wait_p95, stats.wait_p99)),
            ):
                for quantile, value in zip(("0.5", "0.95", "0.99"), quantiles, strict=True):
                    if value is not None:
                        family.add_metric([stats.task, quantile], value)
            if stats.failure_rate is not None:
                failure.add_metric([stats.task], stats.failure_rate)
        yield from (finished, run, wait, failure)

        alive = GaugeMetricFamily("tasktrail_workers_alive", "Workers running now")
        processes = GaugeMetricFamily(
            "tasktrail_worker_processes", "Child processes per running worker",
            labels=["worker", "host"],
        )  # fmt: skip
        workers = [w for w in app.workers(limit=None) if w.status == "running"]
        alive.add_metric([], len(workers))
        for worker in workers:
            processes.add_metric([worker.name, worker.host], worker.processes)
        yield alive
        yield processes

        lag = GaugeMetricFamily(
            "tasktrail_schedule_lag_seconds",
            "How far past its due time a schedule's next tick is (0 when not yet due)",
            labels=["schedule"],
        )
        for record in app.schedules.list():
            if not record.paused:
                behind = (now - record.next_due_at).total_seconds()
                lag.add_metric([record.definition.name], max(behind, 0.0))
        yield lag


def metrics_text(app: App) -> bytes:
    """The metrics of ``app``'s database now, in Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(app))
    return generate_latest(registry)
