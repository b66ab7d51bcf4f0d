"""The demo city, Shahr-e Nemuneh (شهر نمونه): geometry and attributes in EPSG:32639 metres.

Everything is a pure function of (seed, parcels) built from numpy arrays and shapely 2
geometry arrays, vectorised so the same code makes 6,000 parcels for `make demo` and a
million for the benchmarks. Each part draws from its own seeded stream (`rng(seed, part)`),
so changing one part does not reshuffle the others.

The city is an oval about 30 km x 19 km around CENTRE. 22 districts tile it (Voronoi cells,
relaxed so they are even). A street grid, denser downtown, cuts it into blocks; each block
is split into two rows of parcels, and blocks crossing a district boundary are cut along it,
so every parcel lies inside exactly one district. Roads are the grid's street segments;
buildings stand on residential, mixed and commercial parcels; schools, hospitals and fire
stations sit on parcels of their land use; crashes and traffic sensors sit on roads.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import shapely

CRS = "EPSG:32639"
CENTRE = (536_000.0, 3_951_000.0)
SEMI_AXES = (14_600.0, 9_900.0)
N_DISTRICTS = 22
N_FIRE_STATIONS = 40
SUBS_PER_BLOCK = 6.0  # mean parcels per block: 2 rows x 2..4 along the long side

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Geoms = npt.NDArray[np.object_]
Columns = dict[str, np.ndarray]

# --- vocabulary -------------------------------------------------------------------------

LANDUSE = (
    "residential", "commercial", "mixed", "industrial", "green space",
    "education", "health", "administrative", "transport", "vacant",
)
LANDUSE_FA = (
    "مسکونی", "تجاری", "مختلط", "صنعتی", "فضای سبز",
    "آموزشی", "درمانی", "اداری", "حمل‌ونقل", "بایر",
)
RES, COM, MIX, IND, GREEN, EDU, HEALTH, ADMIN, TRANS, VACANT = range(10)
# Land-use mix at the centre and at the edge; parcels in between interpolate.
_USE_CENTRE = np.array([0.38, 0.18, 0.16, 0.01, 0.06, 0.05, 0.03, 0.08, 0.03, 0.02])
_USE_EDGE = np.array([0.40, 0.04, 0.03, 0.15, 0.12, 0.04, 0.015, 0.015, 0.04, 0.15])
_RESIDENTIAL_ZONES = ("R-111", "R-121", "R-122", "R-211", "R-212", "R-221", "R-232")
ZONING: tuple[tuple[str, ...], ...] = (
    _RESIDENTIAL_ZONES, ("C-1", "C-2", "C-3"), ("M-1", "M-2", "M-3"), ("I-1", "I-2"),
    ("G-1", "G-2"), ("E-1",), ("H-1",), ("A-1",), ("T-1",), _RESIDENTIAL_ZONES,
)

WORDS = np.array([
    ("بهار", "Bahar"), ("نسترن", "Nastaran"), ("لاله", "Laleh"), ("یاس", "Yas"),
    ("سپیده", "Sepideh"), ("آزادی", "Azadi"), ("بهمن", "Bahman"), ("مهر", "Mehr"),
    ("کوثر", "Kowsar"), ("نیلوفر", "Niloufar"), ("سرو", "Sarv"), ("چنار", "Chenar"),
    ("ارغوان", "Arghavan"), ("صبا", "Saba"), ("فردوسی", "Ferdowsi"), ("حافظ", "Hafez"),
    ("سعدی", "Saadi"), ("مولوی", "Molavi"), ("خیام", "Khayyam"), ("نظامی", "Nezami"),
    ("عطار", "Attar"), ("رودکی", "Rudaki"), ("پروین", "Parvin"), ("شهریار", "Shahriar"),
    ("دماوند", "Damavand"), ("البرز", "Alborz"), ("زاگرس", "Zagros"), ("کارون", "Karun"),
    ("ستاره", "Setareh"), ("امید", "Omid"), ("پیروزی", "Pirouzi"), ("بوستان", "Boustan"),
    ("گلستان", "Golestan"), ("شقایق", "Shaghayegh"), ("نارون", "Naroun"), ("افرا", "Afra"),
    ("کاج", "Kaj"), ("سیمرغ", "Simorgh"), ("آفتاب", "Aftab"), ("مهتاب", "Mahtab"),
])
FIRST_NAMES = np.array([
    "علی", "محمد", "حسین", "رضا", "مهدی", "زهرا", "فاطمه", "مریم", "سارا", "نرگس",
    "کاوه", "کامران", "یاسمن", "کیان", "یوسف", "نیلوفر", "مهسا", "امیر", "بهاره", "پریسا",
    "کیوان", "شیرین", "سپیده", "آرش", "داریوش", "کوثر", "یگانه", "مینا", "نیما", "کتایون",
])
LAST_NAMES = np.array([
    "رضایی", "کریمی", "حسینی", "محمدی", "احمدی", "موسوی", "کاظمی", "یزدانی", "کرمانی",
    "نیکزاد", "صادقی", "جعفری", "رحیمی", "کیانی", "شریفی", "بیگی", "مرادی", "یوسفی",
    "تهرانی", "کاشانی", "شیرازی", "نوری", "زمانی", "ملکی", "کامرانی", "قاسمی", "اکبری",
    "یعقوبی", "طاهری", "فرهادی",
])
ROAD_CLASSES = ("freeway", "arterial", "collector", "local")
ROAD_CLASSES_FA = ("آزادراه", "شریانی", "جمع‌کننده", "محلی")
_ROAD_PREFIX_FA = np.array(["بزرگراه ", "بلوار ", "خیابان ", "کوچه "])
_ROAD_SUFFIX_EN = np.array([" Expressway", " Boulevard", " Street", " Alley"])
_ROAD_WIDTH = np.array([60.0, 36.0, 20.0, 12.0])  # m, kerb to kerb
_ROAD_LANES = np.array([[6, 8], [4, 6], [2, 4], [1, 2]])
_ROAD_LIMIT = np.array([100, 60, 50, 30])  # km/h
_LANE_CAPACITY = np.array([1900, 900, 700, 450])  # vehicles/h per lane
_ROAD_AADT = np.array([95_000.0, 38_000.0, 12_000.0, 2_500.0])  # vehicles/day, downtown
_CLASS_SPACING = ((2, 600.0), (1, 1_800.0), (0, 7_000.0))  # (class, spacing m), minor first

_FA_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
_ARABIC_FORMS = str.maketrans({"ی": "ي", "ک": "ك"})


@dataclass(frozen=True)
class Layer:
    """One dataset before it is written: EPSG:32639 geometries and columns in row order.

    `internal` holds per-row helpers other layers need (never written).
    """

    geometry: Geoms
    columns: Columns
    internal: Columns = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.geometry)


def rng(seed: int, part: str) -> np.random.Generator:
    """A random stream for one part of the city, independent of the other parts."""
    return np.random.default_rng([seed, zlib.crc32(part.encode())])


def persian_digits(values: np.ndarray) -> np.ndarray:
    """Write ASCII digits as Persian ones (۰-۹)."""
    return np.char.translate(values.astype(str), _FA_DIGITS)


def arabic_forms(values: np.ndarray) -> np.ndarray:
    """Swap Persian ی ک for Arabic ي ك, as text typed on an Arabic keyboard layout is."""
    return np.char.translate(values.astype(str), _ARABIC_FORMS)


def rho(x: Floats, y: Floats) -> Floats:
    """Elliptical distance from the centre: 0 downtown, about 1 at the city edge."""
    return np.hypot((x - CENTRE[0]) / SEMI_AXES[0], (y - CENTRE[1]) / SEMI_AXES[1])


def _cat(*parts: np.ndarray | str) -> np.ndarray:
    """Concatenate string arrays (and scalars) element-wise."""
    out = np.asarray(parts[0]).astype(str)
    for p in parts[1:]:
        out = np.strings.add(out, np.asarray(p).astype(str))
    return out


# --- outline and districts --------------------------------------------------------------


def make_outline(seed: int) -> shapely.Polygon:
    """A convex, gently wobbling oval: convex so every Voronoi cell clipped to it is one
    polygon (no district in pieces)."""
    g = rng(seed, "outline")
    theta = np.linspace(0.0, 2 * np.pi, 360, endpoint=False)
    amp, k = np.array([0.05, 0.025, 0.008]), np.array([2, 3, 5])
    phase = g.uniform(0, 2 * np.pi, 3)
    r = 1 + (amp[:, None] * np.sin(k[:, None] * theta + phase[:, None])).sum(axis=0)
    x = CENTRE[0] + SEMI_AXES[0] * r * np.cos(theta)
    y = CENTRE[1] + SEMI_AXES[1] * r * np.sin(theta)
    return shapely.Polygon(np.round(np.c_[x, y], 2))


def _points_in(poly: shapely.Polygon, n: int, g: np.random.Generator) -> Floats:
    """n uniform random points inside poly (rejection sampling in its bounding box)."""
    x0, y0, x1, y1 = poly.bounds
    out = np.empty((0, 2))
    while len(out) < n:
        p = np.c_[g.uniform(x0, x1, 4 * n), g.uniform(y0, y1, 4 * n)]
        out = np.r_[out, p[shapely.contains_xy(poly, p[:, 0], p[:, 1])]]
    return out[:n]


def make_districts(outline: shapely.Polygon, seed: int) -> Layer:
    """22 districts tiling the outline, numbered north to south in bands, west to east."""
    g = rng(seed, "districts")
    pts = _points_in(outline, N_DISTRICTS, g)
    frame = shapely.box(*outline.bounds).buffer(20_000)
    for _ in range(10):  # Lloyd relaxation: even-sized, compact districts
        cells = shapely.get_parts(
            shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=frame, ordered=True)
        )
        cells = shapely.intersection(cells, outline)
        pts = shapely.get_coordinates(shapely.centroid(cells))
    cells = shapely.set_precision(cells, 0.01)
    assert (shapely.get_type_id(cells) == 3).all(), "districts must be single polygons"
    cx, cy = pts[:, 0], pts[:, 1]
    band = np.floor((outline.bounds[3] - cy) / ((outline.bounds[3] - outline.bounds[1]) / 4))
    order = np.lexsort((cx, band))
    cells, cx, cy = cells[order], cx[order], cy[order]
    number = np.arange(1, N_DISTRICTS + 1)
    area_km2 = shapely.area(cells) / 1e6
    density = 24_000 * np.exp(-1.3 * rho(cx, cy)) * g.uniform(0.8, 1.2, N_DISTRICTS)
    return Layer(cells, {
        "district": number,
        "name_fa": _cat("منطقه ", persian_digits(number)),
        "name_en": _cat("District ", number),
        "population": (np.round(density * area_km2, -1)).astype(np.int64),
        "area_km2": np.round(area_km2, 2),
    })


def district_of(x: Floats, y: Floats, districts: Geoms) -> npt.NDArray[np.int8]:
    """District number (1..22) of each point, 0 outside the city."""
    out = np.zeros(len(x), np.int8)
    for k, geom in enumerate(districts, start=1):
        shapely.prepare(geom)
        todo = out == 0
        out[todo] = np.where(shapely.contains_xy(geom, x[todo], y[todo]), k, 0)
    return out


# --- the street grid and the parcels ----------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """Street centre lines: x of the north-south streets, y of the east-west ones, with
    their road class (index into ROAD_CLASSES) and half-width in metres."""

    xs: Floats
    ys: Floats
    x_class: npt.NDArray[np.int8]
    y_class: npt.NDArray[np.int8]
    x_half: Floats
    y_half: Floats


def _warped_lines(lo: float, hi: float, centre: float, cells: int) -> Floats:
    """Grid lines from lo to hi, closer together near the centre (a denser downtown)."""
    half = max(centre - lo, hi - centre) + 50.0
    u = np.linspace(-1.0, 1.0, cells + 1)
    lines = centre + half * np.sinh(1.2 * u) / np.sinh(1.2)
    return lines[(lines >= lo - half / cells) & (lines <= hi + half / cells)]


def _line_classes(lines: Floats, centre: float) -> npt.NDArray[np.int8]:
    """Road class of each grid line: the line nearest every 600 m is a collector, every
    1.8 km an arterial, every 7 km a freeway; the rest are local streets."""
    cls = np.full(len(lines), 3, np.int8)
    for c, spacing in _CLASS_SPACING:
        k = np.arange(np.floor((lines[0] - centre) / spacing), (lines[-1] - centre) / spacing + 1)
        targets = centre + k * spacing
        idx = np.clip(np.searchsorted(lines, targets), 1, len(lines) - 1)
        nearest = np.where(targets - lines[idx - 1] < lines[idx] - targets, idx - 1, idx)
        cls[nearest] = c
    return cls


def _half_widths(lines: Floats, cls: npt.NDArray[np.int8]) -> Floats:
    """Half street widths: the class width, but at most 30% of the narrower neighbouring
    cell, so a fine grid still has room for parcels."""
    cell = np.diff(lines)
    nearest = np.minimum(np.r_[cell[0], cell], np.r_[cell, cell[-1]])
    return np.minimum(_ROAD_WIDTH[cls], 0.3 * nearest) / 2


def make_grid(outline: shapely.Polygon, nx: int, ny: int) -> Grid:
    """The street grid covering the outline with about nx x ny cells."""
    x0, y0, x1, y1 = outline.bounds
    xs = _warped_lines(x0, x1, CENTRE[0], nx)
    ys = _warped_lines(y0, y1, CENTRE[1], ny)
    xc, yc = _line_classes(xs, CENTRE[0]), _line_classes(ys, CENTRE[1])
    return Grid(xs, ys, xc, yc, _half_widths(xs, xc), _half_widths(ys, yc))


_ALL_CLASSES = np.ones(10)
_ZONE_CLASSES = np.isin(np.arange(10), [RES, COM, MIX, IND, GREEN, VACANT]).astype(float)


def _sample_landuse(
    r: Floats, u: Floats, allowed: Floats = _ALL_CLASSES
) -> npt.NDArray[np.int8]:
    """Land-use class for each distance-from-centre r, from uniform draws u."""
    t = np.clip(r, 0, 1)[:, None]
    cum = np.cumsum((_USE_CENTRE + (_USE_EDGE - _USE_CENTRE) * t) * allowed, axis=1)
    return np.minimum((u[:, None] * cum[:, -1:] > cum).sum(axis=1), 9).astype(np.int8)


ZONE_SIZE = 1_500.0  # m: land use comes in neighbourhoods, not parcel by parcel


def _zone_class(x: Floats, y: Floats, seed: int) -> npt.NDArray[np.int8]:
    """The dominant land use of the 1.5 km zone each point is in (fixed by the seed, so the
    same place has the same character whatever the parcel count)."""
    half = (int(SEMI_AXES[0] * 1.3 / ZONE_SIZE), int(SEMI_AXES[1] * 1.3 / ZONE_SIZE))
    zx, zy = np.meshgrid(np.arange(-half[0], half[0] + 1), np.arange(-half[1], half[1] + 1))
    zr = rho(CENTRE[0] + (zx.ravel() + 0.5) * ZONE_SIZE, CENTRE[1] + (zy.ravel() + 0.5) * ZONE_SIZE)
    table = _sample_landuse(zr, rng(seed, "zones").random(zr.size), _ZONE_CLASSES)
    table = table.reshape(zx.shape)
    ix = np.clip(np.floor((x - CENTRE[0]) / ZONE_SIZE).astype(int) + half[0], 0, 2 * half[0])
    iy = np.clip(np.floor((y - CENTRE[1]) / ZONE_SIZE).astype(int) + half[1], 0, 2 * half[1])
    return table[iy, ix]


@dataclass(frozen=True)
class ParcelPlan:
    """Where the parcels are, compactly (a million parcels fit in ~60 MB).

    Most parcels are the rectangle `bounds`; the few cut by a district boundary or the
    city edge have their polygon in `cut_geoms[cut_idx]` (cut_idx is -1 otherwise).
    """

    grid: Grid
    bounds: Floats  # (n, 4) xmin, ymin, xmax, ymax
    cut_idx: npt.NDArray[np.int32]
    cut_geoms: Geoms
    district: npt.NDArray[np.int8]
    block: npt.NDArray[np.int32]
    block_class: npt.NDArray[np.int8]  # the block's land use; most parcels follow it
    rho: Floats

    def __len__(self) -> int:
        return len(self.bounds)

    def geometries(self, start: int = 0, stop: int | None = None) -> Geoms:
        """Polygons of parcels start..stop."""
        b = self.bounds[start:stop]
        geoms = shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])
        idx = self.cut_idx[start:stop]
        geoms[idx >= 0] = self.cut_geoms[idx[idx >= 0]]
        return geoms


def _blocks(grid: Grid, outline: shapely.Polygon) -> Floats:
    """Block rectangles (street cells minus half streets) touching the outline, (m, 4)."""
    i, j = np.meshgrid(np.arange(len(grid.xs) - 1), np.arange(len(grid.ys) - 1))
    i, j = i.ravel(), j.ravel()
    b = np.c_[
        grid.xs[i] + grid.x_half[i], grid.ys[j] + grid.y_half[j],
        grid.xs[i + 1] - grid.x_half[i + 1], grid.ys[j + 1] - grid.y_half[j + 1],
    ]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    touch = shapely.contains_xy(outline, cx, cy)
    for xi, yi in ((0, 1), (2, 1), (0, 3), (2, 3)):
        touch |= shapely.contains_xy(outline, b[:, xi], b[:, yi])
    return b[touch]


def _subdivide(b: Floats, g: np.random.Generator) -> tuple[Ints, Floats]:
    """Split each block into 2 rows (across its short side) of 2-4 parcels each, with
    slightly uneven cuts. Returns each parcel's block index and bounds."""
    nb = len(b)
    per_row = g.integers(2, 5, nb)
    wide = (b[:, 2] - b[:, 0]) >= (b[:, 3] - b[:, 1])
    # cut positions 0..1 along the long side, inner ones jittered
    n_cuts = per_row + 1
    cut_off = np.r_[0, np.cumsum(n_cuts)[:-1]]
    cut_blk = np.repeat(np.arange(nb), n_cuts)
    c = np.arange(n_cuts.sum()) - cut_off[cut_blk]
    k = per_row[cut_blk]
    t = (c + ((c > 0) & (c < k)) * g.uniform(-0.15, 0.15, len(c))) / k
    mid = 0.5 + g.uniform(-0.08, 0.08, nb)
    n_sub = 2 * per_row
    blk = np.repeat(np.arange(nb), n_sub)
    s = np.arange(n_sub.sum()) - np.r_[0, np.cumsum(n_sub)[:-1]][blk]
    side, along = s % 2, s // 2
    lo, hi = t[cut_off[blk] + along], t[cut_off[blk] + along + 1]
    a0 = np.where(side == 0, 0.0, mid[blk])
    a1 = np.where(side == 0, mid[blk], 1.0)
    w = wide[blk]
    fx0, fx1 = np.where(w, lo, a0), np.where(w, hi, a1)
    fy0, fy1 = np.where(w, a0, lo), np.where(w, a1, hi)
    bx = b[blk]
    dx, dy = bx[:, 2] - bx[:, 0], bx[:, 3] - bx[:, 1]
    bounds = np.c_[bx[:, 0] + fx0 * dx, bx[:, 1] + fy0 * dy, bx[:, 0] + fx1 * dx,
                   bx[:, 1] + fy1 * dy]
    return blk, np.round(bounds, 2)


