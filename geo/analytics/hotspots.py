"""Getis-Ord Gi* hot spots (PySAL's esda.G_Local with star=True) on counts per hexagon or per
road segment: a z-score per unit saying how much the unit and its neighbours together hold
more (hot) or less (cold) than the whole study area would give them by chance.

Neighbours are the units whose centres lie within a distance band (libpysal DistanceBand,
binary weights; for a hexagon grid, 1.1 hexagon spacings: its six neighbours). Each unit
counts itself (G*). p-values: `p_norm` from the normal approximation (two-sided) and
`p_sim` from conditional permutations (esda's one-sided pseudo p-value)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PERMUTATIONS = 999
SEED = 12345
# Two-sided significance classes, as planners' GIS tools label them (ArcGIS Hot Spot Analysis).
LEVELS = ((0.01, "99%"), (0.05, "95%"), (0.10, "90%"))


@dataclass(frozen=True)
class GiStar:
    z: npt.NDArray[np.float64]
    p_norm: npt.NDArray[np.float64]  # two-sided
    p_sim: npt.NDArray[np.float64] | None  # one-sided pseudo p-value (permutations)
    neighbours: npt.NDArray[np.int64]  # neighbours of each unit, itself excluded

    def classes(self) -> list[str]:
        out = []
        for z, p in zip(self.z, self.p_norm, strict=True):
            label = "not significant"
            if math.isfinite(z):
                for level, name in LEVELS:
                    if p <= level:
                        label = f"{'hot' if z > 0 else 'cold'} spot {name}"
                        break
            out.append(label)
        return out


def hex_band(size: float) -> float:
    """The distance band that makes a hexagon's six neighbours (centres √3·size apart)."""
    return math.sqrt(3) * size * 1.1


def getis_ord_star(values: npt.ArrayLike, xy: npt.ArrayLike, band: float, *,
                   permutations: int = PERMUTATIONS, seed: int = SEED) -> GiStar:
    """Gi* for each unit (values: counts; xy: unit centres in metres; band: metres)."""
    import esda
    from libpysal.weights import DistanceBand

    y = np.asarray(values, dtype=float)
    pts = np.asarray(xy, dtype=float).reshape(-1, 2)
    if len(y) < 3:
        raise ValueError("a hot-spot test needs at least 3 units")
    with warnings.catch_warnings():  # islands (units with no neighbour) are allowed in G*
        warnings.simplefilter("ignore")
        w = DistanceBand(pts, threshold=band, binary=True, silence_warnings=True)
        g = esda.G_Local(y, w, transform="B", permutations=permutations, star=True,
                         seed=seed, n_jobs=1, keep_simulations=False)
    z = np.asarray(g.Zs, dtype=float)
    p_sim = np.asarray(g.p_sim, dtype=float) if permutations else None
    counts = np.array([len(w.neighbors[i]) for i in w.id_order], dtype=np.int64)
    return GiStar(z=z, p_norm=np.minimum(2 * np.asarray(g.p_norm, dtype=float), 1.0),
                  p_sim=p_sim, neighbours=counts)
