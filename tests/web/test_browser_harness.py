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
    page.goto("/?f=html")
    page.evaluate("fetch('https://tile.openstreetmap.org/0/0/0.png').catch(() => null)")
    page.wait_for_timeout(300)
    assert any("openstreetmap" in u for u in page.log.external)
