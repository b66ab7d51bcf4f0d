"""Serve an app built with particular settings over real HTTP (uvicorn in a thread), for
tests that need settings other than the shared `live_server`'s (importable as `serving`)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(app: Any, *, ready_path: str = "/healthz", wait_s: float = 30) -> Iterator[str]:
    """Yield the base URL of `app` served by uvicorn on a free loopback port. uvicorn's own
    X-Forwarded-For handling is off, as `shahr serve` has it (the app decides whom to
    believe: SHAHR_TRUSTED_PROXIES)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", proxy_headers=False, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}{ready_path}", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        server.should_exit = True
        raise RuntimeError("the test server did not start")
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve(settings: Any) -> Iterator[str]:
    """The real app for `settings` (a catalog Settings), served as `served` does."""
    from api.app import create_app

    with served(create_app(settings)) as base:
        yield base
