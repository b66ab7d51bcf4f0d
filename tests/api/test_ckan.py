"""The CKAN action API, driven by the real CKAN client (ckanapi's RemoteCKAN, which POSTs
JSON to /api/action/...) and by plain HTTP (GET on /api/3/action/...), against the demo
city. Other test modules publish datasets into the same database (organisation
"test-org"), so assertions look at the demo's two organisations."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest
from ckanapi import NotFound, RemoteCKAN, SearchQueryError, ValidationError
from ckanapi.errors import CKANAPIError, NotAuthorized

from catalog.search import FORMATS
from etl.demo.writers import DATASETS

pytestmark = pytest.mark.usefixtures("demo_loaded")
DEMO = set(DATASETS)
TRAFFIC = {"roads", "crashes", "traffic-sensors"}
INFRASTRUCTURE = {"schools", "hospitals", "fire-stations", "metro-stations", "bus-stops",
                  "metro-lines"}
MUNICIPALITY = DEMO - TRAFFIC


@pytest.fixture
def ckan(live_server: str) -> RemoteCKAN:
    with RemoteCKAN(live_server) as client:
        yield client


def names(result: dict[str, Any]) -> list[str]:
    return [p["name"] for p in result["results"]]


# --- with ckanapi ------------------------------------------------------------------------------


def test_status_show(ckan: RemoteCKAN, live_server: str) -> None:
    status = ckan.action.status_show()
    assert status["site_url"] == live_server
    assert status["ckan_version"].startswith("2.") and status["api_version"] == 3


def test_package_list(ckan: RemoteCKAN) -> None:
    listed = ckan.action.package_list()
    assert set(listed) >= DEMO and listed == sorted(listed)
    assert ckan.action.package_list(limit=2, offset=1) == listed[1:3]


def test_package_show(ckan: RemoteCKAN, live_server: str) -> None:
    pkg = ckan.action.package_show(id="buildings")
    assert pkg["name"] == "buildings" and pkg["title"] == "Buildings"
    assert pkg["title_translated"] == {"fa": "ساختمان‌ها", "en": "Buildings"}
    assert pkg["notes"].startswith("Building footprints")
    assert {"name": "housing"}.items() <= pkg["tags"][1].items()
    assert [t["name"] for t in pkg["tags"]][:4] == ["مسکن", "housing", "ساختمان", "buildings"]
    assert pkg["num_tags"] == len(pkg["tags"])
    assert pkg["organization"]["name"] == "nemuneh-municipality"
    assert pkg["organization"]["title"] == "Municipality of Shahr-e Nemuneh"
    assert pkg["owner_org"] == pkg["organization"]["id"]
    assert pkg["groups"][0]["name"] == "housing"
    assert pkg["license_id"] == "CC-BY-4.0" and pkg["isopen"] is True
    assert pkg["state"] == "active" and pkg["private"] is False and pkg["type"] == "dataset"
    modified = datetime.fromisoformat(pkg["metadata_modified"])
    assert modified.tzinfo is None  # CKAN's form: UTC without an offset
    res = pkg["resources"]
    assert [r["format"] for r in res] == ["CSV", "GeoJSON", "GeoJSONSeq", "GeoPackage", "SHP",
                                          "KML", "FlatGeobuf", "Parquet", "XLSX"]
    assert [r["url"] for r in res] == [
        f"{live_server}/datasets/buildings/download?format={f}" for f in FORMATS]
    assert res[0]["mimetype"] == "text/csv" and res[1]["mimetype"] == "application/geo+json"
    assert all(r["package_id"] == pkg["id"] for r in res) and pkg["num_resources"] == 9
    extras = {e["key"]: e["value"] for e in pkg["extras"]}
    spatial = json.loads(extras["spatial"])
    assert spatial["type"] == "Polygon" and 51 < spatial["coordinates"][0][0][0] < 52
    assert extras["theme"] == "housing" and extras["update_frequency"] == "annual"
    assert extras["title_fa"] == "ساختمان‌ها" and extras["title_en"] == "Buildings"
    assert extras["description_fa"].startswith("جای ساختمان‌ها")
    # The id works as well as the name, as in CKAN.
    assert ckan.action.package_show(id=pkg["id"]) == pkg
    assert ckan.action.resource_show(id=res[3]["id"]) == res[3]


def test_unknown_things_raise_not_found(ckan: RemoteCKAN) -> None:
    with pytest.raises(NotFound):
        ckan.action.package_show(id="no-such-dataset")
    with pytest.raises(NotFound):
        ckan.action.organization_show(id="no-such-org")
    with pytest.raises(NotFound):
        ckan.action.resource_show(id="00000000-0000-0000-0000-000000000000")
    with pytest.raises(ValidationError):
        ckan.action.package_show()  # no id
    with pytest.raises(NotAuthorized):
        ckan.action.package_create(name="x")
    with pytest.raises(CKANAPIError):
        ckan.action.no_such_action()


def test_package_search_words_are_persian_aware(ckan: RemoteCKAN) -> None:
    # Arabic kaf and yeh find the Persian spelling, as the catalogue's own search does.
    found = ckan.action.package_search(q="كاربري", rows=100)
    assert {"landuse-parcels", "buildings"} <= set(names(found))
    assert set(names(ckan.action.package_search(q="مترو", rows=100))) == \
        {"metro-stations", "metro-lines"}
    assert ckan.action.package_search(q="zzzqqq")["count"] == 0


def test_package_search_filters_and_facets(ckan: RemoteCKAN) -> None:
    res = ckan.action.package_search(
        fq="organization:nemuneh-traffic", rows=2, sort="name asc",
        **{"facet.field": ["groups", "organization", "res_format"]})
    assert res["count"] == 3 and names(res) == ["crashes", "roads"]
    assert res["facets"]["groups"] == {"traffic": 3}
    assert res["facets"]["organization"] == {"nemuneh-traffic": 3}
    assert res["facets"]["res_format"]["CSV"] == 3 and len(res["facets"]["res_format"]) == 9
    org_items = res["search_facets"]["organization"]["items"]
    assert org_items == [{"name": "nemuneh-traffic", "count": 3,
                          "display_name": "Nemuneh Transport and Traffic Organisation"}]
    # start pages on
    rest = ckan.action.package_search(fq="organization:nemuneh-traffic", rows=2, start=2,
                                      sort="name asc")
    assert names(rest) == ["traffic-sensors"]

    metro = ckan.action.package_search(fq="tags:metro", rows=10)
    assert set(names(metro)) == {"metro-stations", "metro-lines"}
    both = ckan.action.package_search(
        fq='+groups:infrastructure +organization:nemuneh-municipality tags:"public transport"',
        rows=50)
    assert set(names(both)) == {"metro-stations", "metro-lines", "bus-stops"}
    alternatives = ckan.action.package_search(
        fq="organization:(nemuneh-traffic OR nemuneh-municipality) res_format:CSV",
        rows=1000, **{"facet.field": ["organization"]})
    assert set(names(alternatives)) == DEMO
    assert alternatives["facets"]["organization"] == {"nemuneh-municipality": 9,
                                                      "nemuneh-traffic": 3}
    fq_list = ckan.action.package_search(
        fq_list=["groups:infrastructure", "organization:nemuneh-municipality",
                 "-tags:metro"], rows=50)
    assert set(names(fq_list)) == INFRASTRUCTURE - {"metro-stations", "metro-lines"}
    assert ckan.action.package_search(fq="res_format:DOCX")["count"] == 0
    # Field clauses in q are filters, as CKAN's (Solr's) q understands them.
    assert set(names(ckan.action.package_search(q="organization:nemuneh-traffic", rows=9))) \
        == TRAFFIC
    assert ckan.action.package_search(q="*:*", fq="organization:nemuneh-traffic")["count"] == 3
    bbox = ckan.action.package_search(fq="organization:nemuneh-traffic",
                                      ext_bbox="51.0,35.4,51.8,36.0")  # ckanext-spatial's
    assert bbox["count"] == 3
    assert ckan.action.package_search(fq="organization:nemuneh-traffic",
                                      ext_bbox="10,10,11,11")["count"] == 0


def test_package_search_facet_limit_and_tags(ckan: RemoteCKAN) -> None:
    res = ckan.action.package_search(
        fq="organization:nemuneh-municipality", rows=0,
        **{"facet.field": ["tags", "license_id"], "facet.limit": 3})
    assert res["count"] == 9 and res["results"] == []
    tags = res["facets"]["tags"]
    assert len(tags) == 3 and set(tags.values()) == {9}  # the keywords every demo set has
    assert res["facets"]["license_id"] == {"CC-BY-4.0": 9}
    assert [i["count"] for i in res["search_facets"]["tags"]["items"]] == [9, 9, 9]
    everything = ckan.action.package_search(
        fq="organization:nemuneh-municipality", rows=0,
        **{"facet.field": ["tags"], "facet.limit": -1})
    assert len(everything["facets"]["tags"]) > 20


def test_package_search_dates_sort_and_rows(ckan: RemoteCKAN) -> None:
    demo = "organization:(nemuneh-traffic OR nemuneh-municipality)"
    since = ckan.action.package_search(fq=f"{demo} metadata_modified:[2000-01-01T00:00:00Z TO *]",
                                       rows=1000)
    assert since["count"] == 12
    assert ckan.action.package_search(
        fq=f"{demo} metadata_modified:[* TO 2000-01-01T00:00:00Z]")["count"] == 0
    recent = ckan.action.package_search(fq=demo, sort="metadata_modified desc", rows=12)
    stamps = [p["metadata_modified"] for p in recent["results"]]
    assert stamps == sorted(stamps, reverse=True)
    by_name = names(ckan.action.package_search(fq=demo, sort="name desc", rows=12))
    assert by_name == sorted(DEMO, reverse=True)
    capped = ckan.action.package_search(rows=5000)  # CKAN caps rows at 1000
    assert len(capped["results"]) == min(capped["count"], 1000)
    only = ckan.action.package_search(fq="name:roads", fl="name,title")
    assert only["results"] == [{"name": "roads", "title": "Road network and traffic volumes"}]


def test_package_search_errors(ckan: RemoteCKAN) -> None:
    with pytest.raises(SearchQueryError, match="unknown field"):
        ckan.action.package_search(fq="colour:red")
    with pytest.raises(SearchQueryError, match="Invalid search parameters"):
        ckan.action.package_search(rowz=3)
    with pytest.raises(ValidationError):
        ckan.action.package_search(rows="many")
    with pytest.raises(ValidationError):
        ckan.action.package_search(start=-1)
    with pytest.raises(SearchQueryError, match="facet"):
        ckan.action.package_search(**{"facet.field": ["colour"]})
    with pytest.raises(SearchQueryError, match="metadata_modified"):
        ckan.action.package_search(fq="metadata_modified:[yesterday TO *]")


def test_organizations_groups_and_tags(ckan: RemoteCKAN) -> None:
    orgs = ckan.action.organization_list()
    assert {"nemuneh-municipality", "nemuneh-traffic"} <= set(orgs)
    full = {o["name"]: o for o in ckan.action.organization_list(all_fields=True)}
    assert full["nemuneh-traffic"]["package_count"] == 3
    assert full["nemuneh-municipality"]["title_translated"]["fa"] == "شهرداری شهر نمونه"
    org = ckan.action.organization_show(id="nemuneh-traffic", include_datasets=True)
    assert org["is_organization"] and org["package_count"] == 3
    assert {p["name"] for p in org["packages"]} == TRAFFIC
    assert ckan.action.organization_show(id=org["id"])["name"] == "nemuneh-traffic"
    groups = ckan.action.group_list(all_fields=True)
    assert {g["name"] for g in groups} == {"land-use", "housing", "infrastructure", "traffic",
                                           "boundaries"}
    infra = ckan.action.group_show(id="infrastructure", include_datasets=True)
    assert {p["name"] for p in infra["packages"]} >= INFRASTRUCTURE
    tags = ckan.action.tag_list()
    assert {"metro", "مترو", "public transport"} <= set(tags) and tags == sorted(tags)
    assert ckan.action.tag_list(query="مترو") == ["مترو"]
    assert ckan.action.tag_list(query="مترو", all_fields=True)[0]["name"] == "مترو"
    licences = {lic["id"]: lic for lic in ckan.action.license_list()}
    assert licences["CC-BY-4.0"]["url"] == "https://creativecommons.org/licenses/by/4.0/"


def test_get_only_client(live_server: str) -> None:
    """ckanapi's GET mode (query parameters, values as strings) reads the same."""
    with RemoteCKAN(live_server, get_only=True) as client:
        res = client.action.package_search(fq="organization:nemuneh-traffic", rows=1,
                                           **{"facet.field": '["groups"]'})
        assert res["count"] == 3 and len(res["results"]) == 1
        assert res["facets"]["groups"] == {"traffic": 3}
        assert client.action.package_show(id="roads")["name"] == "roads"


