"""The transform step, batch by batch: name and type columns, normalise Persian text, parse
Jalali dates, repair and promote geometries, reproject to EPSG:4326, and set aside every row
that cannot be loaded with the reason why. Nothing here touches the database."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import CRS

from catalog.jalali import parse_jalali_datetime
from catalog.text import has_replacement_char_array, normalise_text_array
from etl.coltypes import (
    PG_TYPE,
    TypeGuess,
    arrow_storage_type,
    cast_text,
    column_name,
    prepare_text,
)
from etl.manifest import FieldSpec, Manifest
from etl.readers import Batch, LayerInfo
from geo.crs import is_storage_crs, transformer_to
from geo.geometry import (
    MULTI_TYPE,
    SINGLE_TYPE,
    clean,
    family_of,
    hex_wkb,
    impossible_rows,
    reproject,
)

MAX_RAW_CHARS = 2000


class TransformError(ValueError):
    """The whole job cannot go on (not just a row); the message says why and what to do."""


@dataclass
class ColumnPlan:
    source: str
    name: str
    storage: str | None  # None: text whose type is inferred while loading
    spec: FieldSpec | None
    is_text: bool  # arrives as text (needs normalising / casting)
    guess: TypeGuess | None = None
    fffd: int = 0
    fffd_example: tuple[int, str] | None = None

    @property
    def declared(self) -> bool:
        return bool(self.spec and self.spec.type)

    @property
    def load_type(self) -> str:
        """The column type while loading (inferred columns load as text, retyped after)."""
        return self.storage or "string"


@dataclass
class Reject:
    row: int
    field: str | None
    reason: str
    raw: dict[str, object]


@dataclass
class BatchOut:
    table: pa.Table  # fid, columns..., geom (hex EWKB), ready for COPY
    rejects: list[Reject]
    repaired: int
    impossible: int
    impossible_example: tuple[float, float] | None = None


@dataclass
class Plan:
    columns: list[ColumnPlan]
    family: str | None
    multi: bool
    src_crs: CRS
    decimal: str = "."
    warnings: list[str] = field(default_factory=list)
    bounds: tuple[float, float, float, float] | None = None  # of the rows sent to COPY

    @property
    def geometry_type(self) -> str:
        assert self.family
        return (MULTI_TYPE if self.multi else SINGLE_TYPE)[self.family]

    def column(self, source: str) -> ColumnPlan | None:
        """The column read from `source` (exact name first, then ignoring case)."""
        exact = next((c for c in self.columns if c.source == source), None)
        return exact or next((c for c in self.columns if c.source.lower() == source.lower()),
                             None)


def make_plan(info: LayerInfo, manifest: Manifest, src_crs: CRS) -> Plan:
    """Decide each column's published name and type from the file and the manifest."""
    excluded = {e.lower() for e in manifest.exclude}
    taken: set[str] = set()
    cols: list[ColumnPlan] = []
    names = {n for n, _ in info.columns}
    for spec in manifest.fields:
        if spec.source not in names and spec.source.lower() not in {n.lower() for n in names}:
            raise TransformError(
                f"{manifest.path}: field {spec.source!r} is not in the source; its columns "
                f"are: {', '.join(sorted(names))}")
    if manifest.key and manifest.key.lower() not in {n.lower() for n in names}:
        raise TransformError(f"{manifest.path}: key {manifest.key!r} is not a column of the "
                             f"source; its columns are: {', '.join(sorted(names))}")
    for pos, (src_name, atype) in enumerate(info.columns, start=1):
        if src_name.lower() in excluded:
            continue
        spec = manifest.field_for(src_name)
        name = column_name(spec.name if spec and spec.name else src_name, taken, pos)
        native = arrow_storage_type(atype)
        is_text = native is None
        storage = spec.type if spec and spec.type else native
        cols.append(ColumnPlan(source=src_name, name=name, storage=storage, spec=spec,
                               is_text=is_text,
                               guess=TypeGuess() if is_text and storage is None else None))
    family = manifest.geometry_type or family_of(info.geometry_type)
    multi = family in ("polygon", "line") or (
        family == "point" and (info.geometry_type or "").lower().startswith("multi"))
    decimal = manifest.source.csv.decimal if manifest.source.csv else "."
    return Plan(columns=cols, family=family, multi=multi, src_crs=src_crs, decimal=decimal)


def settle_family(plan: Plan, geoms: np.ndarray) -> None:
    """When the file does not say its geometry type, the first batch's majority decides."""
    if plan.family is not None:
        return
    from geo.geometry import dominant_family

    plan.family = dominant_family(geoms)
    if plan.family is None:
        raise TransformError("no usable geometry in the first rows of the source; set "
                             "`geometry_type` (point, line or polygon) in the manifest")
    plan.multi = plan.family in ("polygon", "line")


