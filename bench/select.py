"""Live-map selection over a city fleet: "who is inside this shape" and "what changed since".

Builds the live state of N devices spread over about 40 x 40 km around Shenzhen (22.5N 114.0E),
with kinds and organisation units mixed, then times:

- select with a 2 km circle and with a 12-vertex polygon (about 3 km across), at random places;
- changed_since after one ingest batch (2,000 fixes) plus a dispatcher's mask (two kinds, a
  subtree of units, the visible map box): what the WebSocket does per client per batch;
- apply of a batch, the LIVE rows of a circle's devices (in GCJ-02) and counts, for scale.

Prints one JSON line with the median and 99th percentile in milliseconds (target: select under
5 ms over 100,000 devices).

    python -m bench.select [--devices 100000] [--repeat 300]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from geofence.shapes import Circle, Polygon
from store.devices import KINDS
from tracking.live import LiveState

CENTRE = (22.5, 114.0)
HALF_SPAN_KM = 20.0
KM_PER_DEG_LAT = 111.2
UNITS = 200
T0 = 1_767_225_600_000_000
BATCH = 2000


def _city_points(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    dlat = HALF_SPAN_KM / KM_PER_DEG_LAT
    dlon = dlat / math.cos(math.radians(CENTRE[0]))
    return rng.uniform(CENTRE[0] - dlat, CENTRE[0] + dlat, n), rng.uniform(CENTRE[1] - dlon, CENTRE[1] + dlon, n)


def build(n: int, rng: np.random.Generator) -> LiveState:
    live = LiveState(capacity=n)
    kinds = rng.choice(len(KINDS), n)
    units = rng.integers(1, UNITS + 1, n)
    for i in range(n):  # setup only: the timed paths below are vectorized
        live.set_device(i + 1, f"dev{i + 1}", KINDS[kinds[i]], int(units[i]), f"Device {i + 1}", None, True)
    lat, lon = _city_points(rng, n)
    live.apply(
        np.arange(1, n + 1, dtype=np.int32),
        T0 + rng.integers(0, 30, n) * 1_000_000,
        lat,
        lon,
        rng.uniform(0, 60, n).astype(np.float32),
        rng.uniform(0, 360, n).astype(np.float32),
        np.full(n, T0 + 30_000_000, dtype=np.int64),
    )
    return live


def polygon_at(lat: float, lon: float, rng: np.random.Generator, vertices: int = 12) -> Polygon:
    """An irregular polygon about 3 km across."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, vertices))
    radius_deg = rng.uniform(0.8, 1.6, vertices) / KM_PER_DEG_LAT
    ring = np.column_stack(
        [lon + radius_deg * np.cos(angles) / math.cos(math.radians(lat)), lat + radius_deg * np.sin(angles)]
    )
    return Polygon.from_geojson({"type": "Polygon", "coordinates": [np.vstack([ring, ring[:1]]).tolist()]})


def timed(repeat: int, setup: Callable[[int], Any], run: Callable[[Any], int]) -> dict[str, float]:
    """Median and p99 of `run(setup(i))` in ms (setup not timed), and the median size of its answer."""
    times, sizes = [], []
    for i in range(repeat):
        arg = setup(i)
        start = time.perf_counter()
        sizes.append(run(arg))
        times.append((time.perf_counter() - start) * 1000)
    t = np.array(times)
    return {
        "median_ms": round(float(np.median(t)), 3),
        "p99_ms": round(float(np.percentile(t, 99)), 3),
        "answer_median": float(np.median(sizes)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    n = args.devices
    live = build(n, rng)
    places = np.column_stack(_city_points(rng, args.repeat))
    now = T0 + 60_000_000

    circles = [Circle(float(a), float(b), 2000.0) for a, b in places]
    polygons = [polygon_at(float(a), float(b), rng) for a, b in places]
    circle = timed(args.repeat, lambda i: circles[i], lambda shape: len(live.select(shape)))
    polygon = timed(args.repeat, lambda i: polygons[i], lambda shape: len(live.select(shape)))

    subtree = list(range(1, UNITS // 4 + 1))  # a district: a quarter of the units
    view = (113.95, 22.45, 114.05, 22.55)  # the map box on the dispatcher's screen, about 10 x 11 km

    def batch(second: int) -> tuple[np.ndarray, ...]:
        """2,000 fixes of random devices, all newer than anything applied before."""
        ids = rng.integers(1, n + 1, BATCH).astype(np.int32)
        lat, lon = _city_points(rng, BATCH)
        fix = np.full(BATCH, T0 + second * 1_000_000, dtype=np.int64)
        speed = rng.uniform(0, 60, BATCH).astype(np.float32)
        return ids, fix, lat, lon, speed, speed, fix + 500_000

    batches = [batch(60 + i) for i in range(2 * args.repeat)]

    def apply_batch(i: int) -> int:
        """One ingest batch lands; the version the client had before it."""
        version = live.current_version
        live.apply(*batches[i])
        return version

    def changed_in_view(version: int) -> int:
        slots = live.changed_since(version)
        return len(slots[live.mask(kinds=["muck", "sanitation"], unit_ids=subtree, bbox=view, slots=slots)])

    changed = timed(args.repeat, apply_batch, changed_in_view)
    apply = timed(args.repeat, lambda i: batches[args.repeat + i], lambda b: live.apply(*b))
    rows = timed(args.repeat, lambda i: live.select(circles[i]), lambda slots: len(live.rows(slots, now, "gcj02")))
    counts = timed(min(args.repeat, 100), lambda i: None, lambda _: len(live.counts(now, subtree)["by_unit"]))
    print(
        json.dumps(
            {
                "devices": n,
                "select_circle_2km": circle,
                "select_polygon_12": polygon,
                "changed_since_and_mask": changed,
                "apply_batch_2000": apply,
                "rows_of_circle_gcj02": rows,
                "counts_subtree": counts,
            }
        )
    )


if __name__ == "__main__":
    main()
