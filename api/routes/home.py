"""The home page: what `/` shows a browser (programs get the OGC API landing page, built in
api.routes.features, whose links this page keeps). A search box, the themes with their
dataset counts and the recently updated datasets (one catalogue search: its facets give the
counts), and a city map embedded from the maps pages."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from api.html import choose_lang, render, url
from api.i18n import N_
from catalog import search as cat
from catalog.collections import Collection
from catalog.models import THEMES

RECENT = 6
CITY_LAYER = "districts"  # the city map's layer when published, else a boundaries dataset
# The OGC landing page's links, by rel, as the home page lists them.
LANDING_LINKS = {
    "data": N_("Collections: every dataset as OGC API Features"),
    "search": N_("Catalogue search (JSON)"),
    "conformance": N_("Conformance classes"),
    "service-desc": N_("API definition (OpenAPI)"),
    "service-doc": N_("API documentation"),
    "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes": N_("Tile matrix sets"),
    "self": N_("This landing page as JSON"),
}


def _city_layer(collections: dict[str, Collection]) -> str | None:
    """The layer the home page's city map shows: the districts, else the largest published
    boundaries dataset, else none (a catalogue without boundaries gets no city map)."""
    if CITY_LAYER in collections:
        return CITY_LAYER
    bounds = [c for c in collections.values() if c.theme == "boundaries"]
    return max(bounds, key=lambda c: c.feature_count).slug if bounds else None


async def page(request: Request, landing: dict[str, Any]) -> Response:
    """The home page for a browser; `landing` is the JSON landing document."""
    lang = choose_lang(request).lang
    city = _city_layer(await request.app.state.collections.get(request.app.state.pool))
    async with request.app.state.pool.connection() as conn:
        res = await cat.search(conn, criteria=cat.criteria(), sort="-modified", limit=RECENT,
                               offset=0, lang=lang)
    counts = {f.value: f.count for f in res.facets.get("theme", [])}
    themes = [{"value": t, "count": counts[t], "href": url(request, "/datasets", [("theme", t)])}
              for t in sorted(THEMES, key=lambda t: -counts.get(t, 0)) if counts.get(t)]
    recent = [{"slug": r["slug"], "title": {"fa": r["title_fa"], "en": r["title_en"]},
               "description": {"fa": r["description_fa"], "en": r["description_en"]},
               "theme": r["theme"], "modified": r["modified"],
               "feature_count": r["feature_count"], "geometry": r["geometry_family"],
               "href": url(request, f"/datasets/{r['slug']}")} for r in res.datasets]
    links = [{"href": link["href"], "type": link["type"], "rel": link["rel"],
              "text": LANDING_LINKS.get(link["rel"], link.get("title") or link["rel"])}
             for link in landing["links"] if link["rel"] != "alternate"]
    return render(request, "home.html", {
        "total": res.number_matched, "themes": themes, "recent": recent,
        "ogc_links": links, "landing": landing,
        "map_src": city and url(request, "/maps/explore", [("layers", city), ("embed", "1"),
                                                            ("lang", lang)]),
        "map_href": city and url(request, "/maps/explore", [("layers", city)]),
        "all_href": url(request, "/datasets"),
    })
