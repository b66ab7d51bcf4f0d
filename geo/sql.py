"""SQL for every spatial predicate and CRS conversion the API uses, written once
(DESIGN principle 3). Functions return SQLAlchemy expressions with bound parameters."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry
from sqlalchemy import ColumnElement, Float, and_, bindparam, func

from geo.crs import CrsError, parse_crs

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{}"
STORAGE_SRID = 4326
METRES_PER_DEGREE = 111_320.0
# A straight edge in a projected CRS is a curve in lon/lat: densify shapes given in another
# CRS into this many pieces along their longer side before reprojecting them (a 30 km UTM
# bbox edge is off by 12 m when only its corners are moved; by 0.2 mm after).
DENSIFY_PIECES = 256


class GeometryError(ValueError):
    """A geometry given by a user that cannot be used; the message says why."""


@dataclass(frozen=True)
class OgcCrs:
    """A CRS as OGC API Part 2 names it; `flip` when its first axis is latitude/northing."""

    uri: str
    srid: int
    flip: bool

    @property
    def is_storage(self) -> bool:
        return self.srid == STORAGE_SRID and not self.flip


@lru_cache(maxsize=128)
def ogc_crs(value: str) -> OgcCrs:
    """Parse `CRS84`, `EPSG:3857`, an OGC URI or `[EPSG:32639]`-style safe CURIE."""
    v = value.strip().strip("[]")
    if v in (CRS84, "CRS84", "OGC:CRS84", "urn:ogc:def:crs:OGC:1.3:CRS84"):
        return OgcCrs(CRS84, STORAGE_SRID, False)
    if v.startswith("http://www.opengis.net/def/crs/EPSG/0/"):
        v = "EPSG:" + v.rsplit("/", 1)[1]
    try:
        crs: CRS = parse_crs(v)
    except CrsError:
        raise CrsError(f"unknown CRS {value!r}") from None
    epsg = crs.to_epsg(min_confidence=70)
    if epsg is None:
        raise CrsError(f"CRS {value!r} has no EPSG code; use CRS84 or an EPSG CRS")
    first = crs.axis_info[0].direction.lower() if crs.axis_info else "east"
    return OgcCrs(EPSG_URI.format(epsg), epsg, first in ("north", "south"))


def _to_storage(geom: ColumnElement[Any], crs: OgcCrs) -> ColumnElement[Any]:
    if crs.flip:
        geom = func.ST_FlipCoordinates(geom)
    if crs.srid != STORAGE_SRID:
        geom = func.ST_Transform(geom, STORAGE_SRID)
    return geom


def _densify(geom: ColumnElement[Any], crs: OgcCrs, width: float,
             height: float) -> ColumnElement[Any]:
    """Shorten the edges of a shape in a non-storage CRS so it keeps its shape there."""
    step = max(width, height) / DENSIFY_PIECES
    if crs.srid == STORAGE_SRID or not step > 0 or not math.isfinite(step):
        return geom
    return func.ST_Segmentize(geom, bindparam(None, step, Float))


def envelope(bbox: list[float], crs: OgcCrs) -> ColumnElement[Any]:
    """A bbox (in `crs`, its axis order) as a polygon in the storage CRS."""
    x0, y0, x1, y1 = bbox
    if crs.flip:
        x0, y0, x1, y1 = y0, x0, y1, x1
    env = func.ST_MakeEnvelope(bindparam(None, x0, Float), bindparam(None, y0, Float),
                               bindparam(None, x1, Float), bindparam(None, y1, Float), crs.srid)
    if crs.srid == STORAGE_SRID:
        return env
    return func.ST_Transform(_densify(env, crs, x1 - x0, y1 - y0), STORAGE_SRID)


def check_geometry(geom: BaseGeometry, what: str = "geometry") -> BaseGeometry:
    """A usable literal: finite coordinates and valid (the reason is said when not)."""
    if not geom.is_empty and not all(map(math.isfinite, geom.bounds)):
        raise GeometryError(f"{what} has coordinates that are not finite numbers")
    if not geom.is_valid:
        raise GeometryError(f"{what} is not valid: {shapely.is_valid_reason(geom)}")
    return geom


def parse_geojson(obj: Any, what: str = "geometry") -> BaseGeometry:
    """A GeoJSON geometry object as shapely, checked (GeometryError when unusable)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise GeometryError(f"{what} is not a GeoJSON geometry object")
    try:
        geom = shapely.geometry.shape(obj)
    except Exception as exc:  # shapely raises several types for malformed coordinates
        raise GeometryError(f"{what} is not a valid GeoJSON {obj['type']}: {exc}") from None
    return check_geometry(geom, what)


