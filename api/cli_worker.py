"""`shahr worker`: carries out the ETL runs queued by the publishing API and the scheduled
refreshes (etl/queue.py). Run one or more next to `shahr serve`; they share the database and
SHAHR_DATA_DIR. Logs go to stdout in the service's format (SHAHR_LOG_FORMAT)."""

from __future__ import annotations

import asyncio
import contextlib
import logging.config
from typing import Annotated

import typer

from api.cli_keys import database_url, err, plain_errors
from api.logs import cli_log_choice, log_config
from catalog.settings import get_settings
from etl.queue import WorkerConfig, run_worker


@plain_errors
def worker(
    concurrency: Annotated[int, typer.Option(min=1, help="Runs carried out at once (each in "
                                             "its own process)")] = 1,
    once: Annotated[bool, typer.Option("--once", help="Stop when the queue is empty")] = False,
    log_format: Annotated[str | None, typer.Option(
        help="text or json; default SHAHR_LOG_FORMAT")] = None,
    log_level: Annotated[str | None, typer.Option(
        help="debug, info, warning or error; default SHAHR_LOG_LEVEL")] = None,
) -> None:
    """Carry out queued ETL runs (uploads, re-runs) and scheduled refreshes."""
    settings = get_settings()
    fmt, level = cli_log_choice(settings, log_format, log_level)
    logging.config.dictConfig(log_config(fmt, level))
    cfg = WorkerConfig(url=database_url(), settings=settings)
    err.print(f"shahr worker on {cfg.host}: job timeout {settings.job_timeout_s} s, heartbeat "
              f"every {settings.worker_heartbeat_s:g} s (Ctrl+C stops it)")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_worker(cfg, concurrency=concurrency, wait=not once))
