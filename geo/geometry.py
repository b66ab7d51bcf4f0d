"""Vectorised geometry clean-up for loads: repair invalid shapes, keep one geometry family
per layer and promote single to multi parts, so a published table has one geometry type."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import Transformer

# shapely type ids
POINT, LINESTRING, LINEARRING, POLYGON = 0, 1, 2, 3
MULTIPOINT, MULTILINESTRING, MULTIPOLYGON, COLLECTION = 4, 5, 6, 7

FAMILY_OF_TYPE = {
    POINT: "point", MULTIPOINT: "point",
    LINESTRING: "line", LINEARRING: "line", MULTILINESTRING: "line",
    POLYGON: "polygon", MULTIPOLYGON: "polygon",
}
MULTI_TYPE = {"point": "MultiPoint", "line": "MultiLineString", "polygon": "MultiPolygon"}
SINGLE_TYPE = {"point": "Point", "line": "LineString", "polygon": "Polygon"}
_PART_IDS = {"point": (POINT,), "line": (LINESTRING, LINEARRING), "polygon": (POLYGON,)}


def family_of(type_name: str | None) -> str | None:
    """'point' | 'line' | 'polygon' from an OGR/GeoJSON geometry type name."""
    if not type_name:
        return None
    t = type_name.lower().replace(" ", "").removesuffix("z").removesuffix("m")
    t = t.removeprefix("3d").removeprefix("multi")
    return {"point": "point", "linestring": "line", "polygon": "polygon",
            "curvepolygon": "polygon", "multisurface": "polygon", "surface": "polygon",
            "compoundcurve": "line", "curve": "line", "circularstring": "line"}.get(t)


@dataclass
class CleanResult:
    geoms: np.ndarray  # object array of shapely geometries (None where rejected)
    repaired: np.ndarray  # bool: was invalid and was repaired
    problem: np.ndarray  # object: None or the reason the geometry cannot be used


def dominant_family(geoms: np.ndarray) -> str | None:
    """The geometry family most rows have (ignoring missing and collections)."""
    ids = shapely.get_type_id(geoms)
    counts = {fam: int(np.isin(ids, [t for t, f in FAMILY_OF_TYPE.items() if f == fam]).sum())
              for fam in ("point", "line", "polygon")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else None


def _extract_family(geoms: np.ndarray, idx: np.ndarray, family: str) -> np.ndarray:
    """For collections (e.g. make_valid output): keep only the parts of `family`, merged."""
    out = np.empty(len(idx), dtype=object)
    wanted = _PART_IDS[family]
    for k, i in enumerate(idx):
        parts = shapely.get_parts(shapely.get_parts(geoms[i]))
        parts = [p for p in parts if shapely.get_type_id(p) in wanted and not p.is_empty]
        if not parts:
            out[k] = None
        elif family == "polygon":
            out[k] = shapely.multipolygons(parts)
        elif family == "line":
            out[k] = shapely.multilinestrings(parts)
        else:
            out[k] = shapely.multipoints(parts)
    return out


def clean(geoms: np.ndarray, family: str, *, make_multi: bool) -> CleanResult:
    """Repair invalid geometries, drop parts of other families, promote to multi.

    Rows whose geometry is missing, empty, of another family, or degenerate after repair get
    a `problem` (the loader rejects them); others are returned ready to store."""
    n = len(geoms)
    problem = np.full(n, None, dtype=object)
    repaired = np.zeros(n, dtype=bool)
    geoms = geoms.copy()
    if shapely.has_z(geoms).any():  # stored 2D: KML and 3D shapefiles carry Z
        geoms = shapely.force_2d(geoms)

    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    problem[missing] = "no geometry"

    present = ~missing
    invalid = present & ~shapely.is_valid(geoms)
    if invalid.any():
        reasons = shapely.is_valid_reason(geoms[invalid])
        fixed = shapely.make_valid(geoms[invalid])
        geoms[invalid] = fixed
        repaired[invalid] = True
        # Keep the reason if repair gives nothing usable.
        bad_after = shapely.is_empty(fixed) | shapely.is_missing(fixed)
        idx = np.flatnonzero(invalid)[bad_after]
        problem[idx] = [f"invalid geometry that cannot be repaired ({r})"
                        for r in reasons[bad_after]]

    ids = shapely.get_type_id(geoms)
    fam_ids = [t for t, f in FAMILY_OF_TYPE.items() if f == family]
    ok = np.isin(ids, fam_ids)
    coll = (ids == COLLECTION) & (problem == None)  # noqa: E711 - numpy elementwise
    if coll.any():
        idx = np.flatnonzero(coll)
        geoms[idx] = _extract_family(geoms, idx, family)
        got = np.array([g is not None for g in geoms[idx]], dtype=bool)
        ok[idx[got]] = True
        problem[idx[~got]] = f"geometry collection without any {family}"
    other = ~ok & (problem == None)  # noqa: E711
    if other.any():
        names = shapely.get_type_id(geoms[other])
        type_names = {v: k for k, v in {
            "Point": POINT, "LineString": LINESTRING, "LinearRing": LINEARRING,
            "Polygon": POLYGON, "MultiPoint": MULTIPOINT, "MultiLineString": MULTILINESTRING,
            "MultiPolygon": MULTIPOLYGON, "GeometryCollection": COLLECTION}.items()}
        problem[other] = [f"a {type_names.get(int(t), 'geometry')} in a layer of {family}s"
                          for t in names]

    good = problem == None  # noqa: E711
    geoms[~good] = None
    if make_multi:
        single = good & np.isin(shapely.get_type_id(geoms), list(_PART_IDS[family]))
        if single.any():
            maker = {"polygon": shapely.multipolygons, "line": shapely.multilinestrings,
                     "point": shapely.multipoints}[family]
            idx = np.flatnonzero(single)
            geoms[idx] = maker(geoms[idx], indices=np.arange(len(idx)))
    return CleanResult(geoms=geoms, repaired=repaired & good, problem=problem)


def reproject(geoms: np.ndarray, transformer: Transformer) -> np.ndarray:
    """Transform coordinates with pyproj (always_xy), all rows in one call."""
    def _fn(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, _fn)


def impossible_rows(geoms: np.ndarray) -> np.ndarray:
    """Rows with any coordinate that is not a finite lon/lat (after reprojection)."""
    n = len(geoms)
    bad = np.zeros(n, dtype=bool)
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    if coords.size:
        wrong = ~(np.isfinite(coords).all(axis=1) & (np.abs(coords[:, 0]) <= 180.0)
                  & (np.abs(coords[:, 1]) <= 90.0))
        bad[np.unique(index[wrong])] = True
    return bad


def first_coordinates(geoms: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One coordinate pair of each given row (for error messages)."""
    return np.array([shapely.get_coordinates(g)[0] for g in geoms[rows]])


