"""Analytics benchmark (issue 6): ours through the HTTP API against what a planner would
otherwise do, geopandas reading the layers from PostGIS and computing in memory, in one run
on the same database.

    .venv/bin/python bench/bench_analytics.py [--points N] [--repeat K]
    .venv/bin/python bench/bench_analytics.py --points 200000 --repeat 1 --no-record   # quick

What it does:

1. the points: the centroids of N demo parcels (bench/.work/parcels_<N>.gpkg, written by
   etl.demo.write_parcels as for the load benchmark, reused when there), with the parcels'
   parcel_id, district, landuse and area_m2, written once to
   bench/.work/parcel_points_<N>.gpkg (EPSG:32639);
2. a throwaway database (PostGIS + the catalogue migrations, dropped at the end) where our
   ETL (`etl.runner.run_job`, as `shahr etl run` does) loads the points as `bench-points` and
   the demo city's 22 districts and 40 fire stations (`etl.demo.generate_city`, seed 1402);
   then `VACUUM ANALYZE`;
3. `shahr serve` (1 worker) on a free loopback port; one warm-up request per analysis (a new
   PostgreSQL backend spends most of a second loading PROJ's database on its first
   transformation; a running service has done that long before), and one warm-up of the
   geopandas side (imports, PROJ) as well;
4. K runs of each, interleaved, after a CHECKPOINT with autovacuum idle:
   (a) aggregate the points into the districts, count and sum of area_m2:
       - ours: GET /analytics/aggregate?layer=bench-points&zones=districts&field=area_m2,
         the GeoJSON received and parsed;
       - geopandas: read_postgis of the points and the districts, sjoin(predicate=
         "intersects") and groupby(count, sum);
   (b) the nearest of the 40 fire stations for each point, with the distance in metres:
       - ours: GET /analytics/nearest?layer=bench-points&facilities=fire-stations&f=csv,
         every byte of the streamed CSV (N lines) received;
       - geopandas: read_postgis of the points and the stations, to_crs(EPSG:32639),
         sjoin_nearest(distance_col=...);
   and once each, for reference, two plain SQL queries a PostGIS user would write (fetched
   with psycopg): a join with GROUP BY for (a), a LATERAL k-nearest-neighbour query (`<->` on
   the stations' GiST index, distance in EPSG:32639) for (b);
5. checks the answers: (a) counts equal per district and sums within 1e-9 relative; (b) for
   every point the distance within 1 m of geopandas' and the same station unless two are
   equally near (within 1 cm); also how many points the LATERAL query gets wrong (the
   nearest in degrees is not the nearest in metres);
6. notes the load average (1, 5, 15 min) before and after, as the machine is shared; writes
   the section for this N into bench/RESULTS.md (between its markers) and the raw numbers to
   bench/.work/analytics_<N>.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import bench_load  # noqa: E402
import httpx  # noqa: E402
import pandas as pd  # noqa: E402
import psycopg  # noqa: E402
import pyogrio  # noqa: E402
import shapely  # noqa: E402
import yaml  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

WORK = bench_load.WORK
RESULTS = bench_load.RESULTS
SLUG = "bench-points"
UTM = "EPSG:32639"
TARGET_A, TARGET_B = 4.0, 2.0  # times faster than geopandas, end to end
DIST_TOL_M = 1.0
TIE_M = 0.01  # ours are rounded to the centimetre
AGG_URL = f"/analytics/aggregate?layer={SLUG}&zones=districts&field=area_m2"
NEAR_URL = f"/analytics/nearest?layer={SLUG}&facilities=fire-stations&f=csv"


# ---- the input ------------------------------------------------------------------------------

def ensure_points(n: int) -> Path:
    """The parcels' centroids (with their attributes) as a point GeoPackage, made once."""
    path = WORK / f"parcel_points_{n}.gpkg"
    if path.exists():
        try:
            if int(pyogrio.read_info(path)["features"]) == n:
                return path
        except Exception:  # an interrupted write: make it again
            pass
    parcels = bench_load.ensure_parcels(n)
    t0 = time.perf_counter()
    print(f"writing {n:,} parcel centroids to {path} ...", flush=True)
    df = pyogrio.read_dataframe(parcels, columns=["parcel_id", "district", "landuse",
                                                  "area_m2"])
    df["geometry"] = shapely.centroid(df.geometry.values)
    tmp = path.with_name(f".{path.stem}.part.gpkg")
    tmp.unlink(missing_ok=True)
    pyogrio.write_dataframe(df, tmp, layer="points", driver="GPKG")
    os.replace(tmp, path)
    print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


