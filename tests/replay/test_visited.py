"""Who was inside a shape, sans-I/O: the cells to read, the exact test of what is read, and the visits."""

from __future__ import annotations

import math

import h3.api.basic_int as h3
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from geofence.cover import cells_of
from geofence.shapes import EARTH_RADIUS_M, Circle, Polygon
from replay.visited import Area, Visit, visits

M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0
LAT0, LON0 = 22.54, 114.05
T0 = 1_770_000_000 * 1_000_000  # microseconds


def north(metres: float, lat0: float = LAT0) -> float:
    return lat0 + metres / M_PER_DEG


def east(metres: float, lat0: float = LAT0, lon0: float = LON0) -> float:
    return lon0 + metres / (M_PER_DEG * math.cos(math.radians(lat0)))


def _inside_fixes(area: Area, lat: list[float], lon: list[float]) -> np.ndarray:
    la, lo = np.array(lat), np.array(lon)
    return area.inside(la, lo, cells_of(la, lo, area.resolution))


def test_a_pass_through_a_circle_is_one_visit_from_the_first_to_the_last_fix_inside() -> None:
    area = Area.of(Circle(LAT0, LON0, 200), 9)
    # A fix every 30 s going north through the centre: -450, -300, ..., +450 m; inside: -150, 0, +150.
    ys = [-450, -300, -150, 0, 150, 300, 450]
    lat, lon = [north(y) for y in ys], [LON0] * len(ys)
    times = T0 + np.arange(len(ys), dtype=np.int64) * 30_000_000
    inside = _inside_fixes(area, lat, lon)
    assert inside.tolist() == [False, False, True, True, True, False, False]
    rows = np.flatnonzero(inside)
    found = visits(np.full(len(rows), 7), times[rows], 300)
    assert found == [Visit(7, int(times[2]), int(times[4]), 3, 0, 2)]


def test_a_gap_longer_than_max_gap_s_ends_a_visit_and_one_of_exactly_max_gap_s_does_not() -> None:
    s = 1_000_000
    t = T0 + np.array([0, 30, 60, 360, 390, 691], dtype=np.int64) * s  # gaps: 300 s, then 301 s
    d = np.full(len(t), 3)
    assert [(v.entered_us, v.left_us, v.fixes) for v in visits(d, t, 300)] == [(t[0], t[4], 5), (t[5], t[5], 1)]
    assert [(v.entered_us, v.left_us, v.fixes) for v in visits(d, t, 299)] == [
        (t[0], t[2], 3),
        (t[3], t[4], 2),
        (t[5], t[5], 1),
    ]
    assert len(visits(d, t, 301)) == 1