BLOCK_CHUNK = 20_000  # blocks planned at a time: bounds the planner's scratch memory


class _Part(NamedTuple):
    """The parcels of one chunk of blocks (ParcelPlan's columns, before concatenation)."""

    bounds: Floats
    cut_idx: np.ndarray
    cut_geoms: Geoms
    district: np.ndarray
    block: np.ndarray
    block_class: np.ndarray


def _plan_blocks(
    b: Floats, first_block: int, districts: Geoms, tree: shapely.STRtree, g: np.random.Generator,
    seed: int,
) -> _Part:
    """The parcels of blocks b (numbered from first_block), each inside one district:
    blocks wholly inside a district are just subdivided; the parcels of blocks straddling a
    boundary or the city edge are cut along it, and slivers dropped."""
    blk, sub = _subdivide(b, g)
    bcx, bcy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    block_class = np.where(
        g.random(len(b)) < 0.55, _zone_class(bcx, bcy, seed),
        _sample_landuse(rho(bcx, bcy), g.random(len(b))),
    ).astype(np.int8)
    bd = district_of(bcx, bcy, districts)
    whole = np.zeros(len(b), bool)
    inside = bd > 0
    whole[inside] = shapely.contains(districts[bd[inside] - 1], shapely.box(*b[inside].T))
    plain = whole[blk]
    cut_sub = np.flatnonzero(~plain)
    boxes = shapely.box(*sub[cut_sub].T)
    i_box, i_d = tree.query(boxes, predicate="intersects")
    pieces = shapely.intersection(boxes[i_box], districts[i_d])
    area, box_area = shapely.area(pieces), shapely.area(boxes[i_box])
    ok = (shapely.get_type_id(pieces) == 3) & (area >= np.maximum(0.3 * box_area, 20.0))
    is_rect = box_area - area < 0.01  # m2: the district holds the whole rectangle
    cut = ok & ~is_rect
    rows = np.r_[np.flatnonzero(plain), cut_sub[i_box[ok]]]
    dist = np.r_[bd[blk[plain]], i_d[ok] + 1].astype(np.int8)
    cut_idx = np.r_[np.full(plain.sum(), -1), np.where(is_rect[ok], -1, np.cumsum(cut[ok]) - 1)]
    order = np.lexsort((dist, rows))
    rows, dist, cut_idx = rows[order], dist[order], cut_idx[order]
    cut_geoms = np.empty(cut.sum(), object)
    cut_geoms[:] = shapely.set_precision(pieces[cut], 0.01)
    return _Part(
        sub[rows], cut_idx.astype(np.int32), cut_geoms, dist,
        (blk[rows] + first_block).astype(np.int32), block_class[blk[rows]],
    )