def points_manifest(gpkg: Path) -> Path:
    data = {
        "dataset": {"slug": SLUG, "title": {"fa": "نقاط قطعات (بنچمارک)",
                                            "en": "Parcel points (benchmark)"},
                    "theme": "land-use", "synthetic": True,
                    "organisation": {"slug": "bench", "name": {"en": "Benchmark"}}},
        "source": {"path": str(gpkg), "format": "gpkg", "layer": "points"},
        "geometry_type": "point",
        "key": "parcel_id",
        "fields": [{"source": "parcel_id", "type": "integer"},
                   {"source": "district", "type": "integer"},
                   {"source": "landuse", "type": "string"},
                   {"source": "area_m2", "type": "number", "unit": "m2"}],
    }
    path = WORK / gpkg.stem / f"{SLUG}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def load(url: str, points: Path) -> dict[str, str]:
    """Our ETL loads the points, the districts and the fire stations; slug -> table."""
    from catalog.settings import Settings
    from etl.demo import generate_city
    from etl.manifest import load_manifest
    from etl.runner import run_job

    city = WORK / "analytics_city"
    manifests = {p.stem: p for p in generate_city(city, seed=1402, parcels=500)}
    settings = Settings(database_url=url, data_dir=WORK / "data", jobs_dirs=[city],
                        keep_versions=1)
    for path in (points_manifest(points), manifests["districts"], manifests["fire-stations"]):
        t0 = time.perf_counter()
        r = run_job(load_manifest(path), url=url, settings=settings)
        if r.status != "succeeded":
            raise SystemExit(f"loading {path.name} failed: {r.error}")
        print(f"  loaded {path.stem}: {r.rows_loaded:,} rows in {time.perf_counter() - t0:.1f} s",
              flush=True)
    with psycopg.connect(bench_load.pg_dsn(url), autocommit=True) as conn:
        tables = dict(conn.execute(
            "SELECT d.slug, v.table_name FROM catalog.datasets d JOIN catalog.versions v "
            "ON v.id = d.current_version_id").fetchall())
        for t in tables.values():
            conn.execute(f'VACUUM ANALYZE data."{t}"')
    return tables


