"""Prometheus metrics: Bedrock's CloudWatch batch metrics per model, plus engine, backend, event and HTTP figures."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from outcrop.domain.jobs import ACTIVE_STATUSES, JobStatus
from outcrop.store.sql import SqlJobStore
from outcrop.store.tables import event_deliveries, jobs

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class StoreCollector(Collector):
    """Figures read from the job store at scrape time, so every process reports the same truth."""

    def __init__(self, store: SqlJobStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        by_status = GaugeMetricFamily("outcrop_jobs", "Jobs by status.", labels=["status"])
        pending = GaugeMetricFamily(
            "outcrop_records_pending",
            "Records of active jobs not yet processed (NumberOfRecordsPendingProcessing).",
            labels=["model_id"],
        )
        tokens_pending = GaugeMetricFamily(
            "outcrop_tokens_pending",
            "Estimated input tokens of unprocessed records: pending records times the job's average "
            "input tokens per processed record (NumberOfTokensPendingProcessing).",
            labels=["model_id"],
        )
        dead = GaugeMetricFamily("outcrop_event_dead_letters", "Event deliveries dead-lettered.")
        with self.store.reading() as conn:
            rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
            counts: dict[str, int] = {str(status): int(n) for status, n in rows}
            active = conn.execute(
                select(
                    jobs.c.model_id,
                    jobs.c.total_records,
                    jobs.c.processed_records,
                    jobs.c.input_tokens,
                ).where(
                    jobs.c.status.in_([s.value for s in ACTIVE_STATUSES]),
                    jobs.c.total_records.is_not(None),
                )
            ).all()
            dead_count = conn.scalar(
                select(func.count())
                .select_from(event_deliveries)
                .where(event_deliveries.c.status == "dead")
            )
        for status in JobStatus:
            by_status.add_metric([status.value], float(counts.get(status.value, 0)))
        per_model: dict[str, list[float]] = {}
        for model_id, total, processed, input_tokens in active:
            left = max(0, (total or 0) - (processed or 0))
            average = (input_tokens or 0) / processed if processed else 0.0
            figures = per_model.setdefault(model_id, [0.0, 0.0])
            figures[0] += left
            figures[1] += left * average
        for model_id, (records, tokens) in per_model.items():
            pending.add_metric([model_id], records)
            tokens_pending.add_metric([model_id], tokens)
        dead.add_metric([], float(dead_count or 0))
        yield from (by_status, pending, tokens_pending, dead)


class BackendStatsCollector(Collector):
    """Retries and throttles as counted by the backends themselves (those that keep stats)."""

    def __init__(self, backends: Callable[[], dict[str, Any]]) -> None:
        self.backends = backends

    def collect(self) -> Iterable[Metric]:
        retries = CounterMetricFamily(
            "outcrop_backend_retries", "Backend request retries.", labels=["model_id"]
        )
        throttles = CounterMetricFamily(
            "outcrop_backend_throttles", "Backend answers of 429 or 503.", labels=["model_id"]
        )
        for model_id, backend in self.backends().items():
            stats = getattr(backend, "stats", None)
            if stats is None:
                continue
            retries.add_metric([model_id], float(getattr(stats, "retries", 0)))
            throttles.add_metric([model_id], float(getattr(stats, "throttles", 0)))
        yield from (retries, throttles)


class Metrics:
    """One registry per process (no import-time global), handed to the parts that record."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.input_tokens = Counter(
            "outcrop_input_tokens",
            "Input tokens processed (rate() gives tokens per minute).",
            ["model_id"],
            registry=r,
        )
        self.output_tokens = Counter(
            "outcrop_output_tokens", "Output tokens processed.", ["model_id"], registry=r
        )
        self.records_processed = Counter(
            "outcrop_records_processed",
            "Records answered (successes and per-record errors).",
            ["model_id"],
            registry=r,
        )
        self.records_failed = Counter(
            "outcrop_records_failed", "Records answered with an error.", ["model_id"], registry=r
        )
        self.backend_latency = Histogram(
            "outcrop_backend_request_seconds",
            "Latency of one backend call (one record or one micro-batch).",
            ["model_id"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.event_deliveries = Counter(
            "outcrop_event_deliveries",
            "Event delivery attempts by result.",
            ["target", "result"],
            registry=r,
        )
        self.http_latency = Histogram(
            "outcrop_http_request_seconds",
            "API latency by operation.",
            ["operation", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def record_batch(
        self, model_id: str, success: int, errors: int, input_tokens: int, output_tokens: int
    ) -> None:
        if success or errors:
            self.records_processed.labels(model_id).inc(success + errors)
        if errors:
            self.records_failed.labels(model_id).inc(errors)
        if input_tokens:
            self.input_tokens.labels(model_id).inc(input_tokens)
        if output_tokens:
            self.output_tokens.labels(model_id).inc(output_tokens)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
