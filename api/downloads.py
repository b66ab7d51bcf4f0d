"""Downloads: one dataset version, whole or filtered, in nine formats.

The rows are selected by the same parsed query as items (api.query), so a filtered download
holds exactly the features the same filter gives on /items, in feature id order.

Streamed formats (CSV, GeoJSON, GeoJSON-seq) are made by PostgreSQL: one
`COPY (SELECT ...) TO STDOUT` whose rows are already finished CSV lines or GeoJSON features
(the same `feature_json` as items); Python only gathers the rows into ~512 KB chunks and
passes them on (copy_out), so memory stays flat for any size. COPY takes no bind parameters,
so the SELECT (built by SQLAlchemy with every user value a bound parameter) is rendered by
psycopg's client-side binding (`mogrify`: the same quoting as `sql.Literal`, typed where
needed). We chose COPY over a server-side cursor because PostgreSQL's CSV writer does the CSV
quoting, the rows arrive with no FETCH round trips, and it measured as fast as psql itself.
GeoJSON-seq is RFC 8142 (RS before each record, LF after it), media type
application/geo+json-seq; GDAL's GeoJSONSeq driver reads it.

File formats (GeoPackage, zipped Shapefile, KML, FlatGeobuf, GeoParquet, XLSX) are built
once per (version, query, format) into the cache: the rows come in 50,000-row chunks from a
server-side cursor (WKB geometry), become Arrow record batches and are written with pyogrio
(GDAL), pyarrow or openpyxl; the file appears by an atomic rename, under a file lock so
concurrent requests (in any worker) build it once."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from pyproj import CRS
from sqlalchemy import (
    Float,
    Numeric,
    Select,
    Table,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
)

from api.query import (
    FeatureQuery,
    compile_sql,
    feature_json,
    geometry_digits,
    parse_params,
    sa_table,
)
from catalog.collections import Collection, Column
from geo.sql import output_geometry

CHUNK_ROWS = 50_000  # rows per fetch when building a file (bounded memory)
STREAM_CHUNK = 512 * 1024  # bytes gathered before a streamed chunk is sent
EXPORT_TIMEOUT_MS = 3_600_000  # a whole export is one statement; a slow client is no fault
CACHE_MAX_BYTES = 20 * 2**30  # the download cache is pruned (least recently used) above this
CACHE_KEEP_S = 600  # files used in the last ten minutes are never pruned
XLSX_MAX_ROWS = 1_048_575  # Excel's sheet limit, less the header row
XLSX_MAX_CELL = 32_767  # Excel's longest text in a cell
SALT = "shahr-download-2"  # change when a writer's output changes, so old files stop matching
BOM = "\ufeff".encode()

# Times each cache entry was built for this process (tests check "built once").
BUILDS: Counter[str] = Counter()
_GDAL_CLOCK = threading.Lock()


@dataclass(frozen=True)
class Format:
    name: str
    ext: str
    media_type: str
    streamed: bool
    tabular: bool = False  # can leave the geometry out (skipGeometry=true)
    wgs84_only: bool = False


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("csv", "csv", "text/csv; charset=utf-8", True, tabular=True),
    Format("geojson", "geojson", "application/geo+json", True, tabular=True),
    Format("geojsonseq", "geojsons", "application/geo+json-seq", True, tabular=True),
    Format("gpkg", "gpkg", "application/geopackage+sqlite3", False),
    Format("shp", "shp.zip", "application/zip", False),
    Format("kml", "kml", "application/vnd.google-earth.kml+xml", False, wgs84_only=True),
    Format("fgb", "fgb", "application/flatgeobuf", False),
    Format("parquet", "parquet", "application/vnd.apache.parquet", False),
    Format("xlsx", "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
           False, tabular=True),
)}

ARROW = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(),
         "boolean": pa.bool_(), "date": pa.date32(), "datetime": pa.timestamp("us", tz="UTC"),
         "datetime_naive": pa.timestamp("us")}
# OGR layer geometry types; anything else (mixed, collections) is written as "Unknown".
OGR_TYPES = {"point": "Point", "multipoint": "MultiPoint", "linestring": "LineString",
             "multilinestring": "MultiLineString", "polygon": "Polygon",
             "multipolygon": "MultiPolygon"}


# ---- what is exported -----------------------------------------------------------------------

@dataclass(frozen=True)
class Export:
    """One download: a version, the parsed query (always x/y axis order: every format here
    writes east/north, GDAL's traditional GIS order), the format and whether the geometry
    is left out."""

    coll: Collection
    q: FeatureQuery
    fmt: Format

    @classmethod
    def make(cls, coll: Collection, q: FeatureQuery, fmt: Format) -> Export:
        return cls(coll, replace(q, crs=replace(q.crs, flip=False)), fmt)

    @property
    def srid(self) -> int:
        return self.q.crs.srid

    @property
    def geographic(self) -> bool:
        return bool(CRS.from_epsg(self.srid).is_geographic)

    @property
    def columns(self) -> list[Column]:
        if self.q.properties is None:
            return list(self.coll.columns)
        return [c for name in self.q.properties if (c := self.coll.column(name)) is not None]

    @property
    def with_geometry(self) -> bool:
        return not self.q.skip_geometry

    @property
    def point_xy(self) -> bool:
        """Points go to lon/lat (x/y) columns in tabular formats."""
        return self.coll.geometry_type.lower() == "point"

    @property
    def ogr_type(self) -> str:
        return OGR_TYPES.get(self.coll.geometry_type.lower(), "Unknown")

    def geometry_names(self) -> list[str]:
        """The tabular geometry column(s): `geometry` (WKT), or lon/lat (x/y) for points."""
        if not self.with_geometry:
            return []
        taken = {c.name for c in self.coll.columns} | {"fid"}
        if self.point_xy:
            names = ["lon", "lat"] if self.geographic else ["x", "y"]
        else:
            names = ["geometry"]
        return [_free(n, taken) for n in names]

    def filename(self) -> str:
        """{slug}_v{version}_{published date}[_filtered][_epsg{srid}].{ext}"""
        day = self.coll.modified.astimezone(UTC).date().isoformat()
        extra = "_filtered" if self.q.filtered else ""
        if self.srid != 4326:
            extra += f"_epsg{self.srid}"
        return f"{self.coll.slug}_v{self.coll.version}_{day}{extra}.{self.fmt.ext}"


def _free(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    return name


def _geom(e: Export, t: Table) -> Any:
    return output_geometry(t.c.geom, e.q.crs)


def _text_value(col: Column, t: Table) -> Any:
    """A column as CSV shows it: as stored, with booleans as true/false and date-times in
    ISO 8601 (the same text the GeoJSON properties carry)."""
    c = t.c[col.name]
    if col.type == "boolean":
        return case((c, literal("true")), (~c, literal("false")))
    if col.type == "datetime":
        return func.to_json(c).op("#>>")(literal_column("'{}'"))
    return c


def _xy(e: Export, t: Table) -> list[Any]:
    digits = geometry_digits(e.q.crs)
    g = _geom(e, t)
    return [func.trim_scale(func.round(cast(fn(g), Numeric), digits))
            for fn in (func.ST_X, func.ST_Y)]


def tabular_header(e: Export) -> list[str]:
    """CSV and XLSX columns: fid, the published columns, the geometry column(s)."""
    return ["fid", *(c.name for c in e.columns), *e.geometry_names()]


def csv_select(e: Export) -> Select[Any]:
    """fid, the published columns, then WKT `geometry` (or lon/lat), in feature id order."""
    t = sa_table(e.coll)
    cols: list[Any] = [t.c.fid.label("fid")]
    cols += [_text_value(c, t).label(c.name) for c in e.columns]
    names = e.geometry_names()
    if names and e.point_xy:
        cols += [v.label(n) for v, n in zip(_xy(e, t), names, strict=True)]
    elif names:
        cols.append(func.ST_AsText(_geom(e, t), geometry_digits(e.q.crs)).label(names[0]))
    return select(*cols).where(*e.q.where).order_by(t.c.fid)


def feature_select(e: Export, *, seq: bool) -> Select[Any]:
    """One finished feature per row, the same JSON as items: prefixed by ',' (the first one's
    is dropped while streaming) or by RS for GeoJSON text sequences (RFC 8142)."""
    t = sa_table(e.coll)
    prefix = literal_column("chr(30)") if seq else literal(",")
    return select(func.concat(prefix, feature_json(e.q, t))).where(*e.q.where) \
        .order_by(t.c.fid)


def rows_select(e: Export, geometry: str = "wkb") -> Select[Any]:
    """Rows for the file writers: fid, the columns as stored, then the geometry as WKB,
    WKT (`wkt`) or x/y (`xy`, two columns), or none (`none`)."""
    t = sa_table(e.coll)
    cols: list[Any] = [t.c.fid] + [t.c[c.name] for c in e.columns]
    if geometry == "wkb":
        cols.append(func.ST_AsBinary(_geom(e, t)))
    elif geometry == "wkt":
        cols.append(func.ST_AsText(_geom(e, t), geometry_digits(e.q.crs)))
    elif geometry == "xy":
        cols += [cast(v, Float) for v in _xy(e, t)]
    return select(*cols).where(*e.q.where).order_by(t.c.fid)


def extent_select(e: Export) -> Select[Any]:
    t = sa_table(e.coll)
    ext = func.ST_Extent(_geom(e, t))
    return select(func.ST_XMin(ext), func.ST_YMin(ext), func.ST_XMax(ext),
                  func.ST_YMax(ext)).where(*e.q.where)


def cache_key(e: Export, stmt: Select[Any]) -> str:
    """Names the content: version (id, table, publish time), format and the statement with
    its parameters (a normalised query: equal filters written differently compile alike)."""
    sql, params = compile_sql(stmt)
    c = e.coll
    blob = json.dumps([SALT, e.fmt.name, c.slug, c.version, c.version_id, c.table,
                       c.modified.isoformat(), sql, sorted(params.items())],
                      default=repr, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def connect_options(*, autocommit: bool, role: str, dsn: str = "") -> dict[str, Any]:
    """Settings of an export's own connection. No parallel plan: PostgreSQL would compute
    every row in the workers and sort them all (the finished JSON included) before sending
    the first one; serially the feature-id order comes from the primary key index as rows
    are produced, so the first byte leaves at once and nothing piles up. No JIT: compiling
    costs more than it saves on these expressions. The application name says which process
    runs it (pg_stat_activity). Options already in `dsn` (the read-only role, see
    api/pool.py) are kept."""
    given = conninfo_to_dict(dsn).get("options", "") if dsn else ""
    return {"autocommit": autocommit, "application_name": f"shahr {role} pid={os.getpid()}",
            "options": f"{given} -c statement_timeout={EXPORT_TIMEOUT_MS} -c TimeZone=UTC "
                       "-c DateStyle=ISO -c extra_float_digits=1 "
                       "-c max_parallel_workers_per_gather=0 -c jit=off"}


# ---- streamed formats -----------------------------------------------------------------------

def copy_statement(conn: psycopg.AsyncConnection, e: Export) -> str:
    """The COPY for a streamed format, with every value rendered by psycopg's literal
    quoting (COPY cannot take bind parameters)."""
    if e.fmt.name == "csv":
        sql, params = compile_sql(csv_select(e))
        options = "FORMAT csv"  # the header is ours (stream_head): a row means data came
    else:
        sql, params = compile_sql(feature_select(e, seq=e.fmt.name == "geojsonseq"))
        # CSV with control characters as quote and delimiter: JSON never contains them raw
        # (nor newlines), so each row arrives exactly as built, ending in a newline.
        options = "FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02'"
    inner = psycopg.AsyncClientCursor(conn).mogrify(sql, params)
    return f"COPY ({inner}) TO STDOUT WITH ({options})"


def stream_head(e: Export) -> tuple[bytes, bytes]:
    """The bytes before the first row and after the last one."""
    if e.fmt.name == "csv":
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow(tabular_header(e))
        return BOM + line.getvalue().encode(), b""
    if e.fmt.name == "geojsonseq":
        return b"", b""
    head: dict[str, Any] = {"type": "FeatureCollection", "name": e.coll.slug}
    if e.srid != 4326:  # GeoJSON 2008 style, which GDAL and QGIS read; RFC 7946 is CRS84
        head["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{e.srid}"}}
    text = json.dumps(head, ensure_ascii=False)[:-1] + ',"features":[\n'
    return text.encode(), b"]}\n"


async def copy_stream(dsn: str, e: Export) -> AsyncIterator[bytes]:
    """Yield the download in chunks of about STREAM_CHUNK bytes. The first chunk is produced
    as soon as the first row arrived, so the caller can await it and turn a query error
    into a problem response before any byte is sent."""
    head, tail = stream_head(e)
    conn = await psycopg.AsyncConnection.connect(
        dsn, **connect_options(autocommit=True, role="download", dsn=dsn))
    try:
        statement = copy_statement(conn, e)
        first = True
        async for block in copy_out(conn, statement):
            if first:
                first = False
                if e.fmt.name == "geojson":
                    block = block[1:]  # the first feature has no comma before it
                block = head + block
            yield block
        yield tail if not first else head + tail
    finally:  # closing is all it takes: a backend still sending stops at its next write
        await conn.close()


async def copy_out(conn: psycopg.AsyncConnection, statement: str,
                   size: int = STREAM_CHUNK) -> AsyncIterator[bytes]:
    """Run `COPY ... TO STDOUT` and yield its data: the first row alone, then blocks of about
    `size` bytes.

    This drives libpq directly (psycopg's public `pq` layer): PostgreSQL sends one message
    per row, and reading them through psycopg's Copy object costs an await per row (2.5 µs,
    more than PostgreSQL needs to make a row); here a loop takes every row libpq already
    holds and only waits when its buffer is empty (1.3 µs a row, measured). The connection
    must be this export's own: it is closed afterwards, never reused."""
    pgconn = conn.pgconn
    pgconn.send_query(statement.encode(conn.info.encoding))
    while pgconn.flush():
        await _ready(pgconn.socket, write=True)
    await _idle(pgconn)
    res = pgconn.get_result()
    if res is None or res.status != pq.ExecStatus.COPY_OUT:
        await _drain(pgconn)
        raise _error(pgconn, res)
    parts: list[Any] = []
    held, first = 0, True
    get = pgconn.get_copy_data
    while True:
        n, data = get(1)
        if n > 0:
            parts.append(data)
            held += n
            if held >= size or first:
                yield b"".join(parts)
                parts, held, first = [], 0, False
        elif n == 0:  # libpq's buffer is empty: wait for the socket
            await _ready(pgconn.socket)
            pgconn.consume_input()
        elif n == -1:
            break
        else:
            raise psycopg.OperationalError(pgconn.get_error_message())
    if parts:
        yield b"".join(parts)
    await _idle(pgconn)
    res = pgconn.get_result()
    await _drain(pgconn)
    if res is None or res.status != pq.ExecStatus.COMMAND_OK:
        raise _error(pgconn, res)


def _error(pgconn: pq.abc.PGconn, res: pq.abc.PGresult | None) -> psycopg.Error:
    if res is not None and res.status == pq.ExecStatus.FATAL_ERROR:
        return psycopg.errors.error_from_result(res)
    return psycopg.OperationalError(pgconn.get_error_message() or "COPY did not run")


async def _ready(fd: int, *, write: bool = False) -> None:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    (loop.add_writer if write else loop.add_reader)(fd, done.set_result, None)
    try:
        await done
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def _idle(pgconn: pq.abc.PGconn) -> None:
    """Wait until libpq has a whole result to give."""
    pgconn.consume_input()
    while pgconn.is_busy():
        await _ready(pgconn.socket)
        pgconn.consume_input()


async def _drain(pgconn: pq.abc.PGconn) -> None:
    while True:
        await _idle(pgconn)
        if pgconn.get_result() is None:
            return


# ---- reading rows for the file formats ------------------------------------------------------

def arrow_schema(e: Export, geometry: str = "wkb") -> pa.Schema:
    fields = [pa.field("fid", pa.int64(), nullable=False)]
    fields += [pa.field(c.name, ARROW.get(c.storage, pa.string())) for c in e.columns]
    if geometry == "wkb":
        fields.append(pa.field("geometry", pa.binary()))
    return pa.schema(fields)


def fetch_rows(conn: psycopg.Connection, stmt: Select[Any],
               chunk: int = CHUNK_ROWS) -> Iterator[list[tuple[Any, ...]]]:
    """Chunks of rows from a server-side cursor (binary: no text parsing of numbers/WKB)."""
    sql, params = compile_sql(stmt)
    with conn.transaction(), conn.cursor(name=f"export_{uuid.uuid4().hex[:8]}",
                                         binary=True) as cur:
        cur.itersize = chunk
        cur.execute(sql, params)
        while rows := cur.fetchmany(chunk):
            yield rows


def to_batch(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    return pa.record_batch([pa.array(c, type=f.type) for c, f in zip(cols, schema, strict=True)],
                           schema=schema)


# ---- file writers ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Layer:
    """What a writer needs besides the rows (a file-format view of an Export)."""

    name: str
    title: str
    description: str
    columns: tuple[Column, ...]
    geometry_type: str  # OGR name
    srid: int
    published: datetime
    schema: pa.Schema

    @property
    def crs_wkt(self) -> str:
        return str(CRS.from_epsg(self.srid).to_wkt())


Batches = Iterator[pa.RecordBatch]


def _reader(schema: pa.Schema, batches: Batches) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(schema, batches)


def write_ogr(batches: Batches, path: Path, layer: Layer, driver: str,
              **options: Any) -> None:
    """One layer written by GDAL from a stream of record batches (never all in memory)."""
    import pyogrio

    pyogrio.write_arrow(_reader(layer.schema, batches), path, layer=layer.name, driver=driver,
                        geometry_name="geometry", geometry_type=layer.geometry_type,
                        crs=layer.crs_wkt, **options)


def write_gpkg(batches: Batches, path: Path, layer: Layer) -> None:
    """GeoPackage; the `fid` column becomes the feature id, and GDAL's clock is pinned to
    the version's publish time so a rebuilt file has the same bytes."""
    import pyogrio

    with _GDAL_CLOCK:
        old = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
        stamp = layer.published.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": stamp})
        try:
            write_ogr(batches, path, layer, "GPKG",
                      layer_options={"IDENTIFIER": layer.title,
                                     "DESCRIPTION": layer.description[:1000]})
        finally:
            pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": old})


def write_fgb(batches: Batches, path: Path, layer: Layer) -> None:
    write_ogr(batches, path, layer, "FlatGeobuf")


def write_kml(batches: Batches, path: Path, layer: Layer) -> None:
    """KML (WGS 84 by definition). Dates as ISO text (LIBKML would write 2024/01/02)."""
    import pyogrio

    dates = [i for i, f in enumerate(layer.schema) if pa.types.is_date(f.type)]
    schema = layer.schema
    for i in dates:
        schema = schema.set(i, pa.field(schema.field(i).name, pa.string()))

    def iso(batches: Batches) -> Batches:
        for b in batches:
            cols = [b.column(i).cast(pa.string()) if i in dates else b.column(i)
                    for i in range(b.num_columns)]
            yield pa.record_batch(cols, schema=schema)

    driver = "LIBKML" if "LIBKML" in pyogrio.list_drivers(write=True) else "KML"
    write_ogr(iso(batches), path, replace(layer, schema=schema), driver)


# -- Shapefile

SHP_FAMILIES = {1: "point", 2: "line", 3: "polygon", 4: "multipoint", 5: "line",
                6: "polygon"}
SHP_TYPES = {"point": "Point", "multipoint": "MultiPoint", "line": "MultiLineString",
             "polygon": "MultiPolygon"}


def short_names(names: list[str], limit: int = 10) -> dict[str, str]:
    """DBF field names: at most `limit` bytes, unique without regard to case."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        cand = _cut(name, limit)
        i = 1
        while cand.lower() in taken:
            suffix = f"_{i}"
            cand = _cut(name, limit - len(suffix)) + suffix
            i += 1
        taken.add(cand.lower())
        out[name] = cand
    return out


def _cut(text: str, limit: int) -> str:
    return text.encode()[:limit].decode(errors="ignore")


def wkb_family(wkb: bytes) -> str | None:
    """point | multipoint | line | polygon from a WKB header; None for collections."""
    order = "little" if wkb[0] == 1 else "big"
    code = int.from_bytes(wkb[1:5], order) & 0x0FFFFFFF  # EWKB flags
    return SHP_FAMILIES.get(code % 1000)


def _only(batches: Batches, family: str) -> Batches:
    for b in batches:
        geoms = b.column(b.num_columns - 1).to_pylist()
        keep = pa.array([g is not None and wkb_family(g) == family for g in geoms])
        yield b.filter(keep)


def write_shapefile_zip(open_batches: Callable[[], Batches], families: list[str],
                        path: Path, layer: Layer, stem: str) -> None:
    """A zipped Shapefile: .shp/.shx/.dbf, .prj (the CRS) and .cpg (UTF-8); field names
    shortened to 10 characters with `fields.csv` mapping them back (with the data
    dictionary); one .shp per geometry kind when the layer mixes them (a Shapefile holds
    one). `open_batches()` is called once per kind (the rows are read again each time).
    Text fields start 80 bytes wide and GDAL widens them as longer values come (DBF's limit
    is 254 bytes: 127 Persian letters); GDAL's RESIZE=YES would shrink them but rewrites
    the whole .dbf (22 s for a million parcels), for a zip barely smaller."""
    import pyogrio

    names = [f.name for f in layer.schema][:-1]
    short = short_names(names)
    fields = [pa.field(short[n], layer.schema.field(n).type) for n in names]
    schema = pa.schema([*fields, layer.schema.field(len(names))])
    work = path.parent / f".{path.name}.shp"
    work.mkdir()
    try:
        members: list[Path] = []
        for family in families:
            name = stem if len(families) == 1 else f"{stem}_{family}"
            shp = work / f"{name}.shp"
            source = open_batches()
            if len(families) > 1:
                source = _only(source, family)
            renamed = (pa.record_batch(b.columns, schema=schema) for b in source)
            pyogrio.write_arrow(_reader(schema, renamed), shp, layer=name,
                                driver="ESRI Shapefile", geometry_name="geometry",
                                geometry_type=SHP_TYPES[family], crs=layer.crs_wkt,
                                encoding="UTF-8")
            members += sorted(p for p in work.iterdir() if p.stem == name)
        stamp = layer.published.astimezone(UTC).timetuple()[:6]
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in members:
                info = zipfile.ZipInfo(p.name, date_time=stamp)  # type: ignore[arg-type]
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with p.open("rb") as src, zf.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            info = zipfile.ZipInfo("fields.csv", date_time=stamp)  # type: ignore[arg-type]
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, fields_csv(layer, short))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fields_csv(layer: Layer, short: dict[str, str]) -> bytes:
    """The Shapefile's field names mapped to the published names, with the dictionary."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["shapefile_field", "name", "type", "unit", "label_en", "label_fa",
                "description_en", "description_fa"])
    w.writerow([short["fid"], "fid", "integer", "", "Feature id", "شناسه عارضه", "", ""])
    for c in layer.columns:
        w.writerow([short[c.name], c.name, c.type, c.unit or "", c.label_en or "",
                    c.label_fa or "", c.description_en or "", c.description_fa or ""])
    return BOM + out.getvalue().encode()


