"""The catalogue API (GET /datasets, GET /datasets/{slug}) against the demo city loaded in a
real PostGIS, over real HTTP: Persian-aware search, facets, filters, bbox, sort, paging,
the detail page, HTML and problem documents. Other test modules may publish datasets into
the same database, so assertions look at the demo's datasets (its two organisations)."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from catalog.bootstrap import create_database, drop_database, ensure_postgis
from catalog.database import libpq_dsn
from catalog.jalali import to_jalali_string
from catalog.migrate import upgrade
from catalog.search import FORMATS, search_document, tsquery_text
from etl.demo.writers import DATASETS

DEMO = set(DATASETS)  # job name = slug
DEMO_ORGS = [("organisation", "nemuneh-municipality"), ("organisation", "nemuneh-traffic")]
CITY_BBOX = "51.0,35.4,51.8,36.0"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
EN = {"Accept-Language": "en"}  # pages default to Persian (SHAHR_DEFAULT_LANG)

pytestmark = pytest.mark.usefixtures("demo_loaded")


def get(http: httpx.Client, params: list[tuple[str, str]] | dict[str, Any] | None = None,
        path: str = "/datasets", **headers: str) -> dict[str, Any]:
    r = http.get(path, params=params, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def found(http: httpx.Client, q: str, **extra: str) -> list[str]:
    """Demo slugs a search finds, in the order returned."""
    body = get(http, {"q": q, "limit": "100", **extra})
    return [d["slug"] for d in body["datasets"] if d["slug"] in DEMO]


def demo(http: httpx.Client, *params: tuple[str, str]) -> dict[str, Any]:
    """A search restricted to the demo's organisations."""
    return get(http, [*DEMO_ORGS, ("limit", "100"), *params])


def slugs(body: dict[str, Any]) -> list[str]:
    return [d["slug"] for d in body["datasets"]]


