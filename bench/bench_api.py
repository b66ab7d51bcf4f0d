"""Publishing-API benchmark (issue 7): `shahr serve` against tipg on the same PostGIS table of
parcels, both with 2 uvicorn workers, in one run, driven by `wrk -t2 -c16 -d20s` on loopback.

    .venv/bin/python bench/bench_api.py [--parcels N] [--repeat K] [--duration S]

What it does:

1. writes N synthetic parcels once to bench/.work/parcels_<N>.gpkg with etl.demo.write_parcels
   (reused when there, e.g. made by bench_load.py) and loads them with `shahr etl run` into a
   throwaway database (dropped at the end); then `VACUUM ANALYZE` of the table, so neither
   server meets an autovacuum or an unset visibility map half-way through;
2. makes tipg's own virtualenv under bench/.work/tipg-venv when missing
   (`python3.11 -m venv`, `pip install tipg uvicorn uvloop httptools`: uvloop and httptools
   because our venv has them, so both run uvicorn's fast loop and HTTP parser);
3. starts both servers on free loopback ports, 2 workers each, access logs to files:
   - ours: `shahr serve --workers 2` with SHAHR_DATABASE_URL;
   - tipg: `uvicorn tipg.main:app --workers 2` with DATABASE_URL and TIPG_DB_SCHEMAS=["data"]
     (its collection is `data.<table>`; settings as shipped: 10,000 features a tile at most);
4. for each case, K times, interleaving the servers (the order alternates per repeat), and
   each time after PostgreSQL has finished the queries left running by the previous run, runs
   `wrk -t2 -c16 -d<S>s --latency --timeout 30s` (the timeout only so that tipg's slow
   z12 tiles count as latencies, not socket timeouts) with a Lua script whose `done()` writes
   requests, duration, non-2xx/3xx count, socket errors and latency percentiles as JSON:
   - items limit=100, items limit=1000;
   - a small bbox page (~80 features, limit=100) around the centre of the layer's extent;
   - one feature by random id (ids uniform in the table's fid range, same seeds for both);
   - a deep page: the 100th page of limit=100, found by following 99 `next` links with httpx
     (ours pages by feature id, tipg by offset);
   - the WebMercatorQuad z14 and z12 tiles holding the centre of the layer's extent
     (morecantile); tipg has no tile cache; ours has one, so it is measured twice:
     *uncached*, with a `properties=` list of all columns whose commas encode a number unique
     to every request (the same columns in the same order, so the same SQL and the same
     tile, but a new cache key: ours answers unknown parameters with 400, so a plain
     `?nocache=` cannot be used; this also misses ours' compiled-statement cache, so it
     costs a parse and a SQLAlchemy compile more than a real uncached tile would), and
     *cached*, the plain URL after one warming request; the first-request latency of the
     plain URL on a fresh server is reported too; and, closest to what an uncached tile
     costs, *every request rendered*: a third server, benchmark-only, runs ours' app with a
     tile cache that keeps and shares nothing (`ours_nocache_app` below, started with
     `uvicorn --factory`; the statement cache stays on, nothing in api/ changes);
5. checks, once per case, that both answer the same thing: the same feature ids for the
   items, bbox and deep pages (bbox: also the PostGIS count), the same feature for an id,
   and for the tiles the features in each (decoded with mapbox_vector_tile) against a
   PostGIS count of the parcels meeting the tile (and its buffer);
6. writes a section for this N into bench/RESULTS.md (replacing an older one for the same N)
   and the raw numbers to bench/.work/api_<N>.json.

`--profile S` afterwards samples one of ours' workers with py-spy for S seconds while wrk
drives items limit=100 (py-spy from its own virtualenv: `--py-spy PATH`), and reports the
CPU used by ours' workers, PostgreSQL's backends and wrk over that time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT), str(ROOT / "bench")):
    if p not in sys.path:
        sys.path.insert(0, p)

import bench_load  # noqa: E402  (parcels, manifest, database helpers: one convention)
import httpx  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

WORK = bench_load.WORK
RESULTS = bench_load.RESULTS
SLUG = bench_load.SLUG
TIPG_VENV = WORK / "tipg-venv"
TIPG_PACKAGES = ["tipg", "uvicorn", "uvloop", "httptools"]
WRK = "wrk"
TMS = "WebMercatorQuad"
OURS_BUFFER = 64 / 4096  # tile buffer, as a share of the tile (geo/tiles.py)
TIPG_BUFFER = 256 / 4096  # tipg's TIPG_TILE_BUFFER default
BBOX_TARGET = 80

# Targets of issue 7, as ratios ours / tipg of the median req/s in the same run.
TARGETS: dict[str, float] = {"items100": 25.0, "items1000": 8.0, "bbox": 4.0, "feature": 3.0,
                             "tile14": 2.0, "tile12": 2.0, "tile14_nocache": 2.0,
                             "tile12_nocache": 2.0, "tile14_cached": 20.0,
                             "tile12_cached": 20.0}
VARIANTS = ("_nocache", "_cached")  # extra rows of ours for the tile cases
FEATURE_P99_MS = 50.0
DEEP_VS_FIRST = 0.9  # "as fast as the first page": within the noise of one run

CASES = ["items100", "items1000", "bbox", "feature", "deep", "tile14", "tile12"]
TITLES = {
    "items100": "items, limit=100",
    "items1000": "items, limit=1000",
    "bbox": "small bbox page (limit=100)",
    "feature": "one feature by random id",
    "deep": "deep page (100th `next` of limit=100)",
    "tile14": "z14 tile, city centre",
    "tile12": "z12 tile, city centre",
}


# ---- ours without a tile cache (benchmark only) -------------------------------------------

def ours_nocache_app() -> Any:
    """`api.app:create_app()` with a tile cache that never keeps or shares a tile, so every
    request renders (the compiled-statement cache still works). For `uvicorn --factory`;
    nothing in api/ changes: the app's `state.tile_cache` is set before the first request."""
    from api.app import create_app
    from api.routes import tiles

    class NoTileCache(tiles.TileCache):  # type: ignore[misc]
        async def get_or_render(self, key: Any, render: Any) -> Any:
            return await render(), False

    app = create_app()
    app.state.tile_cache = NoTileCache()
    return app


