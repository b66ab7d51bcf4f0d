"""Round trip per format: a small layer written with GDAL in each format and CRS loads with
the same rows, attributes (Persian normalised) and geometry (reprojected to EPSG:4326)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import psycopg
import pyogrio
import pytest
import shapely

from support import current_table

# Encodable in cp1256, which has Arabic ي/ك but not Persian ی/ک: exactly why files in it need
# normalising.
NAMES_SOURCE = ["كوي شهيد", "محله يك", "باغ فردوس", "12 فروردين", "  ميدان  "]
NAMES_LOADED = ["کوی شهید", "محله یک", "باغ فردوس", "12 فروردین", "میدان"]


def sample(crs: str = "EPSG:32639", kind: str = "polygon") -> gpd.GeoDataFrame:
    x0, y0 = 536_000.0, 3_951_000.0
    if kind == "polygon":
        geoms = [shapely.box(x0 + i * 150, y0, x0 + i * 150 + 100, y0 + 80) for i in range(5)]
    else:
        geoms = [shapely.Point(x0 + i * 150, y0 + i * 10) for i in range(5)]
    gdf = gpd.GeoDataFrame({
        "pid": np.arange(1, 6, dtype="int64"),
        "name": NAMES_SOURCE,
        "area": [8000.5, 8000.0, 7999.25, 8001.0, 8000.75],
        "zone": ["R-211", "C-2", "G-1", "R-211", "M"],
    }, geometry=geoms, crs="EPSG:32639")
    return gdf.to_crs(crs)


def expected_centroids(kind: str) -> np.ndarray:
    ref = sample("EPSG:4326", kind)
    return shapely.get_coordinates(shapely.centroid(ref.geometry.values))


def loaded(db: psycopg.Connection, slug: str) -> list[tuple]:
    return db.execute(f"""SELECT pid::bigint, name, area::float, zone, ST_X(ST_Centroid(geom)),
                          ST_Y(ST_Centroid(geom)), ST_SRID(geom), GeometryType(geom)
                          FROM {current_table(db, slug)} ORDER BY pid""").fetchall()


def check(db: psycopg.Connection, slug: str, kind: str = "polygon") -> None:
    rows = loaded(db, slug)
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    assert [r[1] for r in rows] == NAMES_LOADED
    assert [r[3] for r in rows] == ["R-211", "C-2", "G-1", "R-211", "M"]
    assert rows[0][2] == pytest.approx(8000.5)
    got = np.array([(r[4], r[5]) for r in rows])
    # Centroids of a reprojected polygon differ from reprojected centroids by < 1e-7 deg.
    np.testing.assert_allclose(got, expected_centroids(kind), atol=2e-7)
    assert {r[6] for r in rows} == {4326}
    assert {r[7] for r in rows} == {"MULTIPOLYGON" if kind == "polygon" else "POINT"}


def test_geojson(tmp_path: Path, load, db) -> None:
    p = tmp_path / "layer.geojson"
    sample("EPSG:4326").to_file(p, driver="GeoJSON")
    result, m = load({"path": str(p)}, key="pid")
    assert result.status == "succeeded", result.error
    check(db, m.dataset.slug)


def test_geopackage_utm(tmp_path: Path, load, db) -> None:
    p = tmp_path / "layer.gpkg"
    sample("EPSG:32639").to_file(p, layer="parcels", driver="GPKG")
    result, m = load({"path": str(p)}, key="pid")
    assert result.status == "succeeded", result.error
    check(db, m.dataset.slug)
    crs = db.execute("SELECT source_crs, metric_crs FROM catalog.datasets WHERE slug = %s",
                     [m.dataset.slug]).fetchone()
    assert crs == ("EPSG:32639", "EPSG:32639")


def test_shapefile_loose_with_uppercase_cpg(tmp_path: Path, load, db) -> None:
    p = tmp_path / "layer.shp"
    sample("EPSG:32639").to_file(p, driver="ESRI Shapefile", encoding="cp1256")
    (tmp_path / "layer.cpg").unlink(missing_ok=True)
    (tmp_path / "layer.CPG").write_text("1256")
    result, m = load({"path": str(p)}, key="pid")
    assert result.status == "succeeded", result.error
    check(db, m.dataset.slug)
    enc = db.execute("SELECT source_encoding FROM catalog.datasets WHERE slug = %s",
                     [m.dataset.slug]).fetchone()[0]
    assert enc == "cp1256"


def test_zipped_shapefile_cp1256_without_cpg(tmp_path: Path, load, db) -> None:
    src = tmp_path / "shp"
    src.mkdir()
    sample("EPSG:32639").to_file(src / "parcels.shp", driver="ESRI Shapefile",
                                 encoding="cp1256")
    for f in src.iterdir():
        if f.suffix.lower() == ".cpg":
            f.unlink()
    archive = tmp_path / "parcels.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(src.iterdir()):
            zf.write(f, f"data/{f.name}")
    # The DBF says nothing of its code page, so the text decides (cp1256, not UTF-8).
    raw = (src / "parcels.dbf").read_bytes()
    assert "ك".encode("cp1256") in raw
    result, m = load({"path": str(archive)}, key="pid")
    assert result.status == "succeeded", result.error
    check(db, m.dataset.slug)


def test_shapefile_without_prj_needs_a_crs(tmp_path: Path, load, db) -> None:
    p = tmp_path / "noprj.shp"
    sample("EPSG:32639").to_file(p, driver="ESRI Shapefile")
    p.with_suffix(".prj").unlink()
    result, m = load({"path": str(p)})
    assert result.status == "failed"
    assert "does not say its coordinate reference system" in result.error
    assert "source.crs" in result.error
    result, m = load({"path": str(p), "crs": "EPSG:32639"}, key="pid")
    assert result.status == "succeeded", result.error
    check(db, m.dataset.slug)


def test_flatgeobuf_web_mercator(tmp_path: Path, load, db) -> None:
    p = tmp_path / "layer.fgb"
    sample("EPSG:3857").to_file(p, driver="FlatGeobuf")
    result, m = load({"path": str(p)}, key="pid")
    assert result.status == "succeeded", result.error
    check(db, m.dataset.slug)


@pytest.mark.parametrize("ext,driver", [("kml", "KML"), ("kmz", "LIBKML")])
def test_kml_and_kmz(tmp_path: Path, load, db, ext: str, driver: str) -> None:
    p = tmp_path / f"layer.{ext}"
    pyogrio.write_dataframe(sample("EPSG:4326", "point"), p, driver=driver)
    result, m = load({"path": str(p)})
    assert result.status == "succeeded", result.error
    rows = db.execute(f"SELECT ST_X(geom), ST_Y(geom) FROM {current_table(db, m.dataset.slug)}"
                      " ORDER BY pid").fetchall()
    np.testing.assert_allclose(np.array(rows), expected_centroids("point"), atol=1e-7)


def _csv(tmp_path: Path, gdf: gpd.GeoDataFrame, cols: dict[str, list], sep: str = ",",
         encoding: str = "utf-8") -> Path:
    df = gdf.drop(columns="geometry").assign(**cols)
    p = tmp_path / "layer.csv"
    df.to_csv(p, index=False, sep=sep, encoding=encoding)
    return p


def test_csv_lon_lat(tmp_path: Path, load, db) -> None:
    g = sample("EPSG:4326", "point")
    p = _csv(tmp_path, g, {"lon": g.geometry.x, "lat": g.geometry.y})
    result, m = load({"path": str(p), "csv": {"lon": "lon", "lat": "lat"}}, key="pid")
    assert result.status == "succeeded", result.error
    check(db, m.dataset.slug, "point")


def test_csv_wkt_semicolon_cp1256(tmp_path: Path, load, db) -> None:
    g = sample("EPSG:4326", "polygon")
    p = _csv(tmp_path, g, {"wkt": g.geometry.to_wkt()}, sep=";", encoding="cp1256")
    result, m = load({"path": str(p), "csv": {"wkt": "wkt"}}, key="pid")
    assert result.status == "succeeded", result.error
    check(db, m.dataset.slug)


def test_csv_projected_xy(tmp_path: Path, load, db) -> None:
    g = sample("EPSG:32639", "point")
    p = _csv(tmp_path, g, {"x": g.geometry.x, "y": g.geometry.y}, sep="\t")
    result, m = load({"path": str(p), "crs": "EPSG:32639", "csv": {"x": "x", "y": "y"}},
                     key="pid")
    assert result.status == "succeeded", result.error
    check(db, m.dataset.slug, "point")


def test_zipped_csv(tmp_path: Path, load, db) -> None:
    g = sample("EPSG:4326", "point")
    p = _csv(tmp_path, g, {"lon": g.geometry.x, "lat": g.geometry.y})
    archive = tmp_path / "points.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(p, "points.csv")
    result, m = load({"path": str(archive), "csv": {"lon": "lon", "lat": "lat"}}, key="pid")
    assert result.status == "succeeded", result.error
    check(db, m.dataset.slug, "point")


def test_source_over_http(tmp_path: Path, load, db) -> None:
    """A manifest with a URL: downloaded into the cache, then loaded like a file."""
    import http.server
    import threading

    served = tmp_path / "www"
    served.mkdir()
    sample("EPSG:4326").to_file(served / "layer.geojson", driver="GeoJSON")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(served))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/layer.geojson"
        result, m = load({"url": url}, key="pid")
        assert result.status == "succeeded", result.error
        check(db, m.dataset.slug)
        missing, _ = load({"url": url.replace("layer", "nothing")})
        assert missing.status == "failed" and "HTTP 404" in missing.error
    finally:
        httpd.shutdown()
    shutil.rmtree(served)