def problem(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"]
    for w in words:
        assert w in body["detail"], body
    return body


# --- Persian-aware and English search ------------------------------------------------------


def test_arabic_letter_forms_find_persian_spellings(http: httpx.Client) -> None:
    # كاربري (Arabic kaf and yeh) finds کاربری: a title word and a field label.
    assert set(found(http, "كاربري")) == {"landuse-parcels", "buildings"}
    stations = {"metro-stations", "bus-stops", "fire-stations"}
    assert stations <= set(found(http, "ايستگاه")) == set(found(http, "ایستگاه"))


def test_kaf_and_yeh_fold_in_the_database(database_url: str) -> None:
    """شهرك finds شهرک (no demo title has it, so check the stored document directly)."""
    ds = SimpleNamespace(slug="x", title_fa="شهرک غرب", title_en=None, description_fa=None,
                         description_en=None, theme="housing", keywords=["مسكن"],
                         organisation=None)
    doc = search_document(ds, [])
    with psycopg.connect(libpq_dsn(database_url)) as conn:
        for q, hit in (("شهرك", True), ("شهرک غ", True), ("مسکن", True), ("شهرکی", False)):
            row = conn.execute("SELECT to_tsvector('simple', %s) @@ to_tsquery('simple', %s)",
                               [doc, tsquery_text(q)]).fetchone()
            assert row == (hit,), q


def test_persian_and_arabic_indic_digits(http: httpx.Client) -> None:
    # The districts' description says "۲۲ منطقه" / "22 municipal districts".
    assert found(http, "۲۲") == found(http, "٢٢") == found(http, "22") == ["districts"]
    assert "fire-stations" in found(http, "۴۰ ایستگاه")


def test_zwnj_variants_and_diacritics(http: httpx.Client) -> None:
    with_zwnj = found(http, "ساختمان\u200cها")
    assert with_zwnj == found(http, "ساختمان ها") == found(http, "ساختمانها") == ["buildings"]
    assert found(http, "مَدرسه") == found(http, "مدرسه") == ["schools"]


def test_english_search_is_case_insensitive_and_prefix_matches(http: httpx.Client) -> None:
    assert found(http, "BUILDINGS") == found(http, "build") == ["buildings"]
    assert set(found(http, "traffic")) == {"roads", "crashes", "traffic-sensors"}
    assert found(http, "fire stat") == ["fire-stations"]  # only the last word is a prefix
    assert found(http, "fir stations") == []
    assert found(http, "no such thing anywhere") == []


def test_field_names_and_labels_are_searched(http: httpx.Client) -> None:
    assert found(http, "block") == ["landuse-parcels"]  # field label "Block id" only
    assert found(http, "طبقات") == ["buildings"]  # Persian label "تعداد طبقات" only
    assert found(http, "year_built") == ["buildings"]  # a field's name


def test_organisation_names_are_searched(http: httpx.Client) -> None:
    traffic_org = {"roads", "crashes", "traffic-sensors"}
    assert set(found(http, "سازمان حمل‌ونقل")) == traffic_org
    assert set(found(http, "Municipality")) == DEMO - traffic_org


def test_relevance_puts_title_matches_first(http: httpx.Client) -> None:
    hits = found(http, "stations")
    assert set(hits[:2]) == {"metro-stations", "fire-stations"}
    assert "metro-lines" in hits[2:]  # only its field "stations" matches
    assert get(http, {"q": "stations"})["sort"] == "relevance"


def test_query_syntax_is_never_sql_or_tsquery(http: httpx.Client) -> None:
    for q in ("x'); DROP TABLE catalog.datasets; --", "a & | ! <-> :* ( )", "'\\", "%_"):
        get(http, {"q": q})
    assert len(found(http, "!!! ???")) == len(DEMO)  # no words: the query filters nothing
    assert found(http, "buildings;") == ["buildings"]


# --- facets and filters --------------------------------------------------------------------


def test_facets_count_the_demo(http: httpx.Client) -> None:
    body = demo(http)
    assert body["numberMatched"] == len(DEMO) == len(body["datasets"])
    facets = {name: {f["value"]: f["count"] for f in items}
              for name, items in body["facets"].items()}
    assert facets["theme"] == {"infrastructure": 6, "traffic": 3, "boundaries": 1,
                               "housing": 1, "land-use": 1}
    assert facets["geometry_type"] == {"point": 7, "polygon": 3, "line": 2}
    assert facets["licence"] == {"CC-BY-4.0": 12}
    assert facets["format"] == dict.fromkeys(FORMATS, 12)
    assert facets["keyword"]["synthetic"] == 12 and facets["keyword"]["مترو"] == 2
    org = {f["value"]: f for f in get(http, {"keyword": "synthetic"})["facets"]["organisation"]}
    assert org["nemuneh-traffic"]["count"] == 3
    assert org["nemuneh-traffic"]["label"]["fa"] == "سازمان حمل‌ونقل و ترافیک شهر نمونه"


def test_each_facet_value_filters_to_its_count(http: httpx.Client) -> None:
    """Selecting any facet value finds exactly the number the facet showed for it."""
    base = [("theme", "infrastructure"), ("q", "ایستگاه")]
    body = demo(http, *base)
    assert body["numberMatched"] == 4
    checked = 0
    for name, items in body["facets"].items():
        for item in items:
            params = [p for p in [*DEMO_ORGS, *base] if p[0] != name] + [(name, item["value"])]
            assert get(http, params)["numberMatched"] == item["count"], (name, item)
            checked += 1
    assert checked > 20


def test_a_facet_ignores_its_own_filter_but_not_the_others(http: httpx.Client) -> None:
    body = demo(http, ("theme", "traffic"))
    assert sorted(slugs(body)) == ["crashes", "roads", "traffic-sensors"]
    theme = {f["value"]: (f["count"], f["selected"]) for f in body["facets"]["theme"]}
    assert theme["traffic"] == (3, True) and theme["infrastructure"] == (6, False)
    geometry = {f["value"]: f["count"] for f in body["facets"]["geometry_type"]}
    assert geometry == {"point": 2, "line": 1}  # counted among traffic datasets only


def test_facet_links_add_and_remove_a_value(http: httpx.Client) -> None:
    body = demo(http, ("theme", "traffic"), ("offset", "1"))
    housing = next(f for f in body["facets"]["theme"] if f["value"] == "housing")
    params = parse_qsl(urlsplit(housing["href"]).query)
    assert ("theme", "traffic") in params and ("theme", "housing") in params
    assert "offset" not in dict(params)
    assert sorted(slugs(get(http, params))) == ["buildings", "crashes", "roads",
                                                "traffic-sensors"]
    traffic = next(f for f in body["facets"]["theme"] if f["value"] == "traffic")
    assert ("theme", "traffic") not in parse_qsl(urlsplit(traffic["href"]).query)


def test_every_filter(http: httpx.Client) -> None:
    assert sorted(slugs(demo(http, ("theme", "housing")))) == ["buildings"]
    assert sorted(slugs(get(http, {"organisation": "nemuneh-traffic"}))) == [
        "crashes", "roads", "traffic-sensors"]
    assert sorted(slugs(demo(http, ("keyword", "metro")))) == ["metro-lines", "metro-stations"]
    assert sorted(slugs(demo(http, ("keyword", "مترو"), ("keyword", "bus")))) == [
        "bus-stops", "metro-lines", "metro-stations"]  # values of one facet: any of them
    assert len(slugs(demo(http, ("licence", "CC-BY-4.0")))) == 12
    assert demo(http, ("licence", "ODbL-1.0"))["numberMatched"] == 0
    assert sorted(slugs(demo(http, ("geometry_type", "line")))) == ["metro-lines", "roads"]
    polygons = sorted(slugs(demo(http, ("geometry_type", "polygon"))))
    assert polygons == ["buildings", "districts", "landuse-parcels"]
    assert sorted(slugs(demo(http, ("geometry_type", "MultiPolygon")))) == polygons
    assert len(slugs(demo(http, ("format", "gpkg"), ("format", "CSV")))) == 12
    both = demo(http, ("theme", "traffic"), ("geometry_type", "line"))  # facets: all of them
    assert slugs(both) == ["roads"]
    assert len(slugs(demo(http, ("theme", ""), ("keyword", "")))) == 12  # empty = any


def test_bbox(http: httpx.Client) -> None:
    assert set(slugs(demo(http, ("bbox", CITY_BBOX)))) == DEMO
    assert get(http, {"bbox": "-150,-50,-140,-40"})["numberMatched"] == 0  # South Pacific
    assert get(http, {"bbox": "170,-10,-170,10"})["numberMatched"] == 0  # across 180°
    assert set(slugs(demo(http, ("bbox", "51.0,35.4,0,51.8,36.0,100")))) == DEMO  # 3D
    # A sliver west of the city centre still meets every city-wide layer's extent.
    west = set(slugs(demo(http, ("bbox", "51.24,35.70,51.25,35.71"))))
    assert {"districts", "roads"} <= west < DEMO


# --- sort and paging -----------------------------------------------------------------------


def test_sort_orders(http: httpx.Client) -> None:
    by_title = demo(http, ("sort", "title"))["datasets"]
    titles = [d["title"]["en"].lower() for d in by_title]
    assert titles == sorted(titles)
    assert slugs(demo(http, ("sort", "-title"))) == slugs({"datasets": by_title})[::-1]
    fa = [d["title"]["fa"] for d in demo(http, ("sort", "title"), ("lang", "fa"))["datasets"]]
    assert fa == sorted(fa) and fa[0].startswith("ایستگاه")
    newest = demo(http, ("sort", "-modified"))["datasets"]
    stamps = [d["modified"] for d in newest]
    assert stamps == sorted(stamps, reverse=True)
    assert [d["modified"] for d in demo(http, ("sort", "modified"))["datasets"]] == stamps[::-1]
    assert demo(http)["sort"] == "-modified"


def test_paging_follows_next_to_the_end(http: httpx.Client) -> None:
    body = get(http, [*DEMO_ORGS, ("limit", "5"), ("sort", "title"), ("f", "json")])
    total, seen, pages = body["numberMatched"], [], 0
    assert not any(link["rel"] == "prev" for link in body["links"])
    while True:
        pages += 1
        seen += slugs(body)
        assert body["numberReturned"] == len(body["datasets"]) <= 5
        nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
        if not nxt:
            break
        params = parse_qsl(urlsplit(nxt[0]).query)
        assert {("limit", "5"), ("sort", "title"), ("f", "json"), *DEMO_ORGS} <= set(params)
        body = get(http, path=nxt[0])
        prev = next(link["href"] for link in body["links"] if link["rel"] == "prev")
        assert dict(parse_qsl(urlsplit(prev).query)).get("offset", "0") == str(
            (pages - 1) * 5)
    assert len(seen) == len(set(seen)) == total == 12 and pages == 3
    self_link = next(link for link in body["links"] if link["rel"] == "self")
    assert "offset=10" in self_link["href"]
    assert get(http, [*DEMO_ORGS, ("offset", "50")])["datasets"] == []  # past the end


def test_default_limit_is_20(http: httpx.Client) -> None:
    body = get(http)
    assert body["limit"] == 20 and body["offset"] == 0


# --- one dataset ---------------------------------------------------------------------------


def test_detail_has_metadata_fields_versions_runs_and_links(http: httpx.Client) -> None:
    d = get(http, path="/datasets/buildings")
    assert d["title"] == {"fa": "ساختمان‌ها", "en": "Buildings"}
    assert d["theme"] == "housing" and d["organisation"]["slug"] == "nemuneh-municipality"
    assert d["licence"] == "CC-BY-4.0" and "housing" in d["keywords"]
    assert d["source_crs"] == "EPSG:3857" and d["geometry_type"] == "MultiPolygon"
    x0, y0, x1, y1 = d["extent"]["bbox"]
    assert 51.0 < x0 < x1 < 51.8 and 35.4 < y0 < y1 < 36.0
    fields = {f["name"]: f for f in d["fields"]}
    assert d["fields"][0]["name"] == "building_id" and fields["building_id"]["is_key"]
    assert fields["year_built"]["label"] == {"fa": "تاریخ ساخت", "en": "Date built"}
    assert fields["year_built"]["calendar"] == "jalali" and fields["year_built"]["type"] == "date"
    assert fields["units"]["unit"] == "dwellings"
    current = d["versions"][0]
    assert current["status"] == "current" and current["number"] == d["version"]
    assert current["feature_count"] == d["feature_count"] > 0
    run = next(r for r in d["runs"] if r["status"] == "succeeded")
    assert run["rows_loaded"] == d["feature_count"] and run["version"] == d["version"]
    assert run["source"] == "buildings.gpkg"  # not the server's folders
    rels = {link["rel"]: link["href"] for link in d["links"]}
    assert rels["collection"].endswith("/collections/buildings")
    assert rels["items"].endswith("/collections/buildings/items")
    assert rels["http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"].endswith(
        "/collections/buildings/tiles")
    assert rels["map"].endswith("/maps/buildings")
    assert [x["format"] for x in d["distributions"]] == list(FORMATS)
    assert d["distributions"][0]["href"].endswith("/datasets/buildings/download?format=csv")


def test_detail_runs_count_rejected_rows(http: httpx.Client, demo_loaded: dict) -> None:
    result = demo_loaded["landuse-parcels"]
    run = get(http, path="/datasets/landuse-parcels")["runs"][0]
    assert run["id"] == result.run_id and run["rows_rejected"] == result.rows_rejected > 0
    assert (run["rows_read"], run["rows_loaded"]) == (result.rows_read, result.rows_loaded)


def test_list_entries_link_to_their_pages(http: httpx.Client) -> None:
    entry = next(d for d in demo(http)["datasets"] if d["slug"] == "schools")
    assert entry["title"]["en"] == "Schools" and entry["feature_count"] > 0
    assert entry["organisation"]["name"]["en"] == "Municipality of Shahr-e Nemuneh"
    assert len(entry["extent"]["bbox"]) == 4 and entry["geometry_type"] == "Point"
    self_href = next(link["href"] for link in entry["links"] if link["rel"] == "self")
    assert get(http, path=urlsplit(self_href).path)["slug"] == "schools"


def test_every_published_dataset_has_a_search_document(database_url: str) -> None:
    with psycopg.connect(libpq_dsn(database_url)) as conn:
        missing = conn.execute("SELECT slug FROM catalog.datasets WHERE current_version_id "
                               "IS NOT NULL AND coalesce(search_text, '') = ''").fetchall()
    assert missing == []


def test_full_text_search_can_use_the_gin_index(database_url: str) -> None:
    with psycopg.connect(libpq_dsn(database_url)) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT id FROM catalog.datasets WHERE to_tsvector('simple'::regconfig, "
            "search_text) @@ to_tsquery('simple'::regconfig, %s)", ["'build':*"]))
    assert "ix_datasets_search_text" in plan


