"""Citizen participation in real Chromium against the demo city: a citizen reports a problem
from a parcel's popup on the map (with a corrected-location pin) and finds it listed; the
publisher answers through the API and the answer shows; spam is refused (honeypot, the
per-address limit); a script tag in a comment is shown as text; requests can be made and
supported; the Persian pages read right to left. Screenshots land in
test-output/screenshots/."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from publishing_support import bearer, new_key
from serving import served
from test_pages import audit

from catalog.settings import Settings

pytestmark = pytest.mark.usefixtures("demo_loaded")
DATASET = "landuse-parcels"


def open_reports(http: httpx.Client) -> int:
    return int(http.get(f"/datasets/{DATASET}").json()["open_reports"])


def file_report_from_popup(page: Page, comment: str) -> str:
    """Open the parcels map, click a parcel, follow the popup's report link, fill in the
    form with a pin; returns the new report's URL."""
    page.goto(f"/maps/{DATASET}?embed=1&lang=en", wait_until="networkidle")
    page.wait_for_selector(".leaflet-container")
    parcels = page.locator("path.leaflet-interactive")
    parcels.nth(parcels.count() // 2).click(force=True)
    link = page.locator(".leaflet-popup-content a.shahr-report")
    link.wait_for()
    assert link.inner_text() == "Report a problem"
    feature = re.search(r"feature=(\d+)", link.get_attribute("href") or "")
    assert feature
    link.click()
    page.wait_for_url(re.compile(rf"/datasets/{DATASET}/reports/new\?feature={feature[1]}"))
    page.wait_for_selector("#pick-map[data-drawn='1']")
    page.select_option("#p-category", "wrong_value")
    page.fill("#p-comment", comment)
    box = page.locator("#pick-map").bounding_box()
    assert box
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.locator("#p-lon")).not_to_have_value("")
    page.click(".p-form button[type=submit]")
    page.wait_for_url(re.compile(r"/reports/\d+$"))
    return page.url


def test_a_citizen_reports_from_a_feature_popup_and_sees_it_listed(
        page: Page, shot: Any, http: httpx.Client) -> None:
    before = open_reports(http)
    url = file_report_from_popup(page, "This parcel is not residential, it is a school.")
    made = http.get(url).json()
    assert made["category"] == "wrong_value" and made["feature_id"] is not None
    assert made["location"] is not None  # the pin
    expect(page.locator(".p-comment")).to_have_text(
        "This parcel is not residential, it is a school.")
    expect(page.locator(".p-status")).to_have_text("New")
    audit(page)
    shot(page, "participation-report")

    page.goto(f"/datasets/{DATASET}/reports")
    item = page.locator(f".p-item[data-id='{made['id']}']")
    expect(item).to_contain_text("This parcel is not residential")
    page.wait_for_selector("#reports-map[data-drawn='1']")
    assert int(page.locator("#reports-map").get_attribute("data-count") or 0) >= 1
    audit(page)
    shot(page, "participation-reports")
    assert open_reports(http) == before + 1
    page.goto(f"/datasets/{DATASET}")
    expect(page.locator(".p-open-reports")).to_contain_text(str(before + 1))


def test_the_publishers_answer_appears(page: Page, http: httpx.Client,
                                       database_url: str) -> None:
    url = file_report_from_popup(page, "The land use here is outdated.")
    rid = int(url.rsplit("/", 1)[1])
    org = http.get(f"/datasets/{DATASET}").json()["organisation"]["slug"]
    key = bearer(new_key(database_url, "publisher", org))
    r = http.patch(f"/reports/{rid}", headers=key, json={
        "status": "done", "public_answer": "Corrected in the next load, thank you."})
    assert r.status_code == 200, r.text
    page.reload()
    expect(page.locator(".p-answer-text")).to_have_text(
        "Corrected in the next load, thank you.")
    expect(page.locator(".p-status")).to_have_text("Done")
    page.goto(f"/datasets/{DATASET}/reports?status=done")
    expect(page.locator(f".p-item[data-id='{rid}'] .p-answer-text")).to_have_text(
        "Corrected in the next load, thank you.")


