"""ZoneIndex: the (point, zone) pairs it finds are exactly those the shapes' own tests find."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geofence.cover import cells_of
from geofence.shapes import AnyShape, Circle, Corridor, MultiPolygon, Polygon, from_json
from geofence.zone_index import ZoneIndex
from tests.geofence.test_cover import offsets, points_around, resolutions, shapes


def _brute_force(zones: dict[int, AnyShape], lat: np.ndarray, lon: np.ndarray) -> set[tuple[int, int]]:
    return {(int(p), zid) for zid, shape in zones.items() for p in np.flatnonzero(shape.contains(lat, lon))}


def _pairs(index: ZoneIndex, lat: np.ndarray, lon: np.ndarray, cells: np.ndarray | None = None) -> set[tuple[int, int]]:
    point, zone = index.containing(lat, lon, cells)
    assert point.dtype == np.intp and zone.dtype == np.int64
    assert (np.diff(point) >= 0).all()
    pairs = set(zip(point.tolist(), zone.tolist(), strict=True))
    assert len(pairs) == len(point)  # no pair twice
    return pairs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(zones=st.lists(shapes(), min_size=1, max_size=4), resolution=resolutions, seed=st.integers(0, 2**32 - 1))
def test_containing_is_exact(zones: list[AnyShape], resolution: int, seed: int) -> None:
    index = ZoneIndex(resolution)
    by_id = {7 * i + 1: shape for i, shape in enumerate(zones)}
    for zid, shape in by_id.items():
        index.add(zid, shape)
    parts = [points_around(shape, seed + i, 1500) for i, shape in enumerate(zones)]
    lat, lon = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    assert _pairs(index, lat, lon) == _brute_force(by_id, lat, lon)


def _city_points(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(22.50, 22.58, n), rng.uniform(114.00, 114.12, n)


def _mixed_zones() -> dict[int, AnyShape]:
    square = offsets(22.54, 114.06, [-900, 900, 900, -900, -900], [-900, -900, 900, 900, -900])
    hole = offsets(22.54, 114.06, [-300, 300, 300, -300, -300], [-300, -300, 300, 300, -300])
    line = offsets(22.52, 114.02, [0, 3000, 3000, 6000], [0, 2500, 5000, 5000])
    return {
        1: Circle(22.55, 114.05, 1500.0),
        2: Polygon((square, hole)),
        3: Corridor(line, 120.0),
        4: MultiPolygon((Polygon((square,)), Polygon((offsets(22.53, 114.1, [0, 800, 0, 0], [0, 0, 800, 0]),)))),
    }


def test_add_remove_and_replace() -> None:
    index = ZoneIndex(9)
    zones = _mixed_zones()
    for zid, shape in zones.items():
        index.add(zid, shape)
    assert len(index) == 4 and 3 in index
    lat, lon = _city_points(20_000)
    assert _pairs(index, lat, lon) == _brute_force(zones, lat, lon)

    index.remove(3)
    del zones[3]
    assert len(index) == 3 and 3 not in index
    assert _pairs(index, lat, lon) == _brute_force(zones, lat, lon)
    with pytest.raises(KeyError):
        index.remove(3)

    zones[1] = Circle(22.51, 114.10, 700.0)  # a zone's shape edited: the same id, a new cover
    index.add(1, zones[1])
    assert len(index) == 3
    assert _pairs(index, lat, lon) == _brute_force(zones, lat, lon)

    for zid in list(zones):
        index.remove(zid)
    point, zone = index.containing(lat, lon)
    assert len(index) == 0 and len(point) == len(zone) == 0


def test_many_overlapping_zones() -> None:
    """Concentric circles and nested squares: a point near the centre is in all of them."""
    index = ZoneIndex(9)
    zones: dict[int, AnyShape] = {}
    for i in range(1, 41):
        zones[i] = Circle(22.54, 114.06, 100.0 * i)
        half = 90.0 * i
        zones[100 + i] = Polygon(
            (offsets(22.54, 114.06, [-half, half, half, -half, -half], [-half] * 2 + [half] * 2 + [-half]),)
        )
    for zid, shape in zones.items():
        index.add(zid, shape)
    lat, lon = _city_points(5000)
    lat, lon = np.append(lat, 22.54), np.append(lon, 114.06)
    assert _pairs(index, lat, lon) == _brute_force(zones, lat, lon)
    point, zone = index.containing(lat, lon)
    assert set(zone[point == len(lat) - 1].tolist()) == set(zones)
    # Each point's circles are those with a radius at least its distance from the centre.
    d = np.hypot((lat - 22.54) * 111_195, (lon - 114.06) * 111_195 * math.cos(math.radians(22.54)))
    circles = np.bincount(point[zone < 100], minlength=len(lat))
    expected = np.clip(40 - np.ceil(d / 100.0) + 1, 0, 40)
    assert np.abs(circles - expected).max() <= 1  # the flat-earth distance above is off by a metre or so
    assert circles.sum() > 1000


def test_points_exactly_on_vertices_and_edges() -> None:
    index = ZoneIndex(10)
    zones = _mixed_zones()
    for zid, shape in zones.items():
        index.add(zid, shape)
    square = zones[2]
    assert isinstance(square, Polygon)
    ring = np.concatenate(square.rings)
    mid = (ring[:-1] + ring[1:]) / 2
    corridor = zones[3]
    assert isinstance(corridor, Corridor)
    lon = np.concatenate([ring[:, 0], mid[:, 0], corridor.line[:, 0], [114.05]])
    lat = np.concatenate([ring[:, 1], mid[:, 1], corridor.line[:, 1], [22.55]])
    assert _pairs(index, lat, lon) == _brute_force(zones, lat, lon)


def test_cells_given_equal_cells_computed() -> None:
    index = ZoneIndex(9)
    zones = _mixed_zones()
    for zid, shape in zones.items():
        index.add(zid, shape)
    lat, lon = _city_points(10_000)
    cells = cells_of(lat, lon, 9)
    a = index.containing(lat, lon)
    b = index.containing(lat, lon, cells)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and len(a[0]) > 1000
    with pytest.raises(ValueError, match="9 cells for 10000 points"):
        index.containing(lat, lon, cells[:9])


def test_empty_inputs_and_bad_shapes() -> None:
    index = ZoneIndex(8)
    point, zone = index.containing([], [])
    assert len(point) == len(zone) == 0
    index.add(1, Circle(22.54, 114.06, 500.0))
    point, zone = index.containing(np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64))
    assert len(point) == len(zone) == 0
    with pytest.raises(TypeError, match="not a zone shape"):
        index.add(2, "circle")  # type: ignore[arg-type]


def test_corridor_is_a_distance_from_the_line() -> None:
    """An east-west corridor 200 m wide: 99 m to the side or beyond an end is inside, 101 m is not."""
    line = offsets(22.54, 114.06, [0, 2000], [0, 0])
    corridor = from_json({"corridor": {"line": {"type": "LineString", "coordinates": line.tolist()}, "width_m": 200}})
    assert isinstance(corridor, Corridor)
    near = offsets(22.54, 114.06, [1000, 1000, -99, 2099, -70, 2070], [99, -99, 0, 0, 70, -70])
    far = offsets(22.54, 114.06, [1000, 1000, -101, 2101, -72, 2072], [101, -101, 0, 0, 72, -72])
    assert corridor.contains(near[:, 1], near[:, 0]).all()
    assert not corridor.contains(far[:, 1], far[:, 0]).any()


def test_shapes_from_json() -> None:
    sq = [[114.0, 22.5], [114.01, 22.5], [114.01, 22.51], [114.0, 22.51], [114.0, 22.5]]
    far = [[p[0] + 0.05, p[1]] for p in sq]
    multi = from_json({"multipolygon": {"type": "MultiPolygon", "coordinates": [[sq], [far]]}})
    assert isinstance(multi, MultiPolygon) and len(multi.parts) == 2
    assert multi.contains([22.505, 22.505, 22.505], [114.005, 114.055, 114.03]).tolist() == [True, True, False]
    moved = from_json({"multipolygon": {"type": "MultiPolygon", "coordinates": [[sq]]}}, "gcj02")
    assert isinstance(moved, MultiPolygon) and not np.array_equal(moved.parts[0].rings[0], np.array(sq))
    line = {"type": "LineString", "coordinates": [[114.0, 22.5], [114.01, 22.5]]}
    assert isinstance(from_json({"corridor": {"line": line, "width_m": 50}}, "bd09"), Corridor)
    for bad, message in [
        ({"multipolygon": {"type": "MultiPolygon", "coordinates": []}}, "non-empty list of polygons"),
        ({"multipolygon": {"type": "MultiPolygon", "coordinates": [[sq], [sq[:-1]]]}}, "polygon 1: outer ring is not"),
        ({"multipolygon": {"type": "Polygon", "coordinates": [sq]}}, "'MultiPolygon'"),
        ({"corridor": {"line": line}}, "corridor must be an object with line"),
        ({"corridor": {"line": line, "width_m": 0}}, "width_m must be above 0"),
        ({"corridor": {"line": line, "width_m": True}}, "width_m must be a number"),
        ({"corridor": {"line": {"type": "LineString", "coordinates": [[114, 22]]}, "width_m": 5}}, "at least 2"),
        ({"corridor": {"line": {"type": "LineString", "coordinates": [[114, 22]] * 3}, "width_m": 5}}, "no length"),
        ({"corridor": {"line": {"type": "LineString", "coordinates": [[114, 95], [114, 22]]}, "width_m": 5}}, "95"),
        ({"corridor": {"line": {"type": "Point", "coordinates": [114, 22]}, "width_m": 5}}, "'LineString'"),
        ({"corridor": {}, "circle": {}}, "exactly one of"),
    ]:
        with pytest.raises(ValueError, match=message):
            from_json(bad)
