"""Runs: skipped when unchanged, versions kept and dropped, failures leave the current
version serving, and every rejected row is kept with its reason."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from catalog.database import libpq_dsn
from catalog.settings import Settings
from etl.manifest import ManifestError, load_manifest
from etl.runner import run_job
from support import current_table, write_manifest


def points_csv(path: Path, n: int, *, start: int = 1, bad_from: int | None = None) -> Path:
    lines = ["id,name,lon,lat,amount"]
    for i in range(start, start + n):
        lon = "x" if bad_from is not None and i >= bad_from else f"{51.3 + (i % 100) / 1000:.4f}"
        lines.append(f"{i},محل {i},{lon},35.70,{i * 2}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tables_of(db: psycopg.Connection, slug: str) -> list[str]:
    prefix = slug.replace("-", "_") + "_v"
    return [r[0] for r in db.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'data' AND tablename LIKE %s "
        "ORDER BY tablename", [prefix + "%"]).fetchall()]


def current_number(db: psycopg.Connection, slug: str) -> int | None:
    row = db.execute("SELECT v.number FROM catalog.datasets d LEFT JOIN catalog.versions v "
                     "ON v.id = d.current_version_id WHERE d.slug = %s", [slug]).fetchone()
    return row[0] if row else None


def test_unchanged_input_is_skipped_and_force_reloads(tmp_path: Path, load, db) -> None:
    src = points_csv(tmp_path / "p.csv", 30)
    mpath = write_manifest(tmp_path, {"path": str(src), "csv": {"lon": "lon", "lat": "lat"}},
                           key="id")
    first, m = load({}, manifest_path=mpath)
    assert first.status == "succeeded" and first.version == 1
    again, _ = load({}, manifest_path=mpath)
    assert again.status == "skipped"
    forced, _ = load({}, manifest_path=mpath, force=True)
    assert forced.status == "succeeded" and forced.version == 2
    # A changed file is loaded without --force.
    points_csv(src, 31)
    changed, _ = load({}, manifest_path=mpath)
    assert changed.status == "succeeded" and changed.version == 3
    assert current_number(db, m.dataset.slug) == 3
    statuses = [r[0] for r in db.execute(
        "SELECT status FROM catalog.etl_runs WHERE job_name = %s ORDER BY id",
        [m.name]).fetchall()]
    assert statuses == ["succeeded", "skipped", "succeeded", "succeeded"]


def test_old_versions_beyond_keep_are_dropped(tmp_path: Path, settings: Settings,
                                              database_url: str, db) -> None:
    src = points_csv(tmp_path / "p.csv", 10)
    m = load_manifest(write_manifest(tmp_path, {"path": str(src),
                                                "csv": {"lon": "lon", "lat": "lat"}}))
    s2 = settings.model_copy(update={"keep_versions": 2})
    for _ in range(4):
        r = run_job(m, url=database_url, settings=s2, force=True)
        assert r.status == "succeeded"
    slug = m.dataset.slug.replace("-", "_")
    assert tables_of(db, m.dataset.slug) == [f"{slug}_v3", f"{slug}_v4"]
    versions = db.execute("SELECT number, status FROM catalog.versions v JOIN catalog.datasets d"
                          " ON d.id = v.dataset_id WHERE d.slug = %s ORDER BY number",
                          [m.dataset.slug]).fetchall()
    assert versions == [(1, "dropped"), (2, "dropped"), (3, "previous"), (4, "current")]


def test_too_many_rejects_fail_and_leave_previous_version(tmp_path: Path, load, db) -> None:
    src = points_csv(tmp_path / "p.csv", 40)
    mpath = write_manifest(tmp_path, {"path": str(src), "csv": {"lon": "lon", "lat": "lat"}},
                           key="id", max_rejected=0.25)
    ok, m = load({}, manifest_path=mpath)
    assert ok.status == "succeeded"
    points_csv(src, 40, bad_from=11)  # 30 of 40 rows lose their longitude
    bad, _ = load({}, manifest_path=mpath)
    assert bad.status == "failed"
    assert "30 of 40 rows were rejected" in bad.error and "max_rejected" in bad.error
    assert current_number(db, m.dataset.slug) == 1
    assert tables_of(db, m.dataset.slug) == [m.dataset.slug.replace("-", "_") + "_v1"]
    assert db.execute(f"SELECT count(*) FROM {current_table(db, m.dataset.slug)}"
                      ).fetchone()[0] == 40
    reasons = db.execute("SELECT count(*), min(reason) FROM catalog.rejected_rows "
                         "WHERE run_id = %s", [bad.run_id]).fetchone()
    assert reasons[0] == 30 and "lon/lat are not numbers ('x', '35.70')" in reasons[1]


def test_database_dying_half_way_leaves_previous_version(tmp_path: Path, settings: Settings,
                                                         database_url: str, db) -> None:
    src = points_csv(tmp_path / "p.csv", 5000)
    m = load_manifest(write_manifest(tmp_path, {"path": str(src),
                                                "csv": {"lon": "lon", "lat": "lat"}}))
    assert run_job(m, url=database_url, settings=settings).status == "succeeded"
    points_csv(src, 5000, start=10_001)

    def kill_copy(done: int, total: int | None) -> None:
        # After the first batch is sent, end the server process doing the COPY.
        with psycopg.connect(libpq_dsn(database_url), autocommit=True) as c:
            c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      """WHERE query LIKE 'COPY "data".%%' AND pid <> pg_backend_pid()""")

    r = run_job(m, url=database_url, settings=settings, on_progress=kill_copy)
    assert r.status == "failed"
    assert r.error
    assert current_number(db, m.dataset.slug) == 1
    assert tables_of(db, m.dataset.slug) == [m.dataset.slug.replace("-", "_") + "_v1"]
    first_id = db.execute(f"SELECT min(id) FROM {current_table(db, m.dataset.slug)}"
                          ).fetchone()[0]
    assert first_id == 1  # still the old data
    run = db.execute("SELECT status, error, finished_at IS NOT NULL FROM catalog.etl_runs "
                     "WHERE id = %s", [r.run_id]).fetchone()
    assert run[0] == "failed" and run[1] and run[2]


def test_rejects_keep_row_field_reason_and_raw_values(tmp_path: Path, load, db) -> None:
    src = tmp_path / "r.csv"
    src.write_text(
        "id,name,lon,lat,units\n"
        "1,الف,51.40,35.70,12\n"
        "2,ب,,,5\n"                 # no geometry
        "3,پ,51.41,35.71,dozen\n"   # not a whole number
        "1,ت,51.42,35.72,3\n"       # duplicate key
        ",ث,51.43,35.73,4\n"        # missing key
        "6,ج,51.44,35.74,7,extra\n"  # too many fields
        "7,چ,51.45,35.75,8\n", encoding="utf-8")
    result, m = load({"path": str(src), "csv": {"lon": "lon", "lat": "lat"}}, key="id",
                     fields=[{"source": "units", "type": "integer"}], max_rejected=1)
    assert result.status == "succeeded", result.error
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (7, 2, 5)
    rows = db.execute("SELECT source_row, field, reason, raw FROM catalog.rejected_rows "
                      "WHERE run_id = %s ORDER BY source_row", [result.run_id]).fetchall()
    by_row = {r[0]: r for r in rows}
    assert by_row[2][1] == "geometry" and by_row[2][2] == "lon/lat are empty"
    assert by_row[3][1] == "units" and "'dozen' is not a valid whole number" in by_row[3][2]
    assert by_row[3][3]["name"] == "پ" and by_row[3][3]["units"] == "dozen"
    assert "duplicate key id=1 (first at row 1)" in by_row[4][2]
    assert by_row[5][2] == "key id is missing"
    assert any("expected 5 fields, found 6" in r[2] for r in rows)
    loaded = db.execute(f"SELECT id, units FROM {current_table(db, m.dataset.slug)} ORDER BY id"
                        ).fetchall()
    assert loaded == [(1, 12), (7, 8)]


@pytest.mark.parametrize("text,expected", [
    ("dataset: [", "not valid YAML"),
    ("just a string", "a mapping with `dataset` and `source`"),
    ("dataset: {slug: x, title: {en: X}, theme: parks, organisation: {slug: o, name: {en: O}}}\n"
     "source: {path: a.csv}", "dataset.theme"),
    ("dataset: {slug: Bad Slug, title: {en: X}, theme: traffic, organisation: {slug: o, name: "
     "{en: O}}}\nsource: {path: a.csv, url: 'http://x'}", "dataset.slug"),
    ("dataset: {slug: ok, title: {en: X}, theme: traffic, organisation: {slug: o, name: "
     "{en: O}}}\nsource: {path: a.csv, csv: {x: e, y: n}}", "need the source `crs`"),
])
def test_bad_manifests_say_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    p = tmp_path / "job.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError) as exc:
        load_manifest(p)
    assert str(p) in str(exc.value) and expected in str(exc.value)


def test_missing_source_and_unknown_field_are_clear(tmp_path: Path, load) -> None:
    r, _ = load({"path": str(tmp_path / "nope.geojson")})
    assert r.status == "failed" and "nope.geojson does not exist" in r.error
    src = points_csv(tmp_path / "p.csv", 3)
    r, _ = load({"path": str(src), "csv": {"lon": "lon", "lat": "lat"}},
                fields=[{"source": "populaton", "type": "integer"}])
    assert r.status == "failed" and "'populaton' is not in the source" in r.error
    assert "amount" in r.error  # lists the columns there are
    r, _ = load({"path": str(src), "csv": {"lon": "longitude", "lat": "lat"}})
    assert r.status == "failed" and "longitude" in r.error and "not in the header" in r.error
