"""The `shahr` command as a user runs it: a real process, real database, plain errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import write_manifest

SHAHR = str(Path(sys.executable).with_name("shahr"))


def shahr(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHAHR, *args], env={**os.environ, "COLUMNS": "200", **env},
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_db_status(database_url: str, tmp_path: Path) -> None:
    r = shahr("db", "status", env={"SHAHR_DATABASE_URL": database_url}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "PostGIS:    3." in r.stdout and "up to date" in r.stdout


def test_unreachable_database_is_one_paragraph_not_a_traceback(tmp_path: Path) -> None:
    r = shahr("db", "status", env={"SHAHR_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/x"},
              cwd=tmp_path)
    assert r.returncode == 1
    assert "Cannot connect to the database" in r.stderr
    assert "SHAHR_DATABASE_URL" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_etl_run_history_and_rejects(database_url: str, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    src = jobs / "stops.csv"
    src.write_text("id,name,lon,lat\n1,ایستگاه يك,51.40,35.70\n2,ب,,\n3,پ,51.42,35.72\n",
                   encoding="utf-8")
    write_manifest(jobs, {"path": "stops.csv", "csv": {"lon": "lon", "lat": "lat"}},
                   slug="cli-stops", key="id")
    env = {"SHAHR_DATABASE_URL": database_url, "SHAHR_JOBS_DIRS": f'["{jobs}"]'}
    r = shahr("etl", "list", env=env, cwd=tmp_path)
    assert r.returncode == 0 and "cli-stops" in r.stdout and "never" in r.stdout
    r = shahr("etl", "run", "--all", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "cli-stops: 2 loaded, 1 rejected" in r.stdout
    run_id = r.stdout.split("shahr etl rejects ")[1].split()[0]
    r = shahr("etl", "rejects", run_id, env=env, cwd=tmp_path)
    assert "1 rejected rows" in r.stdout and "lon/lat are empty" in r.stdout
    r = shahr("etl", "run", "cli-stops", env=env, cwd=tmp_path)
    assert r.returncode == 0 and "unchanged, skipped" in r.stdout
    r = shahr("etl", "history", "cli-stops", env=env, cwd=tmp_path)
    assert "succeeded" in r.stdout and "skipped" in r.stdout


def test_bad_manifest_and_unknown_job(database_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: {slug: x}\nsource: {path: a.csv}\n", encoding="utf-8")
    env = {"SHAHR_DATABASE_URL": database_url, "SHAHR_JOBS_DIRS": f'["{tmp_path}"]'}
    r = shahr("etl", "run", str(bad), env=env, cwd=tmp_path)
    assert r.returncode == 1
    assert "bad.yaml: invalid manifest" in r.stderr and "dataset.title" in r.stderr
    assert "Traceback" not in r.stderr
    r = shahr("etl", "run", "no-such-job", env=env, cwd=tmp_path)
    assert r.returncode == 1 and "no job 'no-such-job'" in r.stderr
