"""Open-data metadata standards, built from the catalogue: a Frictionless Data Package (the
data dictionary as a Table Schema), a DCAT-AP 3 graph (rdflib; served as JSON-LD and
Turtle), a DCAT-US 1.1 ``data.json``, and CKAN-style package, resource, organisation and
group dicts (the shapes CKAN's action API answers with).

Everything is built from *records*: one dict per published dataset, read by
:func:`load_records` in a single query (metadata, organisation, data dictionary, current
version, extent). The builders are pure functions of records and the public base URL, so
the same dataset reads the same in every standard.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, GEO, RDF, SKOS, XSD

from catalog.search import FORMATS

__all__ = [
    "DISTRIBUTIONS",
    "THEME_TITLES",
    "Distribution",
    "ckan_group",
    "ckan_organisation",
    "ckan_package",
    "ckan_resource",
    "ckan_tag",
    "ckan_time",
    "datapackage",
    "dcat_graph",
    "dcat_us",
    "download_url",
    "load_organisations",
    "load_records",
    "organisation_id",
    "package_id",
    "resource_id",
    "to_jsonld",
    "to_turtle",
]

# --- vocabularies ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """A download format as the standards name it."""

    code: str  # ?format= value
    label: str  # CKAN `format`, DCAT title
    media_type: str  # IANA media type (as the download answers with)
    eu_file_type: str | None  # EU "file type" authority code, where there is one


DISTRIBUTIONS: dict[str, Distribution] = {d.code: d for d in (
    Distribution("csv", "CSV", "text/csv", "CSV"),
    Distribution("geojson", "GeoJSON", "application/geo+json", "GEOJSON"),
    Distribution("geojsonseq", "GeoJSONSeq", "application/geo+json-seq", None),
    Distribution("gpkg", "GeoPackage", "application/geopackage+sqlite3", "GPKG"),
    Distribution("shp", "SHP", "application/zip", "SHP"),  # a zipped shapefile
    Distribution("kml", "KML", "application/vnd.google-earth.kml+xml", "KML"),
    Distribution("fgb", "FlatGeobuf", "application/flatgeobuf", None),
    Distribution("parquet", "Parquet", "application/vnd.apache.parquet", "PARQUET"),
    Distribution("xlsx", "XLSX",
                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "XLSX"),
)}
assert tuple(DISTRIBUTIONS) == FORMATS, "one entry per download format, in the same order"

THEME_TITLES: dict[str, dict[str, str]] = {
    "land-use": {"en": "Land use", "fa": "کاربری زمین"},
    "housing": {"en": "Housing", "fa": "مسکن"},
    "infrastructure": {"en": "Infrastructure", "fa": "زیرساخت"},
    "traffic": {"en": "Traffic", "fa": "ترافیک"},
    "boundaries": {"en": "Boundaries", "fa": "مرزها"},
}
# EU data themes (DCAT-AP's dcat:theme vocabulary) for our themes.
EU_THEMES = {"land-use": "REGI", "housing": "SOCI", "infrastructure": "REGI",
             "traffic": "TRAN", "boundaries": "REGI"}
# The manifest's update_frequency in the EU frequency vocabulary (dct:accrualPeriodicity)
# and as a DCAT-US ISO 8601 repeating duration. "biannual" is twice a year.
EU_FREQUENCIES = {
    "continuous": "UPDATE_CONT", "daily": "DAILY", "weekly": "WEEKLY", "monthly": "MONTHLY",
    "quarterly": "QUARTERLY", "biannual": "ANNUAL_2", "annual": "ANNUAL",
    "irregular": "IRREG", "never": "NEVER", "unknown": "UNKNOWN",
}
ISO_FREQUENCIES = {
    "continuous": "R/PT1S", "daily": "R/P1D", "weekly": "R/P1W", "monthly": "R/P1M",
    "quarterly": "R/P3M", "biannual": "R/P6M", "annual": "R/P1Y", "irregular": "irregular",
}
LICENCE_PAGES = {  # SPDX id -> the licence's own page (CKAN's license_url)
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "CC-BY-SA-4.0": "https://creativecommons.org/licenses/by-sa/4.0/",
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "ODbL-1.0": "https://opendatacommons.org/licenses/odbl/1-0/",
    "PDDL-1.0": "https://opendatacommons.org/licenses/pddl/1-0/",
    "ODC-By-1.0": "https://opendatacommons.org/licenses/by/1-0/",
}
OPEN_LICENCES = {*LICENCE_PAGES, "CC-BY-3.0", "CC-BY-SA-3.0", "OGL-UK-3.0"}

SITE_TITLE = {"en": "Shahr open data", "fa": "داده‌های باز شهر"}
SITE_DESCRIPTION = {
    "en": "Municipal open data: land use, housing, infrastructure and traffic, with maps, "
          "standard APIs and downloads.",
    "fa": "داده‌های باز شهری: کاربری زمین، مسکن، زیرساخت و ترافیک، با نقشه، "
          "رابط‌های استاندارد و دریافت فایل.",
}
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"

EU = "http://publications.europa.eu/resource/authority"
IANA = "https://www.iana.org/assignments/media-types"
SPDX = "http://spdx.org/licenses"
LOCN = Namespace("http://www.w3.org/ns/locn#")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
ADMS = Namespace("http://www.w3.org/ns/adms#")
JSONLD_CONTEXT = {
    "dcat": str(DCAT), "dct": str(DCTERMS), "foaf": str(FOAF), "vcard": str(VCARD),
    "locn": str(LOCN), "geo": str(GEO), "skos": str(SKOS), "adms": str(ADMS),
    "xsd": str(XSD), "rdf": str(RDF),
}
_ARABIC_SCRIPT = re.compile(r"[\u0600-\u06FF\u0750-\u077F\uFB50-\uFDFF\uFE70-\uFEFF]")
_NS = uuid.UUID("6d2f8c1e-5a3b-4f0e-9b7a-2c1d4e5f6a70")  # Shahr's namespace for CKAN ids


# --- records ---------------------------------------------------------------------------------

_RECORDS_SQL = """
SELECT d.id, d.slug, d.title_fa, d.title_en, d.description_fa, d.description_en, d.theme,
       d.keywords, d.licence, d.publisher, d.contact_name, d.contact_email,
       d.update_frequency, d.temporal_start, d.temporal_end, d.synthetic, d.feature_count,
       d.geometry_type, d.source_crs, d.key_field, d.created, d.modified,
       v.number AS version, v.published, v.checksum,
       (SELECT min(pv.published) FROM catalog.versions pv WHERE pv.dataset_id = d.id)
           AS issued,
       o.slug AS org_slug, o.name_fa AS org_name_fa, o.name_en AS org_name_en,
       o.url AS org_url, o.email AS org_email, o.created AS org_created,
       ST_XMin(d.spatial_extent) AS x0, ST_YMin(d.spatial_extent) AS y0,
       ST_XMax(d.spatial_extent) AS x1, ST_YMax(d.spatial_extent) AS y1,
       ST_AsText(d.spatial_extent, 9) AS extent_wkt,
       ST_AsGeoJSON(d.spatial_extent, 9) AS extent_geojson,
       ST_AsText(ST_Centroid(d.spatial_extent), 9) AS centroid_wkt,
       coalesce((SELECT json_agg(json_build_object(
                   'name', f.name, 'type', f.type, 'unit', f.unit, 'label_fa', f.label_fa,
                   'label_en', f.label_en, 'description_fa', f.description_fa,
                   'description_en', f.description_en, 'is_key', f.is_key,
                   'calendar', f.calendar) ORDER BY f.position)
                 FROM catalog.fields f WHERE f.dataset_id = d.id), '[]') AS fields
