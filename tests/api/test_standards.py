"""DCAT-AP 3 (JSON-LD and Turtle) and DCAT-US 1.1 (data.json) catalogues of the demo city,
over real HTTP, read back with rdflib: the same graph from both serialisations, titles in
Persian and English, a distribution per download format, licence and spatial extent."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from rdflib import Graph, Literal, Namespace, URIRef
from rdflib.compare import isomorphic

from catalog.search import FORMATS
from etl.demo.writers import DATASETS

pytestmark = [
    pytest.mark.usefixtures("demo_loaded"),
    # rdflib's own JSON-LD parser still uses its ConjunctiveGraph.
    pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning"),
]
# Plain namespaces (rdflib's closed ones warn when pytest inspects this module).
DCAT = Namespace("http://www.w3.org/ns/dcat#")
DCTERMS = Namespace("http://purl.org/dc/terms/")
FOAF = Namespace("http://xmlns.com/foaf/0.1/")
GEO = Namespace("http://www.opengis.net/ont/geosparql#")
RDF = Namespace("http://www.w3.org/1999/02/22-rdf-syntax-ns#")
XSD = Namespace("http://www.w3.org/2001/XMLSchema#")
LOCN_GEOMETRY = URIRef("http://www.w3.org/ns/locn#geometry")
VCARD = "http://www.w3.org/2006/vcard/ns#"
EU = "http://publications.europa.eu/resource/authority"
MEDIA_TYPES = {
    "csv": "text/csv", "geojson": "application/geo+json",
    "geojsonseq": "application/geo+json-seq", "gpkg": "application/geopackage+sqlite3",
    "shp": "application/zip", "kml": "application/vnd.google-earth.kml+xml",
    "fgb": "application/flatgeobuf", "parquet": "application/vnd.apache.parquet",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


@pytest.fixture(scope="module")
def graphs(live_server: str) -> dict[str, Graph]:
    out = {}
    for path, fmt, media in (("/catalog.jsonld", "json-ld", "application/ld+json"),
                             ("/catalog.ttl", "turtle", "text/turtle")):
        r = httpx.get(live_server + path, timeout=60)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith(media)
        g = Graph()
        g.parse(data=r.text, format=fmt)
        out[fmt] = g
    return out


def test_both_serialisations_hold_the_same_graph(graphs: dict[str, Graph]) -> None:
    jsonld, turtle = graphs["json-ld"], graphs["turtle"]
    assert len(jsonld) > 500
    assert isomorphic(jsonld, turtle)


@pytest.mark.parametrize("fmt", ["json-ld", "turtle"])
def test_catalogue_lists_every_demo_dataset(graphs: dict[str, Graph], live_server: str,
                                            fmt: str) -> None:
    g = graphs[fmt]
    catalogues = list(g.subjects(RDF["type"], DCAT.Catalog))
    assert catalogues == [URIRef(f"{live_server}/datasets")]
    cat = catalogues[0]
    titles = {t.language: str(t) for t in g.objects(cat, DCTERMS.title)}
    assert set(titles) == {"fa", "en"}
    listed = {str(d) for d in g.objects(cat, DCAT.dataset)}
    assert {f"{live_server}/datasets/{slug}" for slug in DATASETS} <= listed
    assert set(g.subjects(RDF["type"], DCAT.Dataset)) == {URIRef(d) for d in listed}
    assert (cat, DCTERMS.publisher, None) in g and (cat, DCTERMS.modified, None) in g


@pytest.mark.parametrize("fmt", ["json-ld", "turtle"])
def test_dataset_metadata(graphs: dict[str, Graph], live_server: str, fmt: str) -> None:
    g = graphs[fmt]
    ds = URIRef(f"{live_server}/datasets/buildings")
    assert (ds, RDF["type"], DCAT.Dataset) in g
    assert (ds, DCTERMS.title, Literal("ساختمان‌ها", lang="fa")) in g
    assert (ds, DCTERMS.title, Literal("Buildings", lang="en")) in g
    descriptions = {d.language for d in g.objects(ds, DCTERMS.description)}
    assert descriptions == {"fa", "en"}
    keywords = set(g.objects(ds, DCAT.keyword))
    assert Literal("housing", lang="en") in keywords and Literal("مسکن", lang="fa") in keywords
    assert (ds, DCAT.theme, URIRef(f"{EU}/data-theme/SOCI")) in g
    assert (ds, DCTERMS.accrualPeriodicity, URIRef(f"{EU}/frequency/ANNUAL")) in g
    modified = g.value(ds, DCTERMS.modified)
    assert modified is not None and modified.datatype == XSD.dateTime
    publisher = g.value(ds, DCTERMS.publisher)
    assert (publisher, RDF["type"], FOAF.Agent) in g
    assert {n.language for n in g.objects(publisher, FOAF.name)} == {"fa", "en"}
    contact = g.value(ds, DCAT.contactPoint)
    assert (contact, RDF["type"], URIRef(VCARD + "Organization")) in g
    assert str(g.value(contact, URIRef(VCARD + "hasEmail"))).startswith("mailto:")
    period = g.value(URIRef(f"{live_server}/datasets/crashes"), DCTERMS.temporal)
    assert (period, RDF["type"], DCTERMS.PeriodOfTime) in g
    assert g.value(period, DCAT.startDate) == Literal("2022-03-21", datatype=XSD.date)
    assert g.value(period, DCAT.endDate) == Literal("2024-03-19", datatype=XSD.date)


@pytest.mark.parametrize("fmt", ["json-ld", "turtle"])
def test_spatial_extent(graphs: dict[str, Graph], live_server: str, fmt: str) -> None:
    g = graphs[fmt]
    where = g.value(URIRef(f"{live_server}/datasets/districts"), DCTERMS.spatial)
    assert (where, RDF["type"], DCTERMS.Location) in g
    bbox = g.value(where, DCAT.bbox)
    assert bbox.datatype == GEO.wktLiteral and str(bbox).startswith("POLYGON((51.")
    geometry = g.value(where, LOCN_GEOMETRY)
    assert geometry.datatype == GEO.geoJSONLiteral
    shape = json.loads(str(geometry))
    assert shape["type"] == "Polygon"
    lons = [x for x, _ in shape["coordinates"][0]]
    lats = [y for _, y in shape["coordinates"][0]]
    assert 51.0 < min(lons) < max(lons) < 51.8 and 35.4 < min(lats) < max(lats) < 36.0


@pytest.mark.parametrize("fmt", ["json-ld", "turtle"])
def test_a_distribution_per_format_with_licence(graphs: dict[str, Graph], live_server: str,
                                                fmt: str) -> None:
    g = graphs[fmt]
    for slug in DATASETS:
        ds = URIRef(f"{live_server}/datasets/{slug}")
        dists = list(g.objects(ds, DCAT.distribution))
        assert len(dists) == len(FORMATS) == 9
        found = {}
        for d in dists:
            assert (d, RDF["type"], DCAT.Distribution) in g
            url = str(g.value(d, DCAT.downloadURL))
            assert g.value(d, DCAT.accessURL) == g.value(d, DCAT.downloadURL)
            assert url.startswith(f"{live_server}/datasets/{slug}/download?format=")
            found[url.rsplit("=", 1)[1]] = str(g.value(d, DCAT.mediaType))
            licence = g.value(d, DCTERMS.license)
            assert licence == URIRef("http://spdx.org/licenses/CC-BY-4.0")
            assert (licence, RDF["type"], DCTERMS.LicenseDocument) in g
        assert found == {f: f"https://www.iana.org/assignments/media-types/{m}"
                         for f, m in MEDIA_TYPES.items()}
    csv = URIRef(f"{live_server}/datasets/roads#distribution-csv")
    assert g.value(csv, DCTERMS["format"]) == URIRef(f"{EU}/file-type/CSV")
    assert g.value(csv, DCTERMS.conformsTo) == \
        URIRef(f"{live_server}/datasets/roads/datapackage.json")


# --- DCAT-US 1.1 ---------------------------------------------------------------------------------


def test_data_json(http: httpx.Client, live_server: str) -> None:
    r = http.get("/data.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["conformsTo"] == "https://project-open-data.cio.gov/v1.1/schema"
    assert body["@type"] == "dcat:Catalog"
    by_id = {d["identifier"]: d for d in body["dataset"]}
    assert {f"{live_server}/datasets/{slug}" for slug in DATASETS} <= set(by_id)
    required = ("title", "description", "keyword", "modified", "publisher", "contactPoint",
                "identifier", "accessLevel")
    for d in body["dataset"]:
        assert all(d.get(k) for k in required), d
        assert d["accessLevel"] == "public" and d["@type"] == "dcat:Dataset"
        assert d["contactPoint"]["@type"] == "vcard:Contact"
    d: dict[str, Any] = by_id[f"{live_server}/datasets/crashes"]
    assert d["title"] == "Road traffic crashes"
    assert d["publisher"] == {"@type": "org:Organization",
                              "name": "Nemuneh Transport and Traffic Organisation"}
    assert d["contactPoint"]["hasEmail"].startswith("mailto:")
    assert d["license"] == "https://creativecommons.org/licenses/by/4.0/"
    assert d["accrualPeriodicity"] == "R/P1M"
    assert d["describedBy"] == f"{live_server}/datasets/crashes/datapackage.json"
    w, s, e, n = map(float, d["spatial"].split(","))
    assert 51.0 < w < e < 51.8 and 35.4 < s < n < 36.0
    assert [x["format"] for x in d["distribution"]] == [
        "CSV", "GeoJSON", "GeoJSONSeq", "GeoPackage", "SHP", "KML", "FlatGeobuf", "Parquet",
        "XLSX"]
    assert {x["mediaType"] for x in d["distribution"]} == set(MEDIA_TYPES.values())
    assert all(x["downloadURL"].startswith(f"{live_server}/datasets/crashes/download?format=")
               for x in d["distribution"])
