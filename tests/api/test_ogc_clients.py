"""Real OGC API Features clients against the live service: OWSLib's `Features` and GDAL's
OAPIF driver (ogrinfo and ogr2ogr from Debian's gdal-bin). What they read is compared with
the dataset tables read straight with psycopg."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import shapely
from shapely.geometry import box, shape

from catalog.database import libpq_dsn
from support import current_table

pytestmark = pytest.mark.usefixtures("demo_loaded")

OGRINFO = shutil.which("ogrinfo") or "/usr/bin/ogrinfo"
OGR2OGR = shutil.which("ogr2ogr") or "/usr/bin/ogr2ogr"
needs_gdal = pytest.mark.skipif(
    not Path(OGRINFO).exists() or not Path(OGR2OGR).exists(),
    reason="GDAL's ogrinfo/ogr2ogr are not installed (apt-get install gdal-bin)")
BBOX = (51.33, 35.66, 51.45, 35.73)
# GDAL 3.6 guesses field types from the first page of features (it reads no JSON schema),
# so text that looks like a time of day ("04:04") becomes a Time field.
OGR_TYPES = {"integer": ("Integer", "Integer64"), "number": ("Real",),
             "string": ("String", "Time", "Date", "DateTime"), "date": ("Date",),
             "datetime": ("DateTime",), "boolean": ("Integer(Boolean)",)}


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        yield conn


def published(db: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """slug -> {count, fields: {name: type}} from the catalogue and the tables."""
    out = {}
    for (slug,) in db.execute("SELECT slug FROM catalog.datasets "
                              "WHERE current_version_id IS NOT NULL ORDER BY slug"):
        count = db.execute(f"SELECT count(*) FROM {current_table(db, slug)}").fetchone()[0]
        fields = dict(db.execute("""SELECT f.name, f.type FROM catalog.fields f
                                    JOIN catalog.datasets d ON d.id = f.dataset_id
                                    WHERE d.slug = %s ORDER BY f.position""", [slug]))
        out[slug] = {"count": count, "fields": fields}
    return out


def in_bbox(db: psycopg.Connection, slug: str) -> list[int]:
    rows = db.execute(f"SELECT fid, ST_AsBinary(geom) FROM {current_table(db, slug)} "
                      "ORDER BY fid").fetchall()
    area = box(*BBOX)
    return [fid for fid, wkb in rows if area.intersects(shapely.from_wkb(bytes(wkb)))]


# ---- OWSLib -------------------------------------------------------------------------------

def test_owslib_lists_collections_and_reads_items(live_server: str,
                                                  db: psycopg.Connection) -> None:
    from owslib.ogcapi.features import Features

    api = Features(live_server)
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in \
        api.conformance()["conformsTo"]
    want = published(db)
    colls = {c["id"]: c for c in api.collections()["collections"]}
    assert set(colls) == set(want)
    assert api.collection("districts")["title"] == "Municipal districts"
    assert set(api.collection_queryables("crashes")["properties"]) == \
        set(want["crashes"]["fields"]) | {"geometry"}

    expected = in_bbox(db, "crashes")
    page = api.collection_items("crashes", bbox=list(BBOX), limit=25)
    assert page["type"] == "FeatureCollection"
    assert [f["id"] for f in page["features"]] == expected[:25]
    assert page["numberMatched"] == len(expected)
    everything = api.collection_items("crashes", bbox=list(BBOX), limit=1000)
    assert [f["id"] for f in everything["features"]] == expected
    fatal = api.collection_items("crashes", severity="fatal", limit=1000)
    n = db.execute(f"SELECT count(*) FROM {current_table(db, 'crashes')} "
                   "WHERE severity = 'fatal'").fetchone()[0]
    assert fatal["numberReturned"] == n
    one = api.collection_item("districts", "1")
    assert one["type"] == "Feature" and one["id"] == 1


# ---- GDAL ---------------------------------------------------------------------------------

def _ogrinfo(*args: str) -> str:
    r = subprocess.run([OGRINFO, *args], capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def _layers(summary: str) -> dict[str, dict[str, Any]]:
    """ogrinfo -al -so output -> layer name -> {count, fields: {name: type}}."""
    out: dict[str, dict[str, Any]] = {}
    for block in re.split(r"\n(?=Layer name: )", summary):
        m = re.search(r"^Layer name: (\S+)", block, re.M)
        if not m:
            continue
        count = re.search(r"^Feature Count: (\d+)", block, re.M)
        fields = dict(re.findall(r"^(\w+): (\w+(?:\(\w+\))?) \(", block, re.M))
        out[m.group(1)] = {"count": int(count.group(1)) if count else None,
                           "fields": fields}
    return out


@needs_gdal
def test_gdal_ogrinfo_reads_every_collection(live_server: str, db: psycopg.Connection) -> None:
    got = _layers(_ogrinfo("-ro", f"OAPIF:{live_server}/", "-al", "-so"))
    want = published(db)
    assert set(got) == set(want)
    for slug, layer in got.items():
        assert layer["count"] == want[slug]["count"], slug
        assert list(layer["fields"]) == list(want[slug]["fields"]), slug
        for name, typ in want[slug]["fields"].items():
            assert layer["fields"][name] in OGR_TYPES[typ], (slug, name, typ)


@needs_gdal
def test_gdal_ogrinfo_reads_one_collection(live_server: str, db: psycopg.Connection) -> None:
    out = _ogrinfo("-ro", f"OAPIF:{live_server}/collections/districts", "-al", "-so")
    layers = _layers(out)
    assert list(layers) == ["districts"]
    assert layers["districts"]["count"] == published(db)["districts"]["count"] == 22
    assert list(layers["districts"]["fields"]) == ["district", "name_fa", "name_en",
                                                   "population", "area_km2"]
    assert "Multi Polygon" in out


@needs_gdal
def test_gdal_spatial_filter_goes_to_the_server(live_server: str,
                                                db: psycopg.Connection) -> None:
    out = _ogrinfo("-ro", f"OAPIF:{live_server}/collections/crashes", "-al", "-so",
                   "-spat", *map(str, BBOX))
    assert _layers(out)["crashes"]["count"] == len(in_bbox(db, "crashes"))


@needs_gdal
@pytest.mark.parametrize("page_size", [None, "1000"])
def test_gdal_ogr2ogr_copies_a_collection(live_server: str, db: psycopg.Connection,
                                          tmp_path: Path, page_size: str | None) -> None:
    """ogr2ogr pages through every feature (following next links) into GeoJSON."""
    out = tmp_path / "crashes.geojson"
    args = [OGR2OGR, "-f", "GeoJSON", str(out), f"OAPIF:{live_server}/collections/crashes"]
    if page_size:
        args[1:1] = ["-oo", f"PAGE_SIZE={page_size}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    feats = json.loads(out.read_text(encoding="utf-8"))["features"]
    table = current_table(db, "crashes")
    rows = {key: (sev, d.isoformat(), shapely.from_wkb(bytes(wkb))) for key, sev, d, wkb in
            db.execute(f"SELECT crash_id, severity, date, ST_AsBinary(geom) FROM {table}")}
    assert len(feats) == len(rows)
    by_key = {f["properties"]["crash_id"]: f for f in feats}
    assert set(by_key) == set(rows)
    for key, (severity, day, geom) in rows.items():
        f = by_key[key]
        assert f["properties"]["severity"] == severity
        assert f["properties"]["date"] == day
        assert shape(f["geometry"]).equals_exact(geom, 1e-7)