def _candidate_plan(
    grid: Grid, outline: shapely.Polygon, districts: Geoms, seed: int
) -> ParcelPlan:
    """Every parcel the grid allows, planned BLOCK_CHUNK blocks at a time."""
    b = _blocks(grid, outline)
    tree = shapely.STRtree(districts)
    tag = f"blocks-{len(grid.xs)}x{len(grid.ys)}"
    parts = [
        _plan_blocks(b[k:k + BLOCK_CHUNK], k, districts, tree, rng(seed, f"{tag}-{k}"), seed)
        for k in range(0, len(b), BLOCK_CHUNK)
    ]
    offsets = np.cumsum([0] + [len(p.cut_geoms) for p in parts[:-1]])
    cut_idx = np.concatenate([
        np.where(p.cut_idx >= 0, p.cut_idx + off, -1) for p, off in zip(parts, offsets, strict=True)
    ]).astype(np.int32)
    bounds = np.concatenate([p.bounds for p in parts])
    return ParcelPlan(
        grid, bounds, cut_idx, np.concatenate([p.cut_geoms for p in parts]),
        np.concatenate([p.district for p in parts]), np.concatenate([p.block for p in parts]),
        np.concatenate([p.block_class for p in parts]),
        rho((bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2),
    )


def _take(plan: ParcelPlan, keep: Ints) -> ParcelPlan:
    """The plan restricted to rows `keep` (sorted), with unused cut polygons dropped."""
    cut_idx = plan.cut_idx[keep]
    used = cut_idx >= 0
    cut_geoms = plan.cut_geoms[cut_idx[used]]
    cut_idx[used] = np.arange(used.sum())
    return ParcelPlan(
        plan.grid, plan.bounds[keep], cut_idx, cut_geoms, plan.district[keep],
        plan.block[keep], plan.block_class[keep], plan.rho[keep],
    )


def plan_parcels(n: int, seed: int, outline: shapely.Polygon, districts: Geoms) -> ParcelPlan:
    """Exactly n parcels: a grid fine enough for a few more, minus those farthest out
    (the unsurveyed rim)."""
    x0, y0, x1, y1 = outline.bounds
    cells = 0.96 * n / SUBS_PER_BLOCK * (x1 - x0) * (y1 - y0) / outline.area
    aspect = (x1 - x0) / (y1 - y0)
    for _ in range(8):
        nx, ny = max(int(np.sqrt(cells * aspect)), 3), max(int(np.sqrt(cells / aspect)), 3)
        plan = _candidate_plan(make_grid(outline, nx, ny), outline, districts, seed)
        if len(plan) >= n:
            keep = np.sort(np.argsort(plan.rho, kind="stable")[:n])
            return _take(plan, keep)
        cells *= 1.03 * n / max(len(plan), 1)
    raise RuntimeError(f"could not lay out {n} parcels")  # pragma: no cover


# --- parcel attributes ------------------------------------------------------------------


def _zoning(cls: npt.NDArray[np.int8], u: Floats) -> np.ndarray:
    """A zoning code consistent with each land-use class."""
    width = max(len(z) for z in ZONING)
    table = np.array([[*z, *[z[0]] * (width - len(z))] for z in ZONING])
    counts = np.array([len(z) for z in ZONING])
    return table[cls, (u * counts[cls]).astype(int)]


def _owners(
    cls: npt.NDArray[np.int8], district: np.ndarray, g: np.random.Generator
) -> np.ndarray:
    """Owner names in Persian: people for homes and shops, institutions for the rest.
    About one in eight is typed with Arabic letter forms (ي ك), as legacy data often is."""
    n = len(cls)
    last = LAST_NAMES[g.integers(0, len(LAST_NAMES), n)]
    person = _cat(FIRST_NAMES[g.integers(0, len(FIRST_NAMES), n)], " ", last)
    d = district.astype(str)
    owner = np.where(cls == IND, _cat("شرکت صنایع ", last), person)
    owner = np.where(cls == EDU, _cat("آموزش و پرورش منطقه ", d), owner)
    owner = np.where(cls == ADMIN, _cat("شهرداری منطقه ", d), owner)
    owner = np.where(cls == HEALTH, "دانشگاه علوم پزشکی شهر نمونه", owner)
    owner = np.where(cls == GREEN, "سازمان پارک‌ها و فضای سبز", owner)
    owner = np.where(cls == TRANS, "شرکت حمل‌ونقل شهر نمونه", owner)
    arabic = g.random(n) < 0.125
    owner[arabic] = arabic_forms(owner[arabic])
    return owner


def parcel_columns(
    plan: ParcelPlan, geoms: Geoms, start: int, seed: int
) -> tuple[Columns, npt.NDArray[np.int8]]:
    """Attributes of parcels start..start+len(geoms), and their land-use class (an index
    into LANDUSE). The draws come from a stream keyed by `start`, so a fixed chunking gives
    fixed output."""
    n = len(geoms)
    sl = slice(start, start + n)
    g = rng(seed, f"parcels-{start}")
    own = _sample_landuse(plan.rho[sl], g.random(n))
    cls = np.where(g.random(n) < 0.25, own, plan.block_class[sl]).astype(np.int8)
    return {
        "parcel_id": np.arange(start + 1, start + n + 1, dtype=np.int64),
        "block_id": plan.block[sl].astype(np.int64) + 1,
        "district": plan.district[sl].astype(np.int64),
        "landuse": np.array(LANDUSE)[cls],
        "landuse_fa": np.array(LANDUSE_FA)[cls],
        "zoning": _zoning(cls, g.random(n)),
        "owner": _owners(cls, plan.district[sl], g),
        "area_m2": np.round(shapely.area(geoms), 1),
    }, cls


def _bowtie(b: Floats) -> shapely.Polygon:
    x0, y0, x1, y1 = b
    return shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1), (x0, y0)])


