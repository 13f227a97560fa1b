"""Prometheus metrics computed from the manifests in object storage.

The backup CronJobs are short-lived; instead of pushing their results, a small
long-running exporter reads the manifests (and the last drill record) on each scrape,
so Prometheus sees them without a Pushgateway. Scrapes are cached for `cache_s`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ballast_backup.manifest import KINDS, Catalog, Manifest


def backup_metrics(catalog: Catalog, now: datetime | None = None) -> list[Metric]:
    """The metric families (see the README's "Metrics" section)."""
    now = now or datetime.now(UTC)
    manifests = catalog.all()
    good = [m for m in manifests if m.status == "good"]
    last_success = GaugeMetricFamily(
        "ballast_backup_last_success_timestamp_seconds",
        "Creation time of the newest good backup per kind (Unix seconds).",
        labels=["kind"],
    )
    duration = GaugeMetricFamily(
        "ballast_backup_last_duration_seconds",
        "Duration (capture + upload) of the newest good backup per kind.",
        labels=["kind"],
    )
    size = GaugeMetricFamily(
        "ballast_backup_last_size_bytes",
        "Stored size of the newest good backup per kind.",
        labels=["kind"],
    )
    total = GaugeMetricFamily(
        "ballast_backup_good_total",
        "Good (verified) backups currently stored, per kind.",
        labels=["kind"],
    )
    for kind in KINDS:
        of_kind = [m for m in good if m.kind == kind]
        total.add_metric([kind], len(of_kind))
        if of_kind:
            last: Manifest = of_kind[-1]
            last_success.add_metric([kind], last.created.timestamp())
            duration.add_metric([kind], last.duration_s)
            size.add_metric([kind], last.size)
    rpo = GaugeMetricFamily(
        "ballast_backup_rpo_seconds",
        "Data-loss window: seconds since the newest good backup was captured.",
    )
    if good:
        rpo.add_metric([], max(0.0, (now - good[-1].created).total_seconds()))
    return [last_success, duration, size, total, rpo, *_drill_metrics(catalog)]


def _drill_metrics(catalog: Catalog) -> list[Metric]:
    """The last drill of each kind: `latest` (logical) as ballast_backup_drill_*,
    `pitr` (pgBackRest) as ballast_backup_pitr_drill_*."""
    metrics: list[Metric] = []
    for record, names, what in (
        (
            "latest",
            (
                "ballast_backup_drill_last_timestamp_seconds",
                "ballast_backup_drill_last_success",
                "ballast_backup_drill_last_duration_seconds",
            ),
            "restore drill",
        ),
        (
            "pitr",
            (
                "ballast_backup_pitr_drill_last_timestamp_seconds",
                "ballast_backup_pitr_drill_last_success",
                "ballast_backup_pitr_drill_last_duration_seconds",
            ),
            "pgBackRest restore drill",
        ),
    ):
        drill = catalog.last_drill(record)
        ts = GaugeMetricFamily(names[0], f"When the last {what} ran (Unix seconds).")
        ok = GaugeMetricFamily(
            names[1], f"1 if the last {what} restored and verified, else 0."
        )
        took = GaugeMetricFamily(names[2], f"Duration of the last {what}.")
        if drill is not None:
            ts.add_metric([], float(drill.get("timestamp", 0.0)))
            ok.add_metric([], 1.0 if drill.get("success") else 0.0)
            took.add_metric([], float(drill.get("duration_s", 0.0)))
        metrics += [ts, ok, took]
    return metrics


class BackupCollector(Collector):
    def __init__(self, catalog: Catalog, cache_s: float = 15.0) -> None:
        self.catalog = catalog
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.cache_s:
                self._cached = (now, backup_metrics(self.catalog))
            metrics = self._cached[1]
        yield from metrics


def make_app(catalog: Catalog, cache_s: float = 15.0) -> Any:
    registry = CollectorRegistry()
    registry.register(BackupCollector(catalog, cache_s))
    return make_wsgi_app(registry)


class _QuietHandler(WSGIRequestHandler):
    # One line per scrape on stderr is noise in a long-running exporter.
    def log_message(self, format: str, *args: Any) -> None:
        return None


def serve(catalog: Catalog, host: str, port: int, cache_s: float = 15.0) -> WSGIServer:
    """A WSGI server answering /metrics (call `serve_forever()` on it)."""
    return make_server(
        host, port, make_app(catalog, cache_s), handler_class=_QuietHandler
    )