# ---- the service -------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "SHAHR_DATABASE_URL": url, "SHAHR_DATA_DIR": str(WORK / "data"),
           "SHAHR_RATE_LIMIT_PER_MINUTE": "0", "SHAHR_STATEMENT_TIMEOUT_MS": "300000",
           "SHAHR_LOG_LEVEL": "warning"}
    shahr = Path(sys.executable).with_name("shahr")
    out = log.open("wb")
    proc = subprocess.Popen([str(shahr), "serve", "--port", str(port), "--workers", "1"],
                            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"shahr serve exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit(f"shahr serve did not become ready; see {log}")


# ---- the runs -------------------------------------------------------------------------------

def ours_aggregate(client: httpx.Client) -> dict[str, Any]:
    r = client.get(AGG_URL)
    r.raise_for_status()
    return r.json()


def ours_nearest(client: httpx.Client) -> bytes:
    with client.stream("GET", NEAR_URL) as r:
        r.raise_for_status()
        return b"".join(r.iter_bytes(1 << 20))


def gpd_aggregate(engine: Any, tables: dict[str, str]) -> pd.DataFrame:
    import geopandas as gpd

    pts = gpd.read_postgis(f'SELECT fid, area_m2, geom FROM data."{tables[SLUG]}"', engine,
                           geom_col="geom")
    zones = gpd.read_postgis(f'SELECT fid AS zone, geom FROM data."{tables["districts"]}"',
                             engine, geom_col="geom")
    j = gpd.sjoin(pts, zones, predicate="intersects")
    return j.groupby("zone").agg(count=("fid", "size"), sum=("area_m2", "sum"))


def gpd_nearest(engine: Any, tables: dict[str, str]) -> pd.DataFrame:
    import geopandas as gpd

    pts = gpd.read_postgis(f'SELECT fid, geom FROM data."{tables[SLUG]}"', engine,
                           geom_col="geom").to_crs(UTM)
    st = gpd.read_postgis(f'SELECT fid AS station, geom FROM data."{tables["fire-stations"]}"',
                          engine, geom_col="geom").to_crs(UTM)
    return gpd.sjoin_nearest(pts, st, distance_col="distance_m")


SQL_A = """SELECT z.fid, count(*), sum(p.area_m2)
FROM data."{zones}" z JOIN data."{points}" p ON ST_Intersects(z.geom, p.geom) GROUP BY z.fid"""
SQL_B = """SELECT p.fid, n.fid, n.d FROM data."{points}" p CROSS JOIN LATERAL (
  SELECT s.fid, ST_Distance(ST_Transform(s.geom, 32639), ST_Transform(p.geom, 32639)) AS d
  FROM data."{stations}" s ORDER BY s.geom <-> p.geom LIMIT 1) n"""


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# ---- checks ---------------------------------------------------------------------------------

def check_aggregate(ours: dict[str, Any], ref: pd.DataFrame) -> dict[str, Any]:
    got = {f["id"]: f["properties"] for f in ours["features"]}
    counts_equal = all(got[z]["count"] == int(ref["count"].get(z, 0)) for z in got) and \
        set(ref.index) <= set(got)
    worst = max(abs(float(got[z]["sum"]) - float(ref["sum"].get(z, 0.0)))
                / max(abs(float(ref["sum"].get(z, 0.0))), 1.0) for z in got)
    return {"zones": len(got), "points_counted": int(sum(p["count"] for p in got.values())),
            "counts_equal": counts_equal, "sum_max_rel_diff": worst,
            "ok": counts_equal and worst < 1e-9}


def check_nearest(csv: bytes, ref: pd.DataFrame, n: int) -> dict[str, Any]:
    ours = pd.read_csv(io.BytesIO(csv), encoding="utf-8-sig",
                       usecols=["fid", "nearest_fid", "distance_m"]).set_index("fid")
    best = ref.groupby("fid").agg(d=("distance_m", "min"), station=("station", "first"))
    joined = ours.join(best, how="outer")
    diff = (joined.distance_m - joined.d).abs()
    # another station than geopandas' first is right only when it is as near (a tie; ours
    # are rounded to the centimetre)
    other = (joined.nearest_fid != joined.station) & (diff > TIE_M)
    return {"rows": len(ours), "unique": bool(ours.index.is_unique),
            "missing": int(joined.distance_m.isna().sum()), "max_abs_diff_m": float(diff.max()),
            "different_station_not_tied": int(other.sum()),
            "ok": bool(len(ours) == n and ours.index.is_unique and not joined.isna().any().any()
                       and float(diff.max()) <= DIST_TOL_M and not other.any())}


def lateral_wrong(rows: list[tuple[Any, ...]], ref: pd.DataFrame) -> int:
    best = ref.groupby("fid").distance_m.min()
    d = pd.Series({fid: dist for fid, _nf, dist in rows})
    return int(((d - best.reindex(d.index)).abs() > TIE_M).sum())


# ---- the report -----------------------------------------------------------------------------

def machine(url: str) -> dict[str, Any]:
    import geopandas
    import pyproj

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    with psycopg.connect(bench_load.pg_dsn(url), autocommit=True) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        postgis = conn.execute("SELECT postgis_lib_version()").fetchone()[0]  # type: ignore[index]
        geos = conn.execute("SELECT postgis_geos_version()").fetchone()[0]  # type: ignore[index]
        par = conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0]  # type: ignore[index]
        work_mem = conn.execute("SHOW work_mem").fetchone()[0]  # type: ignore[index]
    return {"nproc": os.cpu_count(), "cpu": cpu, "postgresql": pg, "postgis": postgis,
            "geos_pg": geos, "max_parallel_workers_per_gather": par, "work_mem": work_mem,
            "python": platform.python_version(), "geopandas": geopandas.__version__,
            "shapely": f"{shapely.__version__} (GEOS {shapely.geos_version_string})",
            "pyproj": pyproj.__version__, "uptime_before": _uptime(),
            "loadavg_before": os.getloadavg()}


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def render(n: int, k: int, mach: dict[str, Any], t: dict[str, list[float]],
           ref: dict[str, float], checks: dict[str, Any]) -> str:
    med = {name: statistics.median(v) for name, v in t.items()}
    ratio_a = med["gpd_a"] / med["ours_a"]
    ratio_b = med["gpd_b"] / med["ours_b"]
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    def rng(v: list[float]) -> str:
        return f"{min(v):.2f}–{max(v):.2f}"

    def verdict(r: float, target: float) -> str:
        return f"**{r:.1f}×** ({'meets' if r >= target else 'misses'} ≥ {target:g}×)"

    la0, la1 = mach["loadavg_before"], mach["loadavg_after"]
    ca, cb = checks["a"], checks["b"]
    lines = [
        f"<!-- bench:analytics points={n} start -->",
        f"## Analytics: {n:,} points, ours (HTTP API) vs geopandas (issue 6)",
        "",
        f"*{date}, `bench/bench_analytics.py --points {n} --repeat {k}`.*",
        "",
        f"- Machine: {mach['nproc']} CPUs ({mach['cpu']}), shared with other work: load "
        f"average (1, 5, 15 min) before {', '.join(f'{x:.2f}' for x in la0)}, after "
        f"{', '.join(f'{x:.2f}' for x in la1)} (`uptime` before: `{mach['uptime_before']}`).",
        f"- PostgreSQL {mach['postgresql']}, PostGIS {mach['postgis']} (GEOS "
        f"{mach['geos_pg']}), max_parallel_workers_per_gather "
        f"{mach['max_parallel_workers_per_gather']}, work_mem {mach['work_mem']}; Python "
        f"{mach['python']}, geopandas {mach['geopandas']}, shapely {mach['shapely']}, pyproj "
        f"{mach['pyproj']}.",
        f"- Input: the centroids of {n:,} demo parcels (`etl.demo.write_parcels`), loaded by "
        "our ETL as `bench-points` (EPSG:4326, GiST index, ANALYZE); the demo city's 22 "
        "districts and 40 fire stations.",
        "- Ours: `shahr serve` (1 worker) over HTTP on loopback, after one warm-up request "
        "each; (a) the GeoJSON answer received and parsed, (b) the whole CSV "
        f"({n:,} lines) received. Geopandas: `read_postgis` + compute, in memory; warmed up "
        f"once too. Each ran {k} times, interleaved; medians.",
        "",
        "| analysis | ours s (range) | geopandas s (range) | speed-up | plain SQL s (once) |",
        "|---|---:|---:|---:|---:|",
        f"| (a) aggregate into 22 districts: count, sum | **{med['ours_a']:.2f}** "
        f"({rng(t['ours_a'])}) | {med['gpd_a']:.2f} ({rng(t['gpd_a'])}) | "
        f"{verdict(ratio_a, TARGET_A)} | {ref['sql_a']:.2f} (join + GROUP BY) |",
        f"| (b) nearest of 40 fire stations, distance in m | **{med['ours_b']:.2f}** "
        f"({rng(t['ours_b'])}) | {med['gpd_b']:.2f} ({rng(t['gpd_b'])}) | "
        f"{verdict(ratio_b, TARGET_B)} | {ref['sql_b']:.2f} (LATERAL k-NN) |",
        "",
        f"- Of geopandas' time, reading with `read_postgis`: (a) {med['gpd_a_read']:.2f} s, "
        f"(b) {med['gpd_b_read']:.2f} s.",
        f"- Answers: (a) {ca['zones']} districts, {ca['points_counted']:,} points counted; "
        f"counts equal to geopandas': {ca['counts_equal']}; largest relative difference of a "
        f"sum: {ca['sum_max_rel_diff']:.1e}. (b) {cb['rows']:,} rows, one per point: "
        f"{bool(cb['unique'])}, none missing: {cb['missing'] == 0}; largest distance "
        f"difference from geopandas' {cb['max_abs_diff_m']:.3f} m (tolerance {DIST_TOL_M:g} "
        f"m); a different station where two are not equally near: "
        f"{cb['different_station_not_tied']}. **Checks: "
        f"{'passed' if ca['ok'] and cb['ok'] else 'FAILED'}.**",
        f"- The LATERAL k-NN reference orders by `<->` in lon/lat: it gives the wrong station "
        f"for {checks['lateral_wrong']:,} of {n:,} points (the nearest in degrees is not "
        "the nearest in metres); ours cuts the plane into the stations' Voronoi cells in "
        "EPSG:32639 and joins the points to them through the GiST index, measuring points "
        "within 1 cm of a cell edge against every station (geo/analytics/nearest.py).",
        "",
        f"<!-- bench:analytics points={n} end -->",
    ]
    return "\n".join(lines) + "\n"