# --- HTML ----------------------------------------------------------------------------------


def html(http: httpx.Client, path: str, params: dict[str, str] | None = None,
         **headers: str) -> str:
    r = http.get(path, params=params, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    return r.text


def test_json_for_programs_html_for_people(http: httpx.Client) -> None:
    assert http.get("/datasets").headers["content-type"].startswith("application/json")
    r = http.get("/datasets", headers={"Accept": "application/json"})
    assert r.headers["content-type"].startswith("application/json")
    page = html(http, "/datasets", Accept=BROWSER_ACCEPT, **EN)
    assert '<html lang="en" dir="ltr">' in page and "Buildings" in page
    assert '<html lang="en" dir="ltr">' in html(http, "/datasets", {"f": "html"}, **EN)
    r = http.get("/datasets", params={"f": "json"}, headers={"Accept": BROWSER_ACCEPT})
    assert r.headers["content-type"].startswith("application/json")
    assert "Accept" in r.headers["vary"]
    page = html(http, "/datasets/buildings", Accept=BROWSER_ACCEPT, **EN)
    assert "Date built" in page and "year_built" in page and "/collections/buildings" in page


def test_persian_pages_are_right_to_left(http: httpx.Client) -> None:
    page = html(http, "/datasets", {"f": "html", "lang": "fa", "q": "ساختمان"})
    assert '<html lang="fa" dir="rtl">' in page and "ساختمان‌ها" in page
    page = html(http, "/datasets", {"f": "html"}, **{"Accept-Language": "fa-IR,fa;q=0.9"})
    assert 'dir="rtl"' in page
    d = get(http, path="/datasets/buildings")
    page = html(http, "/datasets/buildings", {"f": "html", "lang": "fa"})
    assert '<html lang="fa" dir="rtl">' in page and "تاریخ ساخت" in page
    shown = to_jalali_string(date.fromisoformat(d["modified"][:10]), "fa")
    assert shown in page  # dates in the Jalali calendar with Persian digits


def test_html_search_page_keeps_filters_and_escapes_input(http: httpx.Client) -> None:
    page = html(http, "/datasets", {"f": "html", "theme": "traffic", "q": "<script>x"})
    assert "<script>x" not in page and "&lt;script&gt;x" in page
    assert 'name="theme" value="traffic"' in page and 'aria-current="true"' in page
    page = html(http, "/datasets", {"f": "html", "limit": "5", "organisation":
                                    "nemuneh-municipality"})
    assert 'rel="next"' in page and "offset=5" in page


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(("params", "words"), [
    ({"bbox": "1,2,3"}, ["bbox", "4 numbers"]),
    ({"bbox": "a,b,c,d"}, ["bbox"]),
    ({"bbox": "51,36,52,35"}, ["bbox", "minLat"]),
    ({"bbox": "51,35,200,36"}, ["bbox", "longitudes"]),
    ({"bbox": "nan,35,52,36"}, ["bbox"]),
    ({"sort": "size"}, ["sort", "relevance", "-modified"]),
    ({"limit": "0"}, ["limit"]),
    ({"limit": "101"}, ["limit", "100"]),
    ({"limit": "many"}, ["limit"]),
    ({"offset": "-1"}, ["offset"]),
    ({"offset": "99999999999999999999"}, ["offset"]),
    ({"keyword": "a\x00b"}, ["keyword", "NUL"]),
    ({"theme": "weather"}, ["theme", "weather", "land-use"]),
    ({"geometry_type": "raster"}, ["geometry_type", "polygon"]),
    ({"format": "docx"}, ["format", "geojson"]),
    ({"f": "xml"}, ["f", "html"]),
    ({"q": "x" * 501}, ["q", "500"]),
])
def test_bad_input_is_a_400_problem(http: httpx.Client, params: dict[str, str],
                                    words: list[str]) -> None:
    problem(http.get("/datasets", params=params), 400, *words)


def test_unknown_dataset_is_a_404_problem(http: httpx.Client) -> None:
    body = problem(http.get("/datasets/nope"), 404, "'nope'", "/datasets")
    assert body["instance"] == "/datasets/nope"
    problem(http.get("/datasets/building"), 404, "did you mean 'buildings'")
    problem(http.get("/datasets/a%00b"), 404)
    problem(http.get("/datasets/buildings", params={"f": "pdf"}), 400, "f")
    problem(http.get("/datasets/nope", headers={"Accept": BROWSER_ACCEPT}), 404)


# --- the migration -------------------------------------------------------------------------


def test_migration_backfills_and_indexes_existing_datasets(server_url: str) -> None:
    from alembic import command

    from catalog.database import get_engine
    from catalog.migrate import alembic_config

    name = "shahr_test_search_migration"
    create_database(server_url, name)
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        ensure_postgis(url)
        upgrade(url, "0001")
        with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
            conn.execute("INSERT INTO catalog.organisations (slug, name_en) VALUES ('o', 'Org')")
            conn.execute("INSERT INTO catalog.datasets (slug, organisation_id, title_fa, theme, "
                         "keywords, licence) VALUES ('old', 1, 'شهرک‌ها', 'housing', "
                         "'{مسكن}', 'CC0-1.0')")
            conn.execute("INSERT INTO catalog.fields (dataset_id, position, name, source_name, "
                         "type, label_en) VALUES (1, 1, 'floor_area', 'A', 'number', 'Floor')")
        upgrade(url)
        with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
            text = conn.execute("SELECT search_text FROM catalog.datasets").fetchone()[0]
            for word in ("شهرک", "ها", "شهرکها", "مسکن", "floor", "area", "org", "housing"):
                assert word in text.split()
            hit = conn.execute("SELECT count(*) FROM catalog.datasets WHERE to_tsvector("
                               "'simple'::regconfig, search_text) @@ to_tsquery("
                               "'simple'::regconfig, %s)", [tsquery_text("شهركها")]).fetchone()
            assert hit == (1,)
        command.downgrade(alembic_config(url), "0001")
        with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
            cols = conn.execute("SELECT column_name FROM information_schema.columns WHERE "
                                "table_schema = 'catalog' AND table_name = 'datasets'").fetchall()
            assert ("search_text",) not in cols
    finally:
        get_engine(url).dispose()
        drop_database(server_url, name)
