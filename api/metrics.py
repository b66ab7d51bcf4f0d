"""Prometheus metrics at /metrics: requests and their latency by route template and status,
rate-limit refusals, the connection pool, and the ETL runs and rows loaded.

Request metrics are counted in-process by api.logs.RequestContext (label children are
cached, so a request costs two dictionary lookups and two increments). With several uvicorn
workers `shahr serve` sets PROMETHEUS_MULTIPROC_DIR, and prometheus_client's multiprocess
mode adds up every worker's counts whichever worker answers the scrape. ETL runs are read
from catalog.etl_runs at scrape time, so runs made by another process (the CLI, the job
worker) count too."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

disable_created_metrics()  # no *_created series: they double the output for nothing
log = logging.getLogger("shahr.metrics")
router = APIRouter(tags=["health"])

BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REQUESTS = Counter("shahr_http_requests", "HTTP requests answered",
                   ["method", "route", "status"])
LATENCY = Histogram("shahr_http_request_duration_seconds",
                    "Time from the request to the last byte of the response",
                    ["method", "route", "status"], buckets=BUCKETS)
RATE_LIMITED = Counter("shahr_rate_limited", "Requests refused with 429", ["by"])
_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

ETL_RUNS = """
SELECT job_name, status, count(*), coalesce(sum(rows_loaded), 0),
       coalesce(sum(rows_rejected), 0),
       extract(epoch FROM max(finished_at))
FROM catalog.etl_runs GROUP BY job_name, status
"""


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    pair = _children.get(key)
    if pair is None:
        labels = (method, route, str(status))
        pair = _children[key] = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
    pair[0].inc()
    pair[1].observe(seconds)


class Snapshot:
    """A collector for one scrape: what was read from the database and the pool just now."""

    def __init__(self, runs: list[tuple[Any, ...]] | None, pool: dict[str, int]) -> None:
        self.runs, self.pool = runs, pool

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("shahr_database_up", "1 when the database answered the scrape")
        up.add_metric([], 0.0 if self.runs is None else 1.0)
        yield up
        pool = GaugeMetricFamily("shahr_db_pool_connections",
                                 "Public pool of the worker that answered", labels=["state"])
        pool.add_metric(["open"], self.pool.get("pool_size", 0))
        pool.add_metric(["idle"], self.pool.get("pool_available", 0))
        pool.add_metric(["waiting_requests"], self.pool.get("requests_waiting", 0))
        yield pool
        if self.runs is None:
            return
        runs = CounterMetricFamily("shahr_etl_runs", "ETL runs by job and outcome",
                                   labels=["job", "status"])
        loaded = CounterMetricFamily("shahr_etl_rows_loaded", "Rows loaded by ETL runs",
                                     labels=["job"])
        rejected = CounterMetricFamily("shahr_etl_rows_rejected", "Rows ETL runs rejected",
                                       labels=["job"])
        last = GaugeMetricFamily("shahr_etl_last_finished_timestamp_seconds",
                                 "When a job's last run with this outcome finished",
                                 labels=["job", "status"])
        per_job: dict[str, list[float]] = {}
        for job, status, n, rows, bad, finished in self.runs:
            runs.add_metric([job, status], n)
            sums = per_job.setdefault(job, [0.0, 0.0])
            sums[0] += float(rows)
            sums[1] += float(bad)
            if finished is not None:
                last.add_metric([job, status], float(finished))
        for job, (rows, bad) in sorted(per_job.items()):
            loaded.add_metric([job], rows)
            rejected.add_metric([job], bad)
        yield from (runs, loaded, rejected, last)


async def _etl_runs(request: Request) -> list[tuple[Any, ...]] | None:
    pool = request.app.state.pool
    try:
        async with pool.connection(timeout=2.0) as conn:
            cur = await conn.execute(ETL_RUNS)
            return list(await cur.fetchall())
    except Exception as exc:  # the database away must not break the scrape
        log.info("metrics: ETL runs not read: %s", exc)
        return None


@router.get("/metrics", summary="Prometheus metrics (text exposition format)",
            response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "Metrics in the Prometheus text format"}})
async def metrics(request: Request) -> Response:
    started = time.perf_counter()
    runs = await _etl_runs(request)
    stats = request.app.state.pool.get_stats()
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(Snapshot(runs, stats))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        process = CollectorRegistry()
        MultiProcessCollector(process)
    else:
        process = REGISTRY
    body = generate_latest(process) + generate_latest(scrape)
    log.debug("metrics scraped in %.1f ms", (time.perf_counter() - started) * 1000)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
