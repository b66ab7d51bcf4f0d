"""Downloads over real HTTP against the demo city: every format is read back with an
independent reader (pyogrio/GDAL, pyarrow, openpyxl, the csv module) and compared with the
table as PostgreSQL holds it, read with psycopg: count, fields, values (Persian text
included), geometry, CRS. Filtered downloads are compared with /items, versions with a
reloaded private dataset, and the streamed formats are checked for flat memory."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import threading
import time as clock
import zipfile
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
import yaml
from pyproj import CRS, Transformer

from api import downloads as dl
from catalog.database import libpq_dsn
from catalog.settings import Settings
from support import current_table

pytestmark = pytest.mark.usefixtures("demo_loaded")

PROBLEM = "application/problem+json"
FILE_FORMATS = ["gpkg", "shp", "kml", "fgb", "parquet", "xlsx"]
ALL_FORMATS = ["csv", "geojson", "geojsonseq", *FILE_FORMATS]
PRIVATE = "dl-stations"  # a private copy of the fire stations, reloaded in these tests
Rows = dict[int, dict[str, Any]]


# ---- the truth: tables read with psycopg -----------------------------------------------------

def read_table(database_url: str, table: str) -> tuple[Rows, list[tuple[str, str]]]:
    """fid -> {column: value, "geometry": shapely} and [(column, PostgreSQL type)]."""
    with psycopg.connect(libpq_dsn(database_url)) as db:
        db.execute("SET TimeZone = 'UTC'")
        cur = db.execute(f"SELECT *, ST_AsBinary(geom) AS wkb__ FROM {table} ORDER BY fid")
        cols = [d.name for d in cur.description]
        rows: Rows = {}
        for rec in cur:
            d = dict(zip(cols, rec, strict=True))
            d.pop("geom")
            d.pop("_geom_3857", None)  # internal: the Web Mercator copy
            d["geometry"] = shapely.from_wkb(bytes(d.pop("wkb__")))
            rows[d.pop("fid")] = d
        schema, name = table.replace('"', "").split(".")
        types = db.execute("SELECT column_name, data_type FROM information_schema.columns "
                           "WHERE table_schema = %s AND table_name = %s "
                           "AND column_name NOT IN ('fid', 'geom', '_geom_3857') "
                           "ORDER BY ordinal_position",
                           [schema, name]).fetchall()
    return rows, [(n, t) for n, t in types]


@pytest.fixture(scope="module")
def truth(database_url: str) -> Callable[[str], tuple[Rows, dict[str, str]]]:
    """slug -> (rows of the current version, {column: PostgreSQL type})."""
    def get(slug: str) -> tuple[Rows, dict[str, str]]:
        with psycopg.connect(libpq_dsn(database_url)) as db:
            table = current_table(db, slug)
        rows, types = read_table(database_url, table)
        return rows, dict(types)
    return get


# ---- a private dataset with every column type, reloaded as new versions ----------------------

def _station_source(src: Path, dest: Path, variant: int) -> None:
    """The demo's fire stations with extra columns (a time, booleans, long names that a
    Shapefile must shorten, text that CSV must quote); each variant changes the data."""
    data = json.loads(src.read_text("utf-8"))
    feats = data["features"]
    if variant >= 2:
        feats = feats[: len(feats) - 5 * (variant - 1)]
    for i, f in enumerate(feats):
        p = f["properties"]
        p["engines"] = p["engines"] + 10 * (variant - 1)
        p["name_fa"] = f"{p['name_fa']} (نسخه {variant})"
        p["last_inspected_at"] = f"2024-0{1 + i % 9}-1{i % 10}T0{i % 10}:15:30Z"
        p["inspection_date_first"] = f"2023-0{1 + i % 9}-0{1 + i % 9}"
        p["inspection_date_last"] = f"2024-1{i % 3}-2{i % 10}"
        p["has_ladder_truck"] = i % 3 == 0
        p["notes_fa"] = ["دارای آسانسور، \"جدید\"", "=1+1", "خط اول\nخط دوم", "", None][i % 5]
    data["features"] = feats
    dest.write_text(json.dumps(data, ensure_ascii=False), "utf-8")


@pytest.fixture(scope="module")
def stations(settings: Settings, database_url: str, demo_manifests: list[Path],
             tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Any]:
    """load(variant) runs the private job again (force) with that variant of the data;
    versions beyond the newest two are dropped (SHAHR_KEEP_VERSIONS=2)."""
    from etl.manifest import load_manifest
    from etl.runner import run_job

    folder = tmp_path_factory.mktemp("dl-stations")
    demo = next(p for p in demo_manifests if p.stem == "fire-stations")
    spec = yaml.safe_load(demo.read_text("utf-8"))
    spec["dataset"]["slug"] = PRIVATE
    spec["source"]["path"] = "stations.geojson"
    manifest = folder / f"{PRIVATE}.yaml"
    manifest.write_text(yaml.safe_dump(spec, allow_unicode=True), "utf-8")
    private = settings.model_copy(update={"keep_versions": 2})

    def load(variant: int) -> Any:
        _station_source(demo.parent / "fire_stations.geojson", folder / "stations.geojson",
                        variant)
        result = run_job(load_manifest(manifest), url=database_url, settings=private,
                         force=True)
        assert result.status == "succeeded", result.error
        return result

    load(1)
    return load


# ---- reading a download back ---------------------------------------------------------------

def _fetch(http: httpx.Client, slug: str, fmt: str, **params: str) -> httpx.Response:
    r = http.get(f"/datasets/{slug}/download", params={"format": fmt, **params}, timeout=120)
    assert r.status_code == 200, r.text
    return r


def read_back(fmt: str, body: bytes, folder: Path) -> tuple[Rows, int | None, list[str]]:
    """(fid -> {column: value, "geometry": shapely}, EPSG code or None, column order)."""
    if fmt == "csv":
        return _read_csv(body)
    if fmt == "xlsx":
        return _read_xlsx(body, folder)
    if fmt == "parquet":
        return _read_parquet(body, folder)
    ext = dl.FORMATS[fmt].ext
    path = folder / f"download.{ext}"
    path.write_bytes(body)
    if fmt == "shp":
        return _read_shp(path)
    return _read_ogr(str(path))


# Columns GDAL's LIBKML reader adds to every KML layer.
KML_EXTRA = {"id", "Name", "description", "timestamp", "begin", "end", "altitudeMode",
             "tessellate", "extrude", "visibility", "drawOrder", "icon", "snippet"}


def _read_ogr(path: str, rename: dict[str, str] | None = None
              ) -> tuple[Rows, int | None, list[str]]:
    meta, table = pyogrio.read_arrow(path, return_fids=True)
    rename = rename or {}
    geom = meta["geometry_name"] or "wkb_geometry"
    fid_col = "fid" if "fid" in table.column_names else "OGC_FID"
    skip = {geom, "OGC_FID"} | (KML_EXTRA if path.endswith(".kml") else set())
    names = [n for n in table.column_names if n not in skip]
    rows: Rows = {}
    for rec in table.to_pylist():
        fid = int(rec[fid_col])
        out = {rename.get(n, n): rec[n] for n in names if n != "fid"}
        out["geometry"] = shapely.from_wkb(rec[geom]) if rec[geom] is not None else None
        rows[fid] = out
    epsg = CRS(meta["crs"]).to_epsg() if meta["crs"] else None
    return rows, epsg, [rename.get(n, n) for n in names]


def _read_shp(path: Path) -> tuple[Rows, int | None, list[str]]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        mapping = list(csv.DictReader(io.StringIO(zf.read("fields.csv").decode("utf-8-sig"))))
        cpgs = [n for n in names if n.endswith(".cpg")]
        assert cpgs and all(zf.read(n).decode().strip() == "UTF-8" for n in cpgs)
        assert all(n.removesuffix(".shp") + ".prj" in names for n in names if n.endswith(".shp"))
    rename = {m["shapefile_field"]: m["name"] for m in mapping}
    rows: Rows = {}
    epsg = None
    order: list[str] = []
    for shp in [n for n in names if n.endswith(".shp")]:
        part, epsg, order = _read_ogr(f"/vsizip/{path}/{shp}", rename)
        rows.update(part)
    return rows, epsg, order


def _read_csv(body: bytes) -> tuple[Rows, int | None, list[str]]:
    assert body.startswith(b"\xef\xbb\xbf"), "CSV must start with a UTF-8 BOM (Excel)"
    reader = csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline=""))
    rows: Rows = {}
    for rec in reader:
        fid = int(rec.pop("fid"))
        if "geometry" in rec:
            wkt = rec.pop("geometry")
            rec["geometry"] = shapely.from_wkt(wkt) if wkt else None
        elif "lon" in rec or "x" in rec:
            x, y = (rec.pop("lon"), rec.pop("lat")) if "lon" in rec else (rec.pop("x"),
                                                                          rec.pop("y"))
            rec["geometry"] = shapely.Point(float(x), float(y))
        rows[fid] = rec
    return rows, None, list(reader.fieldnames or [])


def _read_xlsx(body: bytes, folder: Path) -> tuple[Rows, int | None, list[str]]:
    import openpyxl

    path = folder / "download.xlsx"
    path.write_bytes(body)
    wb = openpyxl.load_workbook(path, read_only=True)
    assert wb.sheetnames == ["data", "fields", "about"]
    it = wb["data"].iter_rows(values_only=True)
    header = list(next(it))
    rows: Rows = {}
    for values in it:
        rec = dict(zip(header, values, strict=True))
        fid = int(rec.pop("fid"))
        if "geometry" in rec:
            rec["geometry"] = shapely.from_wkt(rec.pop("geometry"))
        elif "lon" in rec:
            rec["geometry"] = shapely.Point(rec.pop("lon"), rec.pop("lat"))
        rows[fid] = rec
    wb.close()
    return rows, None, header


def _read_parquet(body: bytes, folder: Path) -> tuple[Rows, int | None, list[str]]:
    path = folder / "download.parquet"
    path.write_bytes(body)
    table = pq.read_table(path)
    geo = json.loads(table.schema.metadata[b"geo"])
    column = geo["columns"][geo["primary_column"]]
    assert column["encoding"] == "WKB"
    crs = CRS.from_json_dict(column["crs"])
    epsg = 4326 if crs == CRS("OGC:CRS84") else crs.to_epsg()
    rows: Rows = {}
    for rec in table.to_pylist():
        fid = rec.pop("fid")
        rec["geometry"] = shapely.from_wkb(rec.pop("geometry"))
        rows[fid] = rec
    return rows, epsg, table.column_names


# ---- comparing values -----------------------------------------------------------------------

def _same(pg_type: str, expected: Any, got: Any) -> bool:
    """Equal once each format's representation is undone (KML integers are text, CSV is all
    text, XLSX date-times are naive UTC, FlatGeobuf dates are date-times, ...)."""
    if got is None or got == "" or (isinstance(got, float) and math.isnan(got)):
        return expected is None or expected == ""
    if expected is None:
        return False
    if pg_type == "bigint":
        return int(got) == expected
    if pg_type == "double precision":
        return math.isclose(float(got), expected, rel_tol=1e-12)
    if pg_type == "boolean":
        return (got.lower() == "true" if isinstance(got, str) else bool(got)) == expected
    if pg_type == "date":
        if isinstance(got, datetime):
            got = got.date()
        if isinstance(got, str):
            got = date.fromisoformat(got[:10].replace("/", "-"))
        return bool(got == expected)
    if pg_type.startswith("timestamp"):
        if isinstance(got, str):
            got = datetime.fromisoformat(got.replace("Z", "+00:00"))
        if got.tzinfo is None:
            got = got.replace(tzinfo=UTC)
        return abs((got - expected).total_seconds()) < 1e-3
    if isinstance(got, date | time):  # GDAL's GeoJSON reader types '04:04' as a time
        return got.isoformat()[: len(expected)] == expected
    return bool(got == expected)


def _as_multi(g: Any) -> Any:
    if isinstance(g, shapely.GeometryCollection) and not isinstance(
            g, shapely.MultiPolygon | shapely.MultiLineString | shapely.MultiPoint):
        parts = list(g.geoms)
        if parts and all(isinstance(p, shapely.Polygon) for p in parts):
            return shapely.MultiPolygon(parts)
        if parts and all(isinstance(p, shapely.LineString) for p in parts):
            return shapely.MultiLineString(parts)
    if isinstance(g, shapely.Polygon):
        return shapely.MultiPolygon([g])
    if isinstance(g, shapely.LineString):
        return shapely.MultiLineString([g])
    return g


def same_geometry(a: Any, b: Any, tol: float) -> bool:
    """Same shape within tol (ring orientation and single/multi aside: Shapefiles and
    FlatGeobuf may reorient rings, a Shapefile reads a one-part polygon as a Polygon)."""
    a, b = shapely.normalize(_as_multi(a)), shapely.normalize(_as_multi(b))
    ca, cb = shapely.get_coordinates(a), shapely.get_coordinates(b)
    if a.geom_type != b.geom_type or ca.shape != cb.shape:
        return False
    return bool(abs(ca - cb).max() <= tol) if len(ca) else True


def compare(expected: Rows, types: dict[str, str], got: Rows, *, tol: float,
            columns: list[str] | None = None) -> None:
    assert sorted(got) == sorted(expected), "the feature ids differ"
    cols = columns if columns is not None else list(types)
    for fid, row in expected.items():
        g = got[fid]
        assert set(g) - {"geometry"} == set(cols), f"fields of {fid}: {sorted(g)}"
        for c in cols:
            assert _same(types[c], row[c], g[c]), f"{fid}.{c}: {row[c]!r} != {g[c]!r}"
        if "geometry" in g:
            assert same_geometry(row["geometry"], g["geometry"], tol), \
                f"{fid}: {row['geometry'].wkt[:80]} != {g['geometry'].wkt[:80]}"


# ---- every format, three datasets -----------------------------------------------------------

@pytest.mark.parametrize("slug", ["landuse-parcels", "crashes", PRIVATE])
@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_format_round_trip(http: httpx.Client, truth: Any, stations: Any, tmp_path: Path,
                           slug: str, fmt: str) -> None:
    """Count, fields, values (Persian text too), geometry within 1e-7° and the CRS."""
    r = _fetch(http, slug, fmt)
    expected, types = truth(slug)
    got, epsg, _order = read_back(fmt, r.content, tmp_path)
    # Text formats carry 7 decimals (~1 cm, as /items); binary ones the stored doubles.
    tol = 1e-7 if fmt in ("csv", "geojson", "geojsonseq", "xlsx", "kml") else 1e-12
    compare(expected, types, got, tol=tol)
    if fmt not in ("csv", "xlsx"):
        assert epsg == 4326
    persian = [v for row in got.values() for v in row.values()
               if isinstance(v, str) and any("\u0600" <= ch <= "\u06ff" for ch in v)]
    assert persian, "no Persian text came back"
    assert r.headers["content-type"].split(";")[0] == dl.FORMATS[fmt].media_type.split(";")[0]


def test_csv_shape(http: httpx.Client, truth: Any, stations: Any) -> None:
    """Header of published names, WKT `geometry` for polygons, lon/lat for points, values as
    stored: booleans true/false, ISO dates and date-times, quoting of commas/newlines."""
    body = _fetch(http, "landuse-parcels", "csv").content
    header = body.decode("utf-8-sig").splitlines()[0].split(",")
    _rows, types = truth("landuse-parcels")
    assert header == ["fid", *types, "geometry"]
    body = _fetch(http, "crashes", "csv").content
    assert body.decode("utf-8-sig").splitlines()[0].endswith(",lon,lat")
    text = _fetch(http, PRIVATE, "csv").content.decode("utf-8-sig")
    recs = list(csv.DictReader(io.StringIO(text, newline="")))
    assert {r["has_ladder_truck"] for r in recs} == {"true", "false"}
    assert all(datetime.fromisoformat(r["last_inspected_at"]).tzinfo is not None for r in recs)
    assert "خط اول\nخط دوم" in {r["notes_fa"] for r in recs}
    projected = _fetch(http, "crashes", "csv", crs="EPSG:32639").content.decode("utf-8-sig")
    assert projected.splitlines()[0].endswith(",x,y")


def test_xlsx_text_is_never_a_formula(http: httpx.Client, stations: Any,
                                      tmp_path: Path) -> None:
    import openpyxl

    path = tmp_path / "s.xlsx"
    path.write_bytes(_fetch(http, PRIVATE, "xlsx").content)
    ws = openpyxl.load_workbook(path)["data"]
    cells = [c for row in ws.iter_rows() for c in row if c.value == "=1+1"]
    assert cells and all(c.data_type == "s" for c in cells)


def test_skip_geometry_and_properties(http: httpx.Client, truth: Any, tmp_path: Path) -> None:
    expected, types = truth("landuse-parcels")
    for fmt in ("csv", "xlsx", "geojson"):
        got, _epsg, order = read_back(fmt, _fetch(http, "landuse-parcels", fmt,
                                                   skipGeometry="true",
                                                   properties="owner,landuse_fa").content,
                                      tmp_path)
        if fmt == "geojson":
            assert all(row["geometry"] is None for row in got.values())
            got = {k: {c: v for c, v in row.items() if c != "geometry"}
                   for k, row in got.items()}
        else:
            assert order == ["fid", "owner", "landuse_fa"]
        compare(expected, types, got, tol=0, columns=["owner", "landuse_fa"])


@pytest.mark.parametrize("fmt", ["csv", "geojson", "gpkg", "shp", "fgb", "parquet"])
def test_crs_reprojects(http: httpx.Client, truth: Any, tmp_path: Path, fmt: str) -> None:
    """crs=EPSG:3857: coordinates as pyproj computes them, and the file says EPSG:3857."""
    r = _fetch(http, "crashes", fmt, crs="EPSG:3857")
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/3857>"
    assert "_epsg3857." in r.headers["content-disposition"]
    got, epsg, _order = read_back(fmt, r.content, tmp_path)
    expected, _types = truth("crashes")
    to_3857 = Transformer.from_crs(4326, 3857, always_xy=True)
    if fmt == "geojson":
        assert json.loads(r.content)["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::3857"
    elif fmt != "csv":
        assert epsg == 3857
    assert sorted(got) == sorted(expected)
    for fid, row in expected.items():
        x, y = to_3857.transform(row["geometry"].x, row["geometry"].y)
        assert abs(got[fid]["geometry"].x - x) < 2e-3 and abs(got[fid]["geometry"].y - y) < 2e-3


def test_kml_is_wgs84_only(http: httpx.Client) -> None:
    r = http.get("/datasets/crashes/download", params={"format": "kml", "crs": "EPSG:3857"})
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM
    assert "WGS 84" in r.json()["detail"]


# ---- filters: the same features as /items ---------------------------------------------------

FILTERS = [
    {"filter": "landuse='residential' AND area_m2>500"},
    {"bbox": "51.33,35.66,51.45,35.73", "landuse": "residential"},
    {"filter": "S_INTERSECTS(geometry, POLYGON((51.35 35.65, 51.45 35.65, 51.45 35.72, "
               "51.35 35.72, 51.35 35.65)))", "properties": "owner,landuse"},
    {"near": "51.40,35.70", "radius": "1500", "filter": "owner LIKE '%ی%'"},
]


def _items(http: httpx.Client, slug: str, params: dict[str, str]) -> list[dict[str, Any]]:
    r = http.get(f"/collections/{slug}/items", params={**params, "limit": "10000"})
    assert r.status_code == 200, r.text
    return list(r.json()["features"])


@pytest.mark.parametrize("params", FILTERS, ids=["cql2", "bbox+property", "intersects",
                                                  "near+like"])
def test_filtered_download_equals_items(http: httpx.Client, tmp_path: Path,
                                        params: dict[str, str]) -> None:
    items = _items(http, "landuse-parcels", params)
    ids = sorted(f["id"] for f in items)
    assert 0 < len(ids) < 1500
    for fmt in ("csv", "geojsonseq", "gpkg", "shp", "parquet", "xlsx"):
        r = _fetch(http, "landuse-parcels", fmt, **params)
        got, _epsg, _order = read_back(fmt, r.content, tmp_path)
        assert sorted(got) == ids, fmt
        assert "_filtered." in r.headers["content-disposition"]
    # GeoJSON features are the very features /items gives (distance_m aside: near= adds it
    # to items only).
    features = json.loads(_fetch(http, "landuse-parcels", "geojson", **params).content)
    for f in items:
        f["properties"].pop("distance_m", None)
    assert features["features"] == items


def test_empty_result(http: httpx.Client, tmp_path: Path) -> None:
    for fmt in ALL_FORMATS:
        r = _fetch(http, "landuse-parcels", fmt, filter="area_m2 < 0")
        if fmt == "geojson":
            assert json.loads(r.content)["features"] == []
        elif fmt == "csv":
            assert len(r.content.decode("utf-8-sig").splitlines()) == 1
        elif fmt == "geojsonseq":
            assert r.content == b""
        else:
            got, _epsg, _order = read_back(fmt, r.content, tmp_path)
            assert got == {}, fmt


# ---- versions -------------------------------------------------------------------------------

def test_version_serves_old_data_after_reload(http: httpx.Client, stations: Any,
                                              database_url: str, tmp_path: Path) -> None:
    stations(2)  # now versions 1 (previous) and 2 (current)
    with psycopg.connect(libpq_dsn(database_url)) as db:
        v = dict(db.execute("SELECT v.number, v.table_name FROM catalog.versions v JOIN "
                            "catalog.datasets d ON d.id = v.dataset_id WHERE d.slug = %s AND "
                            "v.status <> 'dropped'", [PRIVATE]).fetchall())
    last = max(v)
    before_csv = _fetch(http, PRIVATE, "csv", version=str(last)).content
    before_gpkg = _fetch(http, PRIVATE, "gpkg", version=str(last))
    stations(3)  # a new current version; the oldest one is dropped (keep 2)
    r = _fetch(http, PRIVATE, "csv", version=str(last))
    assert r.content == before_csv, "a version's download must be obtainable again exactly"
    assert "immutable" in r.headers["cache-control"]
    again = _fetch(http, PRIVATE, "gpkg", version=str(last))
    assert again.headers["etag"] == before_gpkg.headers["etag"]
    assert again.content == before_gpkg.content
    expected, types = read_table(database_url, f'data."{v[last]}"')
    got, _e, _o = read_back("gpkg", again.content, tmp_path)
    compare(expected, dict(types), got, tol=1e-12)
    current = _fetch(http, PRIVATE, "csv")
    assert current.headers["cache-control"] == "public, no-cache"
    assert current.headers["x-shahr-version"] == str(last + 1)
    assert f"_v{last + 1}_" in current.headers["content-disposition"]
    assert current.content != before_csv
    gone = http.get(f"/datasets/{PRIVATE}/download", params={"format": "csv",
                                                            "version": str(last - 1)})
    assert gone.status_code == 410 and gone.headers["content-type"] == PROBLEM
    assert gone.json()["kept_versions"] == [last, last + 1]
    assert f"version {last - 1}" in gone.json()["detail"]
    missing = http.get(f"/datasets/{PRIVATE}/download", params={"format": "csv",
                                                               "version": "99"})
    assert missing.status_code == 404 and "versions:" in missing.json()["detail"]


def test_collection_at_version(stations: Any, database_url: str) -> None:
    """catalog.versions (sync): the current version, a kept one with its own columns, a
    dropped one (VersionDropped naming the kept ones), an unknown one (None)."""
    from catalog.versions import VersionDropped, collection_at_version, list_versions

    with psycopg.connect(libpq_dsn(database_url)) as db:
        versions = list_versions(db, PRIVATE)
        current = collection_at_version(db, PRIVATE)
        assert current is not None and current.version == max(v.number for v in versions)
        assert current.table == current_table(db, PRIVATE).split('"')[1]
        assert [c.name for c in current.columns][:2] == ["station_id", "name_fa"]
        assert current.column("engines") is not None
        assert current.column("engines").label_fa == "خودروها"  # type: ignore[union-attr]
        assert collection_at_version(db, PRIVATE, 999) is None
        assert collection_at_version(db, "no-such-dataset") is None
        for v in versions:
            if v.status == "dropped":
                with pytest.raises(VersionDropped) as info:
                    collection_at_version(db, PRIVATE, v.number)
                assert info.value.kept == [x.number for x in versions if x.status != "dropped"]
            else:
                old = collection_at_version(db, PRIVATE, v.number)
                assert old is not None and old.version == v.number


# ---- HTTP: names, caching, ranges, errors ---------------------------------------------------

def test_headers_and_conditional_requests(http: httpx.Client, database_url: str) -> None:
    with psycopg.connect(libpq_dsn(database_url)) as db:
        version, published = db.execute(
            "SELECT v.number, v.published FROM catalog.versions v JOIN catalog.datasets d ON "
            "d.current_version_id = v.id WHERE d.slug = 'landuse-parcels'").fetchone()  # type: ignore[misc]
    day = published.astimezone(UTC).date().isoformat()
    catalogue = http.get("/datasets/landuse-parcels").json()["distributions"]
    media = {d["format"]: d["mediaType"] for d in catalogue}
    for fmt in ALL_FORMATS:
        r = _fetch(http, "landuse-parcels", fmt)
        name = f"landuse-parcels_v{version}_{day}.{dl.FORMATS[fmt].ext}"
        assert r.headers["content-disposition"] == f'attachment; filename="{name}"'
        assert r.headers["content-type"].split(";")[0] == media[fmt]
        assert r.headers["etag"] and r.headers["last-modified"]
        if not dl.FORMATS[fmt].streamed:
            assert int(r.headers["content-length"]) == len(r.content)
            assert r.headers["accept-ranges"] == "bytes"
        again = http.get("/datasets/landuse-parcels/download", params={"format": fmt},
                         headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
    r = _fetch(http, "landuse-parcels", "gpkg")
    head = http.head("/datasets/landuse-parcels/download", params={"format": "gpkg"})
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(r.content)
    head = http.head("/datasets/landuse-parcels/download", params={"format": "csv"})
    assert head.status_code == 200 and "content-length" not in head.headers
    assert head.headers["etag"] == _fetch(http, "landuse-parcels", "csv").headers["etag"]
    part = http.get("/datasets/landuse-parcels/download", params={"format": "gpkg"},
                    headers={"Range": "bytes=100-1123"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1123/{len(r.content)}"
    assert part.content == r.content[100:1124]
    tail = http.get("/datasets/landuse-parcels/download", params={"format": "gpkg"},
                    headers={"Range": f"bytes={len(r.content) - 10}-"})
    assert tail.status_code == 206 and tail.content == r.content[-10:]


@pytest.mark.parametrize(("params", "status", "word"), [
    ({"format": "dwg"}, 400, "accepted: csv"),
    ({}, 400, "format"),
    ({"format": "csv", "limit": "10"}, 400, "limit"),
    ({"format": "csv", "sortby": "owner"}, 400, "sortby"),
    ({"format": "csv", "version": "abc"}, 400, "version"),
    ({"format": "csv", "version": "0"}, 400, "version"),
    ({"format": "gpkg", "skipGeometry": "true"}, 400, "skipGeometry"),
    ({"format": "csv", "filter": "owner = "}, 400, "filter"),
    ({"format": "csv", "colour": "red"}, 400, "unknown parameter"),
    ({"format": "csv", "crs": "EPSG:999999"}, 400, "crs"),
    ({"format": "csv", "bbox": "1,2,3"}, 400, "bbox"),
])
def test_errors(http: httpx.Client, params: dict[str, str], status: int, word: str) -> None:
    r = http.get("/datasets/landuse-parcels/download", params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    assert word in r.json()["detail"]


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_database_refusal_is_a_400(http: httpx.Client, fmt: str) -> None:
    """A filter PostgreSQL cannot evaluate (a float overflow) fails before any byte is sent,
    for the streamed formats too (the first row is awaited before answering)."""
    r = http.get("/datasets/landuse-parcels/download",
                 params={"format": fmt, "filter": "area_m2 * 1e308 * 1e308 > 1"})
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM
    assert "overflow" in r.json()["detail"]


def test_unknown_dataset(http: httpx.Client) -> None:
    r = http.get("/datasets/no-such-thing/download", params={"format": "csv"})
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM


def test_concurrent_requests_build_once(http: httpx.Client, live_server: str) -> None:
    params = {"format": "gpkg", "district": "4", "properties": "owner,zoning"}
    bodies: list[httpx.Response] = []

    def get() -> None:
        bodies.append(httpx.get(f"{live_server}/datasets/landuse-parcels/download",
                                params=params, timeout=60))

    threads = [threading.Thread(target=get) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [b.status_code for b in bodies] == [200] * 5
    assert len({b.content for b in bodies}) == 1
    key = bodies[0].headers["etag"].strip('"')
    assert dl.BUILDS[f"{key}.gpkg"] == 1


# ---- Shapefile details ----------------------------------------------------------------------

def test_shapefile_names_and_dictionary(http: httpx.Client, stations: Any) -> None:
    body = _fetch(http, PRIVATE, "shp").content
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        mapping = {m["name"]: m for m in csv.DictReader(
            io.StringIO(zf.read("fields.csv").decode("utf-8-sig")))}
    short = {name: m["shapefile_field"] for name, m in mapping.items()}
    assert all(len(s.encode()) <= 10 for s in short.values())
    assert len({s.lower() for s in short.values()}) == len(short)
    assert short["inspection_date_first"] != short["inspection_date_last"]
    assert short["name_fa"] == "name_fa"
    assert mapping["engines"]["label_fa"] == "خودروها"


def test_short_names() -> None:
    names = ["inspection_date_first", "inspection_date_last", "inspection", "a", "نام_فارسی_بلند"]
    short = dl.short_names(names)
    assert short["a"] == "a"
    assert len(set(map(str.lower, short.values()))) == len(names)
    assert all(len(v.encode()) <= 10 for v in short.values())


def test_shapefile_mixed_geometry_one_file_per_kind(tmp_path: Path) -> None:
    """A Shapefile holds one geometry kind: a layer mixing them becomes one .shp per kind.
    (Published tables have one type each, so this path is driven with a tiny mixed set.)"""
    geoms = [shapely.Point(51.4, 35.7), shapely.Polygon([(51, 35), (51.1, 35), (51, 35.1)]),
             shapely.LineString([(51, 35), (51.2, 35.2)]), shapely.Point(51.5, 35.6),
             shapely.MultiPoint([(51, 35), (51.1, 35.1)])]
    schema = pa.schema([pa.field("fid", pa.int64()), pa.field("name_persian_long", pa.string()),
                        pa.field("geometry", pa.binary())])
    batch = pa.record_batch([pa.array([1, 2, 3, 4, 5]),
                             pa.array(["یک", "دو", "سه", "چهار", "پنج"]),
                             pa.array([shapely.to_wkb(g) for g in geoms])], schema=schema)
    from catalog.collections import Column

    layer = dl.Layer(name="mixed", title="Mixed", description="", srid=4326,
                     columns=(Column("name_persian_long", "string", "string"),),
                     geometry_type="Unknown", published=datetime(2024, 1, 2, tzinfo=UTC),
                     schema=schema)
    kinds = sorted({dl.wkb_family(shapely.to_wkb(g)) for g in geoms})  # type: ignore[type-var]
    path = tmp_path / "mixed.shp.zip"
    dl.write_shapefile_zip(lambda: iter([batch]), kinds, path, layer, stem="mixed")
    got, epsg, _order = _read_shp(path)
    with zipfile.ZipFile(path) as zf:
        shps = sorted(n for n in zf.namelist() if n.endswith(".shp"))
    assert shps == ["mixed_line.shp", "mixed_multipoint.shp", "mixed_point.shp",
                    "mixed_polygon.shp"]
    assert epsg == 4326 and sorted(got) == [1, 2, 3, 4, 5]
    assert got[4]["name_persian_long"] == "چهار"
    for fid, g in zip([1, 2, 3, 4, 5], geoms, strict=True):
        assert same_geometry(g, got[fid]["geometry"], 1e-12)


# ---- streaming: flat memory, back-pressure, no leaked connections ---------------------------

BIG = "dl-parcels-big"
BIG_N = 150_000


@pytest.fixture(scope="module")
def big_layer(settings: Settings, database_url: str,
              tmp_path_factory: pytest.TempPathFactory) -> str:
    from etl.demo import write_parcels
    from etl.manifest import load_manifest
    from etl.runner import run_job
    from support import write_manifest

    folder = tmp_path_factory.mktemp("dl-big")
    gpkg = folder / "parcels.gpkg"
    write_parcels(gpkg, n=BIG_N)
    manifest = write_manifest(folder, {"path": str(gpkg), "format": "gpkg"}, slug=BIG)
    fast = settings.model_copy(update={"etl_batch_size": 20_000})
    result = run_job(load_manifest(manifest), url=database_url, settings=fast)
    assert result.status == "succeeded", result.error
    return BIG


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _copies(database_url: str) -> int:
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as db:
        row = db.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY (%%' "
                         "AND datname = current_database() AND backend_type = 'client backend'"
                         ).fetchone()
    return int(row[0]) if row else 0


def test_streaming_is_flat_and_paced_by_the_client(live_server: str, big_layer: str,
                                                   database_url: str) -> None:
    """The service process (this one: the server runs in a thread) does not grow with the
    download, and while the client pauses, PostgreSQL's COPY waits instead of the service
    buffering the rest."""
    url = f"{live_server}/datasets/{big_layer}/download"
    size = 0
    peak = base = _rss()
    with httpx.stream("GET", url, params={"format": "geojson"}, timeout=60) as r:
        assert r.status_code == 200
        chunks = r.iter_raw(64 * 1024)
        size += len(next(chunks))
        clock.sleep(1.0)  # the client stalls: socket buffers fill, the COPY must wait
        assert _copies(database_url) == 1, "the COPY finished while the client was stalled"
        for chunk in chunks:
            size += len(chunk)
            peak = max(peak, _rss())
    assert size > 50_000_000
    assert peak - base < size / 2, f"memory grew by {(peak - base) / 1e6:.0f} MB " \
                                   f"for a {size / 1e6:.0f} MB download"
    records = newlines = 0
    with httpx.stream("GET", url, params={"format": "geojsonseq"}, timeout=60) as r:
        for chunk in r.iter_raw():  # RFC 8142: RS before each record, LF after it
            records += chunk.count(b"\x1e")
            newlines += chunk.count(b"\n")
    assert records == newlines == BIG_N


def test_client_going_away_closes_the_copy(live_server: str, big_layer: str,
                                           database_url: str) -> None:
    with httpx.stream("GET", f"{live_server}/datasets/{big_layer}/download",
                      params={"format": "geojson"}, timeout=60) as r:
        chunks = r.iter_raw(64 * 1024)
        next(chunks)
        assert _copies(database_url) == 1
        chunks.close()  # the client hangs up mid-download
    deadline = clock.monotonic() + 10
    while _copies(database_url) and clock.monotonic() < deadline:
        clock.sleep(0.1)
    assert _copies(database_url) == 0


def test_a_build_does_not_freeze_the_service(live_server: str, big_layer: str,
                                            database_url: str) -> None:
    """Files are built in a separate process: GDAL's writers hold the GIL while they write
    (a GeoPackage's index, a FlatGeobuf's sorted features at the end), which in the service
    would stop every other request (and uvicorn's health check kills a worker silent for
    5 s). Measured at 150,000 parcels: /healthz waited up to 0.37 s with a thread, 0.07 s
    with a process."""
    done = threading.Event()
    result: list[httpx.Response] = []
    builders: set[str] = set()

    def build() -> None:
        result.append(httpx.get(f"{live_server}/datasets/{big_layer}/download",
                                params={"format": "gpkg"}, timeout=120))
        done.set()

    threading.Thread(target=build).start()
    slowest = 0.0
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as db:
        while not done.is_set():
            builders |= {r[0] for r in db.execute(
                "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE "
                "'shahr build pid=%%'")}
            t0 = clock.perf_counter()
            assert httpx.get(f"{live_server}/healthz", timeout=10).status_code == 200
            slowest = max(slowest, clock.perf_counter() - t0)
            clock.sleep(0.02)
    assert result[0].status_code == 200 and len(result[0].content) > 10_000_000
    assert builders and f"shahr build pid={os.getpid()}" not in builders
    assert slowest < 0.5, f"/healthz took {slowest:.2f} s during a build"


def test_cache_is_under_the_settings_folder(settings: Settings, http: httpx.Client) -> None:
    _fetch(http, "crashes", "fgb")
    files = list((settings.cache_dir / "downloads" / "crashes").glob("*.fgb"))
    assert files and not list((settings.cache_dir / "downloads").glob("*/.*.build"))


def test_prune_keeps_recent(tmp_path: Path) -> None:
    root = tmp_path / "downloads"
    (root / "a").mkdir(parents=True)
    old, new = root / "a" / "old.gpkg", root / "a" / "new.gpkg"
    old.write_bytes(b"x" * 1000)
    new.write_bytes(b"x" * 1000)
    past = clock.time() - 2 * dl.CACHE_KEEP_S
    os.utime(old, (past, past))
    dl.prune(root, keep=new, limit=1500)
    assert not old.exists() and new.exists()
