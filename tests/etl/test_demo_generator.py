"""The demo-city generator: deterministic, idempotent, and every file is what its manifest
says it is (format, CRS, geometry type, size, encoding, the deliberately bad rows).

Guarantee tested here: the same seed and size give byte-identical files (every format,
including GeoPackage, zipped Shapefile and KMZ) with the same libraries on the same machine.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from etl.demo import generate_city, write_parcels
from etl.demo.generate import STAMP_NAME
from etl.manifest import THEMES, load_manifest

DEFAULT_PARCELS = 6000
JOBS = {
    "districts", "landuse-parcels", "buildings", "schools", "hospitals", "fire-stations",
    "metro-stations", "bus-stops", "metro-lines", "roads", "crashes", "traffic-sensors",
}
# job -> (format, CRS the file declares, geometry type of its features)
SPATIAL = {
    "districts": ("geojson", "EPSG:4326", {"Polygon"}),
    "landuse-parcels": ("shapefile", "EPSG:32639", {"Polygon", "MultiPolygon"}),
    "buildings": ("gpkg", "EPSG:3857", {"Polygon"}),
    "schools": ("geojson", "EPSG:4326", {"Point"}),
    "hospitals": ("kml", "EPSG:4326", {"Point"}),
    "fire-stations": ("geojson", "EPSG:4326", {"Point"}),
    "metro-stations": ("gpkg", "EPSG:32639", {"Point"}),
    "metro-lines": ("kmz", "EPSG:4326", {"LineString"}),
    "roads": ("flatgeobuf", "EPSG:32639", {"LineString"}),
}
JALALI_DATE = re.compile(r"^[0-9۰-۹]{4}/[0-9۰-۹]{2}/[0-9۰-۹]{2}$")


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    generate_city(out)
    return out


@pytest.fixture(scope="module")
def manifests(city: Path) -> dict[str, Path]:
    return {p.stem: p for p in city.glob("*.yaml")}


def _source(manifests: dict[str, Path], job: str) -> Path:
    return load_manifest(manifests[job]).resolve_path()


def _in_zip(zip_path: Path) -> str:
    """GDAL's name for the Shapefile in the demo's zip (a str: Path would eat the '//')."""
    return f"/vsizip/{zip_path}/landuse_parcels.shp"


def _parcels(manifests: dict[str, Path]) -> pd.DataFrame:
    return pyogrio.read_dataframe(_in_zip(_source(manifests, "landuse-parcels")),
                                  encoding="cp1256")


# --- determinism and idempotence --------------------------------------------------------


def test_same_seed_gives_byte_identical_files(city: Path, tmp_path: Path) -> None:
    again = generate_city(tmp_path)
    assert {p.name for p in again} == {f"{job}.yaml" for job in JOBS}
    first, second = _hashes(city), _hashes(tmp_path)
    assert first == second
    recorded = json.loads((city / STAMP_NAME).read_text())["files"]
    assert recorded == {k: v for k, v in first.items() if k != STAMP_NAME}


def test_another_seed_gives_another_city(city: Path, tmp_path: Path) -> None:
    generate_city(tmp_path, seed=7, parcels=1000)
    assert _hashes(tmp_path)["districts.geojson"] != _hashes(city)["districts.geojson"]


def test_second_call_writes_nothing(tmp_path: Path) -> None:
    first = generate_city(tmp_path, parcels=1000)
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    second = generate_city(tmp_path, parcels=1000)
    assert second == first
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == mtimes


def test_force_or_another_size_regenerates(tmp_path: Path) -> None:
    generate_city(tmp_path, parcels=1000)
    before = _hashes(tmp_path)
    generate_city(tmp_path, parcels=1000, force=True)
    assert _hashes(tmp_path) == before  # rewritten, same bytes
    generate_city(tmp_path, parcels=1200)
    assert json.loads((tmp_path / STAMP_NAME).read_text())["parcels"] == 1200
    assert _hashes(tmp_path)["landuse_parcels.zip"] != before["landuse_parcels.zip"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".demo-tmp")]


def test_a_missing_file_regenerates(tmp_path: Path) -> None:
    generate_city(tmp_path, parcels=1000)
    (tmp_path / "roads.fgb").unlink()
    generate_city(tmp_path, parcels=1000)
    assert (tmp_path / "roads.fgb").is_file()


# --- manifests --------------------------------------------------------------------------


def test_every_manifest_validates(manifests: dict[str, Path]) -> None:
    assert set(manifests) == JOBS
    orgs = set()
    for job, path in manifests.items():
        m = load_manifest(path)
        d = m.dataset
        assert d.slug == job == m.name
        assert d.synthetic is True and d.licence == "CC-BY-4.0"
        assert d.theme in THEMES
        assert d.title.fa and d.title.en
        assert d.description and "ساختگی" in d.description.fa and "Synthetic" in d.description.en
        assert "synthetic" in d.keywords and "ساختگی" in d.keywords
        assert m.source.path == Path(m.source.path).name and m.resolve_path().is_file()
        assert m.key and m.fields and all(f.label and f.label.fa and f.label.en for f in m.fields)
        orgs.add((d.theme == "traffic", d.organisation.slug))
    assert orgs == {(False, "nemuneh-municipality"), (True, "nemuneh-traffic")}
    assert load_manifest(manifests["landuse-parcels"]).source.encoding is None


def _columns(m_path: Path) -> set[str]:
    m = load_manifest(m_path)
    path: Path | str = m.resolve_path()
    if m.source.format == "csv":
        delimiter = (m.source.csv.delimiter if m.source.csv else None) or ","
        with path.open(encoding="utf-8") as f:
            return set(next(csv.reader(f, delimiter=delimiter)))
    if m.source.format == "shapefile":
        path = _in_zip(m.resolve_path())
    return set(pyogrio.read_info(path, layer=m.source.layer)["fields"])


def test_manifest_fields_and_keys_exist_in_their_sources(manifests: dict[str, Path]) -> None:
    for path in manifests.values():
        m = load_manifest(path)
        columns = _columns(path)
        assert m.key in columns, (m.name, m.key)
        missing = {f.source for f in m.fields} - columns
        assert not missing, (m.name, missing)


def test_manifest_types_the_etl_must_enforce(manifests: dict[str, Path]) -> None:
    area = load_manifest(manifests["landuse-parcels"]).field_for("AREA_M2")
    assert area and area.type == "number" and area.unit == "m2"
    built = load_manifest(manifests["buildings"]).field_for("year_built")
    assert built and built.type == "date" and built.calendar == "jalali"
    crash_date = load_manifest(manifests["crashes"]).field_for("date")
    assert crash_date and crash_date.calendar == "jalali"
    roads = load_manifest(manifests["roads"])
    assert {f.source: f.unit for f in roads.fields if f.unit} == {
        "speed_limit": "km/h", "capacity": "vehicles/h", "aadt": "vehicles/day",
        "mean_speed": "km/h", "length_m": "m",
    }
    bus = load_manifest(manifests["bus-stops"]).source
    assert bus.crs == "EPSG:32639" and bus.csv and (bus.csv.x, bus.csv.y) == ("x", "y")


# --- the source files -------------------------------------------------------------------


@pytest.mark.parametrize("job", sorted(SPATIAL))
def test_spatial_sources_open_with_their_crs_and_geometry(
    manifests: dict[str, Path], job: str
) -> None:
    fmt, crs, types = SPATIAL[job]
    m = load_manifest(manifests[job])
    assert m.source.format == fmt
    path: Path | str = m.resolve_path()
    if fmt == "shapefile":
        path = _in_zip(m.resolve_path())
    info = pyogrio.read_info(path, layer=m.source.layer)
    assert info["crs"] == crs
    df = pyogrio.read_dataframe(path, layer=m.source.layer)
    assert len(df) == info["features"] > 0
    assert set(df.geometry.dropna().geom_type) <= types


def test_sizes_at_the_default_scale(manifests: dict[str, Path]) -> None:
    def count(job: str) -> int:
        m = load_manifest(manifests[job])
        path = m.resolve_path()
        if m.source.format == "csv":
            with path.open(encoding="utf-8") as f:
                return sum(1 for _ in f) - 1
        where = _in_zip(path) if m.source.format == "shapefile" else path
        return int(pyogrio.read_info(where, layer=m.source.layer)["features"])

    assert count("districts") == 22
    assert count("fire-stations") == 40
    assert count("landuse-parcels") == DEFAULT_PARCELS
    assert 1.1 * DEFAULT_PARCELS < count("buildings") < 1.4 * DEFAULT_PARCELS
    assert count("crashes") == DEFAULT_PARCELS // 2
    assert count("metro-lines") == 4
    for job in ("schools", "hospitals", "metro-stations", "bus-stops", "roads",
                "traffic-sensors"):
        assert count(job) > 0, job


def test_csv_sources_open_with_gdal(manifests: dict[str, Path]) -> None:
    bus = pyogrio.read_dataframe(_source(manifests, "bus-stops"), X_POSSIBLE_NAMES="x",
                                 Y_POSSIBLE_NAMES="y")
    assert len(bus) == DEFAULT_PARCELS // 6 and bus.geometry.notna().all()
    x, y = bus.geometry.x, bus.geometry.y  # EPSG:32639 metres around the city centre
    assert x.between(515_000, 557_000).all() and y.between(3_935_000, 3_967_000).all()
    crashes = pyogrio.read_dataframe(_source(manifests, "crashes"), X_POSSIBLE_NAMES="lon",
                                     Y_POSSIBLE_NAMES="lat")
    assert crashes.geometry.isna().sum() == 1
    assert crashes.geometry.dropna().x.between(51.1, 51.7).all()
    assert crashes.geometry.dropna().y.between(35.5, 35.9).all()
    sensors = pyogrio.read_dataframe(_source(manifests, "traffic-sensors"),
                                     GEOM_POSSIBLE_NAMES="geometry", KEEP_GEOM_COLUMNS="NO")
    assert len(sensors) % 24 == 0 and set(sensors.geometry.geom_type) == {"Point"}
    assert sensors["reading_id"].is_unique


def test_parcels_zip_is_cp1256_without_cpg(manifests: dict[str, Path]) -> None:
    with zipfile.ZipFile(_source(manifests, "landuse-parcels")) as zf:
        names = zf.namelist()
        dbf = zf.read("landuse_parcels.dbf")
    assert sorted(names) == sorted(f"landuse_parcels.{e}" for e in ("shp", "shx", "dbf", "prj"))
    with pytest.raises(UnicodeDecodeError):
        dbf.decode("utf-8")
    text = dbf.decode("cp1256")
    assert "ي" in text and "ك" in text  # Arabic yeh and kaf ...
    assert "ک" in text  # ... and Persian keheh alongside (cp1256 has no Persian yeh)
    owners = _parcels(manifests)["OWNER"]
    assert owners.str.contains("ك").sum() > len(owners) * 0.05


def test_parcels_carry_the_deliberate_defects(manifests: dict[str, Path]) -> None:
    df = _parcels(manifests)
    assert df["PARCEL_ID"].is_unique and len(df) == DEFAULT_PARCELS
    assert df.geometry.isna().sum() == 1
    present = df.geometry.dropna()
    assert (~present.is_valid).sum() == 1  # the bow-tie
    assert (present.geom_type == "MultiPolygon").sum() >= 3
    area = df["AREA_M2"]
    assert pd.api.types.is_string_dtype(area)  # text in the DBF, declared `number`
    given = area[area.notna() & (area != "")]
    assert list(given[pd.to_numeric(given, errors="coerce").isna()]) == ["12o5.4"]
    valid = present[present.is_valid].values
    assert shapely.union_all(valid).area == pytest.approx(shapely.area(valid).sum(), rel=1e-9)
    assert set(df["LANDUSE"]) >= {"residential", "commercial", "industrial", "green space"}


def test_districts_tile_the_city_and_cover_the_parcels(manifests: dict[str, Path]) -> None:
    districts = pyogrio.read_dataframe(_source(manifests, "districts")).to_crs("EPSG:32639")
    assert sorted(districts["district"]) == list(range(1, 23))
    assert districts.loc[districts["district"] == 1, "name_fa"].item() == "منطقه ۱"
    assert districts["population"].gt(0).all()
    polys = districts.geometry.values
    assert shapely.union_all(polys).area == pytest.approx(shapely.area(polys).sum(), rel=1e-6)
    df = _parcels(manifests)
    df = df[df.geometry.notna() & df.geometry.is_valid]
    city = shapely.buffer(shapely.union_all(polys), 0.1)  # GeoJSON keeps ~1 cm
    assert shapely.covered_by(df.geometry.values, city).all()
    points = shapely.point_on_surface(df.geometry.values)
    inside = np.array([shapely.contains(polys[d - 1], p) for d, p in zip(
        districts.set_index("district").index.get_indexer(df["DISTRICT"]) + 1, points,
        strict=True)])
    assert inside.all()


def test_forty_fire_stations(manifests: dict[str, Path]) -> None:
    fire = pyogrio.read_dataframe(_source(manifests, "fire-stations"))
    assert len(fire) == 40 and sorted(fire["station_id"]) == list(range(1, 41))
    assert fire["name_fa"].str.startswith("ایستگاه آتش‌نشانی شماره ").all()


@pytest.mark.parametrize(
    "job", ["schools", "hospitals", "fire-stations", "metro-stations", "metro-lines", "bus-stops"]
)
def test_infrastructure_lies_in_the_city(manifests: dict[str, Path], job: str) -> None:
    districts = pyogrio.read_dataframe(_source(manifests, "districts"))
    city = shapely.buffer(districts.union_all(), 1e-6)
    if job == "bus-stops":
        df = pyogrio.read_dataframe(_source(manifests, job), X_POSSIBLE_NAMES="x",
                                    Y_POSSIBLE_NAMES="y").set_crs("EPSG:32639")
    else:
        df = pyogrio.read_dataframe(_source(manifests, job), layer=load_manifest(
            manifests[job]).source.layer)
    assert shapely.within(df.to_crs("EPSG:4326").geometry.values, city).all()


def test_buildings_stand_apart_on_their_parcels(manifests: dict[str, Path]) -> None:
    built = pyogrio.read_dataframe(_source(manifests, "buildings")).to_crs("EPSG:32639")
    assert built["building_id"].is_unique
    footprints = built.geometry.values
    assert shapely.is_valid(footprints).all()
    assert shapely.union_all(footprints).area == pytest.approx(
        shapely.area(footprints).sum(), rel=1e-6)
    parcels = _parcels(manifests).set_index("PARCEL_ID").geometry
    host = shapely.buffer(parcels.loc[built["parcel_id"]].values, 0.05)  # ~1 cm of 3857 noise
    assert shapely.within(footprints, host).all()
    assert set(built["use"]) == {"residential", "mixed", "commercial"}
    assert built["units"].sum() > 0


def test_gdal_clock_is_restored(city: Path) -> None:
    assert pyogrio.get_gdal_config_option("OGR_CURRENT_DATE") is None


def test_jalali_dates(manifests: dict[str, Path]) -> None:
    built = pyogrio.read_dataframe(_source(manifests, "buildings"), read_geometry=False)
    years = built["year_built"].dropna()
    assert years.map(lambda s: bool(JALALI_DATE.match(s))).all()
    assert years.str.contains("۱").any() and years.str.match(r"^\d{4}/").any()
    assert 0 < built["year_built"].isna().sum() < len(built) * 0.05
    crashes = pd.read_csv(_source(manifests, "crashes"), dtype=str, keep_default_na=False)
    ok = crashes["date"].str.match(r"^14(01|02)/(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])$")
    assert list(crashes.loc[~ok, "date"]) == ["1402/13/45"]
    assert ((crashes["lon"] == "") & (crashes["lat"] == "")).sum() == 1


def test_sizes_scale_with_parcels(tmp_path: Path) -> None:
    generate_city(tmp_path, parcels=1000)
    assert pyogrio.read_info(_in_zip(tmp_path / "landuse_parcels.zip"))["features"] == 1000
    assert pyogrio.read_info(tmp_path / "fire_stations.geojson")["features"] == 40
    assert pyogrio.read_info(tmp_path / "districts.geojson")["features"] == 22
    with (tmp_path / "crashes.csv").open(encoding="utf-8") as f:
        assert sum(1 for _ in f) - 1 == 500


def test_too_few_parcels_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least"):
        generate_city(tmp_path, parcels=10)


# --- write_parcels (benchmarks) ---------------------------------------------------------


def test_write_parcels(tmp_path: Path) -> None:
    path = tmp_path / "parcels.gpkg"
    write_parcels(path, n=20_000)
    info = pyogrio.read_info(path, layer="parcels")
    assert info["features"] == 20_000
    assert info["crs"] == "EPSG:32639" and info["geometry_type"] == "Polygon"
    df = pyogrio.read_dataframe(path, layer="parcels")
    assert df["parcel_id"].is_unique and df.geometry.is_valid.all()
    assert shapely.union_all(df.geometry.values).area == pytest.approx(df.area.sum(), rel=1e-9)
    again = tmp_path / "again.gpkg"
    write_parcels(again, n=20_000)
    assert again.read_bytes() == path.read_bytes()


def test_write_parcels_in_another_crs(tmp_path: Path) -> None:
    path = tmp_path / "p.gpkg"
    write_parcels(path, n=500, crs="EPSG:4326")
    info = pyogrio.read_info(path)
    assert info["crs"] == "EPSG:4326" and info["features"] == 500
