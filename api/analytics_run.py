"""Running an analysis Job and writing its answer, for the web API and the CLI alike.

Bounded answers (one row per zone, hexagon or road segment, or the top N roads) are fetched
in one query, Getis-Ord Gi* is added when asked, and the rows become GeoJSON (built from the
geometry text PostGIS wrote, not parsed and written again), CSV or an HTML page. Answers
with one row per feature of a layer (the nearest facility of each of a million points) are
not held in memory: PostgreSQL writes the CSV lines or GeoJSON features itself and
`COPY ... TO STDOUT` streams them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
import shapely
from sqlalchemy import func, literal, select

from api.analytics_params import Job
from api.problems import bad_request
from api.query import compile_sql
from geo.analytics import LINE_SEPARATOR, getis_ord_star

BOM = "\ufeff"
SEPARATOR = LINE_SEPARATOR.encode()
CSV_MEDIA = "text/csv; charset=utf-8"
GEOJSON_MEDIA = "application/geo+json"


@dataclass
class Result:
    """The rows of a bounded answer: each a dict with fid, geometry (GeoJSON text or None)
    and the published properties."""

    job: Job
    rows: list[dict[str, Any]]
    truncated: bool = False  # an HTML page shows the first rows of a per-feature answer


def plain(v: Any) -> Any:
    """A database value as JSON has it: numerics as int (when whole) or float."""
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() and abs(v) < 2**53 else float(v)
    return v


# ---- fetching --------------------------------------------------------------------------------

def statements(job: Job, *, limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The checks' SQL, then the analysis' (with a row limit for a page of a per-feature
    answer)."""
    out = [compile_sql(c.stmt) for c in job.checks]
    stmt = job.built.stmt if limit is None else job.built.stmt.limit(limit)
    return [*out, compile_sql(stmt)]


def check(job: Job, i: int, row: tuple[Any, ...] | None) -> None:
    if not row or not row[0]:
        c = job.checks[i]
        raise bad_request(f"{c.parameter}: {c.message}", parameter=c.parameter)


async def fetch(conn: psycopg.AsyncConnection[Any], job: Job, *,
                limit: int | None = None) -> Result:
    sqls = statements(job, limit=limit)
    for i, (sql, params) in enumerate(sqls[:-1]):
        cur = await conn.execute(sql, params)
        check(job, i, await cur.fetchone())
    sql, params = sqls[-1]
    cur = await conn.execute(sql, params)
    rows = await cur.fetchall()
    names = [d.name for d in cur.description or ()]
    return collect(job, names, rows, limit=limit)


def fetch_sync(conn: psycopg.Connection[Any], job: Job, *, limit: int | None = None) -> Result:
    sqls = statements(job, limit=limit)
    for i, (sql, params) in enumerate(sqls[:-1]):
        check(job, i, conn.execute(sql, params).fetchone())
    sql, params = sqls[-1]
    cur = conn.execute(sql, params)
    rows = cur.fetchall()
    names = [d.name for d in cur.description or ()]
    return collect(job, names, rows, limit=limit)


def collect(job: Job, names: list[str], rows: list[tuple[Any, ...]], *,
            limit: int | None = None) -> Result:
    """Rows as dicts; refuse an answer over its bound (the builders fetch one row more)."""
    if job.bound is not None and len(rows) > job.bound[1]:
        what, most = job.bound
        param = f"{what}-filter" if what == "zones" else "roads-filter"
        raise bad_request(f"{what}: more than {most:,} {what} match; narrow them with "
                          f"{param}", parameter=param)
    truncated = limit is not None and len(rows) >= limit
    return Result(job, [dict(zip(names, map(plain, r), strict=True)) for r in rows],
                  truncated=truncated)


def add_hotspots(result: Result) -> Result:
    """Getis-Ord Gi* on the rows' counts (CPU work: call it off the event loop)."""
    hot = result.job.hotspots
    if hot is None:
        return result
    rows = result.rows
    if len(rows) < 3:
        raise bad_request(f"significance: a hot-spot test needs at least 3 units; there are "
                          f"{len(rows)} (a larger area, a smaller size or a wider filter)",
                          parameter="significance")
    values = np.array([float(r[hot.value] or 0) for r in rows])
    xy = np.array([(r["_x"], r["_y"]) for r in rows], dtype=float)
    g = getis_ord_star(values, xy, hot.band, permutations=hot.permutations)
    classes = g.classes()
    for i, r in enumerate(rows):
        z = float(g.z[i])
        finite = bool(np.isfinite(z))
        r["gi_z"] = round(z, 4) if finite else None
        r["gi_p_norm"] = round(float(g.p_norm[i]), 5) if finite else None
        r["gi_p_sim"] = round(float(g.p_sim[i]), 4) if g.p_sim is not None else None
        r["hotspot"] = classes[i]
        r["neighbours"] = int(g.neighbours[i])
    return result


# ---- GeoJSON and CSV -------------------------------------------------------------------------

def _meta(job: Job, n: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"analysis": job.analysis, "title": job.title,
                           "parameters": job.parameters, "units": job.units}
    if job.hotspots is not None:
        out["hotspots"] = {"statistic": "Getis-Ord Gi* (esda.G_Local, star=True)",
                           "weights": f"binary distance band of {job.hotspots.band:g} m",
                           "permutations": job.hotspots.permutations,
                           "p_norm": "two-sided, normal approximation",
                           "p_sim": "one-sided pseudo p-value from permutations"}
    if n is not None:
        out["numberReturned"] = n
    return out


