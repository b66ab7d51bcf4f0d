"""Geometry clean-up and the fast WKB encoder, against shapely/GEOS as the reference."""

from __future__ import annotations

import numpy as np
import shapely

from geo.geometry import clean, hex_wkb


def test_hex_wkb_equals_geos_for_mixed_single_and_multi_parts() -> None:
    polys = np.array([shapely.box(0, 0, 1, 1), None,
                      shapely.MultiPolygon([shapely.box(2, 2, 3, 3), shapely.box(5, 5, 6, 6)]),
                      shapely.Polygon([(0, 0), (1, 0), (0.5, 1)], [[(0.4, 0.2), (0.6, 0.2),
                                                                      (0.5, 0.4)]])],
                     dtype=object)
    got = hex_wkb(polys, "polygon", True).to_pylist()
    ref = [None if g is None else shapely.to_wkb(
        g if g.geom_type.startswith("Multi") else shapely.multipolygons([g]),
        hex=True, byte_order=1) for g in polys]
    assert got == ref
    lines = np.array([shapely.LineString([(0, 0), (1, 1)]),
                      shapely.MultiLineString([[(0, 0), (1, 1)], [(2, 2), (3, 3)]])],
                     dtype=object)
    assert [shapely.from_wkb(h).geom_type for h in hex_wkb(lines, "line", True).to_pylist()] \
        == ["MultiLineString", "MultiLineString"]
    pts = np.array([shapely.Point(51.4, 35.7)], dtype=object)
    assert hex_wkb(pts, "point", False).to_pylist() == [shapely.to_wkb(pts[0], hex=True)]


def test_clean_repairs_rejects_and_keeps_family() -> None:
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    geoms = np.array([bowtie, None, shapely.Point(0, 0), shapely.GeometryCollection(
        [shapely.box(0, 0, 1, 1), shapely.LineString([(0, 0), (2, 2)])])], dtype=object)
    res = clean(geoms, "polygon", make_multi=False)
    assert res.repaired.tolist() == [True, False, False, False]
    assert shapely.is_valid(res.geoms[0]) and res.geoms[0].area == 0.5
    assert res.problem[1] == "no geometry"
    assert res.problem[2] == "a Point in a layer of polygons"
    assert res.geoms[3].geom_type == "MultiPolygon" and res.problem[3] is None
