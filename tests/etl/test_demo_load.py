"""The demo city loads as `make demo` loads it: every job, the planted bad rows in the
rejects with their reasons, Persian text from the cp1256 Shapefile, Jalali dates."""

from __future__ import annotations

from support import current_table


def test_every_demo_job_publishes(demo_loaded: dict) -> None:
    assert len(demo_loaded) == 12
    failed = {k: r.error for k, r in demo_loaded.items() if r.status != "succeeded"}
    assert not failed


def test_planted_bad_rows_are_rejected_with_reasons(demo_loaded: dict, db) -> None:
    parcels = demo_loaded["landuse-parcels"]
    assert parcels.rows_repaired == 1  # the bow-tie
    reasons = [r[0] for r in db.execute(
        "SELECT reason FROM catalog.rejected_rows WHERE run_id = %s ORDER BY source_row",
        [parcels.run_id]).fetchall()]
    assert any("'12o5.4' is not a valid number" in r for r in reasons)
    assert "no geometry" in reasons
    crashes = demo_loaded["crashes"]
    reasons = [r[0] for r in db.execute(
        "SELECT reason FROM catalog.rejected_rows WHERE run_id = %s", [crashes.run_id])]
    assert any("lon/lat are empty" in r for r in reasons)
    assert any("invalid Jalali date" in r for r in reasons)


def test_cp1256_shapefile_gives_persian_text(demo_loaded: dict, db) -> None:
    enc = db.execute("SELECT source_encoding FROM catalog.datasets WHERE slug = "
                     "'landuse-parcels'").fetchone()[0]
    assert enc == "cp1256"
    table = current_table(db, "landuse-parcels")
    arabic, persian = db.execute(
        f"SELECT count(*) FILTER (WHERE owner ~ '[يك]'), count(*) FILTER (WHERE owner ~ '[یک]')"
        f" FROM {table}").fetchone()
    assert arabic == 0 and persian > 100
    labels = {r[0] for r in db.execute(f"SELECT DISTINCT landuse_fa FROM {table}")}
    assert "مسکونی" in labels


def test_jalali_dates_are_stored_gregorian(demo_loaded: dict, db) -> None:
    table = current_table(db, "crashes")
    kind = db.execute("SELECT data_type FROM information_schema.columns WHERE table_schema ="
                      " 'data' AND table_name = %s AND column_name = 'date'",
                      [table.split('"')[1]]).fetchone()
    assert kind == ("date",)
    lo, hi = db.execute(f"SELECT min(date), max(date) FROM {table}").fetchone()
    assert lo.year >= 2017 and hi.year <= 2026  # 1396..1404 in the Jalali calendar
