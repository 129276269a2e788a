"""Geofencing: which zones contain each fix of a batch, over thousands of zones in a city.

Builds a ZoneIndex of N zones spread over about 40 x 40 km around Shenzhen (22.54N 114.06E): a
mix of polygons (5-40 vertices, concave, a fifth with a hole), circles and route corridors (2-8
vertices, 20-200 m wide), each 100 m - 3 km across (log-uniform). Then times `containing` over
batches of 1,000 and 10,000 random fixes in the same area, with the H3 cells computed by the index
and with them given (as a committed batch's h3_cell column gives them).

Prints one JSON line: build time, cells and boundary share, and per batch size points/s and µs per
point. Ingest stores ~34,000 reports/s on 2 cores; geofencing may cost it at most 15 %.

    python -m bench.geofence [--zones 5000] [--points 200000] [--resolution 9]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np

from geofence.cover import cells_of
from geofence.shapes import EARTH_RADIUS_M, AnyShape, Circle, Corridor, Polygon
from geofence.zone_index import ZoneIndex

CENTRE = (22.54, 114.06)
HALF_SPAN_M = 20_000.0
M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0


def _to_lon_lat(x: np.ndarray, y: np.ndarray, lat0: float, lon0: float) -> np.ndarray:
    """Metres east and north of (lat0, lon0) as an (n, 2) array of lon, lat."""
    return np.column_stack([lon0 + x / (M_PER_DEG * math.cos(math.radians(lat0))), lat0 + y / M_PER_DEG])


def _star(rng: np.random.Generator, n: int, radius: float, lat0: float, lon0: float) -> np.ndarray:
    """A closed ring of n vertices at random angles and radii: concave, never self-crossing."""
    angle = np.sort(rng.uniform(0, 2 * math.pi, n))
    r = radius * rng.uniform(0.4, 1.0, n)
    ring = _to_lon_lat(r * np.cos(angle), r * np.sin(angle), lat0, lon0)
    return np.vstack([ring, ring[:1]])


def random_zone(rng: np.random.Generator) -> AnyShape:
    size = math.exp(rng.uniform(math.log(100.0), math.log(3000.0)))
    x, y = rng.uniform(-HALF_SPAN_M, HALF_SPAN_M, 2)
    lat0, lon0 = (float(v) for v in _to_lon_lat(np.array([x]), np.array([y]), *CENTRE)[0][::-1])
    kind = rng.choice(3, p=[0.5, 0.3, 0.2])
    if kind == 0:
        rings = [_star(rng, int(rng.integers(5, 41)), size / 2, lat0, lon0)]
        if rng.random() < 0.2:  # a hole well inside the smallest radius
            hole = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], dtype=np.float64) * size * 0.1
            rings.append(_to_lon_lat(hole[:, 0], hole[:, 1], lat0, lon0))
        return Polygon(tuple(rings))
    if kind == 1:
        return Circle(lat0, lon0, size / 2)
    n = int(rng.integers(2, 9))
    heading = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.uniform(-0.8, 0.8, n - 1))
    step = size / (n - 1)
    px = np.concatenate([[0.0], np.cumsum(step * np.cos(heading))])
    py = np.concatenate([[0.0], np.cumsum(step * np.sin(heading))])
    return Corridor(_to_lon_lat(px, py, lat0, lon0), float(rng.uniform(20, 200)))


def _fixes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    lonlat = _to_lon_lat(rng.uniform(-HALF_SPAN_M, HALF_SPAN_M, n), rng.uniform(-HALF_SPAN_M, HALF_SPAN_M, n), *CENTRE)
    return lonlat[:, 1], lonlat[:, 0]


def _time_batches(
    index: ZoneIndex, lat: np.ndarray, lon: np.ndarray, cells: np.ndarray | None, batch: int
) -> dict[str, Any]:
    pairs = 0
    start = time.perf_counter()
    for a in range(0, len(lat), batch):
        given = None if cells is None else cells[a : a + batch]
        point, _ = index.containing(lat[a : a + batch], lon[a : a + batch], given)
        pairs += len(point)
    elapsed = time.perf_counter() - start
    return {
        "points_per_s": round(len(lat) / elapsed),
        "us_per_point": round(elapsed / len(lat) * 1e6, 3),
        "pairs_per_point": round(pairs / len(lat), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zones", type=int, default=5000)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--resolution", type=int, default=9)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    zones = [random_zone(rng) for _ in range(args.zones)]
    index = ZoneIndex(args.resolution)
    start = time.perf_counter()
    for zone_id, shape in enumerate(zones, start=1):
        index.add(zone_id, shape)
    cover_s = time.perf_counter() - start
    lat, lon = _fixes(rng, args.points)
    start = time.perf_counter()
    index.containing(lat[:1], lon[:1])  # builds the sorted table
    table_s = time.perf_counter() - start

    start = time.perf_counter()
    cells = cells_of(lat, lon, args.resolution)
    cells_us = (time.perf_counter() - start) / len(lat) * 1e6
    table = index._table
    assert table is not None
    result: dict[str, Any] = {
        "zones": args.zones,
        "points": args.points,
        "resolution": args.resolution,
        "build_s": round(cover_s + table_s, 2),
        "cover_ms_per_zone": round(cover_s / args.zones * 1e3, 3),
        "table_s": round(table_s, 3),
        "index_cells": len(table.cells),
        "boundary_share": round(float(table.boundary.mean()), 3),
        "h3_cell_us_per_point": round(cells_us, 3),
    }
    for batch in (1000, 10_000):
        result[f"batch_{batch}"] = _time_batches(index, lat, lon, None, batch)
        result[f"batch_{batch}_cells_given"] = _time_batches(index, lat, lon, cells, batch)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