# --- plain HTTP ---------------------------------------------------------------------------------


def test_envelope_over_get_and_post(http: httpx.Client, live_server: str) -> None:
    r = http.get("/api/3/action/package_show", params={"id": "roads"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["success"] is True and body["result"]["name"] == "roads"
    assert body["help"] == f"{live_server}/api/3/action/help_show?name=package_show"
    r = http.post("/api/3/action/package_search",
                  json={"fq": "organization:nemuneh-traffic", "rows": 1,
                        "facet.field": ["groups"]})
    assert r.status_code == 200 and r.json()["result"]["count"] == 3
    r = http.get("/api/3/action/package_search",
                 params={"fq": "organization:nemuneh-traffic", "facet.field": '["groups"]'})
    assert r.json()["result"]["facets"]["groups"] == {"traffic": 3}
    assert http.get("/api/3").json() == {"version": 3}
    doc = http.get("/api/3/action/help_show", params={"name": "package_search"}).json()
    assert "fq" in doc["result"]


def test_errors_use_ckans_envelope(http: httpx.Client) -> None:
    r = http.get("/api/3/action/package_show", params={"id": "nope"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["success"] is False and body["error"]["__type"] == "Not Found Error"
    assert body["error"]["message"].startswith("Not found")
    r = http.get("/api/3/action/package_show")
    assert r.status_code == 409
    assert r.json()["error"] == {"__type": "Validation Error", "id": ["Missing value"]}
    r = http.get("/api/3/action/package_search", params={"fq": "colour:red"})
    assert r.status_code == 409 and r.json()["error"]["__type"] == "Search Query Error"
    r = http.get("/api/3/action/nothing_like_this")
    assert r.status_code == 400 and r.json()["error"]["__type"] == "Bad Request"
    r = http.post("/api/3/action/package_search", content=b"{not json",
                  headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["success"] is False
    r = http.post("/api/3/action/package_search", json=["a list"])
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]
