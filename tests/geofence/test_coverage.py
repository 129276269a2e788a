"""Coverage of a zone by a vehicle's working fixes: whole routes, parts of them, too fast, areas, GPS noise."""

from __future__ import annotations

import math

import h3.api.basic_int as h3
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geofence.cover import cells_of, cover
from geofence.coverage import measure, route_cells, visited_cells, working
from geofence.shapes import EARTH_RADIUS_M, Circle, Corridor, Polygon

M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0
Track = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def plane(lat0: float, lon0: float, xy: np.ndarray) -> np.ndarray:
    """Metres east and north of (lat0, lon0) as an (n, 2) array of lon, lat."""
    return np.column_stack([lon0 + xy[:, 0] / (M_PER_DEG * math.cos(math.radians(lat0))), lat0 + xy[:, 1] / M_PER_DEG])


def drive(line: np.ndarray, upto: float, kmh: float, every_s: float, noise_m: float = 0.0, seed: int = 0) -> Track:
    """Fixes of a vehicle going along a lon/lat polyline at `kmh` from its start to the fraction `upto` of its
    length: every `every_s` seconds, and at each corner (terminals report a change of heading), each off by a
    normal GPS error of `noise_m`: lat, lon, fix time, speed."""
    kx = M_PER_DEG * math.cos(math.radians(float(line[:, 1].mean())))
    seg = np.diff(line, axis=0)
    lengths = np.hypot(seg[:, 0] * kx, seg[:, 1] * M_PER_DEG)
    ends = np.r_[0.0, np.cumsum(lengths)]
    goal = ends[-1] * upto
    ms = kmh / 3.6
    d = np.unique(np.r_[np.arange(0.0, goal, ms * every_s), ends[ends < goal], goal])
    i = np.clip(np.searchsorted(ends, d, side="right") - 1, 0, len(lengths) - 1)
    f = (d - ends[i]) / lengths[i]
    rng = np.random.default_rng(seed)
    lat = line[i, 1] + f * seg[i, 1] + rng.normal(0.0, noise_m, len(d)) / M_PER_DEG
    lon = line[i, 0] + f * seg[i, 0] + rng.normal(0.0, noise_m, len(d)) / kx
    t = np.round(d / ms * 1e6).astype(np.int64) + 1_700_000_000_000_000
    return lat, lon, t, np.full(len(d), kmh)


@st.composite
def routes(draw: st.DrawFn) -> Corridor:
    """A street of 2 to 6 straight stretches, 2 to 4 km in all, turning by at most 60 degrees, in Shenzhen."""
    lat0, lon0 = draw(st.floats(22.45, 22.75)), draw(st.floats(113.85, 114.35))
    n = draw(st.integers(2, 6))
    total = draw(st.floats(2000, 4000))
    heading = draw(st.floats(0, 2 * math.pi))
    turns = draw(st.lists(st.floats(-math.pi / 3, math.pi / 3), min_size=n, max_size=n))
    weights = np.array(draw(st.lists(st.floats(1, 3), min_size=n, max_size=n)))
    steps = weights / weights.sum() * total
    angles = heading + np.cumsum(turns)
    xy = np.vstack([[0.0, 0.0], np.cumsum(np.column_stack([steps * np.cos(angles), steps * np.sin(angles)]), axis=0)])
    return Corridor(plane(lat0, lon0, xy), draw(st.floats(10, 60)))


@given(routes(), st.floats(5, 15), st.floats(5, 30), st.floats(0, 5), st.integers(0, 2**32 - 1))
def test_the_whole_route_at_working_speed_is_covered(
    route: Corridor, kmh: float, every_s: float, noise_m: float, seed: int
) -> None:
    cells = route_cells(route, 11)
    track = drive(route.line, 1.0, kmh, every_s, noise_m, seed)
    assert measure(cells, visited_cells(*track, 11)).share >= 0.98


