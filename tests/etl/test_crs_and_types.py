"""Reprojection accuracy, impossible coordinates, and typing from all values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from support import current_table

# GRS80/WGS 84 ellipsoid
A, F = 6378137.0, 1 / 298.257223563


def utm_northing_on_central_meridian(lat_deg: float) -> float:
    """k0 x meridian arc length, by the series of Helmert (independent of PROJ)."""
    n = F / (2 - F)
    phi = math.radians(lat_deg)
    a_hat = A / (1 + n) * (1 + n**2 / 4 + n**4 / 64)
    m = a_hat * (phi
                 - (3 * n / 2 - 9 * n**3 / 16) * math.sin(2 * phi)
                 + (15 * n**2 / 16 - 15 * n**4 / 32) * math.sin(4 * phi)
                 - (35 * n**3 / 48) * math.sin(6 * phi)
                 + (315 * n**4 / 512) * math.sin(8 * phi))
    return 0.9996 * m


def test_known_utm_point_lands_within_a_centimetre(tmp_path: Path, load, db) -> None:
    # On zone 39's central meridian (51 E) easting is exactly 500 000 m.
    lat = 35.7
    northing = utm_northing_on_central_meridian(lat)
    p = tmp_path / "pt.csv"
    p.write_text(f"id,x,y\n1,500000.0,{northing:.4f}\n", encoding="utf-8")
    result, m = load({"path": str(p), "crs": "EPSG:32639", "csv": {"x": "x", "y": "y"}})
    assert result.status == "succeeded", result.error
    # Distance on the ellipsoid between what was stored and the true point.
    d = db.execute(f"""SELECT ST_Distance(geom::geography,
                         ST_SetSRID(ST_MakePoint(51.0, %s), 4326)::geography, true)
                       FROM {current_table(db, m.dataset.slug)}""", [lat]).fetchone()[0]
    assert d < 0.01


def test_state_plane_feet_declared_as_wgs84_is_a_clear_error(tmp_path: Path, load, db) -> None:
    p = tmp_path / "chicago_sp.csv"
    rows = "\n".join(f"{i},{1_173_000 + i * 10},{1_890_000 + i * 7}" for i in range(20))
    p.write_text("id,lon,lat\n" + rows + "\n", encoding="utf-8")
    result, m = load({"path": str(p), "csv": {"lon": "lon", "lat": "lat"}})
    assert result.status == "failed"
    assert "impossible in the declared CRS EPSG:4326" in result.error
    assert "projected" in result.error and "source.crs" in result.error
    # Nothing published, and each row's reason is kept.
    pub = db.execute("SELECT current_version_id FROM catalog.datasets WHERE slug = %s",
                     [m.dataset.slug]).fetchone()
    assert pub == (None,)
    n = db.execute("SELECT count(*) FROM catalog.rejected_rows WHERE run_id = %s",
                   [result.run_id]).fetchone()[0]
    assert n == 20


def test_a_few_impossible_rows_are_rejected_not_fatal(tmp_path: Path, load, db) -> None:
    p = tmp_path / "pts.csv"
    good = "\n".join(f"{i},51.{i:02d},35.7" for i in range(1, 20))
    p.write_text("id,lon,lat\n" + good + "\n20,5140.0,35.7\n", encoding="utf-8")
    result, _ = load({"path": str(p), "csv": {"lon": "lon", "lat": "lat"}})
    assert result.status == "succeeded", result.error
    assert (result.rows_loaded, result.rows_rejected) == (19, 1)
    reason = db.execute("SELECT source_row, reason FROM catalog.rejected_rows WHERE run_id = %s",
                        [result.run_id]).fetchone()
    assert reason[0] == 20 and "impossible" in reason[1]


def test_types_come_from_all_values_not_the_first_rows(tmp_path: Path, load, db) -> None:
    lines = ["id,lon,lat,code,amount,flag,when,jalali"]
    for i in range(1, 3001):
        code = "A-7" if i == 2999 else str(i)  # one text value deep in the file
        amount = f"{i}.5" if i % 2 else str(i)
        lines.append(f"{i},51.4,35.7,{code},{amount},{'yes' if i % 3 else 'no'},"
                     f"2024-01-{(i % 28) + 1:02d},1402/05/{(i % 28) + 1:02d}")
    p = tmp_path / "typed.csv"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result, m = load({"path": str(p), "csv": {"lon": "lon", "lat": "lat"}})
    assert result.status == "succeeded", result.error
    table = current_table(db, m.dataset.slug)
    types = dict(db.execute("SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_schema = 'data' AND table_name = %s",
                            [table.split('"')[1]]).fetchall())
    assert types["id"] == "bigint"
    assert types["code"] == "text"
    assert types["amount"] == "double precision"
    assert types["flag"] == "boolean"
    assert types["when"] == "date"
    assert types["jalali"] == "text"  # not guessed: the manifest must say it is Jalali
    assert any("look like Jalali dates" in w for w in result.warnings)
    fields = dict(db.execute("SELECT f.name, f.type FROM catalog.fields f JOIN catalog.datasets d"
                             " ON d.id = f.dataset_id WHERE d.slug = %s",
                             [m.dataset.slug]).fetchall())
    assert fields["amount"] == "number" and fields["code"] == "string"


def test_persian_digits_and_jalali_dates(tmp_path: Path, load, db) -> None:
    p = tmp_path / "crashes.csv"
    p.write_text(
        "شناسه,lon,lat,تاریخ,تعداد\n"
        "۱,51.40,35.70,۱۴۰۲/۰۵/۱۲,۳\n"
        "2,51.41,35.71,1403/12/30,4\n"
        "3,51.42,35.72,1402/12/30,5\n"   # 1402 is not a leap year: no 30 Esfand
        "4,51.43,35.73,,٦\n", encoding="utf-8")
    fields = [{"source": "شناسه", "name": "crash_id", "type": "integer"},
              {"source": "تاریخ", "name": "crash_date", "type": "date", "calendar": "jalali"},
              {"source": "تعداد", "name": "vehicles", "type": "integer"}]
    result, m = load({"path": str(p), "csv": {"lon": "lon", "lat": "lat"}}, key="شناسه",
                     fields=fields)
    assert result.status == "succeeded", result.error
    rows = db.execute(f"SELECT crash_id, crash_date::text, vehicles FROM "
                      f"{current_table(db, m.dataset.slug)} ORDER BY crash_id").fetchall()
    assert rows == [(1, "2023-08-03", 3), (2, "2025-03-20", 4), (4, None, 6)]
    rej = db.execute("SELECT source_row, field, reason, raw->>'تاریخ' FROM catalog.rejected_rows "
                     "WHERE run_id = %s", [result.run_id]).fetchall()
    assert len(rej) == 1
    row, field, reason, raw = rej[0]
    assert (row, field, raw) == (3, "تاریخ", "1402/12/30")
    assert "Esfand 1402" in reason and "not a leap year" in reason


def test_declared_dates_and_case_insensitive_key(tmp_path: Path, load, db) -> None:
    p = tmp_path / "d.csv"
    p.write_text("ID,lon,lat,opened,stamp\n1,51.4,35.7,2024/3/5,2024-03-05 08:30\n"
                 "2,51.5,35.8,2023-12-31,2024-03-05T09:00:00+03:30\n"
                 "3,51.6,35.9,2023-02-30,2024-03-05 10:00\n", encoding="utf-8")
    fields = [{"source": "opened", "type": "date"}, {"source": "stamp", "type": "datetime"}]
    result, m = load({"path": str(p), "csv": {"lon": "lon", "lat": "lat"}}, key="id",
                     fields=fields)
    assert result.status == "succeeded", result.error
    rows = db.execute(f"SELECT id, opened::text, stamp AT TIME ZONE 'UTC' FROM "
                      f"{current_table(db, m.dataset.slug)} ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(1, "2024-03-05"), (2, "2023-12-31")]
    assert str(rows[1][2]) == "2024-03-05 05:30:00"
    rej = db.execute("SELECT source_row, reason FROM catalog.rejected_rows WHERE run_id = %s",
                     [result.run_id]).fetchall()
    assert rej == [(3, "opened: '2023-02-30' is not a valid date (YYYY-MM-DD)")]


@pytest.mark.parametrize("decimal_sep", [","])
def test_decimal_comma_csv(tmp_path: Path, load, db, decimal_sep: str) -> None:
    p = tmp_path / "eu.csv"
    p.write_text("id;lon;lat;value\n1;4,35;50,85;1.234,5\n2;4,36;50,86;2,25\n", encoding="utf-8")
    result, m = load({"path": str(p), "csv": {"lon": "lon", "lat": "lat", "decimal": ","}})
    assert result.status == "succeeded", result.error
    rows = db.execute(f"SELECT value, ST_X(geom), ST_Y(geom) FROM "
                      f"{current_table(db, m.dataset.slug)} ORDER BY id").fetchall()
    assert rows == [(1234.5, 4.35, 50.85), (2.25, 4.36, 50.86)]
