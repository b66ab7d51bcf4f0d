"""Helpers for the write-access tests: an app instance with its own settings served over real
HTTP, API keys made in the test database, `shahr worker` processes, a small file server for
URL uploads, and waiting for runs."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from serving import free_port, serve  # noqa: F401  (re-exported for the tests)
from sqlalchemy import update

from catalog.database import session_scope
from catalog.keys import create_key
from catalog.models import ApiKey
from catalog.settings import Settings

SHAHR = str(Path(sys.executable).with_name("shahr"))
# Test datasets get titles no other test searches for (they share the catalogue).
TITLE_FA = "آزمون دسترسی نوشتن"
FINISHED = ("succeeded", "failed", "skipped")


def new_key(url: str, role: str, organisation: str | None = None, *,
            state: str = "active") -> str:
    """A key's token; `state` expired or revoked makes it so in the database."""
    with session_scope(url) as s:
        key, token = create_key(s, role=role, organisation=organisation,
                                label=f"test {role} {state}",
                                expires=datetime.now(UTC) + timedelta(days=1))
        if state == "expired":
            s.execute(update(ApiKey).where(ApiKey.id == key.id)
                      .values(expires=datetime.now(UTC) - timedelta(minutes=1)))
        elif state == "revoked":
            s.execute(update(ApiKey).where(ApiKey.id == key.id)
                      .values(revoked=datetime.now(UTC)))
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def slug(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def dataset_body(name: str, organisation: str | dict[str, Any], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "slug": name, "title": {"fa": TITLE_FA, "en": f"Write-access test {name}"},
        "theme": "traffic",
        "organisation": organisation, "keywords": ["test"],
        "source": {"csv": {"lon": "lon", "lat": "lat"}}, "key": "id",
    }
    body.update(extra)
    return body


def csv_bytes(n: int, *, start: int = 1) -> bytes:
    rows = ["id,name,lon,lat"] + [f"{i},مکان {i},{51.3 + i / 1000:.4f},{35.6 + i / 1000:.4f}"
                                  for i in range(start, start + n)]
    return ("\n".join(rows) + "\n").encode()


def wait_run(client: httpx.Client, run_id: int, headers: dict[str, str], *,
             timeout: float = 120, until: tuple[str, ...] = FINISHED) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = client.get(f"/runs/{run_id}", headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] in until:
            return body
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} is still {body.get('status')} after {timeout} s: {body}")


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {**os.environ,
           "SHAHR_DATABASE_URL": str(settings.database_url),
           "SHAHR_DATA_DIR": str(settings.data_dir),
           "SHAHR_JOBS_DIRS": json.dumps([str(p) for p in settings.jobs_dirs]),
           "SHAHR_ETL_BATCH_SIZE": str(settings.etl_batch_size),
           "SHAHR_MAX_UPLOAD_MB": str(settings.max_upload_mb),
           "SHAHR_WORKER_HEARTBEAT_S": str(settings.worker_heartbeat_s),
           "SHAHR_JOB_TIMEOUT_S": str(settings.job_timeout_s),
           "SHAHR_FETCH_PRIVATE_HOSTS": "true" if settings.fetch_private_hosts else "false"}
    env.update(extra)
    return env


class Worker:
    """A `shahr worker` process; its output goes to a log file shown when a test fails."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen([SHAHR, "worker", "--log-level", "info"], env=env,
                                     stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                     cwd=log.parent)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)  # reaped, so its pid is gone (not a zombie)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@contextmanager
def running_worker(settings: Settings, log: Path, **env: str) -> Iterator[Worker]:
    w = Worker(worker_env(settings, **env), log)
    try:
        yield w
    finally:
        w.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1][:1] == "Z")


def eventually(check: Callable[[], Any], *, timeout: float = 20, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {check}")
        time.sleep(every)


class FileServer:
    """Serves `files` (path -> bytes) over HTTP on loopback; `/slow...` paths send a few
    bytes then stall (for job timeouts); `/redirect?to=URL` redirects."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path.startswith("/slow"):
                    self.send_response(200)
                    self.send_header("Content-Length", "10000000")
                    self.end_headers()
                    self.wfile.write(b'{"type": "FeatureCollection", ')
                    self.wfile.flush()
                    time.sleep(120)
                    return
                if path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", self.path.split("to=", 1)[1])
                    self.end_headers()
                    return
                data = files.get(path)
                if data is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