@given(routes(), st.floats(16, 60), st.floats(5, 30))
def test_the_whole_route_too_fast_is_no_work(route: Corridor, kmh: float, every_s: float) -> None:
    cells = route_cells(route, 11)
    covered = measure(cells, visited_cells(*drive(route.line, 1.0, kmh, every_s), 11))
    assert covered.visited == 0 and covered.share == 0.0 and covered.total == len(cells)
    # With no upper bound the same drive covers it all.
    assert measure(cells, visited_cells(*drive(route.line, 1.0, kmh, every_s), 11, max_speed=None)).share >= 0.98


def cut(line: np.ndarray, upto: float) -> np.ndarray:
    """The polyline from its start to the fraction `upto` of its length."""
    lat, lon, _, _ = drive(line, upto, 3.6, 1e9)  # the start, the corners and the end: no fixes in between
    return np.column_stack([lon, lat])


@given(routes(), st.floats(0.2, 0.9), st.floats(8, 15), st.floats(5, 20))
def test_part_of_the_route_is_the_share_of_its_cells_on_that_part(
    route: Corridor, upto: float, kmh: float, every_s: float
) -> None:
    """Cells are not evenly spread along a line (some it crosses at a corner), so the share is that of the
    route's cells on the part driven, and at most three more: the tolerance reaches past the ends of the part,
    and a cell the centreline only clips may hold a sample of the whole line but none of the part's."""
    cells = route_cells(route, 11)
    on_part = np.intersect1d(cells, route_cells(Corridor(cut(route.line, upto), 10), 11))
    covered = measure(cells, visited_cells(*drive(route.line, upto, kmh, every_s), 11))
    assert len(on_part) <= covered.visited <= len(on_part) + 3


def test_seventy_percent_of_a_street_is_a_share_of_seventy_percent() -> None:
    line = plane(22.56, 114.05, np.array([[0.0, 0.0], [800.0, 300.0], [1500.0, -200.0], [2300.0, 100.0]]))
    cells = route_cells(Corridor(line, 30), 11)
    for kmh, every_s in ((12, 10), (8, 30), (15, 5)):
        covered = measure(cells, visited_cells(*drive(line, 0.7, kmh, every_s), 11))
        assert covered.share == pytest.approx(0.70, abs=0.03)


def test_route_cells_of_a_corridor_follow_its_centreline() -> None:
    line = plane(22.56, 114.05, np.array([[0.0, 0.0], [1000.0, 0.0], [1000.0, 600.0]]))
    route = Corridor(line, 200)
    cells = route_cells(route, 11)
    assert np.all(np.diff(cells) > 0)
    assert set(cells_of(line[:, 1], line[:, 0], 11).tolist()) <= set(cells.tolist())  # the vertices' cells
    # A line of cells, not the whole 200 m wide corridor: about one cell per 1.5 edges of length.
    edge = h3.average_hexagon_edge_length(11, "m")
    assert 1600 / (2 * edge) < len(cells) < 1600 / edge
    centres = np.array([h3.cell_to_latlng(c) for c in cells.tolist()])
    assert Corridor(line, 2 * edge).contains(centres[:, 0], centres[:, 1]).all()


def _share_inside(shape: Polygon | Circle, cell: int, n: int = 400) -> float:
    """The share of random points of the cell that are inside the shape."""
    corners, centre = np.array(h3.cell_to_boundary(cell)), np.array(h3.cell_to_latlng(cell))
    rng = np.random.default_rng(0)
    k, u, w = rng.integers(0, len(corners), n), rng.random(n), rng.random(n)
    flip = u + w > 1
    u[flip], w[flip] = 1 - u[flip], 1 - w[flip]
    p = centre + u[:, None] * (corners[k] - centre) + w[:, None] * (corners[(k + 1) % len(corners)] - centre)
    return float(shape.contains(p[:, 0], p[:, 1]).mean())


