"""Entry points: the whole demo city for `make demo`, and big parcel layers for benchmarks."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import pyarrow as pa
import pyogrio
from pyogrio.raw import write_arrow

from etl.demo.city import (
    CRS,
    build_city,
    make_districts,
    make_outline,
    parcel_columns,
    plan_parcels,
)
from etl.demo.writers import fixed_gdal_clock, write_all

GENERATOR_VERSION = "1"
"""Bump whenever the output for a given seed and size changes, so stamps go stale."""
STAMP_NAME = ".demo-stamp.json"
MIN_PARCELS = 500
CHUNK_ROWS = 100_000


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_stamp(out_dir: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads((out_dir / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _current(out_dir: Path, seed: int, parcels: int) -> list[Path] | None:
    """The manifests already in out_dir if they were made by this generator version with
    this seed and size and none of the files is missing; else None."""
    stamp = _read_stamp(out_dir)
    if not stamp or (stamp.get("generator"), stamp.get("seed"), stamp.get("parcels")) != (
        GENERATOR_VERSION, seed, parcels,
    ):
        return None
    files = stamp.get("files", {})
    if not files or not all((out_dir / name).is_file() for name in files):
        return None
    return [out_dir / name for name in stamp.get("manifests", [])]


def generate_city(
    out_dir: Path, *, seed: int = 1402, parcels: int = 6000, force: bool = False
) -> list[Path]:
    """Write every source file and its manifest into out_dir; return the manifest paths.

    Idempotent: when out_dir/.demo-stamp.json records the same seed, parcel count and
    generator version (and the files are there), nothing is written and the existing
    manifests are returned, unless force. The same seed gives byte-identical files, so ETL
    checksums do not change. Files are written in a scratch folder inside out_dir and moved
    in at the end, so a reader never sees a half-written file.
    """
    out_dir = Path(out_dir)
    if parcels < MIN_PARCELS:
        raise ValueError(f"parcels must be at least {MIN_PARCELS} (got {parcels})")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not force and (existing := _current(out_dir, seed, parcels)) is not None:
        return existing
    old = _read_stamp(out_dir) or {}
    (out_dir / STAMP_NAME).unlink(missing_ok=True)  # stale until the new files are all in
    city = build_city(seed, parcels)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".demo-tmp-") as tmp:
        manifests = write_all(city, Path(tmp))
        names = sorted(p.name for p in Path(tmp).iterdir())
        for name in names:
            os.replace(Path(tmp) / name, out_dir / name)
    for name in set(old.get("files", {})) - set(names):  # left over from an older layout
        (out_dir / name).unlink(missing_ok=True)
    stamp = {
        "generator": GENERATOR_VERSION,
        "seed": seed,
        "parcels": parcels,
        "manifests": [m.name for m in manifests],
        "files": {name: _sha256(out_dir / name) for name in names},
    }
    (out_dir / STAMP_NAME).write_text(
        json.dumps(stamp, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return [out_dir / m.name for m in manifests]


def _parcel_chunks(n: int, seed: int, crs: str) -> Iterator[gpd.GeoDataFrame]:
    """n parcels, CHUNK_ROWS at a time: the layout is planned for all n at once in compact
    arrays (~60 bytes a parcel); polygons and attributes are made one chunk at a time."""
    outline = make_outline(seed)
    plan = plan_parcels(n, seed, outline, make_districts(outline, seed).geometry)
    for start in range(0, n, CHUNK_ROWS):
        geoms = plan.geometries(start, start + CHUNK_ROWS)
        cols, _ = parcel_columns(plan, geoms, start, seed)
        gdf = gpd.GeoDataFrame(cols, geometry=gpd.GeoSeries(geoms, crs=CRS))
        yield gdf if crs == CRS else gdf.to_crs(crs)


def write_parcels(path: Path, *, n: int, seed: int = 1402, crs: str = "EPSG:32639") -> None:
    """Write n land-use parcels (polygons) as one GeoPackage layer 'parcels' for benchmarks.

    Memory stays bounded: chunks of CHUNK_ROWS are generated and streamed into one open
    dataset through Arrow (GDAL >= 3.8), or appended one by one with older GDALs. Unlike
    the demo's parcels these are all valid Polygons; the attributes are the same.
    """
    if n < 1:
        raise ValueError(f"n must be positive (got {n})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    chunks = _parcel_chunks(n, seed, crs)
    options: dict[str, Any] = {"layer": "parcels", "driver": "GPKG", "geometry_type": "Polygon"}
    with fixed_gdal_clock():
        if pyogrio.__gdal_version__ < (3, 8, 0):  # pragma: no cover - bundled GDAL is newer
            for i, gdf in enumerate(chunks):
                pyogrio.write_dataframe(gdf, path, promote_to_multi=False, append=i > 0, **options)
            return
        batches = (
            batch for gdf in chunks
            for batch in pa.table(gdf.to_arrow(geometry_encoding="WKB")).to_batches()
        )
        first = next(batches)
        stream = pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], batches))
        write_arrow(stream, path, geometry_name="geometry", crs=crs, **options)