# -- GeoParquet

def write_parquet(batches: Batches, path: Path, layer: Layer,
                  bbox: tuple[float, float, float, float] | None) -> None:
    """GeoParquet 1.1: WKB `geometry` with the `geo` metadata (encoding, types, CRS as
    PROJJSON, bbox), zstd row groups of one chunk each."""
    import pyarrow.parquet as pq

    crs = CRS("OGC:CRS84") if layer.srid == 4326 else CRS.from_epsg(layer.srid)
    column: dict[str, Any] = {
        "encoding": "WKB", "crs": crs.to_json_dict(),
        "geometry_types": [] if layer.geometry_type == "Unknown" else [layer.geometry_type]}
    if bbox is not None and None not in bbox:
        column["bbox"] = list(bbox)
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}
    schema = layer.schema.with_metadata({"geo": json.dumps(geo)})
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for b in batches:
            writer.write_batch(pa.record_batch(b.columns, schema=schema))


# -- XLSX

_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def write_xlsx(rows: Iterator[list[tuple[Any, ...]]], path: Path, layer: Layer,
               header: list[str], about: list[tuple[str, str]],
               wkt_at: int | None = None) -> None:
    """A workbook (openpyxl, write-only: rows go to disk as they come) with the data, the
    data dictionary and what the file is. Dates are Excel dates, date-times in UTC; text
    is always text (a value starting with '=' is not a formula); geometry as WKT (or
    lon/lat for points) unless a shape is longer than a cell holds (noted on 'about')."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("data")
    ws.append(header)
    too_long: list[int] = []
    for chunk in rows:
        for row in chunk:
            out: list[Any] = []
            for i, v in enumerate(row):
                if isinstance(v, str):
                    if i == wkt_at and len(v) > XLSX_MAX_CELL:
                        too_long.append(row[0])
                        v = None
                    elif _ILLEGAL_XML.search(v):
                        v = _ILLEGAL_XML.sub("", v)
                    if v is not None and v.startswith("="):
                        cell = WriteOnlyCell(ws, value=v)
                        cell.data_type = "s"
                        v = cell
                elif isinstance(v, datetime) and v.tzinfo is not None:
                    v = v.astimezone(UTC).replace(tzinfo=None)
                out.append(v)
            ws.append(out)
    fields = wb.create_sheet("fields")
    fields.append(["name", "type", "unit", "label_en", "label_fa", "description_en",
                   "description_fa"])
    for c in layer.columns:
        fields.append([c.name, c.type, c.unit, c.label_en, c.label_fa, c.description_en,
                       c.description_fa])
    info = wb.create_sheet("about")
    for k, v in about:
        info.append([k, v])
    if too_long:
        info.append(["geometry left out (longer than an Excel cell holds; use GeoPackage)",
                     ", ".join(map(str, too_long[:1000]))])
    published = layer.published.astimezone(UTC).replace(tzinfo=None)
    wb.properties.created = wb.properties.modified = published
    wb.properties.title = layer.title
    wb.save(path)


# ---- building into the cache ----------------------------------------------------------------

def build_file(dsn: str, e: Export, path: Path, about: list[tuple[str, str]]) -> None:
    """Write the export to `path` (any format but the streamed ones), reading the rows in
    chunks on a connection of its own. A database error while GDAL or pyarrow pulls the
    rows is raised as itself (they would wrap it in a RuntimeError)."""
    failed: list[BaseException] = []

    def guarded(rows: Iterator[list[tuple[Any, ...]]]) -> Iterator[list[tuple[Any, ...]]]:
        try:
            yield from rows
        except BaseException as exc:
            failed.append(exc)
            raise

    with psycopg.connect(dsn, **connect_options(autocommit=False, role="build",
                                                dsn=dsn)) as conn:
        try:
            _build(conn, e, path, about, guarded)
        except Exception:
            if failed:
                raise failed[0] from None
            raise


Guard = Callable[[Iterator[list[tuple[Any, ...]]]], Iterator[list[tuple[Any, ...]]]]


def _build(conn: psycopg.Connection, e: Export, path: Path, about: list[tuple[str, str]],
           guarded: Guard) -> None:
    layer = Layer(name=e.coll.slug, title=e.coll.title, description=e.coll.description,
                  columns=tuple(e.columns), geometry_type=e.ogr_type, srid=e.srid,
                  published=e.coll.modified, schema=arrow_schema(e))
    name = e.fmt.name
    if name == "xlsx":
        mode = "none" if not e.with_geometry else "xy" if e.point_xy else "wkt"
        header = tabular_header(e)
        write_xlsx(guarded(fetch_rows(conn, rows_select(e, mode), chunk=10_000)), path, layer,
                   header, about, wkt_at=len(header) - 1 if mode == "wkt" else None)
        return

    def batches() -> Batches:
        return (to_batch(rows, layer.schema)
                for rows in guarded(fetch_rows(conn, rows_select(e))))

    if name == "gpkg":
        write_gpkg(batches(), path, layer)
    elif name == "fgb":
        write_fgb(batches(), path, layer)
    elif name == "kml":
        write_kml(batches(), path, layer)
    elif name == "parquet":
        sql, params = compile_sql(extent_select(e))
        row = conn.execute(sql, params).fetchone()
        write_parquet(batches(), path, layer, tuple(row) if row else None)  # type: ignore[arg-type]
    elif name == "shp":
        families = shapefile_families(conn, e)
        write_shapefile_zip(batches, families, path, layer,
                            stem=e.filename().removesuffix(".shp.zip"))
    else:  # pragma: no cover - the router only sends file formats here
        raise ValueError(f"not a file format: {name}")


def shapefile_families(conn: psycopg.Connection, e: Export) -> list[str]:
    """The geometry kinds to write: the layer's one, or (a mixed layer) those present."""
    kind = e.coll.geometry_type.lower()
    single = {"point": "point", "multipoint": "multipoint", "linestring": "line",
              "multilinestring": "line", "polygon": "polygon", "multipolygon": "polygon"}
    if kind in single:
        return [single[kind]]
    t = sa_table(e.coll)
    sql, params = compile_sql(select(func.ST_GeometryType(t.c.geom)).where(*e.q.where)
                              .distinct())
    present = {str(r[0]).removeprefix("ST_").lower() for r in conn.execute(sql, params)}
    return sorted({single[k] for k in present if k in single}) or ["polygon"]


