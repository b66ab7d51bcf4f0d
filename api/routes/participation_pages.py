"""The participation pages (fa/en, api/templates/participation/) and the per-dataset feeds
(Atom, JSON Feed 1.1) of reports and their answers. Everything a citizen wrote is escaped:
Jinja2 autoescapes the pages, the Atom XML is written by ElementTree, and the feeds carry
comments as plain text (`content_text`), never as HTML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from api.html import render, url
from api.links import base_url
from catalog.models import PARTICIPATION_STATUSES, REPORT_CATEGORIES, THEMES

ATOM = "http://www.w3.org/2005/Atom"


def _choices() -> dict[str, Any]:
    return {"statuses": PARTICIPATION_STATUSES, "categories": REPORT_CATEGORIES,
            "themes": THEMES}


def requests_page(request: Request, body: dict[str, Any], *, status: str | None
                  ) -> HTMLResponse:
    return render(request, "participation/requests.html", {
        "page": body, "status": status, "new_href": url(request, "/requests/new"),
        "filter_href": lambda s: url(request, "/requests", [("status", s)] if s else []),
        **_choices()})


def request_form(request: Request, *, values: dict[str, Any], errors: list[dict[str, str]],
                 status_code: int = 200) -> HTMLResponse:
    area = values.get("area")
    return render(request, "participation/request_form.html", {
        "values": values, "errors": errors,
        "area_text": json.dumps(area) if isinstance(area, dict) else area or "",
        "action": url(request, "/requests"),
        "list_href": url(request, "/requests"), **_choices()}, status_code=status_code)


def request_page(request: Request, item: dict[str, Any]) -> HTMLResponse:
    return render(request, "participation/request.html", {
        "item": item, "support_action": url(request, f"/requests/{item['id']}/support"),
        "list_href": url(request, "/requests"), **_choices()})


def _title(target: dict[str, Any]) -> dict[str, str | None]:
    return {"fa": target.get("title_fa"), "en": target.get("title_en")}


def reports_page(request: Request, body: dict[str, Any], target: dict[str, Any], *,
                 status: str | None) -> HTMLResponse:
    slug = target["slug"]
    return render(request, "participation/reports.html", {
        "page": body, "dataset": target, "dataset_title": _title(target), "status": status,
        "dataset_href": url(request, f"/datasets/{slug}"),
        "new_href": url(request, f"/datasets/{slug}/reports/new"),
        "layer_href": url(request, f"/datasets/{slug}/reports.geojson"),
        "atom_href": url(request, f"/datasets/{slug}/feed.atom"),
        "json_feed_href": url(request, f"/datasets/{slug}/feed.json"),
        "filter_href": lambda s: url(request, f"/datasets/{slug}/reports",
                                     [("status", s)] if s else []),
        **_choices()})


def report_form(request: Request, target: dict[str, Any], *, values: dict[str, Any],
                errors: list[dict[str, str]], status_code: int = 200) -> HTMLResponse:
    slug = target["slug"]
    loc = values.get("location")
    if isinstance(loc, dict) and isinstance(loc.get("coordinates"), list):
        values = {**values, "lon": loc["coordinates"][0], "lat": loc["coordinates"][1]}
    feature = values.get("feature_id")
    return render(request, "participation/report_form.html", {
        "dataset": target, "dataset_title": _title(target), "values": values,
        "errors": errors, "action": url(request, f"/datasets/{slug}/reports"),
        "dataset_href": url(request, f"/datasets/{slug}"),
        "feature_href": url(request, f"/collections/{slug}/items/{feature}")
        if feature else None,
        "feature_json": url(request, f"/collections/{slug}/items/{feature}", [("f", "json")])
        if feature else None,
        "extent_json": url(request, f"/collections/{slug}", [("f", "json")]),
        **_choices()}, status_code=status_code)


def report_page(request: Request, item: dict[str, Any]) -> HTMLResponse:
    slug = item["dataset"]
    return render(request, "participation/report.html", {
        "item": item, "dataset_href": url(request, f"/datasets/{slug}"),
        "reports_href": url(request, f"/datasets/{slug}/reports"), **_choices()})


# ---- feeds ---------------------------------------------------------------------------------------

def _summary(item: dict[str, Any]) -> str:
    what = item["category"].replace("_", " ")
    on = f" (feature {item['feature_id']})" if item["feature_id"] is not None else ""
    return f"Report {item['id']}: {what}{on} — {item['status'].replace('_', ' ')}"


def _text(item: dict[str, Any]) -> str:
    out = item["comment"]
    if item["public_answer"]:
        out += f"\n\nAnswer: {item['public_answer']}"
    if item["fixed_version"]:
        out += f"\n\nFixed in version {item['fixed_version']}."
    return str(out)


def _updated(item: dict[str, Any]) -> str:
    return str(item["answered"] or item["created"])


def json_feed(request: Request, target: dict[str, Any], items: list[dict[str, Any]]
              ) -> dict[str, Any]:
    """JSON Feed 1.1 (https://jsonfeed.org/version/1.1)."""
    slug = target["slug"]
    base = base_url(request)
    return {
        "version": "https://jsonfeed.org/version/1.1",
        "title": f"Reports on {target.get('title_en') or target.get('title_fa') or slug}",
        "home_page_url": f"{base}/datasets/{slug}/reports",
        "feed_url": f"{base}/datasets/{slug}/feed.json",
        "language": "fa",
        "items": [{"id": f"{base}/reports/{i['id']}", "url": f"{base}/reports/{i['id']}",
                   "title": _summary(i), "content_text": _text(i),
                   "date_published": i["created"], "date_modified": _updated(i),
                   "tags": [i["category"], i["status"]],
                   "_shahr": {"status": i["status"], "category": i["category"],
                              "feature_id": i["feature_id"],
                              "fixed_version": i["fixed_version"]}}
                  for i in items],
    }


def atom_feed(request: Request, target: dict[str, Any], items: list[dict[str, Any]]) -> bytes:
    """Atom (RFC 4287), newest first; ElementTree escapes every text."""
    slug = target["slug"]
    base = base_url(request)
    ET.register_namespace("", ATOM)

    def el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        e = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            e.text = text
        return e

    feed = ET.Element(f"{{{ATOM}}}feed")
    el(feed, "id", f"{base}/datasets/{slug}/feed.atom")
    el(feed, "title", f"Reports on {target.get('title_en') or target.get('title_fa') or slug}")
    updated = max((_updated(i) for i in items),
                  default=datetime.now(UTC).isoformat())
    el(feed, "updated", updated)
    el(feed, "link", rel="self", href=f"{base}/datasets/{slug}/feed.atom")
    el(feed, "link", rel="alternate", type="text/html", href=f"{base}/datasets/{slug}/reports")
    author = el(feed, "author")
    el(author, "name", str(target.get("organisation") or "Shahr"))
    for i in items:
        entry = el(feed, "entry")
        el(entry, "id", f"{base}/reports/{i['id']}")
        el(entry, "title", _summary(i))
        el(entry, "published", i["created"])
        el(entry, "updated", _updated(i))
        el(entry, "link", rel="alternate", href=f"{base}/reports/{i['id']}")
        el(entry, "category", term=i["category"])
        el(entry, "category", term=f"status:{i['status']}")
        el(entry, "content", _text(i), type="text")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="utf-8",
                                                                       xml_declaration=False)
