"""Where the time of one `etl.runner.run_job` goes, stage by stage (companion of bench_load.py).

    .venv/bin/python bench/profile_load.py [--parcels N] [--cprofile]

Runs the same job as bench_load.py once, in this process, against a throwaway database,
with the stages wrapped in wall-clock timers (nothing in etl/ is changed: the wrappers are
put on the module attributes the runner calls at run time). SQL statements the loader sends
on its connection are timed one by one, and the PostgreSQL backend's CPU time during the
load is read from /proc (server and client share the machine). With --cprofile, the run is
also written to bench/.work/run_job_<N>.prof and the top functions printed.

The numbers are inclusive wall-clock seconds; indentation shows which stage contains which.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_load as bl

TIMES: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])


def _add(name: str, dt: float) -> None:
    TIMES[name][0] += dt
    TIMES[name][1] += 1


def wrap(owner: Any, attr: str, name: str) -> None:
    fn = getattr(owner, attr)

    @functools.wraps(fn)
    def timed(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            _add(name, time.perf_counter() - t0)

    setattr(owner, attr, timed)


def wrap_generator(owner: Any, attr: str, name: str) -> None:
    fn = getattr(owner, attr)

    @functools.wraps(fn)
    def timed(*a: Any, **kw: Any) -> Iterator[Any]:
        it = iter(fn(*a, **kw))
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                _add(name, time.perf_counter() - t0)
                return
            _add(name, time.perf_counter() - t0)
            yield item

    setattr(owner, attr, timed)


def sql_key(query: Any) -> str:
    text = query.as_string(None) if hasattr(query, "as_string") else str(query)
    text = " ".join(text.split())
    for word in ("ANALYZE", "CREATE UNIQUE INDEX", "CREATE INDEX", "ADD PRIMARY KEY",
                 "ST_Extent", "DROP TABLE", "CREATE TABLE", "ALTER TABLE"):
        if word in text:
            return f"SQL {word}"
    if text.startswith("DELETE") and "IS NULL" in text:
        return "SQL DELETE missing keys"
    if text.startswith("DELETE"):
        return "SQL DELETE duplicate keys (window)"
    return "SQL " + text[:40]


def instrument() -> None:
    import psycopg
    import pyarrow.csv as pacsv
    import shapely

    import etl.load
    import etl.readers
    import etl.runner
    import etl.transform

    wrap(etl.runner, "materialise", "materialise (checksum)")
    wrap(etl.runner, "_ensure_dataset", "catalogue: ensure dataset")
    wrap(etl.runner, "_load", "_load")
    wrap(etl.runner, "_finish_run", "catalogue: finish run")
    wrap(etl.runner, "_publish", "publish (catalogue, in load txn)")
    wrap(etl.readers.OgrReader, "info", "reader.info")
    wrap_generator(etl.readers.OgrReader, "batches", "read: next batch (GDAL arrow + from_wkb)")
    wrap(shapely, "from_wkb", "read: shapely.from_wkb")
    wrap(etl.runner, "transform_batch", "transform_batch")
    wrap(etl.transform, "normalise_text_array", "text: normalise_text_array")
    wrap(etl.transform, "has_replacement_char_array", "text: U+FFFD check")
    wrap(etl.transform, "_geometry", "geometry (all)")
    wrap(etl.transform, "clean", "geometry: clean (validity, multi)")
    wrap(shapely, "is_valid", "geometry: shapely.is_valid")
    wrap(shapely, "multipolygons", "geometry: promote to multi")
    wrap(etl.transform, "reproject", "geometry: reproject (pyproj)")
    wrap(etl.transform, "impossible_rows", "geometry: impossible_rows")
    wrap(shapely, "to_wkb", "geometry: to_wkb hex")
    wrap(shapely, "set_srid", "geometry: set_srid")
    wrap(etl.load.Copier, "write", "copy: Copier.write")
    wrap(pacsv, "write_csv", "copy: pyarrow write_csv")
    wrap(etl.load.Copier, "close", "copy: Copier.close (drain queue, end COPY)")
    wrap(etl.runner.RejectSink, "add", "rejects sink")
    wrap(etl.runner, "retype_columns", "retype_columns")
    wrap(etl.runner, "enforce_key", "enforce_key")
    wrap(etl.runner, "finish_table", "finish_table")

    orig = psycopg.Connection.execute

    def execute(self: Any, query: Any, *a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return orig(self, query, *a, **kw)
        finally:
            _add(sql_key(query), time.perf_counter() - t0)

    psycopg.Connection.execute = execute  # type: ignore[method-assign]

    # the inner copy.write (queue put), timed apart from write_csv
    from psycopg import Copy
    wrap(Copy, "write", "copy: psycopg copy.write (queue put)")


def backend_cpu(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


ORDER = [
    ("run_job", 0), ("materialise (checksum)", 1), ("catalogue: ensure dataset", 1),
    ("_load", 1), ("reader.info", 2),
    ("read: next batch (GDAL arrow + from_wkb)", 2), ("read: shapely.from_wkb", 3),
    ("transform_batch", 2), ("text: U+FFFD check", 3), ("text: normalise_text_array", 3),
    ("geometry (all)", 3), ("geometry: clean (validity, multi)", 4),
    ("geometry: shapely.is_valid", 5), ("geometry: promote to multi", 5),
    ("geometry: reproject (pyproj)", 4), ("geometry: impossible_rows", 4),
    ("geometry: set_srid", 4), ("geometry: to_wkb hex", 4),
    ("copy: Copier.write", 2), ("copy: pyarrow write_csv", 3),
    ("copy: psycopg copy.write (queue put)", 3), ("rejects sink", 2),
    ("copy: Copier.close (drain queue, end COPY)", 2), ("retype_columns", 2),
    ("enforce_key", 2), ("SQL DELETE missing keys", 3), ("SQL DELETE duplicate keys (window)", 3),
    ("SQL CREATE UNIQUE INDEX", 3), ("finish_table", 2), ("SQL ADD PRIMARY KEY", 3),
    ("SQL CREATE INDEX", 3), ("SQL ANALYZE", 3), ("SQL ST_Extent", 3),
    ("publish (catalogue, in load txn)", 2), ("catalogue: finish run", 1),
]


def report(total: float) -> None:
    print(f"\n{'stage':<52} {'seconds':>8} {'share':>6} {'calls':>6}")
    TIMES["run_job"] = [total, 1]
    shown = set()
    for name, depth in ORDER:
        if name not in TIMES:
            continue
        s, c = TIMES[name]
        shown.add(name)
        print(f"{'  ' * depth + name:<52} {s:8.2f} {s / total:6.1%} {c:6d}")
    rest = [(k, v) for k, v in TIMES.items() if k not in shown]
    for k, (s, c) in sorted(rest, key=lambda kv: -kv[1][0]):
        print(f"{'  (other) ' + k:<52} {s:8.2f} {s / total:6.1%} {c:6d}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parcels", type=int, default=1_000_000)
    ap.add_argument("--server", default=os.environ.get("BENCH_PG_SERVER", bl.DEFAULT_SERVER))
    ap.add_argument("--cprofile", action="store_true")
    ap.add_argument("--batch-size", type=int)
    args = ap.parse_args()

    from catalog.bootstrap import create_database, drop_database, ensure_postgis
    from catalog.migrate import upgrade
    from catalog.settings import Settings
    from etl.manifest import load_manifest

    bl.WORK.mkdir(parents=True, exist_ok=True)
    gpkg = bl.ensure_parcels(args.parcels)
    manifest_path, _ = bl.write_manifest(gpkg)
    dbname = f"shahr_prof_{os.getpid()}"
    url = bl.with_db(args.server, dbname)
    create_database(args.server, dbname)
    try:
        ensure_postgis(url)
        upgrade(url)
        extra = {"etl_batch_size": args.batch_size} if args.batch_size else {}
        settings = Settings(database_url=url, data_dir=bl.WORK / "data", keep_versions=1,
                            **extra)
        m = load_manifest(manifest_path)
        import etl.runner
        instrument()
        bl.settle(url)

        # the load's backend: the engine's pooled connection; sample every backend's CPU
        import psycopg
        with psycopg.connect(bl.pg_dsn(url), autocommit=True) as mon:
            def backends() -> dict[int, float]:
                pids = [r[0] for r in mon.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()")]
                return {p: backend_cpu(p) for p in pids}

            import threading
            seen: dict[int, tuple[float, float]] = {}
            stop = threading.Event()

            def poll() -> None:
                while not stop.is_set():
                    try:
                        for p, c in backends().items():
                            first = seen.get(p, (c, c))[0]
                            seen[p] = (first, c)
                    except Exception:
                        pass
                    stop.wait(0.2)

            th = threading.Thread(target=poll, daemon=True)
            th.start()
            run: Callable[[], Any] = lambda: etl.runner.run_job(  # noqa: E731
                m, url=url, settings=settings, force=True)
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            if args.cprofile:
                import cProfile
                import pstats
                prof = cProfile.Profile()
                result = prof.runcall(run)
                out = bl.WORK / f"run_job_{args.parcels}.prof"
                prof.dump_stats(out)
            else:
                result = run()
            total = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            stop.set()
            th.join()
        print(f"run_job: {result.status} {result.rows_loaded:,} rows in {total:.2f} s "
              f"(client CPU {cpu:.2f} s, all threads) {result.error or ''}")
        server = sum(b - a for a, b in seen.values())
        print(f"PostgreSQL backends' CPU during the run (≥ what was sampled every 0.2 s): "
              f"{server:.2f} s")
        report(total)
        if args.cprofile:
            print()
            pstats.Stats(str(out)).sort_stats("cumulative").print_stats(35)
        return 0
    finally:
        drop_database(args.server, dbname)


if __name__ == "__main__":
    sys.exit(main())