def parse_wkt(text: str, what: str = "geometry") -> BaseGeometry:
    try:
        geom = shapely.from_wkt(text)
    except Exception as exc:  # shapely.errors.GEOSException and friends
        raise GeometryError(f"{what} is not valid WKT: {exc}") from None
    return check_geometry(geom, what)


def geojson_geometry(obj: dict[str, Any], crs: OgcCrs) -> ColumnElement[Any]:
    """A GeoJSON geometry literal (coordinates in `crs`) in the storage CRS; raises
    GeometryError when it is malformed or invalid."""
    x0, y0, x1, y1 = parse_geojson(obj).bounds
    g = func.ST_SetSRID(func.ST_GeomFromGeoJSON(bindparam(None, json.dumps(obj))), crs.srid)
    if crs.flip:
        g = func.ST_FlipCoordinates(g)
    if crs.srid == STORAGE_SRID:
        return g
    return func.ST_Transform(_densify(g, crs, x1 - x0, y1 - y0), STORAGE_SRID)


def wkt_geometry(wkt: str, crs: OgcCrs) -> ColumnElement[Any]:
    """A WKT literal (coordinates in `crs`) in the storage CRS; GeometryError when unusable."""
    x0, y0, x1, y1 = parse_wkt(wkt).bounds
    g = func.ST_GeomFromText(bindparam(None, wkt), crs.srid)
    if crs.flip:
        g = func.ST_FlipCoordinates(g)
    if crs.srid == STORAGE_SRID:
        return g
    return func.ST_Transform(_densify(g, crs, x1 - x0, y1 - y0), STORAGE_SRID)


def output_geometry(geom: ColumnElement[Any], crs: OgcCrs) -> ColumnElement[Any]:
    """Storage geometry expressed in the requested CRS and axis order."""
    if crs.srid != STORAGE_SRID:
        geom = func.ST_Transform(geom, crs.srid)
    if crs.flip:
        geom = func.ST_FlipCoordinates(geom)
    return geom


def point(lon: float, lat: float) -> ColumnElement[Any]:
    return func.ST_SetSRID(func.ST_MakePoint(bindparam(None, lon, Float),
                                             bindparam(None, lat, Float)), STORAGE_SRID)


def within_metres(geom: ColumnElement[Any], lon: float, lat: float,
                  metres: float) -> ColumnElement[bool]:
    """True distance on the ellipsoid; the degree box first lets the GiST index work."""
    deg = degrees_for(metres, lat)
    pt = point(lon, lat)
    return and_(func.ST_DWithin(geom, pt, deg),
                func.ST_DWithin(func.geography(geom), func.geography(pt), metres))


def distance_metres(geom: ColumnElement[Any], lon: float, lat: float) -> ColumnElement[Any]:
    return func.ST_Distance(func.geography(geom), func.geography(point(lon, lat)))


def degrees_for(metres: float, lat: float) -> float:
    """A radius in degrees that surely covers `metres` at this latitude (longitude shrinks)."""
    c = max(math.cos(math.radians(min(abs(lat) + 1.0, 89.0))), 0.01)
    return metres / (METRES_PER_DEGREE * c) * 1.01