def _raw_rows(batch: Batch, idx: np.ndarray) -> list[dict[str, object]]:
    """Source values of the given rows, as JSON-safe strings, for the rejects table."""
    sub = batch.table.take(pa.array(idx, pa.int64()))
    rows = sub.to_pylist()
    if batch.geoms is not None:
        wkts = shapely.to_wkt(batch.geoms[idx], rounding_precision=7)
        for r, w in zip(rows, wkts, strict=True):
            r["geometry"] = None if w is None else (w[:MAX_RAW_CHARS] + "…"
                                                    if len(w) > MAX_RAW_CHARS else w)
    out = []
    for r in rows:
        out.append({k: (v if v is None or isinstance(v, (int, float, bool)) else str(v))
                    for k, v in r.items()})
    json.dumps(out)  # fail here, not in the database, if something is not serialisable
    return out


def transform_batch(plan: Plan, batch: Batch, first_row: int) -> BatchOut:
    """Turn one source batch into rows ready for COPY, plus the rows rejected and why.

    `first_row` is the 1-based source row number of the batch's first row; it becomes the
    feature id, so a feature's id is its row in the source file."""
    n = len(batch.table)
    reason = np.full(n, None, dtype=object)
    reason_field = np.full(n, None, dtype=object)
    arrays: list[pa.Array] = [pa.array(np.arange(first_row, first_row + n, dtype=np.int64))]
    names = ["fid"]

    for col in plan.columns:
        arr = batch.table[col.source].combine_chunks()
        if col.is_text:
            arr = pc.replace_substring(arr.cast(pa.string()), "\x00", "")
            fffd = has_replacement_char_array(arr)
            count = int(pc.sum(pc.cast(fffd, pa.int64())).as_py() or 0)
            if count:
                if col.fffd_example is None:
                    i = int(np.flatnonzero(fffd.to_numpy(zero_copy_only=False))[0])
                    col.fffd_example = (first_row + i, arr[i].as_py())
                col.fffd += count
            text = normalise_text_array(arr)
            nulls = (col.spec.null_values if col.spec else [])
            if nulls:
                text = pc.if_else(pc.is_in(text, value_set=pa.array(nulls, pa.string())),
                                  pa.scalar(None, pa.string()), text)
            if col.storage is None or col.storage == "string":
                if col.guess is not None:
                    col.guess.update(_for_numbers(prepare_text(text, nulls), plan.decimal))
                arrays.append(text)
            else:
                prepared = prepare_text(text, nulls)
                if col.storage in ("integer", "number"):
                    prepared = _for_numbers(prepared, plan.decimal)
                spec = col.spec
                res = cast_text(prepared, col.storage,
                                calendar=spec.calendar if spec else "gregorian",
                                date_format=spec.date_format if spec else None)
                bad = res.bad & (reason == None)  # noqa: E711
                if bad.any():
                    vals = prepared.filter(pa.array(bad)).to_pylist()
                    reason[bad] = [_bad_value(col, v) for v in vals]
                    reason_field[bad] = col.source
                arrays.append(res.values)
        else:
            if col.storage is not None and arrow_storage_type(arr.type) != col.storage:
                arr = _cast_native(arr, col, reason, reason_field)
            nulls = (col.spec.null_values if col.spec else [])
            if nulls:
                arr = _null_native(arr, nulls)
            arrays.append(arr)
        names.append(col.name)

    geom_hex, repaired, impossible, example = _geometry(plan, batch, reason, reason_field)
    arrays.append(geom_hex)
    names.append("geom")

    rejected = np.flatnonzero(reason != None)  # noqa: E711
    rejects: list[Reject] = []
    if rejected.size:
        raws = _raw_rows(batch, rejected)
        rejects = [Reject(row=first_row + int(i), field=reason_field[i], reason=reason[i],
                          raw=raw) for i, raw in zip(rejected, raws, strict=True)]
    table = pa.Table.from_arrays(arrays, names=names)
    if rejected.size:
        keep = np.ones(n, dtype=bool)
        keep[rejected] = False
        table = table.filter(pa.array(keep))
    return BatchOut(table=table, rejects=rejects, repaired=repaired, impossible=impossible,
                    impossible_example=example)


def _for_numbers(arr: pa.Array, decimal: str) -> pa.Array:
    if decimal == ",":
        return pc.replace_substring(pc.replace_substring(arr, ".", ""), ",", ".")
    return arr


def _bad_value(col: ColumnPlan, value: object) -> str:
    if col.spec and col.spec.calendar == "jalali":
        try:
            parse_jalali_datetime(str(value))
        except ValueError as exc:  # says which part is wrong (e.g. no 30 Esfand in 1402)
            return f"{col.source}: {exc}"
    return f"{col.source}: {value!r} is not a valid {_type_words(col)}"


