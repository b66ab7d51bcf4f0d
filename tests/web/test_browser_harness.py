"""The browser harness itself: pages load in real Chromium, and a request leaving this
machine is caught (so the offline promise of every page test means something)."""

from __future__ import annotations

import pytest


def test_chromium_opens_the_landing_page(page, shot) -> None:
    response = page.goto("/?f=html")
    assert response is not None and response.status == 200
    assert page.locator("h1").count() >= 1
    assert shot(page, "harness-landing").stat().st_size > 1000


@pytest.mark.allow_page_problems
def test_external_requests_are_caught(page) -> None:
    # A navigation (not a fetch: the pages' Content-Security-Policy would stop that first).
    from playwright.sync_api import Error

    with pytest.raises(Error):
        page.goto("https://tile.openstreetmap.org/0/0/0.png")
    assert any("openstreetmap" in u for u in page.log.external)
