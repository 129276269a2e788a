"""Prometheus metrics of the ingest pipeline, served at `/metrics` in the text format.

Every counter of `Counters` ("<area>.<event>") is exported as
`telematics_events_total{area="jt808", event="frame_errors"}`: reports received per protocol,
stored, duplicates, rejected by reason, connections cut off. Gauges read the live values at
scrape time; batch sizes and commit latency are histograms observed by the batcher.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest.batcher import Batcher
from ingest.counters import Counters


class _CountersCollector(Collector):
    def __init__(self, counters: Counters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "telematics_events", "What happened to input, by area and event", labels=["area", "event"]
        )
        for name, value in self._counters.snapshot().items():
            area, _, event = name.partition(".")
            family.add_metric([area, event or "total"], value)
        yield family


class IngestMetrics:
    def __init__(self, counters: Counters) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_CountersCollector(counters))
        self.batch_rows = Histogram(
            "telematics_batch_rows",
            "Reports per committed batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "telematics_commit_seconds",
            "Time from the start of a batch's write to its commit",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self._queue = Gauge("telematics_queue_reports", "Reports waiting to be written", registry=self.registry)
        self._paused = Gauge(
            "telematics_backpressure",
            "1 while sockets are paused because the database is behind",
            registry=self.registry,
        )
        self._connections = Gauge(
            "telematics_connections", "Open terminal connections", ["protocol"], registry=self.registry
        )

    def observe_batch(self, rows: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.commit_seconds.observe(seconds)

    def watch_batcher(self, batcher: Batcher) -> None:
        self._queue.set_function(lambda: batcher.pending)
        self._paused.set_function(lambda: 1.0 if batcher.paused else 0.0)

    def watch_connections(self, protocol: str, count: Callable[[], int]) -> None:
        self._connections.labels(protocol).set_function(lambda: float(count()))

    def routes(self) -> list[web.RouteDef]:
        async def scrape(request: web.Request) -> web.Response:
            body = generate_latest(self.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        return [web.get("/metrics", scrape)]