def geojson_bytes(result: Result) -> bytes:
    """A FeatureCollection with the analysis' description as foreign members."""
    job = result.job
    head = json.dumps({"type": "FeatureCollection", **_meta(job, len(result.rows))},
                      ensure_ascii=False)[:-1]
    parts = [head, ',"features":[']
    for i, r in enumerate(result.rows):
        props = {p: r.get(p) for p in job.built.properties}
        parts.append(("," if i else "") + '{"type":"Feature","id":' + json.dumps(r["fid"])
                     + ',"geometry":' + (r.get("geometry") or "null") + ',"properties":'
                     + json.dumps(props, ensure_ascii=False) + "}")
    parts.append("]}\n")
    return "".join(parts).encode()


def csv_header(job: Job) -> list[str]:
    return ["fid", *job.built.properties]


def _cell(v: Any) -> Any:
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False)
    return "" if v is None else v


def csv_bytes(result: Result) -> bytes:
    """UTF-8 CSV with a BOM (Excel opens it right), no geometry: one line per row."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(csv_header(result.job))
    for r in result.rows:
        w.writerow([r["fid"], *(_cell(r.get(p)) for p in result.job.built.properties)])
    return (BOM + out.getvalue()).encode()


# ---- streamed answers (one row per feature) --------------------------------------------------

def copy_select(job: Job, fmt: str) -> Any:
    """The SELECT whose rows are finished CSV fields or GeoJSON features (each after a
    comma: the first one's is dropped by the writer); or, for an analysis that writes its
    own lines, those (several in a row, joined by LINE_SEPARATOR)."""
    r = job.built.stmt.subquery("r")
    if job.built.lines:
        return select(r.c.line)
    if fmt == "csv":
        return select(r.c.fid, *[r.c[p] for p in job.built.properties])
    pairs = [x for p in job.built.properties for x in (literal(p), r.c[p])]
    geometry = func.coalesce(r.c.geometry, "null") if job.built.geometry else literal("null")
    feature = func.concat(literal(',{"type":"Feature","id":'), func.to_json(r.c.fid),
                          literal(',"geometry":'), geometry, literal(',"properties":'),
                          func.json_build_object(*pairs), literal("}"))
    return select(feature)


def copy_statement(job: Job, fmt: str, mogrify: Any) -> str:
    """COPY (SELECT ...) TO STDOUT with every value rendered by psycopg's quoting (COPY
    takes no bind parameters); `mogrify` is a client cursor's."""
    sql, params = compile_sql(copy_select(job, fmt))
    inner = mogrify(sql, params)
    # Finished text (JSON, or lines we wrote) goes out as it is: CSV with control characters
    # as quote and delimiter, which it never holds, so nothing is quoted or escaped.
    options = "FORMAT csv" if fmt == "csv" and not job.built.lines else \
        "FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02'"
    return f"COPY ({inner}) TO STDOUT WITH ({options})"


def stream_head(job: Job, fmt: str) -> tuple[bytes, bytes]:
    """The bytes before the first row and after the last one."""
    if fmt == "csv":
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow(csv_header(job))
        return (BOM + line.getvalue()).encode(), b""
    head = json.dumps({"type": "FeatureCollection", **_meta(job, None)},
                      ensure_ascii=False)[:-1] + ',"features":[\n'
    return head.encode(), b"]}\n"


def unjoin(job: Job, block: bytes) -> bytes:
    """Rows holding several lines: their separators become line breaks."""
    return block.replace(SEPARATOR, b"\n") if job.built.lines else block


def framed(job: Job, fmt: str, blocks: Iterable[bytes]) -> Iterator[bytes]:
    """The COPY blocks with the head and tail around them (the first feature's comma cut)."""
    head, tail = stream_head(job, fmt)
    first = True
    for block in blocks:
        block = unjoin(job, block)
        if first:
            first = False
            if fmt != "csv" and block[:1] == b",":
                block = block[1:]
            block = head + block
        yield block
    yield tail if not first else head + tail


# ---- the map ---------------------------------------------------------------------------------

def bounds(result: Result) -> tuple[float, float, float, float] | None:
    """west, south, east, north of the answer's geometries (for fitting the map)."""
    geoms = [r["geometry"] for r in result.rows if r.get("geometry")]
    if not geoms:
        return result.job.extent
    b = shapely.total_bounds(shapely.from_geojson(geoms))
    return tuple(float(x) for x in b) if np.all(np.isfinite(b)) else result.job.extent  # type: ignore[return-value]


def feature_dicts(result: Result) -> dict[str, Any]:
    """The answer as a GeoJSON dict (for the folium map)."""
    feats = [{"type": "Feature", "id": r["fid"],
              "geometry": json.loads(r["geometry"]) if r.get("geometry") else None,
              "properties": {p: r.get(p) for p in result.job.built.properties
                             if not isinstance(r.get(p), dict | list)}}
             for r in result.rows]
    return {"type": "FeatureCollection", "features": feats}