def _split_with_gap(b: Floats, gap: float = 2.0) -> shapely.MultiPolygon:
    """A two-part parcel: the rectangle split by a private 2 m lane along its long side."""
    x0, y0, x1, y1 = b
    if x1 - x0 >= y1 - y0:
        m = (x0 + x1) / 2
        return shapely.MultiPolygon([shapely.box(x0, y0, m - gap / 2, y1),
                                     shapely.box(m + gap / 2, y0, x1, y1)])
    m = (y0 + y1) / 2
    return shapely.MultiPolygon([shapely.box(x0, y0, x1, m - gap / 2),
                                 shapely.box(x0, m + gap / 2, x1, y1)])


def landuse_parcels(plan: ParcelPlan, seed: int) -> Layer:
    """The land-use parcels of the demo, with the defects the ETL must catch: a bow-tie
    polygon, a missing geometry and an area that is not a number ("12o5.4"); `area_m2` is
    text for that reason. A few parcels are two-part MultiPolygons."""
    geoms = plan.geometries()
    cols, cls = parcel_columns(plan, geoms, 0, seed)
    g = rng(seed, "parcel-defects")
    rect = np.flatnonzero(plan.cut_idx < 0)
    picks = g.choice(rect, size=min(len(rect), 3 + len(plan) // 1000), replace=False)
    bowtie, null_geom, bad_area, multi = picks[0], picks[1], picks[2], picks[3:]
    for i in multi:  # a handful: not per parcel
        geoms[i] = _split_with_gap(plan.bounds[i])
    geoms[bowtie] = _bowtie(plan.bounds[bowtie])
    geoms[null_geom] = None
    cols["area_m2"] = np.round(shapely.area(geoms), 1)
    area = np.char.mod("%.1f", np.nan_to_num(cols["area_m2"]))
    area[null_geom] = ""
    area[bad_area] = "12o5.4"
    cols["area_m2"] = area
    usable = np.ones(len(geoms), bool)
    usable[[bowtie, null_geom]] = False
    return Layer(geoms, cols, {"class": cls, "usable": usable})


# --- buildings --------------------------------------------------------------------------


def _jalali_dates(
    year: Ints, g: np.random.Generator
) -> tuple[np.ndarray, Ints, Ints]:
    """Valid Jalali dates in the given years as 'YYYY/MM/DD', with month and day."""
    month = g.integers(1, 13, len(year))
    days = np.where(month <= 6, 31, np.where(month <= 11, 30, 29))
    day = (g.random(len(year)) * days).astype(int) + 1
    text = np.char.mod("%04d/", year)
    text = _cat(text, np.char.mod("%02d/", month), np.char.mod("%02d", day))
    return text, month, day


_BUILDING_USES = {RES: "residential", MIX: "mixed", COM: "commercial"}
_BUILDING_USES_FA = {RES: "مسکونی", MIX: "مختلط", COM: "تجاری"}
_FOOTPRINT_CAP = {RES: (30.0, 20.0), MIX: (40.0, 25.0), COM: (60.0, 35.0)}  # m


def buildings(parcels: Layer, plan: ParcelPlan, seed: int) -> Layer:
    """About 1.3 buildings per parcel, standing on residential, mixed and commercial parcels
    (1-4 per parcel, side by side along its long side). Years are Jalali text, some in
    Persian digits, a few unknown."""
    g = rng(seed, "buildings")
    cls = parcels.internal["class"]
    host = np.flatnonzero(parcels.internal["usable"] & np.isin(cls, list(_BUILDING_USES)))
    target = round(1.3 * len(parcels))
    k = np.full(len(host), target // max(len(host), 1))
    k[g.choice(len(host), min(target - k.sum(), len(host)), replace=False)] += 1
    k = np.minimum(k, 4)  # hosts with k == 0 get no building
    p = np.repeat(host, k)
    slot = np.arange(len(p)) - np.repeat(np.r_[0, np.cumsum(k)[:-1]], k)
    kk = k.repeat(k)
    b = plan.bounds[p]
    wide = (b[:, 2] - b[:, 0]) >= (b[:, 3] - b[:, 1])
    long_lo, long_hi = np.where(wide, b[:, 0], b[:, 1]), np.where(wide, b[:, 2], b[:, 3])
    short_lo, short_hi = np.where(wide, b[:, 1], b[:, 0]), np.where(wide, b[:, 3], b[:, 2])
    slot_len = (long_hi - long_lo) / kk
    pc = cls[p]
    cap_l = np.select([pc == c for c in _FOOTPRINT_CAP], [v[0] for v in _FOOTPRINT_CAP.values()])
    cap_s = np.select([pc == c for c in _FOOTPRINT_CAP], [v[1] for v in _FOOTPRINT_CAP.values()])
    fl = np.minimum(0.7 * slot_len, cap_l) * g.uniform(0.75, 1.0, len(p))
    fs = np.minimum(0.55 * (short_hi - short_lo), cap_s) * g.uniform(0.75, 1.0, len(p))
    mid_l = long_lo + (slot + 0.5) * slot_len
    mid_s = (short_lo + short_hi) / 2
    lx0, lx1, sx0, sx1 = mid_l - fl / 2, mid_l + fl / 2, mid_s - fs / 2, mid_s + fs / 2
    fp = shapely.box(np.where(wide, lx0, sx0), np.where(wide, sx0, lx0),
                     np.where(wide, lx1, sx1), np.where(wide, sx1, lx1))
    odd = plan.cut_idx[p] >= 0  # cut or two-part parcels: keep the footprint inside
    odd |= shapely.get_type_id(parcels.geometry[p]) != 3
    fp[odd] = shapely.intersection(fp[odd], parcels.geometry[p][odd])
    fp = shapely.set_precision(fp, 0.01)
    ok = (shapely.get_type_id(fp) == 3) & (shapely.area(fp) >= 15.0)
    fp, p, pc = fp[ok], p[ok], pc[ok]
    n = len(fp)
    r = plan.rho[p]
    floors = np.clip(np.round(g.lognormal(np.log(np.maximum(5.5 - 4 * r, 1.5)), 0.45)), 1, 30)
    floors = np.where(pc == COM, np.clip(floors + 2, 2, 35), floors)
    floors = np.where(pc == MIX, np.maximum(floors, 2), floors).astype(np.int64)
    per_floor = g.integers(1, 5, n)
    units = np.select([pc == RES, pc == MIX], [floors * per_floor, (floors - 1) * per_floor], 0)
    year = 1402 - np.minimum(g.exponential(16, n).astype(np.int64), 80)
    built, _, _ = _jalali_dates(year, g)
    fa = g.random(n) < 0.2
    built[fa] = persian_digits(built[fa])
    built = built.astype(object)
    built[g.random(n) < 0.02] = None
    uses = np.array([_BUILDING_USES.get(c, "") for c in range(10)])
    uses_fa = np.array([_BUILDING_USES_FA.get(c, "") for c in range(10)])
    return Layer(fp, {
        "building_id": np.arange(1, n + 1, dtype=np.int64),
        "parcel_id": parcels.columns["parcel_id"][p],
        "use": uses[pc],
        "use_fa": uses_fa[pc],
        "floors": floors,
        "units": units.astype(np.int64),
        "height_m": np.round(floors * 3.2 + 1.0, 1),
        "year_built": built,
    })


# --- roads ------------------------------------------------------------------------------


def _street_names(line: Ints, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Base names of grid lines (a word, numbered once the words run out)."""
    k = line + offset
    word, rep = k % len(WORDS), k // len(WORDS)
    fa, en = WORDS[word, 0], WORDS[word, 1]
    num = (rep + 1).astype(str)
    fa = np.where(rep > 0, _cat(fa, " ", persian_digits(num)), fa)
    en = np.where(rep > 0, _cat(en, " ", num), en)
    return fa, en


def _segments(grid: Grid, outline: shapely.Polygon, horizontal: bool) -> Columns:
    """Street segments between neighbouring grid crossings, both ends inside the city."""
    along, across = (grid.xs, grid.ys) if horizontal else (grid.ys, grid.xs)
    i, j = np.meshgrid(np.arange(len(along) - 1), np.arange(len(across)))
    i, j = i.ravel(), j.ravel()
    a0, a1, c = along[i], along[i + 1], across[j]
    x0, y0, x1, y1 = (a0, c, a1, c) if horizontal else (c, a0, c, a1)
    keep = shapely.contains_xy(outline, x0, y0) & shapely.contains_xy(outline, x1, y1)
    cls = (grid.y_class if horizontal else grid.x_class)[j]
    half = (grid.y_half if horizontal else grid.x_half)[j]
    name_fa, name_en = _street_names(j, 0 if horizontal else 17)
    cross_fa, cross_en = _street_names(i, 17 if horizontal else 0)
    cols = {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "class": cls, "half": half,
            "name_fa": name_fa, "name_en": name_en, "cross_fa": cross_fa, "cross_en": cross_en,
            "horizontal": np.full(len(i), horizontal)}
    return {k: v[keep] for k, v in cols.items()}


def roads(grid: Grid, outline: shapely.Polygon, seed: int) -> Layer:
    """Road segments with class, lanes, speed limit, capacity, AADT and mean speed; volume
    falls off from downtown and mean speed follows the BPR curve at the peak hour."""
    g = rng(seed, "roads")
    h, v = _segments(grid, outline, True), _segments(grid, outline, False)
    s = {k: np.r_[h[k], v[k]] for k in h}
    n = len(s["x0"])
    geoms = shapely.linestrings(
        np.stack([np.c_[s["x0"], s["y0"]], np.c_[s["x1"], s["y1"]]], axis=1)
    )
    cls = s["class"].astype(np.int64)
    r = rho((s["x0"] + s["x1"]) / 2, (s["y0"] + s["y1"]) / 2)
    lanes = _ROAD_LANES[cls, g.integers(0, 2, n)]
    capacity = lanes * _LANE_CAPACITY[cls]
    aadt = np.round(_ROAD_AADT[cls] * (1.4 - 0.8 * np.clip(r, 0, 1)) * g.lognormal(0, 0.3, n))
    vc = 0.09 * aadt / capacity  # peak hour carries ~9% of the day
    mean_speed = np.maximum(_ROAD_LIMIT[cls] * 0.95 / (1 + 0.15 * vc**4), 5.0)
    internal = {k: s[k] for k in ("cross_fa", "cross_en", "horizontal", "half")}
    return Layer(geoms, {
        "road_id": np.arange(1, n + 1, dtype=np.int64),
        "name_fa": _cat(_ROAD_PREFIX_FA[cls], s["name_fa"]),
        "name_en": _cat(s["name_en"], _ROAD_SUFFIX_EN[cls]),
        "road_class": np.array(ROAD_CLASSES)[cls],
        "road_class_fa": np.array(ROAD_CLASSES_FA)[cls],
        "lanes": lanes.astype(np.int64),
        "speed_limit": _ROAD_LIMIT[cls].astype(np.int64),
        "capacity": capacity.astype(np.int64),
        "aadt": aadt.astype(np.int64),
        "mean_speed": np.round(mean_speed, 1),
        "length_m": np.round(shapely.length(geoms), 1),
    }, internal | {"class": cls, "street_fa": s["name_fa"], "street_en": s["name_en"]})


# --- metro ------------------------------------------------------------------------------

# colour, control points in units of SEMI_AXES from the centre (all well inside the city:
# its edge is never nearer than 0.91)
METRO_LINES = (
    ("#E0301E", ((-0.10, 0.86), (-0.02, 0.35), (0.06, -0.25), (-0.04, -0.86))),
    ("#2B59C3", ((-0.86, 0.10), (-0.35, 0.14), (0.30, -0.06), (0.86, 0.02))),
    ("#3EB1C8", ((-0.66, -0.52), (-0.40, -0.10), (-0.10, 0.40), (0.25, 0.80))),
    ("#F5C400", ((-0.76, 0.40), (-0.30, 0.58), (0.30, 0.48), (0.78, 0.22))),
)
STATION_SPACING = 1_300.0  # m
_STATION_KINDS = (("میدان ", " Square"), ("دروازه ", " Gate"), ("باغ ", " Garden"))


def _chaikin(xy: Floats, rounds: int = 4) -> Floats:
    """Smooth a polyline by corner cutting, keeping its end points."""
    for _ in range(rounds):
        q = 0.75 * xy[:-1] + 0.25 * xy[1:]
        r = 0.25 * xy[:-1] + 0.75 * xy[1:]
        xy = np.r_[xy[:1], np.stack([q, r], axis=1).reshape(-1, 2)[1:-1], xy[-1:]]
    return xy


def metro(seed: int) -> tuple[Layer, Layer]:
    """Four metro lines and their stations, every ~1.3 km; where lines cross there is one
    interchange station serving both."""
    g = rng(seed, "metro")
    lines = []
    for _, pts in METRO_LINES:
        xy = np.array(pts) + g.uniform(-0.03, 0.03, (len(pts), 2))
        xy = np.array(CENTRE) + xy * np.array(SEMI_AXES)
        lines.append(shapely.LineString(np.round(_chaikin(xy), 2)))
    lines_arr = np.array(lines, dtype=object)
    st_xy, st_line = [], []
    for k, line in enumerate(lines, start=1):
        n = round(line.length / STATION_SPACING) + 1
        pts = shapely.line_interpolate_point(line, np.linspace(0, line.length, n))
        st_xy.append(shapely.get_coordinates(pts))
        st_line.append(np.full(n, k))
    xy, served = np.concatenate(st_xy), np.concatenate(st_line).astype(str)
    keep = np.ones(len(xy), bool)
    ix_xy, ix_served = [], []
    for a in range(len(lines)):  # 4 lines: 6 pairs
        for b in range(a + 1, len(lines)):
            cross = shapely.get_coordinates(shapely.intersection(lines[a], lines[b]))
            for p in cross:
                near = np.hypot(*(xy - p).T) < 0.55 * STATION_SPACING
                keep &= ~(near & np.isin(served, [str(a + 1), str(b + 1)]))
                ix_xy.append(p)
                ix_served.append(f"{a + 1},{b + 1}")
    xy = np.r_[xy[keep], np.array(ix_xy).reshape(-1, 2)]
    served = np.r_[served[keep], np.array(ix_served, dtype=str)]
    n = len(xy)
    word = g.permutation(max(n, len(WORDS)))[:n]
    kind = np.minimum(word // len(WORDS), len(_STATION_KINDS) - 1)
    kind_fa = np.array([k[0] for k in _STATION_KINDS])[kind]
    kind_en = np.array([k[1] for k in _STATION_KINDS])[kind]
    w = WORDS[word % len(WORDS)]
    stations = Layer(shapely.points(np.round(xy, 2)), {
        "station_id": np.arange(1, n + 1, dtype=np.int64),
        "name_fa": _cat("ایستگاه ", kind_fa, w[:, 0]),
        "name_en": _cat(w[:, 1], kind_en, " Station"),
        "lines": served,
        "interchange": np.char.find(served, ",") >= 0,
    })
    number = np.arange(1, len(lines) + 1)
    per_line = np.array([(np.char.find(_cat(",", served, ","), f",{k},") >= 0).sum()
                         for k in number])
    line_layer = Layer(lines_arr, {
        "line_no": number,
        "name_fa": _cat("خط ", persian_digits(number), " مترو"),
        "name_en": _cat("Metro Line ", number),
        "colour": np.array([c for c, _ in METRO_LINES]),
        "length_km": np.round(shapely.length(lines_arr) / 1000, 2),
        "stations": per_line,
    })
    return line_layer, stations


# --- points of interest on parcels ------------------------------------------------------


def _sites(parcels: Layer, cls: int) -> Ints:
    return np.flatnonzero(parcels.internal["usable"] & (parcels.internal["class"] == cls))


_SCHOOL_LEVELS = (("دبستان", "Primary School", 150, 600),
                  ("دبیرستان دوره اول", "Lower Secondary School", 200, 700),
                  ("دبیرستان دوره دوم", "Upper Secondary School", 250, 900))


def schools(parcels: Layer, seed: int) -> Layer:
    """One school on every education parcel (boys' or girls', three levels)."""
    g = rng(seed, "schools")
    p = _sites(parcels, EDU)
    n = len(p)
    level = g.choice(3, n, p=[0.5, 0.25, 0.25])
    girls = g.random(n) < 0.5
    w = WORDS[g.integers(0, len(WORDS), n)]
    lv_fa = np.array([s[0] for s in _SCHOOL_LEVELS])[level]
    lv_en = np.array([s[1] for s in _SCHOOL_LEVELS])[level]
    lo = np.array([s[2] for s in _SCHOOL_LEVELS])[level]
    hi = np.array([s[3] for s in _SCHOOL_LEVELS])[level]
    return Layer(shapely.point_on_surface(parcels.geometry[p]), {
        "school_id": np.arange(1, n + 1, dtype=np.int64),
        "name_fa": _cat(lv_fa, np.where(girls, " دخترانه ", " پسرانه "), w[:, 0]),
        "name_en": _cat(w[:, 1], np.where(girls, " Girls' ", " Boys' "), lv_en),
        "level": np.array(["primary", "lower secondary", "upper secondary"])[level],
        "gender": np.where(girls, "girls", "boys"),
        "students": (lo + g.random(n) * (hi - lo)).astype(np.int64),
        "district": parcels.columns["district"][p],
    })


def hospitals(parcels: Layer, seed: int) -> Layer:
    """Hospitals and clinics on some health parcels (about one per 400 parcels)."""
    g = rng(seed, "hospitals")
    sites = _sites(parcels, HEALTH)
    want = min(len(sites), max(8, round(len(parcels) / 400)))
    p = np.sort(g.choice(sites, want, replace=False))
    n = len(p)
    kind = g.choice(3, n, p=[0.45, 0.25, 0.3])
    w = WORDS[g.integers(0, len(WORDS), n)]
    kind_fa = np.array(["بیمارستان عمومی ", "بیمارستان تخصصی ", "درمانگاه "])[kind]
    kind_en = np.array([" General Hospital", " Specialist Hospital", " Clinic"])[kind]
    beds = np.where(kind == 2, g.integers(0, 20, n), g.integers(80, 600, n))
    return Layer(shapely.point_on_surface(parcels.geometry[p]), {
        "hospital_id": np.arange(1, n + 1, dtype=np.int64),
        "name_fa": _cat(kind_fa, w[:, 0]),
        "name_en": _cat(w[:, 1], kind_en),
        "kind": np.array(["general", "specialist", "clinic"])[kind],
        "beds": beds.astype(np.int64),
        "emergency": np.where(kind == 2, g.random(n) < 0.2, True),
        "district": parcels.columns["district"][p],
    })


def fire_stations(parcels: Layer, seed: int) -> Layer:
    """Exactly 40 fire stations spread evenly over the city (farthest-point sampling of
    the parcels, starting downtown), numbered by district."""
    g = rng(seed, "fire")
    ok = np.flatnonzero(parcels.internal["usable"])
    pts = shapely.point_on_surface(parcels.geometry[ok])
    xy = shapely.get_coordinates(pts)
    chosen = [int(np.argmin(rho(xy[:, 0], xy[:, 1])))]
    dist = np.hypot(*(xy - xy[chosen[0]]).T)
    for _ in range(N_FIRE_STATIONS - 1):
        chosen.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.hypot(*(xy - xy[chosen[-1]]).T))
    c = np.array(chosen)
    district = parcels.columns["district"][ok[c]]
    order = np.lexsort((-xy[c, 1], district))
    c, district = c[order], district[order]
    number = np.arange(1, N_FIRE_STATIONS + 1)
    return Layer(pts[c], {
        "station_id": number.astype(np.int64),
        "name_fa": _cat("ایستگاه آتش‌نشانی شماره ", persian_digits(number)),
        "name_en": _cat("Fire Station No. ", number),
        "engines": g.integers(2, 7, N_FIRE_STATIONS).astype(np.int64),
        "staff": g.integers(20, 61, N_FIRE_STATIONS).astype(np.int64),
        "district": district,
    })


# --- things on roads --------------------------------------------------------------------


def bus_stops(road: Layer, districts: Geoms, seed: int, n: int) -> Layer:
    """Bus stops on arterial and collector segments, on a kerb beside the middle (the one
    inside the city); named after the street and the cross street, a few typed with Arabic
    letter forms."""
    g = rng(seed, "bus-stops")
    cls = road.internal["class"]
    cand = np.flatnonzero((cls == 1) | (cls == 2))
    s = np.sort(g.choice(cand, min(n, len(cand)), replace=False))
    mid = shapely.get_coordinates(
        shapely.line_interpolate_point(road.geometry[s], 0.5, normalized=True)
    )
    off = np.where(g.random(len(s)) < 0.5, -1.0, 1.0) * (road.internal["half"][s] + 3.0)
    horiz = road.internal["horizontal"][s]
    shift = np.c_[np.where(horiz, 0.0, off), np.where(horiz, off, 0.0)]
    xy, other = np.round(mid + shift, 2), np.round(mid - shift, 2)
    d = district_of(xy[:, 0], xy[:, 1], districts)
    flip = d == 0
    xy[flip] = other[flip]
    d[flip] = district_of(xy[flip, 0], xy[flip, 1], districts)
    keep = d > 0
    s, xy, d = s[keep], xy[keep], d[keep]
    m = len(s)
    name_fa = _cat(road.internal["street_fa"][s], " - ", road.internal["cross_fa"][s])
    arabic = g.random(m) < 0.05
    name_fa[arabic] = arabic_forms(name_fa[arabic])
    r1, r2, r3 = (g.integers(100, 500, m).astype(str) for _ in range(3))
    k = g.integers(1, 4, m)
    routes = _cat(r1, np.where(k >= 2, _cat(", ", r2), ""), np.where(k >= 3, _cat(", ", r3), ""))
    return Layer(shapely.points(xy), {
        "stop_id": np.arange(1, m + 1, dtype=np.int64),
        "name_fa": name_fa,
        "name_en": _cat(road.internal["street_en"][s], " - ", road.internal["cross_en"][s]),
        "routes": routes,
        "shelter": g.random(m) < 0.6,
        "district": d.astype(np.int64),
        "x": xy[:, 0],
        "y": xy[:, 1],
    })


def _on_roads(road: Layer, s: Ints, g: np.random.Generator, jitter: float) -> Floats:
    pts = shapely.line_interpolate_point(road.geometry[s], g.random(len(s)), normalized=True)
    return shapely.get_coordinates(pts) + g.normal(0, jitter, (len(s), 2))


_SEVERITY = ("fatal", "injury", "damage")
_SEVERITY_FA = ("فوتی", "جرحی", "خسارتی")


def crashes(road: Layer, seed: int, n: int) -> Layer:
    """Crashes in 1401-1402 on roads, more where traffic is heavy. Row 7 has no location
    and row 11 an impossible date (1402/13/45): the ETL must reject both."""
    g = rng(seed, "crashes")
    weight = road.columns["aadt"] * road.columns["length_m"]
    s = g.choice(len(road), n, p=weight / weight.sum())
    xy = np.round(_on_roads(road, s, g, 3.0), 2)
    year = g.integers(1401, 1403, n)
    date, month, day = _jalali_dates(year, g)
    minute = g.integers(0, 24 * 60, n)
    order = np.lexsort((minute, day, month, year))
    s, xy, date, minute = s[order], xy[order], date[order], minute[order]
    sev = g.choice(3, n, p=[0.02, 0.28, 0.70])
    vehicles = g.choice([1, 2, 3, 4], n, p=[0.25, 0.6, 0.11, 0.04])
    injuries = np.where(sev <= 1, g.integers(1, 4, n), 0)
    fatalities = np.where(sev == 0, g.integers(1, 3, n), 0)
    geoms = shapely.points(xy)
    date = date.astype(object)
    if n > 11:
        geoms[7] = None
        date[11] = "1402/13/45"
    return Layer(geoms, {
        "crash_id": np.arange(1, n + 1, dtype=np.int64),
        "date": date,
        "time": _cat(np.char.mod("%02d:", minute // 60), np.char.mod("%02d", minute % 60)),
        "severity": np.array(_SEVERITY)[sev],
        "severity_fa": np.array(_SEVERITY_FA)[sev],
        "vehicles": vehicles.astype(np.int64),
        "injuries": injuries.astype(np.int64),
        "fatalities": fatalities.astype(np.int64),
        "road_id": road.columns["road_id"][s],
    })


SENSOR_DATE = "2024-02-27"  # a Tuesday (1402/12/08)
_HOURS = np.arange(24)
_PROFILE = (0.15 + np.exp(-((_HOURS - 7.5) ** 2) / 3) + 0.9 * np.exp(-((_HOURS - 17.5) ** 2) / 5)
            + 0.5 * np.exp(-((_HOURS - 12.5) ** 2) / 12))
_PROFILE = _PROFILE / _PROFILE.sum()


def traffic_sensors(road: Layer, seed: int, n: int) -> Layer:
    """Hourly counts for one weekday from loop sensors on the busiest roads (24 rows per
    sensor), with the speed the BPR curve gives at that volume."""
    g = rng(seed, "sensors")
    cls = road.internal["class"]
    cand = np.flatnonzero(cls <= 1)
    w = road.columns["aadt"][cand].astype(float)
    s = np.sort(g.choice(cand, min(n, len(cand)), replace=False, p=w / w.sum()))
    m = len(s)
    mid = shapely.line_interpolate_point(road.geometry[s], 0.5, normalized=True)
    sid = np.repeat(np.arange(1, m + 1), 24)
    si = np.repeat(s, 24)
    hour = np.tile(_HOURS, m)
    count = np.round(road.columns["aadt"][si] * _PROFILE[hour] * g.uniform(0.9, 1.1, 24 * m))
    vc = count / road.columns["capacity"][si]
    speed = np.maximum(road.columns["speed_limit"][si] * 0.95 / (1 + 0.15 * vc**4), 5.0)
    speed = speed * g.uniform(0.95, 1.05, 24 * m)
    code = np.char.mod("TS%03d", sid)
    return Layer(np.repeat(mid, 24), {
        "reading_id": _cat(code, np.char.mod("-%02d", hour)),
        "sensor_id": code,
        "road_id": road.columns["road_id"][si],
        "date": np.full(24 * m, SENSOR_DATE),
        "hour": hour.astype(np.int64),
        "count": count.astype(np.int64),
        "mean_speed": np.round(speed, 1),
    })


# --- the whole city ---------------------------------------------------------------------


@dataclass(frozen=True)
class City:
    """Every layer of the demo city, in EPSG:32639."""

    outline: shapely.Polygon
    districts: Layer
    parcels: Layer
    buildings: Layer
    roads: Layer
    metro_lines: Layer
    metro_stations: Layer
    schools: Layer
    hospitals: Layer
    fire_stations: Layer
    bus_stops: Layer
    crashes: Layer
    traffic_sensors: Layer


def build_city(seed: int, parcels: int) -> City:
    """The whole city for a seed and a parcel count; the sizes of parcel-bound layers scale
    with `parcels`, districts (22), fire stations (40) and metro stay fixed."""
    outline = make_outline(seed)
    districts = make_districts(outline, seed)
    plan = plan_parcels(parcels, seed, outline, districts.geometry)
    land = landuse_parcels(plan, seed)
    road = roads(plan.grid, outline, seed)
    lines, stations = metro(seed)
    return City(
        outline=outline,
        districts=districts,
        parcels=land,
        buildings=buildings(land, plan, seed),
        roads=road,
        metro_lines=lines,
        metro_stations=stations,
        schools=schools(land, seed),
        hospitals=hospitals(land, seed),
        fire_stations=fire_stations(land, seed),
        bus_stops=bus_stops(road, districts.geometry, seed, max(60, parcels // 6)),
        crashes=crashes(road, seed, max(20, parcels // 2)),
        traffic_sensors=traffic_sensors(road, seed, int(np.clip(parcels // 200, 20, 200))),
    )