def _type_words(col: ColumnPlan) -> str:
    if col.spec and col.spec.calendar == "jalali":
        return "Jalali date (e.g. 1402/05/12)"
    return {"integer": "whole number", "number": "number", "boolean": "true/false value",
            "date": "date (YYYY-MM-DD)", "datetime": "date and time",
            "datetime_naive": "date and time"}.get(col.load_type, col.load_type)


def _cast_native(arr: pa.Array, col: ColumnPlan, reason: np.ndarray,
                 reason_field: np.ndarray) -> pa.Array:
    """A typed source column declared as another type: cast through text, rejecting misfits."""
    text = pc.cast(arr, pa.string())
    res = cast_text(text, col.load_type)
    bad = res.bad & (reason == None)  # noqa: E711
    if bad.any():
        vals = text.filter(pa.array(bad)).to_pylist()
        reason[bad] = [_bad_value(col, v) for v in vals]
        reason_field[bad] = col.source
    return res.values


def _null_native(arr: pa.Array, nulls: list[str]) -> pa.Array:
    """`null_values` on a typed column: compare their text forms (e.g. year_built 0)."""
    as_text = pc.cast(arr, pa.string())
    hit = pc.is_in(as_text, value_set=pa.array(nulls, pa.string()))
    return pc.if_else(hit, pa.scalar(None, arr.type), arr)


def _geometry(plan: Plan, batch: Batch, reason: np.ndarray,
              reason_field: np.ndarray) -> tuple[pa.Array, int, int, tuple[float, float] | None]:
    if batch.geoms is None:
        raise TransformError("the source has no geometry column")
    settle_family(plan, batch.geoms)
    assert plan.family is not None
    geoms = batch.geoms
    if batch.geom_problem is not None:
        known = (batch.geom_problem != None) & (reason == None)  # noqa: E711
        reason[known] = batch.geom_problem[known]
        reason_field[known] = "geometry"
    if plan.family == "point" and not plan.multi:
        geoms = _single_points(geoms)
    res = clean(geoms, plan.family, make_multi=False)  # promoted while encoding
    problem = res.problem
    if plan.family == "point" and not plan.multi:
        multi_left = shapely.get_type_id(res.geoms) == 4
        problem = problem.copy()
        problem[multi_left] = ("a MultiPoint with several points in a layer of single points; "
                               "set `geometry_type: point` and split it, or publish as MultiPoint")
    new = (problem != None) & (reason == None)  # noqa: E711
    reason[new] = problem[new]
    reason_field[new] = "geometry"
    geoms = res.geoms
    impossible_count, example = 0, None
    if not is_storage_crs(plan.src_crs):
        src_geoms = geoms
        geoms = reproject(geoms, transformer_to(plan.src_crs))
    else:
        src_geoms = geoms
    imp = impossible_rows(geoms) & (reason == None)  # noqa: E711
    if imp.any():
        from geo.crs import describe_impossible

        i = int(np.flatnonzero(imp)[0])
        x, y = shapely.get_coordinates(src_geoms[i])[0]
        example = (float(x), float(y))
        impossible_count = int(imp.sum())
        reason[imp] = describe_impossible(plan.src_crs, float(x), float(y)) \
            if impossible_count == 1 else [
                describe_impossible(plan.src_crs, *map(float, shapely.get_coordinates(g)[0]))
                for g in src_geoms[imp]]
        reason_field[imp] = "geometry"
    good = reason == None  # noqa: E711
    geoms = np.where(good, geoms, None)
    if good.any():
        plan.bounds = _union_bounds(plan.bounds, shapely.total_bounds(geoms))
    repaired = int((res.repaired & good).sum())
    return hex_wkb(geoms, plan.family, plan.multi), repaired, impossible_count, example


def _union_bounds(a: tuple[float, float, float, float] | None,
                  b: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in b)
    if a is None:
        return (x0, y0, x1, y1)
    return (min(a[0], x0), min(a[1], y0), max(a[2], x1), max(a[3], y1))


def _single_points(geoms: np.ndarray) -> np.ndarray:
    """MultiPoints of one point become Points (common in files that say MultiPoint)."""
    ids = shapely.get_type_id(geoms)
    one = (ids == 4) & (shapely.get_num_geometries(geoms) == 1)
    if one.any():
        geoms = geoms.copy()
        geoms[one] = shapely.get_geometry(geoms[one], 0)
    return geoms


def pg_columns(plan: Plan) -> list[tuple[str, str]]:
    return [(c.name, PG_TYPE[c.load_type]) for c in plan.columns]
