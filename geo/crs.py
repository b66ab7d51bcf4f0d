"""Coordinate reference systems: reading them from users and files, reprojecting to the
storage CRS (EPSG:4326), spotting coordinates that cannot be in the declared CRS, and
picking a metric CRS (UTM zone) for true distances and areas."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

STORAGE_EPSG = 4326


class CrsError(ValueError):
    """A CRS that cannot be understood or used; the message says what is accepted."""


@lru_cache(maxsize=256)
def parse_crs(text: str) -> CRS:
    """A CRS from `EPSG:32639`, `32639`, a URI (`http://www.opengis.net/def/crs/EPSG/0/4326`,
    `OGC:CRS84`), PROJ JSON or WKT."""
    t = text.strip()
    if t.isdigit():
        t = f"EPSG:{t}"
    try:
        return CRS.from_user_input(t)
    except CRSError as exc:
        raise CrsError(
            f"unknown CRS {text!r}: give an EPSG code like EPSG:32639, an OGC URI, or WKT "
            f"({exc})"
        ) from None


def crs_label(crs: CRS) -> str:
    """`EPSG:nnnn` when the CRS has an EPSG code (CRS84 counts as 4326), else its name."""
    if crs.to_epsg(min_confidence=70) is not None:
        return f"EPSG:{crs.to_epsg(min_confidence=70)}"
    auth = crs.to_authority(min_confidence=70)
    if auth:
        return f"{auth[0]}:{auth[1]}"
    return crs.name


def is_storage_crs(crs: CRS) -> bool:
    """True when coordinates are already lon/lat WGS 84 (EPSG:4326 or CRS84)."""
    return crs.to_epsg(min_confidence=70) == STORAGE_EPSG or crs_label(crs) == "OGC:CRS84"


@lru_cache(maxsize=64)
def _transformer(src_wkt: str, dst_epsg: int) -> Transformer:
    return Transformer.from_crs(CRS.from_wkt(src_wkt), CRS.from_epsg(dst_epsg), always_xy=True)


def transformer_to(crs: CRS, epsg: int = STORAGE_EPSG) -> Transformer:
    """A cached lon/lat-ordered (always_xy) transformer from `crs` to `epsg`."""
    return _transformer(crs.to_wkt(), epsg)


def impossible_lonlat(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mask of coordinates that are not longitude/latitude on the Earth."""
    return ~(np.isfinite(x) & np.isfinite(y) & (np.abs(x) <= 180.0) & (np.abs(y) <= 90.0))


def utm_crs_for(lon: float, lat: float) -> str:
    """The WGS 84 / UTM zone containing a point, as `EPSG:326zz` or `EPSG:327zz`."""
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def describe_impossible(crs: CRS, x: float, y: float) -> str:
    """One sentence for a user whose coordinates do not fit the CRS they declared."""
    hint = ""
    if crs.is_geographic and (abs(x) > 180 or abs(y) > 90):
        hint = (" They look like projected metres or feet: declare the file's projected CRS "
                "in the manifest (`source.crs`, e.g. EPSG:32639 or a State Plane code).")
    return (f"coordinates ({x:.6g}, {y:.6g}) are impossible in the declared CRS "
            f"{crs_label(crs)} ({crs.name}).{hint}")


def area_of_use_margin(crs: CRS, lon: np.ndarray, lat: np.ndarray,
                       margin_deg: float = 5.0) -> float:
    """Share of points lying outside the CRS's area of use (widened by margin_deg)."""
    aou = crs.area_of_use
    if aou is None or lon.size == 0:
        return 0.0
    outside = ((lon < aou.west - margin_deg) | (lon > aou.east + margin_deg)
               | (lat < aou.south - margin_deg) | (lat > aou.north + margin_deg))
    return float(outside.mean())