FROM catalog.datasets d
JOIN catalog.versions v ON v.id = d.current_version_id
JOIN catalog.organisations o ON o.id = d.organisation_id
WHERE %(slugs)s::text[] IS NULL OR d.slug = ANY(%(slugs)s::text[])
ORDER BY d.slug
"""

_ORGS_SQL = """
SELECT o.slug, o.name_fa, o.name_en, o.url, o.email, o.created,
       count(d.id) FILTER (WHERE d.current_version_id IS NOT NULL) AS package_count
FROM catalog.organisations o LEFT JOIN catalog.datasets d ON d.organisation_id = o.id
GROUP BY o.id ORDER BY o.slug
"""


async def load_records(conn: psycopg.AsyncConnection, slugs: Sequence[str] | None = None
                       ) -> list[dict[str, Any]]:
    """Every published dataset (or those in `slugs`), ordered by slug, with its organisation
    (`org_*`), `fields` (the data dictionary), current `version`, first publication
    (`issued`) and extent (`x0`..`y1`, `extent_wkt`, `extent_geojson`)."""
    wanted = None if slugs is None else [s for s in slugs if "\x00" not in s]
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_RECORDS_SQL, {"slugs": wanted})
        return await cur.fetchall()


async def load_organisations(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Every organisation with its number of published datasets (`package_count`)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_ORGS_SQL)
        return await cur.fetchall()


# --- small helpers ---------------------------------------------------------------------------


def _pick(rec: dict[str, Any], prefix: str) -> str | None:
    """English, else Persian (the single-language standards' choice)."""
    return rec.get(f"{prefix}_en") or rec.get(f"{prefix}_fa")


def _pair(rec: dict[str, Any], prefix: str) -> dict[str, str]:
    return {lang: rec[f"{prefix}_{lang}"] for lang in ("fa", "en") if rec.get(f"{prefix}_{lang}")}


def _iso(v: date | datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def ckan_time(v: datetime | None) -> str | None:
    """CKAN's timestamp form: UTC, no offset, microseconds (2024-05-01T10:00:00.123456)."""
    if v is None:
        return None
    if v.tzinfo is not None:
        v = v.astimezone(UTC).replace(tzinfo=None)
    return v.isoformat(timespec="microseconds")


def _lang_of(text: str) -> str:
    return "fa" if _ARABIC_SCRIPT.search(text) else "en"


def dataset_url(base: str, slug: str) -> str:
    return f"{base}/datasets/{slug}"


def download_url(base: str, slug: str, fmt: str) -> str:
    return f"{base}/datasets/{slug}/download?format={fmt}"


def licence_url(licence: str) -> str:
    return LICENCE_PAGES.get(licence, f"https://spdx.org/licenses/{licence}.html")


def _bbox(rec: dict[str, Any]) -> list[float] | None:
    if rec.get("x0") is None:
        return None
    return [rec["x0"], rec["y0"], rec["x1"], rec["y1"]]


def _contact_email(rec: dict[str, Any]) -> str | None:
    return rec.get("contact_email") or rec.get("org_email")


# --- Frictionless Data Package ---------------------------------------------------------------


def _table_field(f: dict[str, Any]) -> dict[str, Any]:
    """One Table Schema field. `title`/`description` are the English (else Persian) text;
    both languages are in the extra properties `titles` and `descriptions`, and the unit
    in the extra property `unit` (Table Schema has none of its own)."""
    out: dict[str, Any] = {"name": f["name"], "type": f["type"], "format": "default"}
    title = f.get("label_en") or f.get("label_fa")
    if title:
        out["title"] = title
    description = f.get("description_en") or f.get("description_fa")
    if description:
        out["description"] = description
    if titles := _pair(f, "label"):
        out["titles"] = titles
    if descriptions := _pair(f, "description"):
        out["descriptions"] = descriptions
    if f.get("unit"):
        out["unit"] = f["unit"]
    if f.get("calendar") == "jalali":
        out["calendar"] = "jalali"  # published as Gregorian ISO dates; the source was Jalali
    if f.get("is_key"):
        out["constraints"] = {"required": True, "unique": True}
    return out


def _free(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    return name


def _csv_extra_fields(rec: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The CSV download's columns besides the published ones: `fid` first, and the geometry
    last — `lon`/`lat` for points, else WKT `geometry` (a name a column already has gets a
    trailing `_`), in EPSG:4326."""
    taken = {f["name"] for f in rec["fields"]} | {"fid"}
    fid = {"name": "fid", "type": "integer", "format": "default", "title": "Feature id",
           "titles": {"en": "Feature id", "fa": "شناسه عارضه"},
           "description": "The feature's row in the source file (its id in the API).",
           "constraints": {"required": True, "unique": True}}
    if (rec.get("geometry_type") or "").lower() == "point":
        geometry = [
            {"name": _free(name, taken), "type": "number", "format": "default",
             "title": en, "titles": {"en": en, "fa": fa}, "unit": "degree",
             "description": f"WGS 84 (EPSG:4326) {en.lower()} of the point."}
            for name, en, fa in (("lon", "Longitude", "طول جغرافیایی"),
                                 ("lat", "Latitude", "عرض جغرافیایی"))]
    else:
        geometry = [{"name": _free("geometry", taken), "type": "string", "format": "default",
                     "title": "Geometry", "titles": {"en": "Geometry", "fa": "هندسه"},
                     "description": "The feature's geometry as WKT, in WGS 84 (EPSG:4326) "
                                    "longitude/latitude."}]
    return fid, geometry


def datapackage(rec: dict[str, Any], base: str) -> dict[str, Any]:
    """The dataset's data dictionary as a Frictionless (tabular) Data Package: one resource,
    the CSV download, whose Table Schema lists its columns in order — `fid`, the published
    fields (types, units, fa/en titles and descriptions), the geometry — with the key field
    as primaryKey (else fid)."""
    slug = rec["slug"]
    fid, geometry = _csv_extra_fields(rec)
    fields = [fid, *(_table_field(f) for f in rec["fields"]), *geometry]
    schema: dict[str, Any] = {"fields": fields, "missingValues": [""],
                              "primaryKey": [rec.get("key_field") or "fid"]}
    org = _pick(rec, "org_name") or rec["org_slug"]
    contributors: list[dict[str, Any]] = [
        {"title": org, "role": "publisher",
         **({"path": rec["org_url"]} if rec.get("org_url") else {}),
         **({"email": rec["org_email"]} if rec.get("org_email") else {})}]
    if rec.get("contact_name") or rec.get("contact_email"):
        contributors.append({"title": rec.get("contact_name") or org, "role": "maintainer",
                             **({"email": rec["contact_email"]}
                                if rec.get("contact_email") else {})})
    pkg: dict[str, Any] = {
        "profile": "tabular-data-package",
        "name": slug,
        "id": dataset_url(base, slug),
        "title": _pick(rec, "title") or slug,
        "titles": _pair(rec, "title"),
        "homepage": f"{dataset_url(base, slug)}?f=html",
        "version": str(rec["version"]),
        "created": _iso(rec.get("issued") or rec.get("created")),
        "keywords": list(rec.get("keywords") or []),
        "licenses": [{"name": rec["licence"], "path": licence_url(rec["licence"]),
                      "title": rec["licence"]}],
        "contributors": contributors,
        "resources": [{
            "name": slug,
            "path": download_url(base, slug, "csv"),
            "profile": "tabular-data-resource",
            "title": _pick(rec, "title") or slug,
            "format": "csv", "mediatype": "text/csv", "encoding": "utf-8",
            "schema": schema,
        }],
        # Extra properties (Data Package allows them): where and when the data applies.
        "spatial": {"bbox": _bbox(rec), "crs": CRS84},
        "temporal": {"start": _iso(rec.get("temporal_start")),
                     "end": _iso(rec.get("temporal_end"))},
        "modified": _iso(rec.get("modified")),
    }
    if description := _pick(rec, "description"):
        pkg["description"] = description
    if descriptions := _pair(rec, "description"):
        pkg["descriptions"] = descriptions
    return pkg


# --- DCAT-AP 3 -------------------------------------------------------------------------------


def _add_texts(g: Graph, node: URIRef | BNode, prop: URIRef, rec: dict[str, Any],
               prefix: str) -> None:
    for lang, text in _pair(rec, prefix).items():
        g.add((node, prop, Literal(text, lang=lang)))


def _agent(g: Graph, base: str, rec: dict[str, Any]) -> URIRef:
    agent = URIRef(f"{base}/datasets?organisation={rec['org_slug']}")
    if (agent, RDF.type, FOAF.Agent) not in g:
        g.add((agent, RDF.type, FOAF.Agent))
        g.add((agent, RDF.type, FOAF.Organization))
        _add_texts(g, agent, FOAF.name, rec, "org_name")
        if rec.get("org_url"):
            g.add((agent, FOAF.homepage, URIRef(rec["org_url"])))
        if rec.get("org_email"):
            g.add((agent, FOAF.mbox, URIRef(f"mailto:{rec['org_email']}")))
    return agent


def _dataset_node(g: Graph, base: str, rec: dict[str, Any]) -> URIRef:
    slug = rec["slug"]
    ds = URIRef(dataset_url(base, slug))
    g.add((ds, RDF.type, DCAT.Dataset))
    g.add((ds, DCTERMS.identifier, Literal(str(ds))))
    _add_texts(g, ds, DCTERMS.title, rec, "title")
    _add_texts(g, ds, DCTERMS.description, rec, "description")
    for kw in rec.get("keywords") or []:
        g.add((ds, DCAT.keyword, Literal(kw, lang=_lang_of(kw))))
    g.add((ds, DCAT.theme, URIRef(f"{EU}/data-theme/{EU_THEMES[rec['theme']]}")))
    for lang in ("FAS", "ENG"):
        g.add((ds, DCTERMS.language, URIRef(f"{EU}/language/{lang}")))
    g.add((ds, DCAT.landingPage, URIRef(f"{dataset_url(base, slug)}?f=html")))
    g.add((ds, DCTERMS.publisher, _agent(g, base, rec)))
    g.add((ds, DCTERMS.accrualPeriodicity,
           URIRef(f"{EU}/frequency/{EU_FREQUENCIES.get(rec['update_frequency'], 'UNKNOWN')}")))
    if rec.get("issued"):
        g.add((ds, DCTERMS.issued, Literal(rec["issued"], datatype=XSD.dateTime)))
    g.add((ds, DCTERMS.modified, Literal(rec["modified"], datatype=XSD.dateTime)))
    g.add((ds, URIRef(f"{DCAT}version"), Literal(str(rec["version"]))))  # DCAT 3

    contact = BNode()
    g.add((ds, DCAT.contactPoint, contact))
    g.add((contact, RDF.type, VCARD.Organization))
    g.add((contact, VCARD.fn, Literal(rec.get("contact_name") or _pick(rec, "org_name")
                                      or rec["org_slug"])))
    if email := _contact_email(rec):
        g.add((contact, VCARD.hasEmail, URIRef(f"mailto:{email}")))

    if rec.get("extent_wkt"):
        where = BNode()
        g.add((ds, DCTERMS.spatial, where))
        g.add((where, RDF.type, DCTERMS.Location))
        g.add((where, DCAT.bbox, Literal(rec["extent_wkt"], datatype=GEO.wktLiteral)))
        g.add((where, LOCN.geometry, Literal(rec["extent_geojson"],
                                             datatype=GEO.geoJSONLiteral)))
        if rec.get("centroid_wkt"):
            g.add((where, DCAT.centroid, Literal(rec["centroid_wkt"],
                                                 datatype=GEO.wktLiteral)))
    if rec.get("temporal_start") or rec.get("temporal_end"):
        period = BNode()
        g.add((ds, DCTERMS.temporal, period))
        g.add((period, RDF.type, DCTERMS.PeriodOfTime))
        if rec.get("temporal_start"):
            g.add((period, DCAT.startDate, Literal(rec["temporal_start"], datatype=XSD.date)))
        if rec.get("temporal_end"):
            g.add((period, DCAT.endDate, Literal(rec["temporal_end"], datatype=XSD.date)))

    licence = URIRef(f"{SPDX}/{rec['licence']}")
    g.add((licence, RDF.type, DCTERMS.LicenseDocument))
    for d in DISTRIBUTIONS.values():
        dist = URIRef(f"{ds}#distribution-{d.code}")
        url = URIRef(download_url(base, slug, d.code))
        g.add((ds, DCAT.distribution, dist))
        g.add((dist, RDF.type, DCAT.Distribution))
        g.add((dist, DCTERMS.title, Literal(d.label, lang="en")))
        g.add((dist, DCAT.accessURL, url))
        g.add((dist, DCAT.downloadURL, url))
        g.add((dist, DCAT.mediaType, URIRef(f"{IANA}/{d.media_type}")))
        if d.eu_file_type:
            g.add((dist, DCTERMS.format, URIRef(f"{EU}/file-type/{d.eu_file_type}")))
        g.add((dist, DCTERMS.license, licence))
        g.add((dist, DCTERMS.modified, Literal(rec["modified"], datatype=XSD.dateTime)))
        if d.code == "csv":  # the data dictionary: the CSV's Table Schema
            g.add((dist, DCTERMS.conformsTo, URIRef(f"{ds}/datapackage.json")))
    return ds


def dcat_graph(records: Iterable[dict[str, Any]], base: str) -> Graph:
    """A DCAT-AP 3 catalogue: a dcat:Catalog with one dcat:Dataset per record (fa and en
    titles and descriptions, keywords, EU data theme, publisher, vCard contact point,
    spatial extent as WKT bbox and GeoJSON geometry, temporal coverage, EU frequency,
    issued/modified) and a dcat:Distribution per download format (access and download URL,
    IANA media type, EU file type, SPDX licence)."""
    g = Graph()
    for prefix, ns in JSONLD_CONTEXT.items():
        g.bind(prefix, ns)
    cat = URIRef(f"{base}/datasets")
    g.add((cat, RDF.type, DCAT.Catalog))
    for lang, text in SITE_TITLE.items():
        g.add((cat, DCTERMS.title, Literal(text, lang=lang)))
    for lang, text in SITE_DESCRIPTION.items():
        g.add((cat, DCTERMS.description, Literal(text, lang=lang)))
    g.add((cat, FOAF.homepage, URIRef(f"{base}/datasets?f=html")))
    g.add((cat, DCAT.themeTaxonomy, URIRef(f"{EU}/data-theme")))
    for lang in ("FAS", "ENG"):
        g.add((cat, DCTERMS.language, URIRef(f"{EU}/language/{lang}")))
    site = URIRef(f"{base}/")
    g.add((site, RDF.type, FOAF.Agent))
    for lang, text in {"en": "Shahr", "fa": "شهر"}.items():
        g.add((site, FOAF.name, Literal(text, lang=lang)))
    g.add((cat, DCTERMS.publisher, site))
    modified: datetime | None = None
    for rec in records:
        g.add((cat, DCAT.dataset, _dataset_node(g, base, rec)))
        modified = max(modified, rec["modified"]) if modified else rec["modified"]
    if modified:
        g.add((cat, DCTERMS.modified, Literal(modified, datatype=XSD.dateTime)))
    return g


def to_jsonld(g: Graph) -> str:
    """JSON-LD, compacted with the DCAT prefixes as an inline context (no remote fetch)."""
    return g.serialize(format="json-ld", context=JSONLD_CONTEXT, auto_compact=True,
                       ensure_ascii=False, indent=1)


def to_turtle(g: Graph) -> str:
    return g.serialize(format="turtle")


# --- DCAT-US 1.1 (Project Open Data) ---------------------------------------------------------


def _us_dataset(rec: dict[str, Any], base: str) -> dict[str, Any]:
    slug = rec["slug"]
    org = _pick(rec, "org_name") or rec["org_slug"]
    contact: dict[str, Any] = {"@type": "vcard:Contact",
                               "fn": rec.get("contact_name") or org}
    if email := _contact_email(rec):
        contact["hasEmail"] = f"mailto:{email}"
    out: dict[str, Any] = {
        "@type": "dcat:Dataset",
        "identifier": dataset_url(base, slug),
        "title": _pick(rec, "title") or slug,
        "description": _pick(rec, "description") or _pick(rec, "title") or slug,
        "keyword": list(rec.get("keywords") or []) or [rec["theme"]],
        "modified": _iso(rec["modified"]),
        "publisher": {"@type": "org:Organization", "name": org},
        "contactPoint": contact,
        "accessLevel": "public",
        "license": licence_url(rec["licence"]),
        "landingPage": f"{dataset_url(base, slug)}?f=html",
        "describedBy": f"{dataset_url(base, slug)}/datapackage.json",
        "describedByType": "application/json",
        "language": ["fa", "en"],
        "theme": [THEME_TITLES[rec["theme"]]["en"]],
        "distribution": [{"@type": "dcat:Distribution", "title": d.label,
                          "downloadURL": download_url(base, slug, d.code),
                          "mediaType": d.media_type, "format": d.label}
                         for d in DISTRIBUTIONS.values()],
    }
    if rec.get("issued"):
        out["issued"] = _iso(rec["issued"])
    if bbox := _bbox(rec):
        out["spatial"] = ",".join(f"{v:.6f}" for v in bbox)  # W,S,E,N
    if rec.get("temporal_start") and rec.get("temporal_end"):
        out["temporal"] = f"{rec['temporal_start']}/{rec['temporal_end']}"
    if freq := ISO_FREQUENCIES.get(rec["update_frequency"]):
        out["accrualPeriodicity"] = freq
    return out


def dcat_us(records: Iterable[dict[str, Any]], base: str) -> dict[str, Any]:
    """A DCAT-US 1.1 (Project Open Data) catalogue, as served at /data.json."""
    return {
        "@context": "https://project-open-data.cio.gov/v1.1/schema/catalog.jsonld",
        "@id": f"{base}/data.json",
        "@type": "dcat:Catalog",
        "conformsTo": "https://project-open-data.cio.gov/v1.1/schema",
        "describedBy": "https://project-open-data.cio.gov/v1.1/schema/catalog.json",
        "dataset": [_us_dataset(r, base) for r in records],
    }


# --- CKAN ------------------------------------------------------------------------------------


def package_id(slug: str) -> str:
    """A dataset's CKAN id: a UUID derived from its slug (stable, host-independent)."""
    return str(uuid.uuid5(_NS, f"dataset/{slug}"))


def resource_id(slug: str, fmt: str) -> str:
    return str(uuid.uuid5(_NS, f"resource/{slug}/{fmt}"))


def organisation_id(slug: str) -> str:
    return str(uuid.uuid5(_NS, f"organisation/{slug}"))


def group_id(theme: str) -> str:
    return str(uuid.uuid5(_NS, f"group/{theme}"))


def ckan_organisation(org: dict[str, Any], *, prefix: str = "") -> dict[str, Any]:
    """A CKAN organization dict from an organisation row (or a record with `prefix`)."""
    slug = org[f"{prefix}slug"]
    names = {lang: org[f"{prefix}name_{lang}"] for lang in ("fa", "en")
             if org.get(f"{prefix}name_{lang}")}
    title = names.get("en") or names.get("fa") or slug
    return {
        "id": organisation_id(slug), "name": slug, "title": title, "display_name": title,
        "title_translated": names, "description": "", "type": "organization",
        "is_organization": True, "state": "active", "approval_status": "approved",
        "image_url": "", "created": ckan_time(org.get(f"{prefix}created")),
        **({"url": org[f"{prefix}url"]} if org.get(f"{prefix}url") else {}),
    }


def ckan_group(theme: str, package_count: int | None = None) -> dict[str, Any]:
    titles = THEME_TITLES[theme]
    out: dict[str, Any] = {
        "id": group_id(theme), "name": theme, "title": titles["en"],
        "display_name": titles["en"], "title_translated": dict(titles),
        "description": "", "type": "group", "is_organization": False, "state": "active",
        "approval_status": "approved", "image_url": "",
    }
    if package_count is not None:
        out["package_count"] = package_count
    return out


def ckan_tag(name: str) -> dict[str, Any]:
    return {"id": str(uuid.uuid5(_NS, f"tag/{name}")), "name": name, "display_name": name,
            "state": "active", "vocabulary_id": None}


def ckan_resource(rec: dict[str, Any], d: Distribution, base: str, position: int
                  ) -> dict[str, Any]:
    slug = rec["slug"]
    title = _pick(rec, "title") or slug
    return {
        "id": resource_id(slug, d.code), "package_id": package_id(slug),
        "name": f"{title} ({d.label})", "description": "", "format": d.label,
        "mimetype": d.media_type, "url": download_url(base, slug, d.code),
        "position": position, "state": "active", "url_type": None, "resource_type": None,
        "size": None, "hash": "", "created": ckan_time(rec.get("issued")),
        "last_modified": ckan_time(rec["modified"]),
        "metadata_modified": ckan_time(rec["modified"]),
    }


def ckan_package(rec: dict[str, Any], base: str) -> dict[str, Any]:
    """A CKAN package dict: `name` is the slug, one resource per download format, and the
    bilingual and spatial metadata CKAN has no core field for in `extras` (spatial as a
    GeoJSON string, as ckanext-spatial reads it)."""
    slug = rec["slug"]
    keywords = list(rec.get("keywords") or [])
    resources = [ckan_resource(rec, d, base, i) for i, d in enumerate(DISTRIBUTIONS.values())]
    extras = [("theme", rec["theme"]), ("update_frequency", rec["update_frequency"]),
              ("frequency", f"{EU}/frequency/{EU_FREQUENCIES[rec['update_frequency']]}"),
              ("spatial", rec.get("extent_geojson")),
              ("title_fa", rec.get("title_fa")), ("title_en", rec.get("title_en")),
              ("description_fa", rec.get("description_fa")),
              ("description_en", rec.get("description_en")),
              ("geometry_type", rec.get("geometry_type")),
              ("feature_count", None if rec.get("feature_count") is None
               else str(rec["feature_count"])),
              ("key_field", rec.get("key_field")),
              ("temporal_start", _iso(rec.get("temporal_start"))),
              ("temporal_end", _iso(rec.get("temporal_end"))),
              ("version", str(rec["version"])),
              ("synthetic", "true" if rec.get("synthetic") else None)]
    title = _pick(rec, "title") or slug
    org = ckan_organisation(rec, prefix="org_")
    return {
        "id": package_id(slug), "name": slug, "title": title,
        "title_translated": _pair(rec, "title"),
        "notes": _pick(rec, "description") or "",
        "notes_translated": _pair(rec, "description"),
        "url": f"{dataset_url(base, slug)}?f=html",
        "author": _pick(rec, "org_name"), "author_email": rec.get("org_email"),
        "maintainer": rec.get("contact_name"), "maintainer_email": rec.get("contact_email"),
        "license_id": rec["licence"], "license_title": rec["licence"],
        "license_url": licence_url(rec["licence"]),
        "isopen": rec["licence"] in OPEN_LICENCES,
        "version": str(rec["version"]), "state": "active", "private": False,
        "type": "dataset", "creator_user_id": None,
        "metadata_created": ckan_time(rec.get("issued") or rec.get("created")),
        "metadata_modified": ckan_time(rec["modified"]),
        "owner_org": org["id"], "organization": org,
        "groups": [ckan_group(rec["theme"])],
        "tags": [ckan_tag(k) for k in keywords],
        "num_tags": len(keywords),
        "resources": resources, "num_resources": len(resources),
        "extras": [{"key": k, "value": v} for k, v in extras if v is not None],
        "relationships_as_object": [], "relationships_as_subject": [],
    }
