"""Where alerts happen (事件高发区域): alert counts on H3 cells, as GeoJSON cell polygons for a heat layer.

Sans-I/O (numpy and h3). The input is the alerts' places as the store groups them: one row per kind and
place with its count, the place NaN for an alert whose evidence says nowhere (such alerts are counted
apart, not placed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import h3.api.basic_int as h3
import numpy as np
import numpy.typing as npt

from geofence import crs
from geofence.cover import cells_of

RESOLUTIONS = range(5, 12)  # about 250 km² down to 2,000 m² a cell
DEFAULT_RESOLUTION = 8


@dataclass(frozen=True, slots=True)
class Hotspot:
    cell: int
    count: int
    by_kind: dict[str, int]


@dataclass(frozen=True, slots=True)
class Hotspots:
    spots: list[Hotspot]  # most alerts first
    placed: int  # alerts in the spots
    unplaced: int  # alerts without a place in their evidence


def aggregate(
    kind: Sequence[str],
    lat: npt.NDArray[np.float64],
    lon: npt.NDArray[np.float64],
    count: npt.NDArray[np.int64],
    resolution: int,
) -> Hotspots:
    """Alert counts per cell at `resolution`; a place that is NaN or off the globe is unplaced."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be {RESOLUTIONS.start} to {RESOLUTIONS.stop - 1}, not {resolution}")
    placed = (np.abs(lat) <= 90) & (np.abs(lon) <= 180)  # False for NaN
    where = np.flatnonzero(placed)
    kinds, kind_of = np.unique(np.asarray(kind, dtype=object)[where].astype(str), return_inverse=True)
    cells, cell_of = np.unique(cells_of(lat[where], lon[where], resolution), return_inverse=True)
    table = np.zeros((len(cells), len(kinds)), dtype=np.int64)
    np.add.at(table, (cell_of, kind_of), count[where])
    totals = table.sum(axis=1)
    order = np.lexsort((cells, -totals))  # most first; ties by cell, so the answer is stable
    spots = [
        Hotspot(
            int(cells[i]),
            int(totals[i]),
            {str(kinds[k]): int(table[i, k]) for k in np.flatnonzero(table[i]).tolist()},
        )
        for i in order.tolist()
    ]
    return Hotspots(spots, int(count[where].sum()), int(count[~placed].sum()))


def feature_collection(found: Hotspots, crs_name: str, properties: dict[str, Any]) -> dict[str, Any]:
    """GeoJSON: one Polygon feature per cell (lon/lat in `crs_name`), with {cell, count, by_kind};
    `properties` and the placed and unplaced counts as the collection's own properties."""
    rings = [h3.cell_to_boundary(s.cell) for s in found.spots]
    sizes = [len(r) for r in rings]
    points = np.array([p for r in rings for p in r], dtype=np.float64).reshape(-1, 2)
    lat, lon = crs.convert(points[:, 0], points[:, 1], "wgs84", crs_name)
    lon_lat = np.round(np.column_stack([lon, lat]), 7).tolist()
    features = []
    start = 0
    for spot, size in zip(found.spots, sizes, strict=True):
        ring = lon_lat[start : start + size]
        start += size
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
                "properties": {"cell": h3.int_to_str(spot.cell), "count": spot.count, "by_kind": spot.by_kind},
            }
        )
    return {
        "type": "FeatureCollection",
        "properties": {**properties, "alerts": found.placed, "unplaced": found.unplaced},
        "features": features,
    }
