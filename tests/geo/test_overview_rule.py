"""The overview's top zoom rule (geo/overview.py `top_zoom`); the loader's use of it on real
data is tested in tests/api/test_tile_overview.py."""

from __future__ import annotations

import pytest

from geo.overview import MAX_TOP_ZOOM, MIN_TOP_ZOOM, build_statements, cell_size, top_zoom


@pytest.mark.parametrize(("median", "points", "top"), [
    (None, False, MIN_TOP_ZOOM),
    (500.0, False, MIN_TOP_ZOOM),            # city blocks: nothing merges above z13
    (cell_size(14) * 0.99, False, 14),       # 20 m parcels: specks of two pixels at z14
    (cell_size(14) * 1.01, False, MIN_TOP_ZOOM),
    (cell_size(15) * 0.5, False, MAX_TOP_ZOOM),  # tiny features: capped
    (0.0, True, MIN_TOP_ZOOM),               # points: each its own feature from z14
])
def test_top_zoom_rule(median: float | None, points: bool, top: int) -> None:
    assert top_zoom(median, points=points) == top


def test_build_statements_refuse_a_top_zoom_out_of_range() -> None:
    with pytest.raises(ValueError, match="accepted: 0 to 15"):
        build_statements("data", "t", "_geom_3857", MAX_TOP_ZOOM + 1)
    levels = [s for s in build_statements("data", "t", "_geom_3857", 14) if "INSERT" in s]
    assert len(levels) == 15  # zooms 14 down to 0
