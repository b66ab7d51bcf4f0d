"""`shahr analyze ...` as a planner runs it: a real process on the demo city's database,
answers equal to the API's, files or stdout, and errors that name the option."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

SHAHR = str(Path(sys.executable).with_name("shahr"))


def shahr(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([SHAHR, "analyze", *args], cwd=cwd, capture_output=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", "SHAHR_DATABASE_URL": url})


def test_aggregate_to_a_geojson_file_equals_the_api(database_url: str, demo_loaded: dict,
                                                    http: httpx.Client, tmp_path: Path) -> None:
    out = tmp_path / "units.geojson"
    r = shahr("aggregate", "--layer", "buildings", "--zones", "districts", "--field", "units",
              "--zones-filter", "district <= 10", "-o", str(out), url=database_url,
              cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert b"wrote" in r.stderr
    got = json.loads(out.read_text("utf-8"))
    api = http.get("/analytics/aggregate", params={
        "layer": "buildings", "zones": "districts", "field": "units",
        "zones-filter": "district <= 10"}).json()
    assert got["features"] == api["features"] and len(got["features"]) == 10
    assert not list(tmp_path.glob(".*.part"))


def test_nearest_csv_to_stdout(database_url: str, demo_loaded: dict, http: httpx.Client,
                               tmp_path: Path) -> None:
    r = shahr("nearest", "-l", "schools", "--facilities", "fire-stations", "--format", "csv",
              url=database_url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    rows = list(csv.DictReader(io.StringIO(r.stdout.decode("utf-8-sig"))))
    api = list(csv.DictReader(io.StringIO(http.get("/analytics/nearest", params={
        "layer": "schools", "facilities": "fire-stations", "f": "csv"}).content
        .decode("utf-8-sig"))))
    key = lambda row: int(row["fid"])  # noqa: E731
    assert sorted(rows, key=key) == sorted(api, key=key) and len(rows) == 57


def test_traffic_hotspots_with_significance(database_url: str, demo_loaded: dict,
                                            tmp_path: Path) -> None:
    out = tmp_path / "hot.csv"
    r = shahr("traffic", "hotspots", "-l", "crashes", "--size", "800", "--significance",
              "--permutations", "99", "-o", str(out), url=database_url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    rows = list(csv.DictReader(io.StringIO(out.read_text("utf-8-sig"))))
    assert {"count", "gi_z", "gi_p_norm", "gi_p_sim", "hotspot"} <= set(rows[0])
    assert sum(int(x["count"]) for x in rows) == 748


def test_errors_name_the_option(database_url: str, demo_loaded: dict, tmp_path: Path) -> None:
    cases = [
        (["coverage", "-l", "buildings", "--zones", "districts", "--facilities", "bus-stops",
          "--distance", "-5"], "--distance:"),
        (["aggregate", "-l", "buildings", "--zones", "roads"], "--zones: 'roads' holds"),
        (["aggregate", "-l", "nope", "--zones", "districts"], "--layer: no dataset 'nope'"),
        (["aggregate", "-l", "crashes", "--zones", "districts", "--zones-filter", "nope = 1"],
         "--zones-filter:"),
        (["traffic", "sideways", "-l", "roads"], "KIND: 'sideways' is not accepted"),
        (["hexbin", "-l", "crashes", "--size", "500", "--format", "xml"], "--format: 'xml'"),
    ]
    for args, expected in cases:
        r = shahr(*args, url=database_url, cwd=tmp_path)
        err = r.stderr.decode()
        assert r.returncode == 1, (args, err)
        assert expected in err, (args, err)
        assert "Traceback" not in err and not r.stdout
