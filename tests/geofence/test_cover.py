"""The H3 cover: interior cells hold only inside points, cells outside the cover only outside ones.

The random zones and points here serve the zone index tests too.
"""

from __future__ import annotations

import math
from typing import Any

import h3.api.basic_int as h3
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from geofence.cover import cells_of, cover
from geofence.shapes import EARTH_RADIUS_M, AnyShape, Circle, Corridor, MultiPolygon, Polygon

M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0

# Shenzhen, and places where H3 cells are shaped differently (other latitudes, other icosahedron faces).
centres = st.one_of(
    st.tuples(st.floats(22.4, 22.7), st.floats(113.9, 114.3)),
    st.tuples(st.floats(-60.0, 60.0), st.floats(-170.0, 170.0)),
)
resolutions = st.integers(7, 10)


def offsets(lat0: float, lon0: float, x: Any, y: Any) -> np.ndarray:
    """Metres east and north of (lat0, lon0) as an (n, 2) array of lon, lat."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return np.column_stack([lon0 + x / (M_PER_DEG * math.cos(math.radians(lat0))), lat0 + y / M_PER_DEG])


@st.composite
def star_rings(draw: st.DrawFn, lat0: float, lon0: float, size: float) -> np.ndarray:
    """A closed ring around (lat0, lon0) at random angles and radii: often concave."""
    n = draw(st.integers(3, 25))
    angles = np.sort(np.array(draw(st.lists(st.floats(0, 2 * math.pi), min_size=n, max_size=n))))
    radii = size * np.array(draw(st.lists(st.floats(0.1, 1.0), min_size=n, max_size=n)))
    ring = offsets(lat0, lon0, radii * np.cos(angles), radii * np.sin(angles))
    return np.vstack([ring, ring[:1]])


def _polygon(rings: list[np.ndarray]) -> Polygon:
    try:
        return Polygon.from_geojson({"type": "Polygon", "coordinates": [r.tolist() for r in rings]})
    except ValueError:  # corners on one line or repeated: no area
        assume(False)
        raise


@st.composite
def polygons(draw: st.DrawFn, lat0: float, lon0: float, size: float) -> Polygon:
    """A polygon with 0-2 holes (drawn anywhere near it: the even-odd rule takes any rings)."""
    rings = [draw(star_rings(lat0, lon0, size))]
    for _ in range(draw(st.integers(0, 2))):
        dx, dy = draw(st.floats(-0.5, 0.5)) * size, draw(st.floats(-0.5, 0.5)) * size
        lat, lon = lat0 + dy / M_PER_DEG, lon0 + dx / (M_PER_DEG * math.cos(math.radians(lat0)))
        rings.append(draw(star_rings(lat, lon, size * draw(st.floats(0.05, 0.4)))))
    return _polygon(rings)


@st.composite
def corridors(draw: st.DrawFn, lat0: float, lon0: float, size: float) -> Corridor:
    """A random walk of 2-8 positions (sharp turns and repeated positions included) and a width."""
    n = draw(st.integers(2, 8))
    steps = np.array(draw(st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1)), min_size=n - 1, max_size=n - 1)))
    if draw(st.booleans()):
        steps[draw(st.integers(0, n - 2))] = 0.0  # a repeated position
    walk = np.vstack([[0.0, 0.0], np.cumsum(steps * size / max(1, n - 1), axis=0)])
    width = draw(st.floats(5.0, 600.0))
    try:
        return Corridor.from_geojson(
            {"type": "LineString", "coordinates": offsets(lat0, lon0, *walk.T).tolist()}, width
        )
    except ValueError:  # steps too small to move a position: no length
        assume(False)
        raise


@st.composite
def shapes(draw: st.DrawFn) -> AnyShape:
    lat0, lon0 = draw(centres)
    size = draw(st.floats(30.0, 4000.0))
    kind = draw(st.sampled_from(["polygon", "circle", "corridor", "multipolygon"]))
    if kind == "circle":
        return Circle(lat0, lon0, size)
    if kind == "corridor":
        return draw(corridors(lat0, lon0, size))
    if kind == "polygon":
        return draw(polygons(lat0, lon0, size))
    second = offsets(lat0, lon0, [draw(st.floats(-2, 2)) * size], [draw(st.floats(-2, 2)) * size])[0]
    return MultiPolygon((draw(polygons(lat0, lon0, size)), draw(polygons(float(second[1]), float(second[0]), size))))


def points_around(shape: AnyShape, seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Points in and a little beyond the shape's box, and more of them near its vertices and edges."""
    rng = np.random.default_rng(seed)
    min_lat, min_lon, max_lat, max_lon = shape.bbox()
    dlat, dlon = (max_lat - min_lat) * 0.3 + 1e-4, (max_lon - min_lon) * 0.3 + 1e-4
    lat = rng.uniform(min_lat - dlat, max_lat + dlat, n)
    lon = rng.uniform(min_lon - dlon, max_lon + dlon, n)
    corners = _vertices(shape)
    pick = corners[rng.integers(0, len(corners), n // 3)]
    jitter = rng.normal(0, 1, (len(pick), 2)) * np.array([dlon, dlat]) * 0.05
    near = pick + jitter
    return np.concatenate([lat, near[:, 1], corners[:, 1]]), np.concatenate([lon, near[:, 0], corners[:, 0]])


def _vertices(shape: AnyShape) -> np.ndarray:
    """(n, 2) lon, lat: the shape's vertices, or for a circle its centre and bounding box corners."""
    if isinstance(shape, Polygon):
        return np.concatenate(shape.rings)
    if isinstance(shape, MultiPolygon):
        return np.concatenate([r for p in shape.parts for r in p.rings])
    if isinstance(shape, Corridor):
        return shape.line
    min_lat, min_lon, max_lat, max_lon = shape.bbox()
    return np.array([[shape.lon, shape.lat], [min_lon, min_lat], [max_lon, max_lat], [shape.lon, max_lat]])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(shape=shapes(), resolution=resolutions, seed=st.integers(0, 2**32 - 1))
def test_cover_guarantee(shape: AnyShape, resolution: int, seed: int) -> None:
    interior, boundary = cover(shape, resolution)
    assert interior.dtype == boundary.dtype == np.int64
    assert np.intersect1d(interior, boundary).size == 0
    lat, lon = points_around(shape, seed)
    inside = shape.contains(lat, lon)
    cells = cells_of(lat, lon, resolution)
    in_interior, in_boundary = np.isin(cells, interior), np.isin(cells, boundary)
    assert inside[in_interior].all()
    assert not inside[~in_interior & ~in_boundary].any()


@pytest.mark.parametrize("resolution", [7, 9, 10])
def test_circle_cover_is_tight(resolution: int) -> None:
    """The boundary is a band about the circle, not the whole disc; the interior fills the rest."""
    circle = Circle(22.54, 114.06, 3000.0)
    interior, boundary = cover(circle, resolution)
    area = h3.average_hexagon_area(resolution, "m^2")
    edge = h3.average_hexagon_edge_length(resolution, "m")
    band = 2 * math.pi * circle.radius_m * 6 * edge  # a generous width: three cells each side
    assert len(boundary) * area < band
    disc = math.pi * circle.radius_m**2
    covered = (len(interior) + len(boundary)) * area
    assert covered > 0.9 * disc
    if resolution >= 9:  # cells much smaller than the circle: little spills over
        assert covered < 1.25 * disc
    # Cells around a sample of boundary points are all in the boundary set.
    lat, lon = _circle_edge(circle, 720)
    assert np.isin(cells_of(lat, lon, resolution), boundary).all()


def test_small_shape_is_all_boundary() -> None:
    interior, boundary = cover(Circle(22.54, 114.06, 10.0), 7)
    assert len(interior) == 0 and h3.latlng_to_cell(22.54, 114.06, 7) in boundary.tolist()


def test_corridor_cover_follows_the_line() -> None:
    """A 20 km diagonal corridor 100 m wide: a narrow band of cells, not its bounding box."""
    line = offsets(22.54, 114.06, [0, 14_000, 14_000], [0, 14_000, 0])
    corridor = Corridor.from_geojson({"type": "LineString", "coordinates": line.tolist()}, 100.0)
    interior, boundary = cover(corridor, 9)
    assert len(interior) == 0  # 100 m is narrower than a cell
    box_cells = 14_000 * 14_000 / h3.average_hexagon_area(9, "m^2")
    assert 0 < len(boundary) < box_cells / 5
    lat, lon = corridor.line[:, 1], corridor.line[:, 0]
    assert np.isin(cells_of(lat, lon, 9), boundary).all()


def _circle_edge(circle: Circle, n: int) -> tuple[np.ndarray, np.ndarray]:
    bearing = np.linspace(0, 2 * math.pi, n, endpoint=False)
    lat = circle.lat + circle.radius_m * np.cos(bearing) / M_PER_DEG
    lon = circle.lon + circle.radius_m * np.sin(bearing) / (M_PER_DEG * math.cos(math.radians(circle.lat)))
    return lat, lon