# ---- processes ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str  # "ours" | "tipg"
    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    collection: str = ""
    restarts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group this script started
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def restart_if_dead(self, path: str) -> bool:
        """Start the server again if something outside ended it (other people's clean-ups
        on a shared machine); True when it had to."""
        if self.alive():
            return False
        code = self.proc.returncode if self.proc else None
        print(f"  {self.name} is not running (exit {code}); starting it again", flush=True)
        self.restarts += 1
        self.start()
        self.wait_ready(path)
        return True

    def workers(self) -> list[int]:
        """The uvicorn worker processes (children of the supervisor)."""
        assert self.proc is not None
        out = []
        for pid in children(self.proc.pid):
            with contextlib.suppress(OSError):
                if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out.append(pid)
        return out

    def wait_ready(self, path: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited ({self.proc.returncode}); its log, "
                                 f"{self.log}:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:
                r = httpx.get(self.base + path, timeout=10)
                # Both workers must be up: ask again on new connections until all agree.
                if r.status_code == 200 and all(
                        httpx.get(self.base + path, timeout=10).status_code == 200
                        for _ in range(4)):
                    return
                last = f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        raise SystemExit(f"{self.name} not ready at {self.base}{path} after {timeout:.0f} s: "
                         f"{last}; log {self.log}")


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(d.name))
    return sorted(out)


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_backends(dbname: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith("postgres: ") and f" {dbname} " in cmdline:
            pids.append(int(d.name))
    return pids


def wait_db_idle(url: str, timeout: float = 90.0) -> float:
    """Wait until no query of the benchmark's database is running. When wrk stops, the
    servers' queries still in flight go on in PostgreSQL (a z12 tile for seconds), and would
    slow the next measurement down; seconds waited."""
    t0 = time.monotonic()
    with psycopg.connect(bench_load.pg_dsn(url), autocommit=True) as conn:
        while time.monotonic() - t0 < timeout:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'active' AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'").fetchone()[0]  # type: ignore[index]
            if not busy:
                break
            time.sleep(0.25)
    return time.monotonic() - t0


def ensure_tipg_venv(venv: Path) -> Path:
    uvicorn = venv / "bin" / "uvicorn"
    if uvicorn.exists() and subprocess.run([str(venv / "bin" / "python"), "-c", "import tipg"],
                                           capture_output=True).returncode == 0:
        return uvicorn
    py = "python3.11" if shutil_which("python3.11") else sys.executable
    print(f"making tipg's virtualenv in {venv} ...", flush=True)
    subprocess.run([py, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *TIPG_PACKAGES], check=True)
    return uvicorn


def shutil_which(name: str) -> str | None:
    import shutil
    return shutil.which(name)


def pip_version(venv_python: Path, package: str) -> str:
    r = subprocess.run([str(venv_python), "-c",
                        f"import importlib.metadata as m; print(m.version({package!r}))"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


# ---- the data -------------------------------------------------------------------------------

@dataclass
class Layer:
    table: str
    count: int
    fid_lo: int
    fid_hi: int
    extent: tuple[float, float, float, float]
    columns: list[str]

    @property
    def centre(self) -> tuple[float, float]:
        w, s, e, n = self.extent
        return (w + e) / 2, (s + n) / 2


def layer_info(url: str) -> Layer:
    with psycopg.connect(bench_load.pg_dsn(url), autocommit=True) as conn:
        table = conn.execute(
            "SELECT v.table_name FROM catalog.versions v JOIN catalog.datasets d "
            "ON d.current_version_id = v.id WHERE d.slug = %s", [SLUG]).fetchone()[0]  # type: ignore[index]
        t = sql.SQL("data.{}").format(sql.Identifier(table))
        count, lo, hi, w, s, e, n = conn.execute(sql.SQL(
            "SELECT count(*), min(fid), max(fid), ST_XMin(x), ST_YMin(x), ST_XMax(x), "
            "ST_YMax(x) FROM {t}, (SELECT ST_Extent(geom)::geometry AS x FROM {t}) e "
            "GROUP BY x").format(t=t)).fetchone()  # type: ignore[misc]
        cols = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'data' "
            "AND table_name = %s AND column_name NOT IN ('fid', 'geom', '_geom_3857') "
            "ORDER BY ordinal_position", [table])]
    return Layer(table, count, lo, hi, (w, s, e, n), cols)


def vacuum(url: str, table: str) -> float:
    t0 = time.perf_counter()
    with psycopg.connect(bench_load.pg_dsn(url), autocommit=True) as conn:
        conn.execute(sql.SQL("VACUUM (ANALYZE) data.{}").format(sql.Identifier(table)))
    return time.perf_counter() - t0


def small_bbox(url: str, layer: Layer, target: int = BBOX_TARGET) -> tuple[str, int]:
    """A square around the extent's centre meeting about `target` parcels."""
    cx, cy = layer.centre
    h = 0.002
    count = 0
    box = ""
    with psycopg.connect(bench_load.pg_dsn(url), autocommit=True) as conn:
        t = sql.SQL("data.{}").format(sql.Identifier(layer.table))
        for _ in range(12):
            coords = [round(cx - h, 6), round(cy - h, 6), round(cx + h, 6), round(cy + h, 6)]
            count = conn.execute(sql.SQL(
                "SELECT count(*) FROM {t} WHERE ST_Intersects(geom, "
                "ST_MakeEnvelope(%s, %s, %s, %s, 4326))").format(t=t), coords).fetchone()[0]  # type: ignore[index]
            box = ",".join(f"{v:.6f}" for v in coords)
            if abs(count - target) <= target // 10:
                break
            h *= (target / max(count, 1)) ** 0.5 if count else 2.0
    return box, int(count)


def tile_fids(url: str, layer: Layer, z: int, x: int, y: int) -> dict[str, set[int]]:
    """The parcels meeting the tile, and its buffers as ours and tipg draw them."""
    out = {}
    with psycopg.connect(bench_load.pg_dsn(url), autocommit=True) as conn:
        t = sql.SQL("data.{}").format(sql.Identifier(layer.table))
        for name, margin in (("tile", 0.0), ("ours_buffer", OURS_BUFFER),
                             ("tipg_buffer", TIPG_BUFFER)):
            out[name] = {r[0] for r in conn.execute(sql.SQL(
                "SELECT fid FROM {t} WHERE ST_Intersects(geom, ST_Transform("
                "ST_TileEnvelope(%s, %s, %s, margin => %s), 4326))").format(t=t),
                [z, x, y, margin])}
    return out


# ---- wrk ------------------------------------------------------------------------------------

LUA_DONE = r"""
function done(summary, latency, requests)
  local f = io.open("%(out)s", "w")
  f:write(string.format(
    '{"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"mean_us":%%.1f,"max_us":%%d,"p50_us":%%d,"p90_us":%%d,' ..
    '"p99_us":%%d}',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99)))
  f:close()
end
"""

LUA_THREADS = r"""
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
"""

LUA_RANDOM_ID = r"""
function init(args)
  n = 0
  math.randomseed(1402 + 7919 * tid)
end
function request()
  return wrk.format("GET", "%(prefix)s" .. math.random(%(lo)d, %(hi)d))
end
"""

# properties=<every column, in order>, the commas around them encoding a number unique to the
# request: 9 gaps (before, between, after the names), gap i has digit_i commas (+1 between
# names). Empty items are ignored by the server, so the query is the same; the key is not.
LUA_BUST = r"""
local names = {%(names)s}
function init(args)
  n = 0
end
function request()
  n = n + 1
  local k = %(base)d + tid * 10000000 + n
  local parts = {}
  for i = 1, #names + 1 do
    local d = k %% 10
    k = (k - d) / 10
    local sep = string.rep(",", d + ((i > 1 and i <= #names) and 1 or 0))
    parts[#parts + 1] = sep
    if i <= #names then parts[#parts + 1] = names[i] end
  end
  return wrk.format("GET", "%(path)s?properties=" .. table.concat(parts))
end
"""


@dataclass
class Target:
    """What one server is asked in one case."""
    url: str  # full URL (plain cases) or the base URL for scripted ones
    mode: str = "plain"  # plain | random_id | bust
    prefix: str = ""  # random_id: path before the id
    lo: int = 0
    hi: int = 0
    path: str = ""  # bust: the tile path
    names: list[str] = field(default_factory=list)


def lua_script(target: Target, out: Path, base: int) -> str:
    text = LUA_DONE % {"out": out}
    if target.mode == "random_id":
        text += LUA_THREADS + LUA_RANDOM_ID % {"prefix": target.prefix, "lo": target.lo,
                                               "hi": target.hi}
    elif target.mode == "bust":
        text += LUA_THREADS + LUA_BUST % {"names": ", ".join(f'"{n}"' for n in target.names),
                                          "base": base, "path": target.path}
    return text


def bust_url(target: Target, k: int) -> str:
    """The URL LUA_BUST makes for number k (for single requests from Python)."""
    parts = []
    for i in range(1, len(target.names) + 2):
        d = k % 10
        k //= 10
        parts.append("," * (d + (1 if 1 < i <= len(target.names) else 0)))
        if i <= len(target.names):
            parts.append(target.names[i - 1])
    split = urlsplit(target.url)
    return f"{split.scheme}://{split.netloc}{target.path}?properties={''.join(parts)}"


@dataclass
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int
    mb_per_s: float
    worker_cpu_s: list[float] = field(default_factory=list)  # per uvicorn worker


def run_wrk(target: Target, *, threads: int, connections: int, duration: int, tag: str,
            base: int, workers: list[int] | None = None) -> WrkResult:
    out = WORK / "api_wrk" / f"{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    script = out.with_suffix(".lua")
    script.write_text(lua_script(target, out, base), "utf-8")
    out.unlink(missing_ok=True)
    cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
           "--timeout", "30s", "-s", str(script), target.url]
    before = [cpu_seconds(p) for p in workers or []]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    worker_cpu = [round(cpu_seconds(p) - b, 2) for p, b in zip(workers or [], before,
                                                                 strict=True)]
    (out.with_suffix(".txt")).write_text(proc.stdout + proc.stderr, "utf-8")
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"wrk failed ({proc.returncode}): {shlex.join(cmd)}\n"
                         f"{proc.stdout}\n{proc.stderr}")
    d = json.loads(out.read_text())
    secs = d["duration_us"] / 1e6
    return WrkResult(
        rps=d["requests"] / secs, requests=d["requests"], p50_ms=d["p50_us"] / 1000,
        p90_ms=d["p90_us"] / 1000, p99_ms=d["p99_us"] / 1000, max_ms=d["max_us"] / 1000,
        non2xx=d["status"], socket_errors=d["connect"] + d["read"] + d["write"] + d["timeout"],
        mb_per_s=d["bytes"] / secs / 1e6, worker_cpu_s=worker_cpu)


