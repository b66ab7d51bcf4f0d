"""The two real municipal files, read in place from ../shared/data/real, with their traps."""

from __future__ import annotations

import pytest

from support import REAL_DATA, current_table

TEHRAN = REAL_DATA / "tehran_mahalat" / "Mahalat_Tehran.shp"
CHICAGO = REAL_DATA / "chicago_buildings" / "chicago_buildings_tract3102.geojson"

pytestmark = pytest.mark.skipif(not TEHRAN.exists(), reason="shared real data not present")


def test_tehran_neighbourhoods(load, db) -> None:
    result, m = load({"path": str(TEHRAN)}, key="code")
    assert result.status == "succeeded", result.error
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (375, 375, 0)
    table = current_table(db, m.dataset.slug)
    # Arabic Yeh/Kaf are folded to Persian forms in every text column.
    arabic = db.execute(f"SELECT count(*) FROM {table} WHERE name_mahal ~ '[يك]' "
                        "OR name ~ '[يك]'").fetchone()[0]
    assert arabic == 0
    persian = db.execute(f"SELECT count(*) FROM {table} WHERE name_mahal ~ '[یک]'").fetchone()[0]
    assert persian > 250
    # Names repeat across districts; `code` is the key and is unique.
    dup_names, codes = db.execute(
        f"SELECT count(*) - count(DISTINCT name_mahal), count(DISTINCT code) FROM {table}"
    ).fetchone()
    assert dup_names > 0 and codes == 375
    # U+FFFD in `name` is kept (nothing silently changed) and flagged on the run.
    fffd = db.execute(f"SELECT count(*) FROM {table} WHERE name LIKE '%' || chr(65533) || '%'"
                      ).fetchone()[0]
    assert fffd > 0
    warning = [w for w in result.warnings if "U+FFFD" in w]
    assert warning and warning[0].startswith(f"name: {fffd} values")
    stored = db.execute("SELECT warnings FROM catalog.etl_runs WHERE id = %s",
                        [result.run_id]).fetchone()[0]
    assert any("U+FFFD" in w for w in stored)
    # Reprojected from UTM 39N: Tehran lies around 51.1-51.6 E, 35.55-35.85 N.
    ext = db.execute("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                     f"(SELECT ST_Extent(geom) e FROM {table}) s").fetchone()
    assert 51.0 < ext[0] < ext[2] < 51.7 and 35.5 < ext[1] < ext[3] < 35.9
    meta = db.execute("SELECT source_crs, source_encoding, feature_count, geometry_type "
                      "FROM catalog.datasets WHERE slug = %s", [m.dataset.slug]).fetchone()
    assert meta == ("EPSG:32639", "utf-8", 375, "MultiPolygon")


def test_chicago_buildings(load, db) -> None:
    fields = [{"source": "year_built", "null_values": ["0"]},
              {"source": "no_of_unit", "null_values": ["0"]}]
    result, m = load({"path": str(CHICAGO)}, key="bldg_id", fields=fields)
    assert result.status == "succeeded", result.error
    assert (result.rows_loaded, result.rows_rejected, result.rows_repaired) == (392, 0, 1)
    table = current_table(db, m.dataset.slug)
    types = dict(db.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'data' AND table_name = %s", [table.split('"')[1]]).fetchall())
    # Every property is a string in the file; the values make them numbers and dates.
    assert types["no_of_unit"] == "bigint"
    assert types["stories"] == "bigint"
    assert types["year_built"] == "bigint"
    assert types["bldg_id"] == "bigint"
    assert types["shape_area"] == "double precision"
    assert types["edit_date"] == "timestamp with time zone"  # "2003/06/16 07:00:00+00"
    # "0" means unknown where the manifest says so.
    zeros = db.execute(f"SELECT count(*) FILTER (WHERE year_built = 0), "
                       f"count(*) FILTER (WHERE year_built IS NULL) FROM {table}").fetchone()
    assert zeros[0] == 0 and zeros[1] > 0
    # The self-intersecting building is there, repaired and valid.
    valid = db.execute(f"SELECT ST_IsValid(geom) FROM {table} WHERE bldg_id = 836787").fetchone()
    assert valid == (True,)
    assert db.execute(f"SELECT bool_and(ST_IsValid(geom)) FROM {table}").fetchone()[0]
    run = db.execute("SELECT rows_repaired FROM catalog.etl_runs WHERE id = %s",
                     [result.run_id]).fetchone()
    assert run == (1,)
