"""Real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, against the app
served over HTTP. Every page fixture fails its test on a console error, an uncaught page
error, or a request leaving 127.0.0.1 (pages must work offline); `shot` saves a screenshot
under test-output/screenshots for people to look at."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("SHAHR_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@dataclass
class PageLog:
    """What a page did that a test may want to refuse: console errors, uncaught exceptions,
    requests to anywhere but this machine (aborted, so nothing leaves it)."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return ([f"console error: {m}" for m in self.console_errors]
                + [f"page error: {m}" for m in self.page_errors]
                + [f"request left 127.0.0.1: {u}" for u in self.external]
                + [f"request failed: {u}" for u in self.failed])


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"Chromium not found at {CHROMIUM}; `make test-deps` installs Debian's "
                    "chromium (or set SHAHR_TEST_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _open_page(browser: object, live_server: str, *, locale: str, viewport: dict[str, int]
               ) -> tuple[object, object, PageLog]:
    log = PageLog()
    context = browser.new_context(  # type: ignore[attr-defined]
        base_url=live_server, locale=locale, viewport=viewport,
        extra_http_headers={"Accept-Language": locale})
    page = context.new_page()

    def route(r: object) -> None:
        url = r.request.url  # type: ignore[attr-defined]
        host = urlsplit(url).hostname
        if url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            r.continue_()  # type: ignore[attr-defined]
        else:
            log.external.append(url)
            r.abort()  # type: ignore[attr-defined]

    context.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and log.console_errors.append(
        f"{m.text} ({m.location.get('url', '')})"))
    page.on("pageerror", lambda e: log.page_errors.append(str(e)))
    page.on("requestfailed", lambda r: urlsplit(r.url).hostname in LOCAL_HOSTS
            and log.failed.append(f"{r.url}: {r.failure}"))
    return context, page, log


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


def _page_fixture(locale: str, viewport: dict[str, int]) -> Callable[..., Iterator[object]]:
    def fixture(browser: object, live_server: str, request: pytest.FixtureRequest
                ) -> Iterator[object]:
        context, page, log = _open_page(browser, live_server, locale=locale, viewport=viewport)
        page.log = log  # type: ignore[attr-defined]
        yield page
        context.close()  # type: ignore[attr-defined]
        if "allow_page_problems" not in request.keywords:
            assert not log.problems(), "\n".join(log.problems())

    return fixture


page = pytest.fixture(_page_fixture("en", {"width": 1280, "height": 900}))
page_fa = pytest.fixture(_page_fixture("fa", {"width": 1280, "height": 900}))
phone = pytest.fixture(_page_fixture("fa", {"width": 390, "height": 844}))


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[[object, str], Path]:
    """shot(page, "name") saves test-output/screenshots/<name>.png (full page)."""

    def take(page: object, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        return path

    return take
