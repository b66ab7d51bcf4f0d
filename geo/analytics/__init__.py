"""Spatial analyses for planners, as SQL run by PostGIS: aggregate a layer into zones,
coverage within a distance of facilities, the nearest facility, land-use mix, hexagon bins
and traffic (top roads, crash hot spots with Getis-Ord Gi*).

Builders take `Source`s (a table, its compiled filter, what is known of the layer) and the
metric CRS's EPSG code, and return an `Analysis`: one SELECT with bound parameters and the
names of the columns to publish. Nothing here reads requests or the catalogue."""

from geo.analytics.aggregate import aggregate
from geo.analytics.coverage import catchment, coverage
from geo.analytics.hexbin import hexbin
from geo.analytics.hotspots import GiStar, getis_ord_star, hex_band
from geo.analytics.landuse import landuse_mix
from geo.analytics.nearest import nearest_by_zone, nearest_features, nearest_pairs
from geo.analytics.sources import (
    LINE_SEPARATOR,
    Analysis,
    AnalysisError,
    Source,
    csv_line,
    estimated_hexagons,
    feature_line,
    geometry_kind,
    hexagon_area_km2,
    metric_srid,
)
from geo.analytics.traffic import segment_counts, top_roads

__all__ = [
    "LINE_SEPARATOR",
    "Analysis",
    "AnalysisError",
    "GiStar",
    "Source",
    "aggregate",
    "catchment",
    "coverage",
    "csv_line",
    "estimated_hexagons",
    "feature_line",
    "geometry_kind",
    "getis_ord_star",
    "hex_band",
    "hexagon_area_km2",
    "hexbin",
    "landuse_mix",
    "metric_srid",
    "nearest_by_zone",
    "nearest_features",
    "nearest_pairs",
    "segment_counts",
    "top_roads",
]