def record(n: int, section: str) -> None:
    bench_load.record_section(f"bench:analytics points={n}", section)


# ---- main -----------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1_000_000, help="points (default 1e6)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each (median reported)")
    ap.add_argument("--server", default=os.environ.get("BENCH_PG_SERVER",
                                                       bench_load.DEFAULT_SERVER),
                    help="PostgreSQL server URL (a database is created and dropped on it)")
    ap.add_argument("--keep-db", action="store_true", help="do not drop the database")
    ap.add_argument("--no-record", action="store_true", help="do not update bench/RESULTS.md")
    args = ap.parse_args()

    from sqlalchemy import create_engine

    from catalog.bootstrap import create_database, drop_database, ensure_postgis
    from catalog.migrate import upgrade

    WORK.mkdir(parents=True, exist_ok=True)
    n, k = args.points, args.repeat
    gpkg = ensure_points(n)
    dbname = f"shahr_bench_analytics_{os.getpid()}"
    url = bench_load.with_db(args.server, dbname)
    print(f"database {dbname} on {make_url(args.server).host}", flush=True)
    create_database(args.server, dbname)
    proc = None
    try:
        ensure_postgis(url)
        upgrade(url)
        tables = load(url, gpkg)
        mach = machine(url)
        proc, base = start_service(url, WORK / f"analytics_service_{n}.log")
        engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
        client = httpx.Client(base_url=base, timeout=600)
        print("warming up ...", flush=True)
        ours_aggregate(client)
        ours_nearest(client)
        gpd_aggregate(engine, tables)

        t: dict[str, list[float]] = {x: [] for x in (
            "ours_a", "gpd_a", "ours_b", "gpd_b", "gpd_a_read", "gpd_b_read")}
        answers: dict[str, Any] = {}
        for i in range(k):
            for name, fn in (("ours_a", lambda: ours_aggregate(client)),
                             ("gpd_a", lambda: gpd_aggregate(engine, tables)),
                             ("ours_b", lambda: ours_nearest(client)),
                             ("gpd_b", lambda: gpd_nearest(engine, tables))):
                bench_load.settle(url)
                s, out = timed(fn)
                t[name].append(s)
                answers[name] = out
                print(f"  run {i + 1}/{k} {name:<7} {s:7.2f} s  (load {os.getloadavg()[0]:.2f})",
                      flush=True)
            import geopandas as gpd
            bench_load.settle(url)
            t["gpd_a_read"].append(timed(lambda: gpd.read_postgis(
                f'SELECT fid, area_m2, geom FROM data."{tables[SLUG]}"', engine,
                geom_col="geom"))[0])
            t["gpd_b_read"].append(timed(lambda: gpd.read_postgis(
                f'SELECT fid, geom FROM data."{tables[SLUG]}"', engine, geom_col="geom"))[0])
        ref: dict[str, float] = {}
        with psycopg.connect(bench_load.pg_dsn(url), autocommit=True) as conn:
            conn.execute("SET jit = off")
            conn.execute("SELECT ST_Transform('SRID=4326;POINT(51 35)'::geometry, 32639)")
            bench_load.settle(url)
            ref["sql_a"], _ = timed(lambda: conn.execute(SQL_A.format(
                zones=tables["districts"], points=tables[SLUG])).fetchall())
            bench_load.settle(url)
            ref["sql_b"], lateral = timed(lambda: conn.execute(SQL_B.format(
                stations=tables["fire-stations"], points=tables[SLUG])).fetchall())
        mach["loadavg_after"] = os.getloadavg()
        checks = {"a": check_aggregate(answers["ours_a"], answers["gpd_a"]),
                  "b": check_nearest(answers["ours_b"], answers["gpd_b"], n),
                  "lateral_wrong": lateral_wrong(lateral, answers["gpd_b"])}
        section = render(n, k, mach, t, ref, checks)
        (WORK / f"analytics_{n}.json").write_text(json.dumps(
            {"points": n, "repeat": k, "machine": mach, "seconds": t, "reference": ref,
             "checks": checks}, indent=2, default=str), "utf-8")
        print()
        print(section)
        if not args.no_record:
            record(n, section)
            print(f"recorded in {RESULTS.relative_to(ROOT)}")
        return 0 if checks["a"]["ok"] and checks["b"]["ok"] else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if args.keep_db:
            print(f"kept database {dbname}")
        else:
            drop_database(args.server, dbname)


if __name__ == "__main__":
    sys.exit(main())