def test_a_script_in_a_comment_is_shown_as_text(page: Page, http: httpx.Client) -> None:
    comment = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    r = http.post(f"/datasets/{DATASET}/reports",
                  json={"category": "outdated", "comment": comment})
    assert r.status_code == 201
    rid = r.json()["id"]
    for path in (f"/reports/{rid}", f"/datasets/{DATASET}/reports"):
        page.goto(path)
        assert page.evaluate("window.pwned === undefined")
        expect(page.locator(".p-comment").first).to_have_text(comment)


@pytest.mark.allow_page_problems  # the refused posts answer 400 and 429, as they should
def test_spam_is_refused(page: Page, http: httpx.Client) -> None:
    before = http.get(f"/datasets/{DATASET}/reports").json()["numberMatched"]
    page.goto(f"/datasets/{DATASET}/reports/new")
    page.select_option("#p-category", "outdated")
    page.fill("#p-comment", "Cheap watches at spam.example")
    page.evaluate("document.querySelector('input[name=website]').value = 'spam.example'")
    page.click(".p-form button[type=submit]")
    expect(page.locator(".p-errors")).to_contain_text("website")
    assert http.get(f"/datasets/{DATASET}/reports").json()["numberMatched"] == before
    assert not [m for m in page.log.console_errors if "400" not in m]  # type: ignore[attr-defined]


@pytest.mark.allow_page_problems
def test_too_many_submissions_from_one_address_are_refused(page: Page,
                                                           settings: Settings) -> None:
    from api.app import create_app

    strict = settings.model_copy(update={"submissions_per_minute": 1, "rate_limit_exempt": []})
    with served(create_app(strict)) as base:
        statuses = []
        for i in range(2):
            page.goto(f"{base}/datasets/{DATASET}/reports/new")
            page.select_option("#p-category", "outdated")
            page.fill("#p-comment", f"report number {i}")
            with page.expect_navigation() as nav:
                page.click(".p-form button[type=submit]")
            response = nav.value
            statuses.append(response.status if response else None)
        # the first lands on its report page after the 303, the second is refused
        assert statuses == [200, 429]
        assert "Too many submissions" in page.content()


def test_a_request_is_made_and_supported(page: Page, shot: Any, http: httpx.Client) -> None:
    page.goto("/requests/new?lang=en")
    page.fill("#p-title", "Street trees")
    page.fill("#p-description", "Every street tree with its species and planting year.")
    page.select_option("#p-theme", "infrastructure")
    page.wait_for_selector("#pick-map[data-drawn='1']")
    box = page.locator("#pick-map").bounding_box()
    assert box
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.7)
    expect(page.locator("#p-area")).not_to_have_value("")
    audit(page)
    page.click(".p-form button[type=submit]")
    page.wait_for_url(re.compile(r"/requests/\d+$"))
    made = http.get(page.url).json()
    assert made["area"]["type"] == "Polygon" and made["supporters"] == 0
    page.click("text=I need this too")
    expect(page.locator(".p-supporters")).to_contain_text("1")
    page.click("text=I need this too")  # the same person again: still one
    expect(page.locator(".p-supporters")).to_contain_text("1")
    assert http.get(page.url).json()["supporters"] == 1
    audit(page)
    shot(page, "participation-request")


def test_persian_report_form_reads_right_to_left(page_fa: Page, shot: Any,
                                                 http: httpx.Client) -> None:
    fid = http.get(f"/collections/{DATASET}/items", params={"limit": 1}).json()["features"][0]["id"]
    page_fa.goto(f"/collections/{DATASET}/items/{fid}")
    page_fa.click("a.report-link")
    page_fa.wait_for_selector("#pick-map[data-drawn='1']")
    assert page_fa.locator("html").get_attribute("dir") == "rtl"
    expect(page_fa.locator("h1")).to_contain_text("گزارش مشکل")
    expect(page_fa.locator("label[for=p-category]")).to_have_text("چه چیزی نادرست است؟")
    audit(page_fa)
    shot(page_fa, "participation-report-form-fa")
