"""Export benchmark (issue 8): full downloads of the parcels layer from the running service,
over HTTP, against `ogr2ogr` reading the same PostGIS table, in one run.

    .venv/bin/python bench/bench_export.py [--parcels N] [--repeat K] [--no-files]

What it does:

1. reuses bench_load's input (bench/.work/parcels_<N>.gpkg, written by etl.demo.write_parcels
   when missing) and loads it into a throwaway database with `shahr etl run`;
2. starts `shahr serve --workers 2` on a free port with an empty download cache;
3. streamed formats, K times each, interleaved, after a CHECKPOINT:
   - ours:    `curl -o /dev/null` of /datasets/bench-parcels/download?format=geojson|csv;
              curl's time_total is the time to the last byte received;
   - ogr2ogr: `-f GeoJSON` / `-f CSV -lco GEOMETRY=AS_WKT` from the same table, written to
              /vsistdout/ redirected to /dev/null (the same sink as curl's);
   - psql:    the database alone: `COPY (SELECT ST_AsGeoJSON(t.*) ...)` and our own COPY
              statement, to /dev/null (what PostgreSQL needs, without any service);
   while ours runs, the service's memory (RSS of the uvicorn master and its workers, psutil,
   every 20 ms) is sampled; the figure is the peak minus the idle level just before;
4. file formats (GeoPackage, zipped Shapefile, FlatGeobuf, GeoParquet), once each by default:
   ours is the first request (cold cache: build + send; curl to /dev/null) and a second one
   (served from the cache); ogr2ogr writes the same format from the table (GeoParquet:
   GDAL's CLI here has no Parquet driver, so geopandas `read_postgis(...).to_parquet()` is the
   reference); sizes of both;
5. checks the outputs: our GeoJSON and CSV hold N features with the right columns, and 200
   random features' geometries equal the table's within 1e-7 degrees;
6. writes a section for this N into bench/RESULTS.md and the raw numbers to
   bench/.work/export_<N>.json.

Needs `psutil` (bench only: `.venv/bin/pip install psutil`), curl, psql and ogr2ogr.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import psycopg  # noqa: E402
from bench_load import (  # noqa: E402
    DEFAULT_SERVER,
    RESULTS,
    ROOT,
    SLUG,
    WORK,
    ensure_parcels,
    machine,
    ogr_pg,
    pg_dsn,
    record_section,
    settle,
    with_db,
    write_manifest,
)
from sqlalchemy.engine import make_url  # noqa: E402

TARGET_SPEEDUP, TARGET_RSS_MB = 3.0, 300.0
HAUSDORFF_MAX = 1e-7
SAMPLE = 200


@dataclass
class Run:
    seconds: float
    size: int
    extra: dict[str, Any] = field(default_factory=dict)


# ---- the service --------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """`shahr serve --workers 2` as a subprocess, with its memory sampled on demand."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        import psutil

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        shahr = Path(sys.executable).parent / "shahr"
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [str(shahr), "serve", "--workers", "2", "--port", str(self.port)], env=env,
            stdout=self.log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=2) as r:
                    if r.status == 200 and len(self.ps.children(recursive=True)) >= 2:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise SystemExit(f"the service did not start; see {log}")

    def rss_mb(self) -> float:
        """Resident memory of the master and every worker, in MB."""
        import psutil

        total = 0
        for p in [self.ps, *self.ps.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Sampler:
    """Peak of Service.rss_mb() every 20 ms while in the `with` block."""

    def __init__(self, svc: Service) -> None:
        self.svc, self.peak, self._stop = svc, 0.0, threading.Event()

    def __enter__(self) -> Sampler:
        self.idle = self.svc.rss_mb()
        self.peak = self.idle
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.svc.rss_mb())
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


# ---- the tools ----------------------------------------------------------------------------