# ---- the cases ------------------------------------------------------------------------------

def follow_next(url: str, hops: int) -> tuple[str, float]:
    """The URL of the page `hops` next links after url, and how long the last one took."""
    with httpx.Client(timeout=120) as client:
        for _ in range(hops):
            r = client.get(url)
            r.raise_for_status()
            nxt = [lk["href"] for lk in r.json().get("links", []) if lk.get("rel") == "next"]
            if not nxt:
                raise SystemExit(f"no next link on {url}")
            url = nxt[0]
        t0 = time.perf_counter()
        client.get(url).raise_for_status()
        return url, time.perf_counter() - t0


def tile_of(layer: Layer, z: int) -> tuple[int, int, int]:
    import morecantile
    t = morecantile.tms.get(TMS).tile(*layer.centre, z)
    return t.z, t.x, t.y


def ids_of(body: dict[str, Any]) -> list[int]:
    return [int(f["id"]) for f in body.get("features", [])]


def mvt_features(data: bytes) -> list[dict[str, Any]]:
    import mapbox_vector_tile
    if not data:
        return []
    decoded = mapbox_vector_tile.decode(data)
    return [f for layer in decoded.values() for f in layer["features"]]


def max_coord_diff(a: Any, b: Any) -> float:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return max((max_coord_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    return float("inf")


def base_case(case: str) -> str:
    for v in VARIANTS:
        case = case.removesuffix(v)
    return case


def plan(layer: Layer, ours: Server, tipg: Server, url: str, cases: list[str],
         nocache: Server | None) -> tuple[dict[str, dict[str, Target]], dict[str, Any]]:
    """The URL (or script) per case and server, and the correctness checks of each case."""
    o = f"{ours.base}/collections/{ours.collection}"
    t = f"{tipg.base}/collections/{tipg.collection}"
    targets: dict[str, dict[str, Target]] = {}
    checks: dict[str, Any] = {}
    with httpx.Client(timeout=120) as client:
        def get(u: str) -> httpx.Response:
            r = client.get(u)
            r.raise_for_status()
            return r

        for limit, case in ((100, "items100"), (1000, "items1000")):
            if case not in cases:
                continue
            targets[case] = {"tipg": Target(f"{t}/items?limit={limit}"),
                             "ours": Target(f"{o}/items?limit={limit}")}
            a, b = get(targets[case]["ours"].url).json(), get(targets[case]["tipg"].url).json()
            checks[case] = {"ok": ids_of(a) == ids_of(b) and len(ids_of(a)) == limit,
                            "returned": {"ours": len(ids_of(a)), "tipg": len(ids_of(b))},
                            "numberMatched": {"ours": a.get("numberMatched"),
                                              "tipg": b.get("numberMatched")},
                            "same_ids_in_order": ids_of(a) == ids_of(b)}
        if "bbox" in cases:
            box, count = small_bbox(url, layer)
            targets["bbox"] = {"tipg": Target(f"{t}/items?bbox={box}&limit=100"),
                               "ours": Target(f"{o}/items?bbox={box}&limit=100")}
            a, b = get(targets["bbox"]["ours"].url).json(), get(targets["bbox"]["tipg"].url).json()
            checks["bbox"] = {"ok": sorted(ids_of(a)) == sorted(ids_of(b))
                              and len(ids_of(a)) == count, "bbox": box, "postgis_count": count,
                              "returned": {"ours": len(ids_of(a)), "tipg": len(ids_of(b))},
                              "same_ids_in_order": ids_of(a) == ids_of(b)}
        if "feature" in cases:
            targets["feature"] = {
                "tipg": Target(f"{t}/items/{layer.fid_lo}", "random_id",
                               prefix=f"/collections/{tipg.collection}/items/",
                               lo=layer.fid_lo, hi=layer.fid_hi),
                "ours": Target(f"{o}/items/{layer.fid_lo}", "random_id",
                               prefix=f"/collections/{ours.collection}/items/",
                               lo=layer.fid_lo, hi=layer.fid_hi)}
            fid = (layer.fid_lo + layer.fid_hi) // 3
            a, b = get(f"{o}/items/{fid}").json(), get(f"{t}/items/{fid}").json()
            diff = max_coord_diff(a["geometry"]["coordinates"], b["geometry"]["coordinates"])
            props_a = {k: v for k, v in a["properties"].items()}
            props_b = {k: v for k, v in b["properties"].items() if k in props_a}
            same_props = all(props_a[k] == props_b.get(k) or (
                isinstance(props_a[k], float) and abs(props_a[k] - props_b.get(k, 0)) < 1e-6)
                for k in props_a)
            checks["feature"] = {"ok": int(a["id"]) == int(b["id"]) == fid and diff < 1e-6
                                 and same_props, "fid": fid, "max_coordinate_diff_deg": diff,
                                 "same_properties": same_props,
                                 "ids": f"{layer.fid_lo}..{layer.fid_hi}"}
        if "deep" in cases:
            deep_o, lat_o = follow_next(f"{o}/items?limit=100", 99)
            deep_t, lat_t = follow_next(f"{t}/items?limit=100", 99)
            targets["deep"] = {"tipg": Target(deep_t), "ours": Target(deep_o)}
            a, b = get(deep_o).json(), get(deep_t).json()
            checks["deep"] = {"ok": ids_of(a) == ids_of(b) and len(ids_of(a)) == 100,
                              "urls": {"ours": deep_o.replace(ours.base, ""),
                                       "tipg": deep_t.replace(tipg.base, "")},
                              "first_ids": {"ours": ids_of(a)[:1], "tipg": ids_of(b)[:1]},
                              "single_request_ms": {"ours": lat_o * 1000, "tipg": lat_t * 1000}}
        for z, case in ((14, "tile14"), (12, "tile12")):
            if case not in cases:
                continue
            tz, tx, ty = tile_of(layer, z)
            path_o = f"/collections/{ours.collection}/tiles/{TMS}/{tz}/{tx}/{ty}"
            path_t = f"/collections/{tipg.collection}/tiles/{TMS}/{tz}/{tx}/{ty}"
            probe = client.get(ours.base + path_o)
            fids = tile_fids(url, layer, tz, tx, ty)
            check: dict[str, Any] = {"tile": f"{tz}/{tx}/{ty}",
                                     "postgis": {k: len(v) for k, v in fids.items()}}
            rt = get(tipg.base + path_t)
            check["tipg_features"] = len(mvt_features(rt.content))
            check["tipg_bytes"] = len(rt.content)
            check["tipg_cut"] = check["tipg_features"] < check["postgis"]["tile"]
            check["tipg_single_ms"] = [
                get(tipg.base + path_t).elapsed.total_seconds() * 1000 for _ in range(3)]
            if probe.status_code not in (200, 204):
                check["ok"] = None
                check["skipped"] = (f"ours answered {probe.status_code} for {path_o}: "
                                    f"{probe.text[:300]}")
                checks[case] = check
                continue
            bust = Target(ours.base + path_o, "bust", path=path_o, names=layer.columns)
            targets[case] = {"tipg": Target(tipg.base + path_t),
                             "ours": bust}
            if nocache is not None:
                targets[case + "_nocache"] = {"ours": Target(nocache.base + path_o)}
                check["nocache_single_ms"] = [
                    get(nocache.base + path_o).elapsed.total_seconds() * 1000
                    for _ in range(3)]
            targets[case + "_cached"] = {"ours": Target(ours.base + path_o)}
            # First requests of the plain URL on this fresh server: a miss per worker.
            firsts = [(probe.elapsed.total_seconds() * 1000, probe.headers.get("x-shahr-cache"))]
            for _ in range(6):
                r = get(ours.base + path_o)
                firsts.append((r.elapsed.total_seconds() * 1000, r.headers.get("x-shahr-cache")))
            busted = []
            for k in range(5):
                r = get(bust_url(bust, 999_000_000 + k))
                busted.append((r.elapsed.total_seconds() * 1000, r.headers.get("x-shahr-cache")))
                if k == 0:
                    check["bust_same_tile"] = r.content == probe.content
            feats = mvt_features(probe.content)
            ids = {int(f["id"]) for f in feats if f.get("id") is not None}
            cells = [f for f in feats if "_features" in f.get("properties", {})]
            if cells:  # a dense layer's overview tile (geo/overview.py): cells stand for many
                stood_for = sum(int(f["properties"]["_features"]) for f in cells)
                represented = stood_for + len(feats) - len(cells)
                check.update(
                    ours_features=len(feats), ours_bytes=len(probe.content),
                    ours_header_features=probe.headers.get("x-shahr-features"),
                    ours_thinned=probe.headers.get("x-shahr-thinned"),
                    first_requests_ms=firsts, uncached_single_ms=busted,
                    overview_cells=len(cells), overview_represented=represented,
                    ours_extra=len(ids - fids["ours_buffer"]))
                # Cells hold the features whose centre is in the tile: about those meeting it.
                check["ok"] = bool(check.get("bust_same_tile") and not check["ours_extra"]
                                   and 0.95 * len(fids["tile"]) <= represented
                                   <= len(fids["ours_buffer"]))
                checks[case] = check
                continue
            check.update(
                ours_features=len(feats), ours_bytes=len(probe.content),
                ours_header_features=probe.headers.get("x-shahr-features"),
                ours_thinned=probe.headers.get("x-shahr-thinned"),
                first_requests_ms=firsts, uncached_single_ms=busted,
                # Every parcel meeting the tile itself must be in it; of those meeting only
                # the buffer, the ones collapsing in the MVT grid may be dropped.
                ours_missing_in_tile=sorted(fids["tile"] - ids)[:20],
                ours_missing_in_tile_count=len(fids["tile"] - ids),
                ours_buffer_only_dropped=len(fids["ours_buffer"] - fids["tile"] - ids),
                ours_extra=len(ids - fids["ours_buffer"]),
                ours_complete=not (fids["tile"] - ids))
            check["ok"] = bool(check["ours_complete"] and check.get("bust_same_tile"))
            checks[case] = check
    return targets, checks


# ---- the report -----------------------------------------------------------------------------

def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarise(samples: dict[str, dict[str, list[WrkResult]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for case, per in samples.items():
        out[case] = {}
        for server, rs in per.items():
            out[case][server] = {
                "rps": med([r.rps for r in rs]), "rps_all": [round(r.rps, 1) for r in rs],
                "p50_ms": med([r.p50_ms for r in rs]), "p99_ms": med([r.p99_ms for r in rs]),
                "max_ms": max(r.max_ms for r in rs), "non2xx": sum(r.non2xx for r in rs),
                "socket_errors": sum(r.socket_errors for r in rs),
                "requests": sum(r.requests for r in rs),
                "mb_per_s": med([r.mb_per_s for r in rs])}
    return out


def verdicts(summ: dict[str, dict[str, Any]], checks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for case, per in summ.items():
        base = base_case(case)
        tipg = summ.get(base, {}).get("tipg")
        ours = per.get("ours")
        if not ours or not tipg:
            continue
        ratio = ours["rps"] / tipg["rps"] if tipg["rps"] else float("inf")
        v: dict[str, Any] = {"ratio": ratio}
        errors_ok = ours["non2xx"] == 0 and ours["socket_errors"] == 0
        if case == "deep":
            first = summ.get("items100", {}).get("ours")
            rel = ours["rps"] / first["rps"] if first else float("nan")
            v["vs_first"] = rel
            v["target"] = f"≥ {DEEP_VS_FIRST:.0%} of ours' first page"
            v["met"] = bool(first) and rel >= DEEP_VS_FIRST and errors_ok
        elif case in TARGETS:
            v["target"] = f"≥ {TARGETS[case]:g}×"
            met = ratio >= TARGETS[case] and errors_ok
            if case == "feature":
                v["target"] += f", p99 < {FEATURE_P99_MS:g} ms"
                met = met and ours["p99_ms"] < FEATURE_P99_MS
            if base in ("tile14", "tile12"):
                # complete, or an overview tile whose cells stand for the tile's features
                # (thinning the TileJSON describes): the tile check says which.
                v["target"] += ", not cut"
                met = met and bool(checks.get(base, {}).get("ok"))
            v["met"] = met
        out[case] = v
    return out


def machine(url: str, uvicorn_tipg: Path) -> dict[str, Any]:
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    with psycopg.connect(bench_load.pg_dsn(url), autocommit=True) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        postgis = conn.execute("SELECT postgis_full_version()").fetchone()[0]  # type: ignore[index]
        settings = dict(conn.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
            [["shared_buffers", "work_mem", "jit", "max_connections",
              "max_parallel_workers_per_gather", "effective_cache_size"]]).fetchall())
    lib = re.findall(r'(POSTGIS|GEOS|PROJ)="([^"]+)"', postgis)
    tipg_py = uvicorn_tipg.parent / "python"
    ours_py = Path(sys.executable)
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                     "api", "catalog", "geo"],
                                    capture_output=True, text=True).stdout.strip())
    except OSError:
        commit, dirty = "?", False
    wrk_version = subprocess.run([WRK, "-v"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(), "cpu": cpu.group(1).strip() if cpu else platform.processor(),
        "ram_gib": round(mem_kb / 2**20, 1), "kernel": platform.release(),
        "postgresql": pg, "postgis": " ".join(f"{k} {v.split()[0]}" for k, v in lib),
        "pg_settings": settings,
        "wrk": (wrk_version.stdout + wrk_version.stderr).strip().splitlines()[0],
        "python": platform.python_version(),
        "ours": {p: pip_version(ours_py, p) for p in
                 ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "psycopg",
                  "psycopg-pool", "sqlalchemy")},
        "tipg": {p: pip_version(tipg_py, p) for p in
                 ("tipg", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "asyncpg",
                  "orjson")},
        "commit": commit + ("+uncommitted api/catalog/geo changes" if dirty else ""),
        "loadavg_before": os.getloadavg(),
    }


def _f(v: float, digits: int = 0) -> str:
    if v != v:
        return "–"
    return f"{v:,.{digits}f}"


def render(n: int, args: argparse.Namespace, mach: dict[str, Any], layer: Layer,
           summ: dict[str, dict[str, Any]], verd: dict[str, dict[str, Any]],
           checks: dict[str, Any], commands: dict[str, str], load_s: float,
           skipped: dict[str, str], restarts: dict[str, int]) -> str:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    pgs = mach["pg_settings"]
    fmt = lambda d: ", ".join(f"{k} {v}" for k, v in d.items())  # noqa: E731
    lines = [
        f"<!-- bench:api parcels={n} start -->",
        f"## Publishing API: {n:,} parcels, `shahr serve` vs tipg (issue 7)",
        "",
        f"*{date}, `bench/bench_api.py --parcels {n} --repeat {args.repeat} --duration "
        f"{args.duration}"
        + "".join(f" --db-setting {x}" for x in args.db_setting)
        + f"`, commit {mach['commit']}.*",
        "",
        f"- Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['ram_gib']} GiB RAM, Linux "
        f"{mach['kernel']}; load average (1, 5, 15 min) before: "
        f"{', '.join(f'{x:.2f}' for x in mach['loadavg_before'])}, after: "
        f"{', '.join(f'{x:.2f}' for x in mach['loadavg_after'])}. wrk, both servers and "
        "PostgreSQL share the 2 CPUs; a load average above 2 means they were saturated "
        "(by the benchmark itself, or by others).",
        f"- PostgreSQL {mach['postgresql']} ({mach['postgis']}); "
        + fmt(pgs) + ".",
        f"- Ours: Python {mach['python']}, {fmt(mach['ours'])}; `SHAHR_POOL_SIZE` 10 a worker.",
        f"- tipg: {fmt(mach['tipg'])} (own virtualenv, `bench/.work/tipg-venv`); settings as "
        "shipped (pool of 10 a worker, 10,000 features a tile at most, tile buffer 256).",
        f"- {mach['wrk']}.",
        f"- Table: `data.{layer.table}`, {layer.count:,} MultiPolygons (EPSG:4326) loaded by "
        f"`shahr etl run` ({load_s:.0f} s) from `bench/.work/parcels_{n}.gpkg`, then "
        "`VACUUM (ANALYZE)`. Ours serves it as collection "
        f"`{SLUG}`, tipg as `data.{layer.table}`; both order pages by `fid`.",
        "",
        "Commands (`$DB` is a throwaway database; each case ran "
        f"{args.repeat} times per server, servers interleaved, order alternating):",
        "",
        "```sh",
        *[f"# {k}\n{v}" for k, v in commands.items()],
        "```",
        "",
        "| case | tipg req/s | ours req/s | ratio | target | met | tipg p50 / p99 ms | "
        "ours p50 / p99 ms | non-2xx tipg / ours |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    rows = [c for c in CASES if c in summ]
    for c in list(rows):
        for i, variant in enumerate(v for v in VARIANTS if c + v in summ):
            rows.insert(rows.index(c) + 1 + i, c + variant)
    for case in rows:
        per = summ[case]
        base = base_case(case)
        t = summ.get(base, {}).get("tipg")
        o = per.get("ours")
        v = verd.get(case, {})
        title = TITLES[base]
        if case.endswith("_cached"):
            title += ": ours **cached**"
        elif case.endswith("_nocache"):
            title += ": ours **uncached**, every request rendered (tile cache off)"
        elif base.startswith("tile"):
            title += ": ours **uncached**, cache-busting `properties=`"
        met = {True: "yes", False: "**no**"}.get(v.get("met"), "")
        ratio = v.get("ratio", float("nan"))
        extra = f" ({v['vs_first']:.2f}× ours' first page)" if "vs_first" in v else ""
        lines.append(
            f"| {title} | {_f(t['rps'], 1) if t else '–'} | **{_f(o['rps'], 1)}** | "
            f"**{ratio:.1f}×**{extra} | {v.get('target', '')} | {met} | "
            f"{_f(t['p50_ms'], 1) if t else '–'} / {_f(t['p99_ms'], 1) if t else '–'} | "
            f"{_f(o['p50_ms'], 1)} / {_f(o['p99_ms'], 1)} | "
            f"{(t['non2xx'] + t['socket_errors']) if t else '–'} / "
            f"{o['non2xx'] + o['socket_errors']} |")
    lines.append("")
    lines.append("All req/s by run (tipg | ours): " + "; ".join(
        f"{case} " + " | ".join(",".join(f"{x:g}" for x in summ[case][s]["rps_all"])
                                for s in ("tipg", "ours") if s in summ[case])
        for case in rows) + ".")
    lines.append("")
    for case, why in skipped.items():
        lines.append(f"- **{case} skipped**: {why}")
    for name, count in restarts.items():
        if count:
            lines.append(f"- {name} was ended from outside during the run and started again "
                         f"{count} time(s) (a shared machine); the run after it began on a "
                         "fresh server.")
    # correctness
    ok_all = all(c.get("ok") is not False for c in checks.values())
    lines.append(f"- Correctness: {'passed' if ok_all else '**FAILED**'}.")
    for case in CASES:
        c = checks.get(case)
        if c is None:
            continue
        if case in ("items100", "items1000"):
            lines.append(f"  - {case}: same {c['returned']['ours']} ids in the same order: "
                         f"{c['same_ids_in_order']}; numberMatched ours "
                         f"{c['numberMatched']['ours']}, tipg {c['numberMatched']['tipg']}.")
        elif case == "bbox":
            lines.append(f"  - bbox `{c['bbox']}`: PostGIS counts {c['postgis_count']} parcels; "
                         f"ours returned {c['returned']['ours']}, tipg {c['returned']['tipg']}, "
                         f"same ids: {c['ok']} (same order: {c['same_ids_in_order']}).")
        elif case == "feature":
            lines.append(f"  - one feature (fid {c['fid']}; random ids in {c['ids']}): same id "
                         f"and properties: {c['same_properties']}, largest coordinate "
                         f"difference {c['max_coordinate_diff_deg']:.1e}° (ours rounds to "
                         "7 decimals).")
        elif case == "deep":
            lines.append(f"  - deep page: ours `{c['urls']['ours']}`, tipg "
                         f"`{c['urls']['tipg']}`; same ids: {c['ok']} (first "
                         f"{c['first_ids']['ours']}); one request after the walk: ours "
                         f"{c['single_request_ms']['ours']:.0f} ms, tipg "
                         f"{c['single_request_ms']['tipg']:.0f} ms.")
        elif case.startswith("tile"):
            pg = c["postgis"]
            s = (f"  - {case} `{c['tile']}`: PostGIS: {pg['tile']:,} parcels meet the tile, "
                 f"{pg['ours_buffer']:,} with ours' 64-cell buffer, {pg['tipg_buffer']:,} with "
                 f"tipg's 256-cell buffer. tipg's tile holds {c['tipg_features']:,} features "
                 f"({c['tipg_bytes'] / 1024:.0f} KiB)"
                 + (" — **cut** at its 10,000 limit, silently (no header, no status)"
                    if c["tipg_cut"] else "") + ". ")
            if c.get("skipped"):
                s += f"Ours: skipped ({c['skipped']})."
            else:
                firsts = ", ".join(f"{ms:.0f} ms {h}" for ms, h in c["first_requests_ms"][:3])
                singles = ", ".join(f"{ms:.0f}" for ms, _ in c["uncached_single_ms"])
                s += (f"Ours holds {c['ours_features']:,} "
                      f"({c['ours_bytes'] / 1024:.0f} KiB; X-Shahr-Features "
                      f"{c['ours_header_features']}, thinned: {c['ours_thinned'] or 'no'}): "
                      + (f"an overview tile: {c['overview_cells']:,} cells and "
                         f"{c['ours_features'] - c['overview_cells']:,} parcels drawn "
                         f"themselves stand for {c['overview_represented']:,} parcels "
                         "(the parcels whose centre is in the tile)"
                         if "overview_cells" in c else
                         "every parcel meeting the tile is in it"
                         if c['ours_complete'] else
                         f"**{c['ours_missing_in_tile_count']} parcels meeting the tile are "
                         f"missing** (e.g. fid {c['ours_missing_in_tile'][:5]})")
                      + (f"; {c['ours_buffer_only_dropped']} meeting only the buffer are "
                         "left out (too small for the MVT grid there)"
                         if "ours_buffer_only_dropped" in c else "")
                      + "; the "
                      f"cache-busting URL gives the same bytes: {c.get('bust_same_tile')}. "
                      f"First requests of the plain URL: {firsts}; single uncached (busted) "
                      f"requests: {singles} ms; "
                      + (("with the tile cache off: " + ", ".join(
                          f"{ms:.0f}" for ms in c["nocache_single_ms"]) + " ms; ")
                         if "nocache_single_ms" in c else "")
                      + "tipg's single requests: "
                      + ", ".join(f"{ms:.0f}" for ms in c["tipg_single_ms"]) + " ms.")
            lines.append(s)
    lines += ["", f"<!-- bench:api parcels={n} end -->"]
    return "\n".join(lines) + "\n"


def record(n: int, section: str) -> None:
    bench_load.record_section(f"bench:api parcels={n}", section)


# ---- profile --------------------------------------------------------------------------------

# Where a sample's time goes: the innermost frame whose file matches decides (leaf first).
PROFILE_GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("JSON (json.dumps / loads)", ("(json/",)),
    ("SQLAlchemy (statement building + compile)", ("(sqlalchemy/",)),
    ("psycopg + pool (execute, fetch, adapt)", ("(psycopg/", "(psycopg_pool/",
                                                "(psycopg_binary/")),
    ("ours: api/query.py, geo/, catalog/ (parsing, statement code)",
     ("(api/query.py", "(geo/", "(catalog/")),
    ("ours: api/routes, api/deps, api/problems", ("(api/",)),
    ("FastAPI + Starlette + pydantic (routing, dependencies, requests, responses)",
     ("(fastapi/", "(starlette/", "(pydantic")),
    ("uvicorn + httptools (HTTP protocol)", ("(uvicorn/",)),
    ("logging (uvicorn access log)", ("(logging/",)),
    ("asyncio / uvloop (event loop)", ("(asyncio/", "(uvloop")),
]
# Inclusive shares of these functions (any frame in the stack).
PROFILE_FUNCS = ["parse_params", "items_statement", "compile_sql", "_run", "_matched",
                 "_item_links", "get_collection", "_params", "dumps", "run_endpoint_function",
                 "solve_dependencies", "serialize_response", "execute", "fetchone", "connection",
                 "getconn", "putconn", "send", "on_response_complete", "data_received",
                 "_strptime", "urlencode", "datetime"]


def summarise_pyspy(raw: Path) -> dict[str, Any]:
    groups: dict[str, int] = {}
    funcs: dict[str, int] = {}
    leaves: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = stack.split(";")
        group = "other (interpreter, C extensions without Python frames)"
        for fr in reversed(frames):
            hit = next((g for g, pats in PROFILE_GROUPS if any(x in fr for x in pats)), None)
            if hit:
                group = hit
                break
        groups[group] = groups.get(group, 0) + count
        names = {fr.split(" (", 1)[0].strip() for fr in frames}
        for f in PROFILE_FUNCS:
            if f in names:
                funcs[f] = funcs.get(f, 0) + count
        leaf = frames[-1] if frames else "?"
        leaves[leaf] = leaves.get(leaf, 0) + count
    pct = lambda d: {k: round(100 * v / total, 1) for k, v in  # noqa: E731
                     sorted(d.items(), key=lambda kv: -kv[1])}
    return {"samples": total, "groups_pct": pct(groups), "inclusive_pct": pct(funcs),
            "top_leaves_pct": dict(list(pct(leaves).items())[:25])}


def profile(ours: Server, target: Target, dbname: str, seconds: int, py_spy: str,
            n: int, args: argparse.Namespace, case: str) -> dict[str, Any]:
    """py-spy (`--gil`) on the busiest of ours' workers while wrk drives the case, and the
    CPU used meanwhile by each worker, PostgreSQL's backends and wrk."""
    workers = ours.workers()
    out_raw = WORK / f"api_pyspy_{n}_{case}.txt"
    script = WORK / "api_wrk" / f"{n}_{case}_profile.lua"
    script.write_text(lua_script(target, script.with_suffix(".json"), 7 * 10**8), "utf-8")
    wrk = subprocess.Popen([WRK, f"-t{args.threads}", f"-c{args.connections}",
                            f"-d{seconds + 4}s", "--latency", "--timeout", "30s",
                            "-s", str(script), target.url],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # wrk's connections stay with the worker that accepted them: profile the busy one.
    first = {p: cpu_seconds(p) for p in workers}
    time.sleep(1.5)
    busy = max(workers, key=lambda p: cpu_seconds(p) - first[p])
    backends = postgres_backends(dbname)
    before = {p: cpu_seconds(p) for p in workers + backends}
    wrk_before = cpu_seconds(wrk.pid)
    t0 = time.perf_counter()
    spy = subprocess.run([py_spy, "record", "--pid", str(busy), "--duration", str(seconds),
                          "--rate", "200", "--gil", "--format", "raw", "-o", str(out_raw)],
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    now = postgres_backends(dbname)
    after = {p: cpu_seconds(p) for p in workers + now}
    wrk_cpu = cpu_seconds(wrk.pid) - wrk_before
    wrk_out = wrk.communicate()[0]
    rps = re.search(r"Requests/sec:\s+([\d.]+)", wrk_out)
    used = {
        "ours_workers": {str(p): round(after[p] - before[p], 2) for p in workers},
        "postgres_backends": round(sum(after[p] - before.get(p, 0.0) for p in now), 2),
        "wrk": round(wrk_cpu, 2),
    }
    out: dict[str, Any] = {"wall_s": round(wall, 2), "cpu_s": used, "profiled_pid": busy,
                           "wrk_rps": float(rps.group(1)) if rps else None,
                           "raw": str(out_raw.relative_to(ROOT)),
                           "py_spy": (spy.stdout + spy.stderr)[-300:]}
    if out_raw.exists():
        out.update(summarise_pyspy(out_raw))
    return out


# ---- main -----------------------------------------------------------------------------------

@contextlib.contextmanager
def running(servers: list[Server]) -> Iterator[None]:
    try:
        for s in servers:
            s.log.unlink(missing_ok=True)
            s.start()
        yield
    finally:
        for s in servers:
            s.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parcels", type=int, default=1_000_000, help="layer size (default 1e6)")
    ap.add_argument("--repeat", type=int, default=3, help="wrk runs per case and server")
    ap.add_argument("--duration", type=int, default=20, help="seconds per wrk run (-d)")
    ap.add_argument("--threads", type=int, default=2, help="wrk -t")
    ap.add_argument("--connections", type=int, default=16, help="wrk -c")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of wrk per case and server "
                    "before the measured runs (0: none)")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers of each server")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of "
                    + ", ".join(CASES))
    ap.add_argument("--server", default=os.environ.get("BENCH_PG_SERVER",
                                                       bench_load.DEFAULT_SERVER),
                    help="PostgreSQL server URL (a database is created and dropped on it)")
    ap.add_argument("--tipg-venv", type=Path, default=TIPG_VENV)
    ap.add_argument("--no-nocache", action="store_true",
                    help="do not start the third server (ours with the tile cache off)")
    ap.add_argument("--db-setting", action="append", default=[], metavar="NAME=VALUE",
                    help="ALTER DATABASE $DB SET NAME=VALUE before the servers start (applies "
                         "to both; for experiments, e.g. max_parallel_workers_per_gather=0)")
    ap.add_argument("--keep-db", action="store_true", help="do not drop the database")
    ap.add_argument("--no-record", action="store_true", help="do not update bench/RESULTS.md")
    ap.add_argument("--profile", type=int, default=0, metavar="S",
                    help="afterwards, py-spy one of ours' workers for S seconds under "
                         "items limit=100")
    ap.add_argument("--profile-cases", default="items100",
                    help="cases to profile (ours), comma-separated; tile14 is ours uncached, "
                         "tile14_cached cached")
    ap.add_argument("--py-spy", default=os.environ.get("PY_SPY", "/tmp/pyspy-venv/bin/py-spy"))
    args = ap.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [c for c in cases if c not in CASES]
    if bad:
        raise SystemExit(f"unknown case(s) {bad}; known: {', '.join(CASES)}")
    if not shutil_which(WRK):
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    shahr = Path(sys.executable).parent / "shahr"
    if not shahr.exists():
        raise SystemExit(f"{shahr} is missing: run `make setup`")

    from catalog.bootstrap import create_database, drop_database, ensure_postgis
    from catalog.migrate import upgrade

    WORK.mkdir(parents=True, exist_ok=True)
    n = args.parcels
    uvicorn_tipg = ensure_tipg_venv(args.tipg_venv)
    gpkg = bench_load.ensure_parcels(n)
    manifest, _key = bench_load.write_manifest(gpkg)
    dbname = f"shahr_bench_api_{os.getpid()}"
    url = bench_load.with_db(args.server, dbname)
    print(f"database {dbname} on {make_url(args.server).host}", flush=True)
    create_database(args.server, dbname)
    try:
        ensure_postgis(url)
        upgrade(url)
        env = {**os.environ, "SHAHR_DATABASE_URL": url, "SHAHR_DATA_DIR": str(WORK / "data"),
               "SHAHR_KEEP_VERSIONS": "1", "PGPASSWORD": make_url(url).password or ""}
        t0 = time.perf_counter()
        load = subprocess.run([str(shahr), "etl", "run", str(manifest), "--force"], env=env,
                              capture_output=True, text=True)
        load_s = time.perf_counter() - t0
        if load.returncode != 0:
            raise SystemExit(f"shahr etl run failed:\n{load.stdout[-2000:]}\n{load.stderr[-2000:]}")
        layer = layer_info(url)
        vac = vacuum(url, layer.table)
        print(f"loaded {layer.count:,} parcels into data.{layer.table} in {load_s:.1f} s "
              f"(VACUUM ANALYZE {vac:.1f} s)", flush=True)
        for setting in args.db_setting:
            name, _, value = setting.partition("=")
            with psycopg.connect(bench_load.pg_dsn(url), autocommit=True) as conn:
                conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(dbname), sql.Identifier(name.strip()),
                    sql.Literal(value.strip())))
        bench_load.settle(url)

        tipg_dir = WORK / "tipg-run"  # an empty working directory: no stray .env for tipg
        tipg_dir.mkdir(exist_ok=True)
        u = make_url(url)
        tipg_db = (f"postgresql://{u.username or 'postgres'}"
                   + (f":{u.password}" if u.password else "")
                   + f"@{u.host or '127.0.0.1'}:{u.port or 5432}/{u.database}")
        port_o, port_t = free_port(), free_port()
        ours = Server("ours", [str(shahr), "serve", "--host", "127.0.0.1", "--port",
                               str(port_o), "--workers", str(args.workers)],
                      env, ROOT, port_o, WORK / f"api_ours_{n}.log", collection=SLUG)
        tipg_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("TIPG_", "POSTGRES_", "SHAHR_"))}
        # Shahr's tables carry a second geometry column (`_geom_3857`, for tiles); tipg sorts
        # columns by name and would take that one, so it is told which to serve, as a tipg
        # operator would.
        tipg_env.update(DATABASE_URL=tipg_db, TIPG_DB_SCHEMAS='["data"]',
                        **{f"TIPG_TABLE_CONFIG__data_{layer.table}__GEOMCOL": "geom"})
        tipg = Server("tipg", [str(uvicorn_tipg), "tipg.main:app", "--host", "127.0.0.1",
                               "--port", str(port_t), "--workers", str(args.workers)],
                      tipg_env, tipg_dir, port_t, WORK / f"api_tipg_{n}.log",
                      collection=f"data.{layer.table}")
        servers = [ours, tipg]
        nocache: Server | None = None
        if not args.no_nocache and any(c.startswith("tile") for c in cases):
            port_n = free_port()
            nocache = Server("ours-nocache", [
                sys.executable, "-m", "uvicorn", "bench_api:ours_nocache_app", "--factory",
                "--app-dir", str(ROOT / "bench"), "--host", "127.0.0.1", "--port", str(port_n),
                "--workers", str(args.workers)], env, ROOT, port_n,
                WORK / f"api_ours_nocache_{n}.log", collection=SLUG)
            servers.append(nocache)
        mach = machine(url, uvicorn_tipg)
        with running(servers):
            for s in servers:
                s.wait_ready(f"/collections/{s.collection}")
            print(", ".join(f"{s.name} on {s.base} (workers {s.workers()})" for s in servers),
                  flush=True)
            targets, checks = plan(layer, ours, tipg, url, cases, nocache)
            skipped = {c: checks[c]["skipped"] for c in checks if checks[c].get("skipped")}
            for c, why in skipped.items():
                print(f"  {c}: ours skipped: {why}", flush=True)
            for c, chk in checks.items():
                print(f"  check {c}: {'ok' if chk.get('ok') else chk.get('ok')}", flush=True)

            order = [(case, srv) for case in targets for srv in ("tipg", "ours")
                     if srv in targets[case]]
            pids = {"ours": ours.workers(), "tipg": tipg.workers(),
                    "nocache": nocache.workers() if nocache else []}
            if args.warmup:
                for case, srv in order:
                    wait_db_idle(url)
                    run_wrk(targets[case][srv], threads=args.threads,
                            connections=args.connections, duration=args.warmup,
                            tag=f"{n}_{case}_{srv}_warmup", base=9 * 10**8)
            samples: dict[str, dict[str, list[WrkResult]]] = {
                case: {srv: [] for srv in targets[case]} for case in targets}
            for i in range(args.repeat):
                for case in targets:
                    srvs = [s for s in ("tipg", "ours") if s in targets[case]]
                    if i % 2:
                        srvs.reverse()
                    for srv in srvs:
                        server = (nocache if case.endswith("_nocache") and nocache
                                  else ours if srv == "ours" else tipg)
                        if server.restart_if_dead(f"/collections/{server.collection}"):
                            pids[server.name if server.name != "ours-nocache"
                                 else "nocache"] = server.workers()
                            if case.endswith("_cached"):  # one request fills the cache again
                                httpx.get(targets[case][srv].url, timeout=120)
                        waited = wait_db_idle(url)
                        if waited > 1:
                            print(f"  (waited {waited:.1f} s for the previous run's queries "
                                  "to finish)", flush=True)
                        r = run_wrk(targets[case][srv], threads=args.threads,
                                    connections=args.connections, duration=args.duration,
                                    tag=f"{n}_{case}_{srv}_{i + 1}", base=(i + 1) * 10**8,
                                    workers=pids["nocache" if case.endswith("_nocache")
                                                 else srv])
                        samples[case][srv].append(r)
                        print(f"  run {i + 1}/{args.repeat} {case:<14} {srv:<4} "
                              f"{r.rps:9.1f} req/s  p50 {r.p50_ms:8.1f} ms  p99 "
                              f"{r.p99_ms:8.1f} ms  non-2xx {r.non2xx}  socket errors "
                              f"{r.socket_errors}  {r.mb_per_s:6.1f} MB/s  worker CPU s "
                              f"{r.worker_cpu_s}", flush=True)
            mach["loadavg_after"] = os.getloadavg()
            prof = {}
            for case in [c for c in args.profile_cases.split(",") if c] if args.profile else []:
                if case not in targets:
                    continue
                wait_db_idle(url)
                server = nocache if case.endswith("_nocache") and nocache else ours
                prof[case] = profile(server, targets[case]["ours"], dbname, args.profile,
                                     args.py_spy, n, args, case)
                print(f"profile {case}: {json.dumps(prof[case], indent=1)}", flush=True)

        summ = summarise(samples)
        verd = verdicts(summ, checks)
        shown_db = "postgresql://postgres@127.0.0.1:5432/$DB"
        commands = {
            "load": f"SHAHR_DATABASE_URL={shown_db} shahr etl run "
                    f"{manifest.relative_to(ROOT)} --force && psql -d $DB -c "
                    f"'VACUUM (ANALYZE) data.{layer.table}'",
            "ours": f"SHAHR_DATABASE_URL={shown_db} .venv/bin/shahr serve --host 127.0.0.1 "
                    f"--port $OURS --workers {args.workers}",
            "tipg": f"cd bench/.work/tipg-run && DATABASE_URL={shown_db} "
                    "TIPG_DB_SCHEMAS='[\"data\"]' "
                    f"TIPG_TABLE_CONFIG__data_{layer.table}__GEOMCOL=geom "
                    "../tipg-venv/bin/uvicorn tipg.main:app "
                    f"--host 127.0.0.1 --port $TIPG --workers {args.workers}",
            **({"ours, tile cache off (tile cases only)":
                f"SHAHR_DATABASE_URL={shown_db} .venv/bin/python -m uvicorn "
                "bench_api:ours_nocache_app --factory --app-dir bench --host 127.0.0.1 "
                f"--port $NOCACHE --workers {args.workers}"} if nocache else {}),
            "each measurement": f"wrk -t{args.threads} -c{args.connections} "
                                f"-d{args.duration}s --latency --timeout 30s -s <case>.lua "
                                "<url>   # scripts and raw output in bench/.work/api_wrk/",
        }
        for case, per in targets.items():
            for srv, tg in per.items():
                shown = (tg.url.replace(ours.base, "$OURS").replace(tipg.base, "$TIPG")
                         .replace(nocache.base if nocache else "\0", "$NOCACHE")
                         if tg.mode == "plain" else
                         f"$ORIGIN{tg.prefix}<random {tg.lo}..{tg.hi}>"
                         if tg.mode == "random_id" else
                         f"$OURS{tg.path}?properties=<{','.join(tg.names)}, commas "
                         "varied per request>")
                commands[f"{case} {srv}"] = shown
        section = render(n, args, mach, layer, summ, verd, checks, commands, load_s, skipped,
                         {s.name: s.restarts for s in servers})
        (WORK / f"api_{n}.json").write_text(json.dumps({
            "parcels": n, "args": vars(args), "machine": mach, "layer": asdict(layer),
            "summary": summ, "verdicts": verd, "checks": checks, "commands": commands,
            "samples": {c: {s: [asdict(r) for r in rs] for s, rs in per.items()}
                        for c, per in samples.items()},
            "profile": prof,
        }, indent=2, default=str), "utf-8")
        print()
        print(section)
        if not args.no_record:
            record(n, section)
            print(f"recorded in {RESULTS.relative_to(ROOT)}")
        ok = all(c.get("ok") is not False for c in checks.values())
        return 0 if ok else 1
    finally:
        if args.keep_db:
            print(f"kept database {dbname}")
        else:
            drop_database(args.server, dbname)


if __name__ == "__main__":
    sys.exit(main())
