"""Load test (issue 3): 64 concurrent clients on loopback for 60 s against `shahr serve`,
mixing catalogue search, items (bbox, filters), vector tiles and small downloads.

    .venv/bin/python bench/bench_load_mix.py [--parcels N] [--duration S] [--connections C]

What it does:

1. generates the demo city (`etl.demo.generate_city`, N parcels, default 6,000) into
   bench/.work/loadmix_city_<N>/ and loads all twelve datasets with `shahr etl run --all`
   into a throwaway database (VACUUM ANALYZE afterwards), dropped at the end;
2. starts `shahr serve --workers W` (default 2) on a free port, JSON logs to
   bench/.work/loadmix_service_<N>.log, rate limits off (SHAHR_RATE_LIMIT_PER_MINUTE=0:
   the clients all come from one address);
3. builds the URL mix (every URL is requested once first and must answer 200 or 204) and
   runs `wrk -t2 -c64 -d60s --latency --timeout 30s` with a Lua script that walks the list
   round robin (each thread from its own offset) and counts answers by status and kind;
4. samples the service's resident memory (the uvicorn master and its workers, from /proc)
   every second while wrk runs; "flat" is judged from the least-squares slope after the
   first 10 s and from the last 10 s against the 10 s after warm-up;
5. reads the service's own /metrics before and after: requests and latency per route
   template (p50/p99 estimated from the histogram buckets);
6. writes a section into bench/RESULTS.md (between `<!-- bench:loadmix ... -->` markers)
   and the raw numbers to bench/.work/loadmix_<N>.json. Exit status 1 when any request
   failed (socket error, timeout, or a status other than 2xx).

Needs wrk (Debian package `wrk`). The client, the service and PostgreSQL share the CPUs:
the machine's load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import psycopg  # noqa: E402
from bench_load import (  # noqa: E402
    DEFAULT_SERVER,
    RESULTS,
    ROOT,
    WORK,
    machine,
    pg_dsn,
    record_section,
    with_db,
)

SHAHR = Path(sys.executable).parent / "shahr"
CENTRE = (51.40, 35.70)  # the demo city's centre (lon, lat)
# share of requests per kind (the Lua script walks a list built in these proportions)
MIX = {"catalogue": 25, "items": 35, "tiles": 30, "download": 10}


# ---- the service ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """VmRSS of a process, in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


class Service:
    """`shahr serve --workers W` as a subprocess."""

    def __init__(self, env: dict[str, str], workers: int, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [str(SHAHR), "serve", "--workers", str(workers), "--port", str(self.port),
             "--log-format", "json", "--log-level", "warning"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=2) as r:
                    if r.status == 200 and (workers < 2 or len(self.workers()) >= workers):
                        return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise SystemExit(f"the service did not start; see {log}")

    def workers(self) -> list[int]:
        return children(self.proc.pid)

    def rss(self) -> dict[str, float]:
        per = {str(p): rss_mb(p) for p in self.workers()}
        return {"master": rss_mb(self.proc.pid), **per}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class MemorySampler:
    """The service's RSS every second while in the `with` block."""

    def __init__(self, svc: Service, every: float = 1.0) -> None:
        self.svc, self.every = svc, every
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()

    def __enter__(self) -> MemorySampler:
        self.t0 = time.monotonic()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self.t0, self.svc.rss()))
            self._stop.wait(self.every)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


# ---- the URL mix ------------------------------------------------------------------------------

def tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def build_mix(base: str) -> dict[str, list[str]]:
    lon, lat = CENTRE
    catalogue = ["/datasets", "/datasets?q=school", "/datasets?" + urlencode({"q": "مدرسه"}),
                 "/datasets?theme=traffic", "/datasets?q=road&sort=title",
                 "/datasets?bbox=51.3,35.6,51.5,35.8&limit=5", "/datasets/crashes",
                 "/collections", "/api/3/action/package_search?q=bus",
                 "/datasets?keyword=metro&format=csv"]
    items = []
    for i in range(12):
        dx, dy = (i % 4 - 1.5) * 0.02, (i // 4 - 1) * 0.02
        x0, y0 = lon + dx - 0.01, lat + dy - 0.01
        box = f"{x0:.3f},{y0:.3f},{x0 + 0.02:.3f},{y0 + 0.02:.3f}"
        items.append(f"/collections/landuse-parcels/items?bbox={box}&limit=50")
        items.append(f"/collections/buildings/items?bbox={box}&limit=20")
    items += [
        "/collections/crashes/items?limit=100&severity=fatal",
        "/collections/crashes/items?" + urlencode({"filter": "vehicles >= 3 AND injuries > 0",
                                                   "limit": 50}),
        "/collections/schools/items?limit=20&sortby=-id",
        "/collections/bus-stops/items?" + urlencode({"near": f"{lon},{lat}", "radius": 800}),
        "/collections/metro-stations/items?" + urlencode({"nearest": f"{lon},{lat}", "k": 3}),
        "/collections/roads/items?" + urlencode({
            "filter": f"S_INTERSECTS(geometry, POLYGON(({lon - .01} {lat - .01}, "
                      f"{lon + .01} {lat - .01}, {lon + .01} {lat + .01}, "
                      f"{lon - .01} {lat + .01}, {lon - .01} {lat - .01})))", "limit": 50}),
        "/collections/crashes/items/7", "/collections/landuse-parcels/items?limit=10&offset=500",
    ]
    tiles = []
    for layer, z in [("landuse-parcels", 15), ("buildings", 15), ("roads", 14),
                     ("crashes", 14)]:
        cx, cy = tile(lon, lat, z)
        for dx in range(-2, 3):
            for dy in range(-2, 3):
                tiles.append(f"/collections/{layer}/tiles/WebMercatorQuad/{z}/{cx + dx}/{cy + dy}")
    downloads = ["/datasets/schools/download?format=csv",
                 "/datasets/fire-stations/download?format=geojson",
                 "/datasets/hospitals/download?format=csv",
                 "/datasets/crashes/download?format=csv&severity=fatal",
                 "/datasets/metro-stations/download?format=geojson"]
    return {"catalogue": catalogue, "items": items, "tiles": tiles, "download": downloads}


def interleave(mix: dict[str, list[str]], n: int = 400) -> list[tuple[str, str]]:
    """One list of (kind, path) in MIX proportions, kinds interleaved: the kind furthest
    behind its share goes next."""
    out: list[tuple[str, str]] = []
    counters = dict.fromkeys(MIX, 0)
    for _ in range(n):
        kind = min(MIX, key=lambda k: counters[k] / MIX[k])
        urls = mix[kind]
        out.append((kind, urls[counters[kind] % len(urls)]))
        counters[kind] += 1
    return out


LUA = r"""
-- generated by bench/bench_load_mix.py: walk the URL list round robin; count answers by
-- status and by kind (told from the response: connections answer out of order)
paths = {%(paths)s}
local threads = {}
local counter = 0

function setup(thread)
  thread:set("offset", #threads * 97)
  table.insert(threads, thread)
end

function init(args)
  counter = offset
  statuses = {}
  by_kind = {}
end

function request()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1])
end

local function kind_of(status, headers)
  local ctype = headers["content-type"] or headers["Content-Type"] or ""
  if headers["content-disposition"] or headers["Content-Disposition"] then return "download" end
  if status == 204 or ctype:find("mapbox", 1, true) then return "tiles" end
  if ctype:find("geo+json", 1, true) then return "items" end
  return "catalogue"
end

function response(status, headers, body)
  local kind = kind_of(status, headers)
  statuses[status] = (statuses[status] or 0) + 1
  local key = kind .. ":" .. status
  by_kind[key] = (by_kind[key] or 0) + 1
end

function done(summary, latency, requests)
  local all_status, all_kind = {}, {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do all_status[k] = (all_status[k] or 0) + v end
    for k, v in pairs(t:get("by_kind")) do all_kind[k] = (all_kind[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(all_status) do table.insert(parts, string.format('"%%s": %%d', k, v)) end
  local kparts = {}
  for k, v in pairs(all_kind) do table.insert(kparts, string.format('"%%s": %%d', k, v)) end
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, ' ..
    '"errors": {"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}, ' ..
    '"latency_us": {"mean": %%.0f, "stdev": %%.0f, "max": %%d, "p50": %%d, "p90": %%d, ' ..
    '"p99": %%d, "p999": %%d}, "statuses": {%%s}, "by_kind": {%%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), table.concat(parts, ", "), table.concat(kparts, ", ")))
end
"""


def lua_script(entries: list[tuple[str, str]]) -> str:
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return LUA % {"paths": ", ".join(q(p) for _k, p in entries)}


# ---- metrics ----------------------------------------------------------------------------------

def scrape(base: str) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as r:
        text = r.read().decode()
    out: dict[str, Any] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def per_route(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Requests and p50/p99 (histogram bucket bounds) per route template during the run."""
    def buckets(snap: dict[str, Any]) -> dict[tuple[str, str], dict[float, float]]:
        out: dict[tuple[str, str], dict[float, float]] = {}
        for labels, v in snap.get("shahr_http_request_duration_seconds_bucket", []):
            key = (labels["route"], labels["status"])
            out.setdefault(key, {})[float(labels["le"])] = v
        return out

    b0, b1 = buckets(before), buckets(after)
    rows = []
    for key, cum in b1.items():
        prev = b0.get(key, {})
        delta = {le: n - prev.get(le, 0.0) for le, n in cum.items()}
        total = delta.get(math.inf, 0.0)
        if total <= 0 or key[0] in ("/metrics", "/readyz"):
            continue

        def quantile(q: float, delta: dict[float, float] = delta, total: float = total) -> float:
            for le in sorted(delta):
                if delta[le] >= q * total:
                    return le
            return math.inf

        rows.append({"route": key[0], "status": key[1], "requests": int(total),
                     "p50_le_s": quantile(0.5), "p99_le_s": quantile(0.99)})
    return sorted(rows, key=lambda r: -r["requests"])


# ---- analysis ---------------------------------------------------------------------------------

def memory_trend(samples: list[tuple[float, dict[str, float]]], warmup: float = 10.0
                 ) -> dict[str, float]:
    """Total RSS after the warm-up: its least-squares slope, and the last `warmup` seconds
    against the first `warmup` seconds after it."""
    pts = [(t, sum(v.values())) for t, v in samples if t >= warmup]
    if len(pts) < 3:
        pts = [(t, sum(v.values())) for t, v in samples]
    ts, ms = [p[0] for p in pts], [p[1] for p in pts]
    slope = statistics.linear_regression(ts, ms).slope * 60 if len(pts) > 1 else 0.0
    first = [m for t, m in pts if t < pts[0][0] + warmup]
    last = [m for t, m in pts if t > pts[-1][0] - warmup]
    return {"start_mb": sum(samples[0][1].values()), "warmup_s": warmup,
            "after_warmup_mb": statistics.mean(first), "last_mb": statistics.mean(last),
            "peak_mb": max(ms), "slope_mb_per_min": slope,
            "growth_mb": statistics.mean(last) - statistics.mean(first)}


def render(args: argparse.Namespace, mach: dict[str, Any], wrk: dict[str, Any],
           mem: dict[str, float], samples: list[tuple[float, dict[str, float]]],
           routes: list[dict[str, Any]], entries: list[tuple[str, str]], n_urls: int,
           ok: bool, cmd: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lat = wrk["latency_us"]
    secs = wrk["duration_us"] / 1e6
    errors = wrk["errors"]
    failed = sum(errors.values())
    kinds: dict[str, dict[str, int]] = {}
    for key, n in wrk["by_kind"].items():
        kind, status = key.rsplit(":", 1)
        kinds.setdefault(kind, {})[status] = n
    la0, la1 = mach["loadavg_before"], mach["loadavg_after"]
    lines = [
        f"<!-- bench:loadmix parcels={args.parcels} start -->",
        f"## Load: {args.connections} concurrent clients for {args.duration} s, mixed "
        "requests (issue 3)",
        "",
        f"*{now}, `bench/bench_load_mix.py --parcels {args.parcels} --duration "
        f"{args.duration} --connections {args.connections} --workers {args.workers} --warmup "
        f"{args.warmup}`, commit "
        f"{mach['commit']}.*",
        "",
        f"- Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['ram_gib']} GiB RAM, shared "
        f"with other work: `uptime` load average before {la0[0]:.2f}, {la0[1]:.2f}, "
        f"{la0[2]:.2f}; after {la1[0]:.2f}, {la1[1]:.2f}, {la1[2]:.2f}. PostgreSQL "
        f"{mach['postgresql']} ({mach['postgis']}) on the same machine.",
        f"- Data: the demo city (`shahr demo generate --parcels {args.parcels}`, all twelve "
        "datasets loaded with `shahr etl run --all`).",
        f"- Service: `shahr serve --workers {args.workers} --log-format json` with rate "
        "limits off (every client is 127.0.0.1); pool of 10 connections per worker.",
        f"- Client: `{cmd}` on loopback, {len(entries)} requests in the rotation ({n_urls} "
        "distinct URLs): " + ", ".join(f"{k} {v}%" for k, v in MIX.items()) + ".",
        "",
        "| requests | req/s | errors | non-2xx | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {wrk['requests']:,} | {wrk['requests'] / secs:,.0f} | "
        f"{failed - errors['status']} | {errors['status']} | {lat['p50'] / 1000:.1f} | "
        f"{lat['p90'] / 1000:.1f} | **{lat['p99'] / 1000:.1f}** | {lat['p999'] / 1000:.1f} | "
        f"{lat['max'] / 1000:.0f} |",
        "",
        "Answers by kind (status: count): " + "; ".join(
            f"{k} " + ", ".join(f"{s}: {n:,}" for s, n in sorted(v.items()))
            for k, v in sorted(kinds.items())) + ".",
        "",
        f"Memory (RSS of the uvicorn master and {args.workers} workers, sampled every second "
        f"during the measured run, {len(samples)} samples; {mem['idle_before_warmup_mb']:.0f} "
        f"MB idle before a {args.warmup} s warm-up under the same load): "
        f"{mem['after_warmup_mb']:.0f} MB in the first {mem['warmup_s']:g} s after another "
        f"{mem['warmup_s']:g} s, {mem['last_mb']:.0f} MB in the last "
        f"{mem['warmup_s']:g} s ({mem['growth_mb']:+.1f} MB), "
        f"peak {mem['peak_mb']:.0f} MB; least-squares trend {mem['slope_mb_per_min']:+.2f} "
        "MB/min: " + ("**flat**." if abs(mem["growth_mb"]) < 20 and
                      abs(mem["slope_mb_per_min"]) < 20 else "**growing**."),
        "",
        "Server-side latency per route (the service's own /metrics histogram, so the time "
        "in the service only; bucket upper bounds):",
        "",
        "| route | status | requests | p50 ≤ ms | p99 ≤ ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in routes[:14]:
        lines.append(f"| `{r['route']}` | {r['status']} | {r['requests']:,} | "
                     f"{r['p50_le_s'] * 1000:g} | {r['p99_le_s'] * 1000:g} |")
    lines += ["", f"Result: {'zero errors' if ok else 'ERRORS'}.",
              f"<!-- bench:loadmix parcels={args.parcels} end -->"]
    return "\n".join(lines) + "\n"


def record(n: int, section: str) -> None:
    record_section(f"bench:loadmix parcels={n}", section)


# ---- main -------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parcels", type=int, default=6000, help="demo city size (default 6000)")
    ap.add_argument("--duration", type=int, default=60, help="seconds of load (default 60)")
    ap.add_argument("--connections", type=int, default=64, help="concurrent clients")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--workers", type=int, default=2, help="service worker processes")
    ap.add_argument("--warmup", type=int, default=15,
                    help="seconds of the same load before the measured run (default 15)")
    ap.add_argument("--server", default=os.environ.get("BENCH_PG_SERVER", DEFAULT_SERVER))
    ap.add_argument("--keep-db", action="store_true")
    ap.add_argument("--no-record", action="store_true", help="do not update bench/RESULTS.md")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing (Debian: apt-get install wrk)")

    from catalog.bootstrap import create_database, drop_database, ensure_postgis
    from catalog.migrate import upgrade
    from etl.demo.generate import generate_city

    WORK.mkdir(parents=True, exist_ok=True)
    n = args.parcels
    city = WORK / f"loadmix_city_{n}"
    generate_city(city, parcels=n)
    dbname = f"shahr_bench_loadmix_{os.getpid()}"
    url = with_db(args.server, dbname)
    data_dir = WORK / f"loadmix_data_{os.getpid()}"
    create_database(args.server, dbname)
    svc: Service | None = None
    try:
        ensure_postgis(url)
        upgrade(url)
        env = {**os.environ, "SHAHR_DATABASE_URL": url, "SHAHR_DATA_DIR": str(data_dir),
               "SHAHR_JOBS_DIRS": json.dumps([str(city)]), "SHAHR_RATE_LIMIT_PER_MINUTE": "0"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        print(f"loading the demo city ({n:,} parcels) into {dbname} ...", flush=True)
        subprocess.run([str(SHAHR), "etl", "run", "--all"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        with psycopg.connect(pg_dsn(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        mach = machine(url)
        svc = Service(env, args.workers, WORK / f"loadmix_service_{n}.log")
        mix = build_mix(svc.base)
        for kind, urls in mix.items():  # each URL answers, and warms the caches
            for u in urls:
                with urllib.request.urlopen(svc.base + u, timeout=60) as r:
                    if r.status not in (200, 204):
                        raise SystemExit(f"{kind} {u}: {r.status}")
                    r.read()
        entries = interleave(mix)
        script = WORK / "loadmix.lua"
        script.write_text(lua_script(entries), "utf-8")
        cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
               "--latency", "--timeout", "30s", "-s", str(script), svc.base]
        shown = " ".join(cmd).replace(svc.base, "$URL").replace(str(script),
                                                                "bench/.work/loadmix.lua")
        idle_rss = sum(svc.rss().values())
        if args.warmup > 0:  # fill both workers' caches and pools, not measured
            print(f"warming up for {args.warmup} s ...", flush=True)
            subprocess.run([*cmd[:3], f"-d{args.warmup}s", *cmd[4:]], capture_output=True)
        before = scrape(svc.base)
        print(f"running {shown} ...", flush=True)
        with MemorySampler(svc) as sampler:
            done = subprocess.run(cmd, capture_output=True, text=True)
        after = scrape(svc.base)
        (WORK / f"loadmix_wrk_{n}.txt").write_text(done.stdout + done.stderr, "utf-8")
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
        if done.returncode != 0 or line is None:
            raise SystemExit(f"wrk failed: {done.stdout}\n{done.stderr}")
        wrk = json.loads(line.removeprefix("WRKJSON "))
        mach["loadavg_after"] = os.getloadavg()
        mem = memory_trend(sampler.samples, warmup=min(10.0, args.duration / 4))
        mem["idle_before_warmup_mb"] = idle_rss
        routes = per_route(before, after)
        ok = sum(wrk["errors"].values()) == 0 and all(
            s.startswith("2") for s in wrk["statuses"])
        n_urls = sum(len(v) for v in mix.values())
        section = render(args, mach, wrk, mem, sampler.samples, routes, entries, n_urls, ok,
                         shown)
        (WORK / f"loadmix_{n}.json").write_text(json.dumps({
            "args": vars(args), "machine": mach, "wrk": wrk, "memory": mem,
            "memory_samples": sampler.samples, "routes": routes, "mix": mix,
        }, indent=2, default=str), "utf-8")
        print()
        print(section)
        if not args.no_record:
            record(n, section)
            print(f"recorded in {RESULTS.relative_to(ROOT)}")
        return 0 if ok else 1
    finally:
        if svc is not None:
            svc.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        if args.keep_db:
            print(f"kept database {dbname}")
        else:
            drop_database(args.server, dbname)


if __name__ == "__main__":
    sys.exit(main())
