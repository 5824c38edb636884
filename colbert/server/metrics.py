"""Prometheus metrics of one app, in its own registry (several apps in one process do not collide).

colbert_requests_total{endpoint, method, status}, colbert_request_seconds{endpoint} (histogram),
colbert_requests_in_flight, colbert_index_documents{index}, colbert_index_embeddings{index},
colbert_encode_batch_size (histogram of queries encoded together), and the process_* metrics of
prometheus-client (resident memory, CPU seconds, open files) on Linux.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
QUERY_ENDPOINTS = ("/v1/search", "/v1/rerank", "/v1/encode")  # the requests that may bring queries to encode


class IndexCollector:
    """Documents and embeddings of each served index, read at scrape time from the published state."""

    def __init__(self, registry: Any) -> None:
        self.indexes = registry

    def collect(self) -> Iterable[GaugeMetricFamily]:
        docs = GaugeMetricFamily("colbert_index_documents", "Documents in the served index", labels=["index"])
        embs = GaugeMetricFamily("colbert_index_embeddings", "Token embeddings in the served index", labels=["index"])
        ready = GaugeMetricFamily("colbert_index_ready", "1 when the index is loaded", labels=["index"])
        for served in self.indexes:
            searcher = served.searcher
            ready.add_metric([served.name], 1.0 if searcher is not None else 0.0)
            if searcher is not None:
                docs.add_metric([served.name], searcher.loaded.num_live)
                embs.add_metric([served.name], searcher.loaded.num_embeddings)
        yield from (docs, embs, ready)


class Metrics:
    def __init__(self, indexes: Any, endpoints: Iterable[str]) -> None:
        self.registry = CollectorRegistry()
        self.endpoints = set(endpoints)
        self.requests = Counter("colbert_requests", "HTTP requests by endpoint, method and status",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("colbert_request_seconds", "Time to answer a request, by endpoint", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("colbert_requests_in_flight", "Requests being answered", registry=self.registry)
        self.batch_size = Histogram("colbert_encode_batch_size", "Queries encoded together", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        ProcessCollector(registry=self.registry)
        self.registry.register(IndexCollector(indexes))
        self.queries_in_flight = 0  # requests on QUERY_ENDPOINTS being answered: the QueryBatcher's cue to wait
        self.requests_in_flight = 0  # every request being answered: above one, kernels run on one thread each

    def endpoint(self, path: str) -> str:
        return path if path in self.endpoints else "other"  # unknown paths share one label: bounded cardinality

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """ASGI middleware counting every response (auth and size refusals included) and timing it."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint, status = self.metrics.endpoint(scope["path"]), 500

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        queries = scope["path"] in QUERY_ENDPOINTS
        self.metrics.in_flight.inc()
        self.metrics.requests_in_flight += 1
        self.metrics.queries_in_flight += queries
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.queries_in_flight -= queries
            self.metrics.requests_in_flight -= 1
            self.metrics.in_flight.dec()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
            self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