def test_fixes_of_several_devices_in_any_order_give_visits_by_device_then_time() -> None:
    s = 1_000_000
    d = np.array([9, 4, 9, 4, 4, 9], dtype=np.int32)
    t = T0 + np.array([1000, 60, 0, 0, 5000, 30], dtype=np.int64) * s
    found = visits(d, t, 300)
    assert [(v.device_id, (v.entered_us - T0) // s, (v.left_us - T0) // s, v.fixes) for v in found] == [
        (4, 0, 60, 2),
        (4, 5000, 5000, 1),
        (9, 0, 30, 2),
        (9, 1000, 1000, 1),
    ]
    # first and last point at the rows given, so the caller finds where the visit began and ended
    assert [(v.first, v.last) for v in found] == [(3, 1), (4, 4), (2, 5), (0, 0)]
    assert visits(np.zeros(0, np.int32), np.zeros(0, np.int64), 300) == []


def test_the_cells_to_read_are_the_cover_and_a_shape_too_large_is_refused() -> None:
    area = Area.of(Circle(LAT0, LON0, 200), 9)
    assert len(area.cells) == len(area.interior) + len(area.boundary) > 0
    assert not np.isin(area.interior, area.boundary).any()
    centre = cells_of(np.array([LAT0]), np.array([LON0]), 9)
    assert np.isin(centre, area.cells).all()
    with pytest.raises(ValueError, match="too large"):
        Area.of(Circle(LAT0, LON0, 100_000), 9)
    assert len(Area.of(Circle(LAT0, LON0, 100_000), 5).cells) > 0  # the same circle in larger cells


# --- the cell filter and the exact test equal the exact test alone ----------------------------------------

resolutions = st.sampled_from([8, 9, 10])
centres = st.tuples(st.floats(22.4, 22.7), st.floats(113.9, 114.3))


@st.composite
def circles(draw: st.DrawFn) -> Circle:
    lat, lon = draw(centres)
    return Circle(lat, lon, draw(st.floats(5.0, 1500.0)))


@st.composite
def polygons(draw: st.DrawFn) -> Polygon:
    """A star-shaped ring around a centre (often concave), sometimes with a hole."""
    lat0, lon0 = draw(centres)
    size = draw(st.floats(20.0, 1500.0))
    n = draw(st.integers(3, 16))
    angles = np.sort(np.array(draw(st.lists(st.floats(0, 2 * math.pi), min_size=n, max_size=n))))
    radii = size * np.array(draw(st.lists(st.floats(0.1, 1.0), min_size=n, max_size=n)))
    rings = [
        [[east(r * math.cos(a), lat0, lon0), north(r * math.sin(a), lat0)] for a, r in zip(angles, radii, strict=True)]
    ]
    if draw(st.booleans()):
        rings.append(
            [[east(x * size / 5, lat0, lon0), north(y * size / 5, lat0)] for x, y in ((-1, -1), (1, -1), (0, 1))]
        )
    for ring in rings:
        ring.append(ring[0])
    try:
        return Polygon.from_geojson({"type": "Polygon", "coordinates": rings})
    except ValueError:  # corners on one line: no area
        assume(False)
        raise


@given(shape=st.one_of(circles(), polygons()), resolution=resolutions, seed=st.integers(0, 2**32 - 1))
def test_reading_the_cover_and_testing_boundary_cells_finds_exactly_the_points_inside(
    shape: Circle | Polygon, resolution: int, seed: int
) -> None:
    area = Area.of(shape, resolution)
    rng = np.random.default_rng(seed)
    min_lat, min_lon, max_lat, max_lon = shape.bbox()
    # Points in and around the shape's box, and points on and near its edge, where a cell filter goes wrong.
    # (and two cells' edges beyond it, so that some points are in cells outside the cover)
    reach = 2 * h3.average_hexagon_edge_length(resolution, "m") / M_PER_DEG
    pad_lat = (max_lat - min_lat) / 2 + reach
    pad_lon = (max_lon - min_lon) / 2 + reach / math.cos(math.radians(max_lat))
    lat = rng.uniform(min_lat - pad_lat, max_lat + pad_lat, 2000)
    lon = rng.uniform(min_lon - pad_lon, max_lon + pad_lon, 2000)
    if isinstance(shape, Circle):
        bearing, d = rng.uniform(0, 2 * math.pi, 500), shape.radius_m + rng.normal(0, 2, 500)
        lat = np.append(lat, [north(x, shape.lat) for x in d * np.cos(bearing)])
        lon = np.append(lon, [east(x, shape.lat, shape.lon) for x in d * np.sin(bearing)])
    else:
        ring = shape.rings[0]
        edge = rng.integers(0, len(ring) - 1, 500)
        f = rng.uniform(0, 1, 500)
        lon = np.append(lon, ring[edge, 0] + f * (ring[edge + 1, 0] - ring[edge, 0]) + rng.normal(0, 1e-6, 500))
        lat = np.append(lat, ring[edge, 1] + f * (ring[edge + 1, 1] - ring[edge, 1]) + rng.normal(0, 1e-6, 500))
    cell = cells_of(lat, lon, resolution)
    read = np.isin(cell, area.cells)  # what the store returns
    assume(not read.all())
    found = np.zeros(len(lat), dtype=np.bool_)
    found[read] = area.inside(lat[read], lon[read], cell[read])
    np.testing.assert_array_equal(found, shape.contains(lat, lon))