def cache_path(root: Path, e: Export, key: str) -> Path:
    return root / e.coll.slug / f"{key}.{e.fmt.ext}"


def cached(root: Path, e: Export, key: str, about: list[tuple[str, str]],
           dsn: str) -> tuple[Path, bool]:
    """The export's file in the cache, built first if missing (then `built` is True): under
    an exclusive lock on `<file>.lock` (flock works across processes), into a scratch
    folder, then renamed into place, so a reader never sees a half-written file."""
    path = cache_path(root, e, key)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    if path.exists():
        _touch(path)
        return path, False
    with open(folder / f"{key}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.exists():
                _touch(path)
                return path, False
            work = folder / f".{key}.{uuid.uuid4().hex[:8]}.build"
            work.mkdir()
            try:
                out = work / f"{key}.{e.fmt.ext}"
                build_file(dsn, e, out, about)
                os.replace(out, path)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    prune(root, keep=path)
    return path, True


def build_in_process(dsn: str, root: str, slug: str, number: int, params: dict[str, str],
                     fmt: str, key: str, about: list[tuple[str, str]]) -> tuple[str, bool]:
    """`cached()` in a build process (anyio.to_process): GDAL's writers hold the GIL for a
    whole file (measured: a 1 s GeoPackage write left other threads no turn for 1 s), and
    openpyxl is pure Python, so a build in the web worker would freeze its event loop and
    starve uvicorn's health check (which kills a worker silent for 5 s). The request was
    validated by the worker; here the same version and query are resolved again from plain
    values and must give the same cache key."""
    from catalog.versions import collection_at_version

    with psycopg.connect(dsn) as conn:
        coll = collection_at_version(conn, slug, number)
    if coll is None:
        raise LookupError(f"version {number} of {slug!r} is gone")
    q = parse_params(coll, params, default_limit=1, max_limit=1)
    e = Export.make(coll, q, FORMATS[fmt])
    if cache_key(e, rows_select(e)) != key:
        raise RuntimeError("the build process resolved another query than the service")
    path, built = cached(Path(root), e, key, about, dsn)
    return str(path), built


def _touch(path: Path) -> None:
    """Mark as recently used (the cache is pruned by modification time)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def prune(root: Path, keep: Path, limit: int = CACHE_MAX_BYTES) -> None:
    """Delete the least recently used files while the cache is above `limit` (never one
    used in the last CACHE_KEEP_S seconds: it may be being served)."""
    entries = []
    for p in root.glob("*/*"):
        if p.suffix == ".lock" or p.name.startswith(".") or p == keep:
            continue
        try:
            st = p.stat()
        except OSError:
            continue
        entries.append((st.st_mtime, st.st_size, p))
    total = sum(size for _m, size, _p in entries) + (keep.stat().st_size if keep.exists() else 0)
    now = time.time()
    for mtime, size, p in sorted(entries):
        if total <= limit:
            break
        if now - mtime < CACHE_KEEP_S:
            break
        p.unlink(missing_ok=True)
        total -= size
