"""What /metrics answers: the recorded metrics of this host's processes, then what the database and
Redis say now (the metrics themselves are defined in evaluations/monitoring/metrics.py)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, QuerySet, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, Metric, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from evaluations.admin.selectors import WORKERS_SHOWN_FOR
from evaluations.models import TERMINAL_STATUSES, Run, RunStatus, WorkerHeartbeat
from evaluations.monitoring import metrics
from evaluations.runs import broker


class DatabaseCollector:
    """Counts and ages computed from the rows at each scrape. Chosen over counting in the processes
    where the rows already know: right whichever host ran the run (workers elsewhere, issue 14),
    through restarts, and with nothing to add up across processes."""

    def collect(self):
        now = timezone.now()
        finished = CounterMetricFamily(*metrics.RUNS_FINISHED, labels=["status", "reason"])
        rows = Run.objects.filter(status__in=TERMINAL_STATUSES).values_list("status", "reason")
        for status, reason, n in rows.annotate(n=Count("id")).order_by("status", "reason"):
            finished.add_metric([status, reason or "none"], n)
        yield finished

        queued = Run.objects.filter(status=RunStatus.QUEUED).aggregate(n=Count("id"), oldest=Min("queued_at"))
        yield GaugeMetricFamily(*metrics.RUNS_QUEUED, value=queued["n"])
        oldest = (now - queued["oldest"]).total_seconds() if queued["oldest"] else 0.0
        yield GaugeMetricFamily(*metrics.OLDEST_QUEUED_AGE, value=max(0.0, oldest))
        depth = broker.queue_depth()
        if depth is not None:
            yield GaugeMetricFamily(*metrics.BROKER_QUEUE_MESSAGES, value=depth)

        beats = list(WorkerHeartbeat.objects.filter(last_seen__gte=now - WORKERS_SHOWN_FOR).order_by("hostname"))
        in_flight = {beat.hostname: 0 for beat in beats if beat.kind == WorkerHeartbeat.Kind.WORKER}
        running = Run.objects.filter(status=RunStatus.RUNNING).values_list("worker").annotate(n=Count("id"))
        for worker, n in running.order_by():
            node = worker.partition(" pid ")[0]  # execution.worker_name: "<node> pid <pid>"
            in_flight[node] = in_flight.get(node, 0) + n
        flight = GaugeMetricFamily(*metrics.RUNS_IN_FLIGHT, labels=["worker"])
        for node in sorted(in_flight):
            flight.add_metric([node], in_flight[node])
        yield flight
        age = GaugeMetricFamily(*metrics.HEARTBEAT_AGE, labels=["worker", "kind"])
        for beat in beats:
            age.add_metric([beat.hostname, beat.kind], max(0.0, (now - beat.last_seen).total_seconds()))
        yield age

        ended = Run.objects.filter(status__in=TERMINAL_STATUSES, started_at__isnull=False, finished_at__isnull=False)
        yield _span_histogram(metrics.RUN_DURATION, ended, "started_at", "finished_at", metrics.RUN_DURATION_BUCKETS)
        started = Run.objects.filter(started_at__isnull=False)
        yield _span_histogram(metrics.RUN_QUEUE_WAIT, started, "queued_at", "started_at", metrics.QUEUE_WAIT_BUCKETS)
        booted = Run.objects.filter(sandbox_start_seconds__isnull=False).annotate(value=F("sandbox_start_seconds"))
        yield _histogram(metrics.SANDBOX_START, booted, metrics.SANDBOX_START_BUCKETS, bound=float)


def _span_histogram(
    spec: tuple[str, str], runs: QuerySet[Run], start: str, end: str, buckets: tuple[float, ...]
) -> HistogramMetricFamily:
    """How long each run took from `start` to `end`, as a histogram."""
    runs = runs.annotate(value=ExpressionWrapper(F(end) - F(start), output_field=DurationField()))
    return _histogram(spec, runs, buckets, bound=lambda b: timedelta(seconds=b))


def _histogram(spec: tuple[str, str], runs: QuerySet[Run], buckets: tuple[float, ...], bound) -> HistogramMetricFamily:
    """One aggregate query: how many runs' `value` (seconds, or a duration) fall at or below each
    bucket (`bound` turns a bucket's seconds into a value), and their sum."""
    below = {f"le{i}": Count("id", filter=Q(value__lte=bound(b))) for i, b in enumerate(buckets)}
    row = runs.aggregate(n=Count("id"), total=Sum("value"), **below)
    cumulative = [(str(b), row[f"le{i}"]) for i, b in enumerate(buckets)] + [("+Inf", row["n"])]
    total = row["total"] or 0.0
    if isinstance(total, timedelta):
        total = total.total_seconds()
    return HistogramMetricFamily(*spec, buckets=cumulative, sum_value=total)


class HostCollector:
    """This host's processes' files (metrics.RecordedCollector), with the drops at publish that every
    host counted in Redis added to their family: one family may not be exposed twice."""

    def collect(self):
        counted = metrics.messages_dropped_at_publish_counted()
        dropped: Metric | None = None
        for family in metrics.RecordedCollector().collect():
            if family.name == metrics.WEBSOCKET_MESSAGES_DROPPED._name:
                dropped = family
            else:
                yield family
        if counted is None:  # Redis does not answer: what this host counted, as it is
            if dropped is not None:
                yield dropped
            return
        by_stage = {metrics.DROPPED_AT_PUBLISH: float(counted)}
        for sample in dropped.samples if dropped is not None else []:
            if sample.name.endswith("_total"):
                stage = sample.labels["stage"]
                by_stage[stage] = by_stage.get(stage, 0.0) + sample.value
        family = CounterMetricFamily(
            metrics.WEBSOCKET_MESSAGES_DROPPED._name,
            metrics.WEBSOCKET_MESSAGES_DROPPED._documentation,
            labels=["stage"],
        )
        for stage in sorted(by_stage):
            family.add_metric([stage], by_stage[stage])
        yield family


def metrics_exposition() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HostCollector())
    registry.register(DatabaseCollector())
    return generate_latest(registry)