def curl(url: str, out: str = "/dev/null") -> Run:
    t0 = time.perf_counter()
    res = subprocess.run(["curl", "-s", "-o", out, "-w", "%{http_code} %{size_download} "
                          "%{time_total} %{time_starttransfer}", url],
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    code, size, total, first = res.stdout.split()
    if code != "200":
        raise SystemExit(f"{url} answered {code}")
    return Run(float(total), int(size), {"wall_s": wall, "first_byte_s": float(first)})


def to_devnull(cmd: list[str], env: dict[str, str]) -> Run:
    """Run cmd with stdout counted and thrown away (a pipe read in 1 MB blocks)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    size = 0
    while block := proc.stdout.read(1 << 20):
        size += len(block)
    err = proc.stderr.read() if proc.stderr else b""
    code = proc.wait()
    seconds = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"failed ({code}): {shlex.join(cmd)}\n{err.decode()[-2000:]}")
    return Run(seconds, size)


def to_file(cmd: list[str], env: dict[str, str], out: Path) -> Run:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"failed: {shlex.join(cmd)}\n{res.stderr.decode()[-2000:]}")
    size = out.stat().st_size if out.is_file() else sum(
        p.stat().st_size for p in out.parent.glob(out.stem + ".*"))
    return Run(seconds, size)


def geopandas_parquet(url: str, table: str, out: Path) -> Run:
    """The usual Python way: read the table with geopandas, write GeoParquet (one process,
    all rows in memory); RSS from /usr/bin/time."""
    code = ("import sys, geopandas as gpd, sqlalchemy as sa;"
            "e = sa.create_engine(sys.argv[1]);"
            "g = gpd.read_postgis(f'SELECT * FROM data.{sys.argv[2]}', e, geom_col='geom');"
            "g.to_parquet(sys.argv[3])")
    sa_url = make_url(url).set(drivername="postgresql+psycopg").render_as_string(
        hide_password=False)
    rusage = out.with_suffix(".time")
    cmd = ["/usr/bin/time", "-v", "-o", str(rusage), sys.executable, "-c", code, sa_url, table,
           str(out)]
    run = to_file(cmd, dict(os.environ), out)
    text = rusage.read_text()
    for line in text.splitlines():
        if "Maximum resident set size" in line:
            run.extra["peak_rss_mb"] = int(line.split(":")[1]) / 1024
    return run


# ---- correctness --------------------------------------------------------------------------

def check_outputs(svc: Service, url: str, table: str, n: int) -> dict[str, Any]:
    """Our GeoJSON and CSV: feature counts, columns, and a sample of geometries against the
    table (Hausdorff distance in degrees)."""
    import pyogrio
    import shapely

    out: dict[str, Any] = {}
    path = WORK / "export_check.geojson"
    curl(f"{svc.base}/datasets/{SLUG}/download?format=geojson", str(path))
    meta, tab = pyogrio.read_arrow(path, return_fids=True)
    out["geojson_features"] = tab.num_rows
    out["geojson_fields"] = list(meta["fields"])
    random.seed(1402)
    fids = tab.column("OGC_FID").to_pylist()
    pick = set(random.sample(fids, min(SAMPLE, len(fids))))
    geoms = {f: shapely.from_wkb(g) for f, g in zip(
        fids, tab.column("wkb_geometry").to_pylist(), strict=True) if f in pick}
    with psycopg.connect(pg_dsn(url)) as conn:
        rows = conn.execute(f"SELECT fid, ST_AsBinary(geom) FROM data.{table} "
                            "WHERE fid = ANY(%s)", [sorted(pick)]).fetchall()
    out["hausdorff_max"] = max(shapely.hausdorff_distance(geoms[f], shapely.from_wkb(bytes(w)))
                               for f, w in rows)
    path.unlink()
    path = WORK / "export_check.csv"
    curl(f"{svc.base}/datasets/{SLUG}/download?format=csv", str(path))
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        out["csv_header"] = next(reader)
        out["csv_rows"] = sum(1 for _ in reader)
    path.unlink()
    out["ok"] = (out["geojson_features"] == n and out["csv_rows"] == n
                 and out["hausdorff_max"] < HAUSDORFF_MAX
                 and out["csv_header"][-1] == "geometry")
    return out


# ---- the report ---------------------------------------------------------------------------

def med(runs: list[Run]) -> float:
    return statistics.median(r.seconds for r in runs)


def rng(runs: list[Run]) -> str:
    return f"{min(r.seconds for r in runs):.2f}–{max(r.seconds for r in runs):.2f}"


def render(n: int, k: int, mach: dict[str, Any], runs: dict[str, list[Run]],
           files: dict[str, dict[str, Run]], check: dict[str, Any],
           commands: dict[str, str]) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"<!-- bench:export parcels={n} start -->",
        f"## Export: {n:,} parcels over HTTP vs `ogr2ogr` (issue 8)",
        "",
        f"*{date}, `bench/bench_export.py --parcels {n} --repeat {k}`, commit "
        f"{mach['commit']}.*",
        "",
        f"- Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['ram_gib']} GiB RAM; load "
        f"average before: {', '.join(f'{x:.2f}' for x in mach['loadavg_before'])}, after: "
        f"{', '.join(f'{x:.2f}' for x in mach['loadavg_after'])}. PostgreSQL "
        f"{mach['postgresql'].split()[0]} ({mach['postgis']}) on the same machine; "
        f"{mach['gdal_cli']}. Service: `shahr serve --workers 2` (uvicorn), curl to /dev/null.",
        "",
        "Commands (`$DB`: a throwaway database; `$T`: the layer's table; `$URL`: the "
        "service):",
        "",
        "```sh",
        *[f"# {name}\n{cmd}" for name, cmd in commands.items()],
        "```",
        "",
        "### Streamed formats (whole layer)",
        "",
        "| format | tool | median s | range s | MB sent | speed-up vs ogr2ogr | service "
        "peak − idle MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for fmt in ("geojson", "csv"):
        ours, ogr = runs[f"ours_{fmt}"], runs[f"ogr2ogr_{fmt}"]
        speed = med(ogr) / med(ours)
        mem = max(r.extra["rss_peak_mb"] - r.extra["rss_idle_mb"] for r in ours)
        verdicts.append((fmt, speed, mem))
        label = "GeoJSON" if fmt == "geojson" else "CSV (WKT)"
        lines.append(f"| {label} | **ours** (HTTP, to the last byte) | **{med(ours):.2f}** | "
                     f"{rng(ours)} | {ours[0].size / 1e6:.0f} | **{speed:.1f}×** | "
                     f"{mem:.0f} |")
        for tool, name in ((f"ogr2ogr_{fmt}", "ogr2ogr"),
                           (f"ogr2ogr_{fmt}_7", "ogr2ogr, 7 decimals"),
                           (f"psql_{fmt}_ours", "PostgreSQL alone: our COPY (psql)"),
                           (f"psql_{fmt}_plain", "PostgreSQL alone: plain COPY (psql)")):
            if tool in runs:
                r = runs[tool]
                lines.append(f"| | {name} | {med(r):.2f} | {rng(r)} | {r[0].size / 1e6:.0f} | "
                             f"{med(ogr) / med(r):.1f}× | |")
    lines.append("")
    for fmt, speed, mem in verdicts:
        ok = speed >= TARGET_SPEEDUP and mem < TARGET_RSS_MB
        lines.append(f"- **{fmt}**: {speed:.1f}× faster than ogr2ogr (target ≥ "
                     f"{TARGET_SPEEDUP:.0f}×), service memory peak {mem:.0f} MB above idle "
                     f"(target < {TARGET_RSS_MB:.0f} MB): {'**met**' if ok else '**missed**'}.")
    first = statistics.median(r.extra["first_byte_s"] for r in runs["ours_geojson"])
    lines += [
        f"- Time to the first byte of ours (GeoJSON): {first:.2f} s. Service memory is the "
        "RSS of the uvicorn master and both workers (psutil, every 20 ms), peak during the "
        "download minus the level just before it.",
        "",
        "### File formats (whole layer): build once, then served from the cache",
        "",
        "| format | ours: first request (build + send) s | ours: cached s | ours MB | "
        "reference tool | reference s | reference MB |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for fmt, label in (("gpkg", "GeoPackage"), ("shp", "Shapefile (zip)"),
                       ("fgb", "FlatGeobuf"), ("parquet", "GeoParquet")):
        if fmt not in files:
            continue
        f = files[fmt]
        ref = f.get("reference")
        tool = "geopandas read_postgis + to_parquet" if fmt == "parquet" else "ogr2ogr"
        if fmt == "shp":
            tool = "ogr2ogr (.shp.zip)"
        ref_s = f"{ref.seconds:.1f}" if ref else "n/a"
        ref_mb = f"{ref.size / 1e6:.0f}" if ref else "n/a"
        lines.append(f"| {label} | {f['cold'].seconds:.1f} | {f['warm'].seconds:.2f} | "
                     f"{f['cold'].size / 1e6:.0f} | {tool} | {ref_s} | {ref_mb} |")
    if "parquet" in files and files["parquet"].get("reference") is not None:
        rss = files["parquet"]["reference"].extra.get("peak_rss_mb")
        if rss:
            lines.append(f"\n- geopandas held the whole layer in memory: peak RSS {rss:.0f} MB.")
    lines += [
        "",
        f"- Correctness: {'passed' if check['ok'] else '**FAILED**'}: our GeoJSON has "
        f"{check['geojson_features']:,} features, our CSV {check['csv_rows']:,} rows "
        f"(header `{','.join(check['csv_header'])}`); for {SAMPLE} random features the largest "
        f"Hausdorff distance to the table's geometry is {check['hausdorff_max']:.1e}° "
        f"(limit {HAUSDORFF_MAX:g}°).",
        "",
        f"<!-- bench:export parcels={n} end -->",
    ]
    return "\n".join(lines) + "\n"


def record(n: int, section: str) -> None:
    record_section(f"bench:export parcels={n}", section)


# ---- main ---------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parcels", type=int, default=1_000_000, help="layer size (default 1e6)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per streamed tool")
    ap.add_argument("--server", default=os.environ.get("BENCH_PG_SERVER", DEFAULT_SERVER))
    ap.add_argument("--no-files", action="store_true", help="skip the file formats")
    ap.add_argument("--keep-db", action="store_true")
    ap.add_argument("--no-record", action="store_true", help="do not update bench/RESULTS.md")
    args = ap.parse_args()
    for tool in ("curl", "psql", "ogr2ogr"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing")
    try:
        import psutil  # noqa: F401
    except ImportError:
        raise SystemExit("psutil is missing (bench only): .venv/bin/pip install psutil") from None

    from catalog.bootstrap import create_database, drop_database, ensure_postgis
    from catalog.migrate import upgrade

    WORK.mkdir(parents=True, exist_ok=True)
    n, k = args.parcels, args.repeat
    gpkg = ensure_parcels(n)
    manifest, _key = write_manifest(gpkg)
    dbname = f"shahr_bench_export_{os.getpid()}"
    url = with_db(args.server, dbname)
    data_dir = WORK / f"export_data_{os.getpid()}"
    create_database(args.server, dbname)
    svc: Service | None = None
    try:
        ensure_postgis(url)
        upgrade(url)
        env = {**os.environ, "SHAHR_DATABASE_URL": url, "SHAHR_DATA_DIR": str(data_dir),
               "SHAHR_KEEP_VERSIONS": "1", "PGPASSWORD": make_url(url).password or ""}
        print(f"loading {n:,} parcels into {dbname} ...", flush=True)
        subprocess.run([str(Path(sys.executable).parent / "shahr"), "etl", "run",
                        str(manifest), "--force"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        with psycopg.connect(pg_dsn(url), autocommit=True) as conn:
            table = conn.execute(
                "SELECT v.table_name FROM catalog.versions v JOIN catalog.datasets d ON "
                "d.current_version_id = v.id WHERE d.slug = %s", [SLUG]).fetchone()[0]  # type: ignore[index]
            conn.execute(f"VACUUM ANALYZE data.{table}")
        mach = machine(url)
        svc = Service(env, WORK / f"export_service_{n}.log")
        dl = f"{svc.base}/datasets/{SLUG}/download"
        for i in range(4):  # warm both workers (imports, pool) and their build processes
            curl(f"{dl}?format=csv&bbox=0,0,0.001,0.001")
            curl(f"{dl}?format=gpkg&bbox=0,0,0.001,0.00{i + 1}")
        pg = ogr_pg(url)
        src = f"data.{table}"
        ours_copy = _our_copy_statements(url)
        psql = ["psql", "-X", "-q", "-d", pg_dsn(url), "-c"]
        streamed: dict[str, list[str]] = {
            "ogr2ogr_geojson": ["ogr2ogr", "-f", "GeoJSON", "/vsistdout/", pg, src],
            "ogr2ogr_geojson_7": ["ogr2ogr", "-f", "GeoJSON", "-lco", "COORDINATE_PRECISION=7",
                                  "/vsistdout/", pg, src],
            "ogr2ogr_csv": ["ogr2ogr", "-f", "CSV", "-lco", "GEOMETRY=AS_WKT", "/vsistdout/",
                            pg, src],
            "psql_geojson_plain": [*psql, f"COPY (SELECT ST_AsGeoJSON(t.*) FROM {src} t) "
                                   "TO STDOUT"],
            "psql_geojson_ours": [*psql, ours_copy["geojson"]],
            "psql_csv_plain": [*psql, f"COPY (SELECT t.*, ST_AsText(geom) FROM {src} t) TO "
                               "STDOUT WITH (FORMAT csv, HEADER)"],
            "psql_csv_ours": [*psql, ours_copy["csv"]],
        }
        runs: dict[str, list[Run]] = {}
        for i in range(k):
            for fmt in ("geojson", "csv"):
                settle(url)
                with Sampler(svc) as s:
                    r = curl(f"{dl}?format={fmt}")
                r.extra.update(rss_idle_mb=s.idle, rss_peak_mb=s.peak)
                runs.setdefault(f"ours_{fmt}", []).append(r)
                print(f"  run {i + 1}/{k} ours {fmt:<8} {r.seconds:6.2f} s  "
                      f"{r.size / 1e6:6.0f} MB  service +{s.peak - s.idle:.0f} MB", flush=True)
                for name, cmd in streamed.items():
                    if fmt not in name:
                        continue
                    settle(url)
                    r = to_devnull(cmd, env)
                    runs.setdefault(name, []).append(r)
                    print(f"  run {i + 1}/{k} {name:<20} {r.seconds:6.2f} s  "
                          f"{r.size / 1e6:6.0f} MB", flush=True)
        files: dict[str, dict[str, Run]] = {}
        if not args.no_files:
            out = WORK / "export_files"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            refs = {
                "gpkg": (["ogr2ogr", "-f", "GPKG", str(out / "ogr.gpkg"), pg, src],
                         out / "ogr.gpkg"),
                "shp": (["ogr2ogr", "-f", "ESRI Shapefile", str(out / "ogr.shp.zip"), pg, src],
                        out / "ogr.shp.zip"),
                "fgb": (["ogr2ogr", "-f", "FlatGeobuf", str(out / "ogr.fgb"), pg, src],
                        out / "ogr.fgb"),
            }
            for fmt in ("gpkg", "shp", "fgb", "parquet"):
                settle(url)
                cold = curl(f"{dl}?format={fmt}")
                warm = curl(f"{dl}?format={fmt}")
                settle(url)
                if fmt == "parquet":
                    ref: Run | None = geopandas_parquet(url, table, out / "gpd.parquet")
                else:
                    cmd, path = refs[fmt]
                    ref = to_file(cmd, env, path)
                files[fmt] = {"cold": cold, "warm": warm, **({"reference": ref} if ref else {})}
                print(f"  {fmt:<8} ours {cold.seconds:6.1f} s (cached {warm.seconds:.2f} s) "
                      f"{cold.size / 1e6:5.0f} MB; reference "
                      f"{ref.seconds if ref else float('nan'):6.1f} s "
                      f"{(ref.size if ref else 0) / 1e6:5.0f} MB", flush=True)
            shutil.rmtree(out, ignore_errors=True)
        check = check_outputs(svc, url, table, n)
        mach["loadavg_after"] = os.getloadavg()
        shown = {name: shlex.join([*cmd[:-1], "<the service's COPY statement for this format>"]
                                  if name.endswith("_ours") else cmd)
                 .replace(pg_dsn(url), "$DB").replace(pg, "PG:$DB").replace(src, "data.$T")
                 for name, cmd in streamed.items()}
        shown = {"ours": "SHAHR_DATABASE_URL=... shahr serve --workers 2; "
                         "curl -s -o /dev/null -w '%{time_total}' "
                         "'$URL/datasets/bench-parcels/download?format=geojson' (and csv, gpkg, "
                         "shp, fgb, parquet)", **shown}
        section = render(n, k, mach, runs, files, check, shown)
        (WORK / f"export_{n}.json").write_text(json.dumps({
            "parcels": n, "repeat": k, "machine": mach, "check": check,
            "runs": {t: [asdict(r) for r in rs] for t, rs in runs.items()},
            "files": {f: {k2: asdict(r) for k2, r in v.items()} for f, v in files.items()},
        }, indent=2, default=str), "utf-8")
        print()
        print(section)
        if not args.no_record:
            record(n, section)
            print(f"recorded in {RESULTS.relative_to(ROOT)}")
        return 0 if check["ok"] else 1
    finally:
        if svc is not None:
            svc.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        if args.keep_db:
            print(f"kept database {dbname}")
        else:
            drop_database(args.server, dbname)


def _our_copy_statements(url: str) -> dict[str, str]:
    """The exact COPY statements the service runs for the whole layer (for psql)."""
    import asyncio

    sys.path.insert(0, str(ROOT))
    from api import downloads as dl
    from api.query import parse_params
    from catalog.collections import load_collections

    with psycopg.connect(pg_dsn(url)) as conn:
        coll = load_collections(conn)[SLUG]

    async def statements() -> dict[str, str]:
        out = {}
        async with await psycopg.AsyncConnection.connect(pg_dsn(url)) as conn:
            for fmt in ("geojson", "csv"):
                q = parse_params(coll, {}, default_limit=1, max_limit=1)
                out[fmt] = dl.copy_statement(conn, dl.Export.make(coll, q, dl.FORMATS[fmt]))
        return out

    return asyncio.run(statements())


if __name__ == "__main__":
    sys.exit(main())