_HEX = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
# Little-endian WKB header of a Multi* with one part: byte order, type, part count.
_MULTI_HEADER = {"polygon": (POLYGON, b"\x01\x06\x00\x00\x00\x01\x00\x00\x00"),
                 "line": (LINESTRING, b"\x01\x05\x00\x00\x00\x01\x00\x00\x00"),
                 "point": (POINT, b"\x01\x04\x00\x00\x00\x01\x00\x00\x00")}


def hex_wkb(geoms: np.ndarray, family: str, make_multi: bool) -> pa.LargeStringArray:
    """Hex WKB (no SRID: the typed column supplies it) of each geometry, None -> null.

    A single part becomes a one-part Multi* by prefixing the 9-byte Multi header to its WKB
    (the same bytes GEOS would write, without building new geometries), and the hex is
    written by one numpy pass over Arrow's buffer: together ~4x cheaper than
    set_srid + multipolygons + to_wkb(hex=True)."""
    wkb = pa.array(shapely.to_wkb(geoms, byte_order=1), pa.large_binary())
    if make_multi:
        single_id, header = _MULTI_HEADER[family]
        single = pa.array(shapely.get_type_id(geoms) == single_id)
        prefix = pc.if_else(single, pa.scalar(header, pa.large_binary()),
                            pa.scalar(b"", pa.large_binary()))
        wkb = pc.binary_join_element_wise(prefix, wkb, pa.scalar(b"", pa.large_binary()))
    return _hex(wkb)


def _hex(b: pa.LargeBinaryArray) -> pa.LargeStringArray:
    validity, offsets, data = b.buffers()
    offs = np.frombuffer(offsets, dtype=np.int64)[b.offset:b.offset + len(b) + 1]
    raw = (np.frombuffer(data, dtype=np.uint8)[offs[0]:offs[-1]] if data is not None
           else np.empty(0, np.uint8))
    out = np.empty(raw.size * 2, np.uint8)
    out[0::2] = _HEX[raw >> 4]
    out[1::2] = _HEX[raw & 15]
    return pa.LargeStringArray.from_buffers(
        len(b), pa.py_buffer((offs - offs[0]) * 2), pa.py_buffer(out), validity, b.null_count)