def test_route_cells_of_an_area_are_its_cells_without_slivers() -> None:
    square = plane(22.56, 114.05, np.array([[0.0, 0.0], [600, 0], [600, 600], [0, 600], [0, 0]]))
    triangle = plane(22.56, 114.05, np.array([[0.0, 0.0], [600, 100], [200, 500], [0, 0]]))
    for shape in (
        Polygon.from_geojson({"type": "Polygon", "coordinates": [square.tolist()]}),
        Polygon.from_geojson({"type": "Polygon", "coordinates": [triangle.tolist()]}),
        Circle(22.57, 114.06, 300.0),
    ):
        interior, boundary = cover(shape, 11)
        cells = route_cells(shape, 11)
        kept = set(cells.tolist())
        assert np.all(np.diff(cells) > 0)
        assert set(interior.tolist()) <= kept <= set(interior.tolist()) | set(boundary.tolist())
        centres = np.array([h3.cell_to_latlng(c) for c in boundary.tolist()])
        assert set(boundary[shape.contains(centres[:, 0], centres[:, 1])].tolist()) <= kept
        # The boundary cells kept are partly inside (a sixth or more, measured); those left out are slivers.
        assert min(_share_inside(shape, c) for c in boundary.tolist() if c in kept) > 0.1
        assert max(_share_inside(shape, c) for c in boundary.tolist() if c not in kept) < 0.3


def test_a_patrol_driving_lanes_across_a_grid_covers_it() -> None:
    """Back and forth across a 600 m square, lanes 30 m apart (less than a cell is wide): all of it."""
    square = plane(22.56, 114.05, np.array([[0.0, 0.0], [600, 0], [600, 600], [0, 600], [0, 0]]))
    grid = Polygon.from_geojson({"type": "Polygon", "coordinates": [square.tolist()]})
    lanes = []
    for k, y in enumerate(np.arange(0.0, 601.0, 30.0)):
        lanes += [[0.0, y], [600.0, y]] if k % 2 == 0 else [[600.0, y], [0.0, y]]
    track = drive(plane(22.56, 114.05, np.array(lanes)), 1.0, 20, 10)
    cells = route_cells(grid, 11)
    assert measure(cells, visited_cells(*track, 11, max_speed=None)).share >= 0.95
    # Half the lanes (the southern half of the square): about half of it.
    half = drive(plane(22.56, 114.05, np.array(lanes[: len(lanes) // 2])), 1.0, 20, 10)
    assert measure(cells, visited_cells(*half, 11, max_speed=None)).share == pytest.approx(0.5, abs=0.06)


def test_gaps_jumps_and_order() -> None:
    line = plane(22.56, 114.05, np.array([[0.0, 0.0], [1500.0, 0.0]]))
    route = Corridor(line, 30)
    cells = route_cells(route, 11)
    lat, lon, t, v = drive(line, 1.0, 12, 10)
    full = visited_cells(lat, lon, t, v, 11)
    assert measure(cells, full).share == 1.0
    order = np.random.default_rng(1).permutation(len(t))
    assert np.array_equal(visited_cells(lat[order], lon[order], t[order], v[order], 11), full)
    # Fixes every 3 minutes (past max_gap_s): only the cells around the fixes.
    few = np.unique(np.r_[np.arange(0, len(t), 18), len(t) - 1])
    assert measure(cells, visited_cells(lat[few], lon[few], t[few], v[few], 11)).share < 0.4
    assert measure(cells, visited_cells(lat[few], lon[few], t[few], v[few], 11, max_gap_s=200)).share == 1.0
    # The same fixes 10 s apart in time: too far apart for 15 km/h, so jumps, not lines.
    assert measure(cells, visited_cells(lat[few], lon[few], t[: len(few)], v[few], 11)).share < 0.4
    # Three fast fixes in the middle (130 m between the slow ones): no work there.
    fast = v.copy()
    fast[len(v) // 2 - 1 : len(v) // 2 + 2] = 40
    broken = visited_cells(lat, lon, t, fast, 11)
    assert 0.9 < measure(cells, broken).share < 1.0


def test_working_speed_bounds_and_unknown_speeds() -> None:
    v = np.array([0.0, 3.0, 15.0, 15.5, np.nan])
    assert working(v).tolist() == [True, True, True, False, False]
    assert working(v, 3.0, None).tolist() == [False, True, True, True, False]
    assert working(v, 0.0, None).tolist() == [True] * 5
    assert len(visited_cells([], [], [], [], 11)) == 0
    with pytest.raises(ValueError):
        measure(np.zeros(0, np.int64), np.zeros(0, np.int64))
