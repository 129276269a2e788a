"""Circles and polygons: inside or not, vectorized, with the edge cases of ray casting and holes."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from geofence import crs
from geofence.shapes import EARTH_RADIUS_M, MAX_VERTICES, Circle, Polygon, from_json, haversine_m


def _geojson(*rings: list[tuple[float, float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[list(p) for p in ring] for ring in rings]}


def _square(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]


def _destination(lat: float, lon: float, bearing_deg: float, dist_m: float) -> tuple[float, float]:
    """The point at a distance and bearing on the sphere (the direct geodesic problem)."""
    p, lam, b, d = math.radians(lat), math.radians(lon), math.radians(bearing_deg), dist_m / EARTH_RADIUS_M
    p2 = math.asin(math.sin(p) * math.cos(d) + math.cos(p) * math.sin(d) * math.cos(b))
    lam2 = lam + math.atan2(math.sin(b) * math.sin(d) * math.cos(p), math.cos(d) - math.sin(p) * math.sin(p2))
    return math.degrees(p2), (math.degrees(lam2) + 540.0) % 360.0 - 180.0


def _reference_even_odd(rings: list[np.ndarray], lat: float, lon: float) -> bool:
    """One point at a time, the textbook loop, with the same half-open rule."""
    inside = False
    for ring in rings:
        for (x0, y0), (x1, y1) in itertools.pairwise(ring):
            if (y0 > lat) != (y1 > lat) and lon < x0 + (lat - y0) * (x1 - x0) / (y1 - y0):
                inside = not inside
    return inside


def test_haversine() -> None:
    assert haversine_m(0.0, 0.0, 1.0, 0.0) == pytest.approx(EARTH_RADIUS_M * math.pi / 180, rel=1e-12)
    assert haversine_m(39.9042, 116.4074, 31.2304, 121.4737) == pytest.approx(1_067_000, rel=0.005)  # Beijing-Shanghai
    assert haversine_m(10.0, 179.9, 10.0, -179.9) == pytest.approx(haversine_m(10.0, 0.0, 10.0, 0.2), rel=1e-9)
    d = haversine_m(22.5, 114.0, np.array([22.5, 22.6]), np.array([114.0, 114.0]))
    assert d.shape == (2,) and d[0] == 0 and d[1] == pytest.approx(11_119.5, rel=1e-4)
    assert haversine_m(0.0, 0.0, 0.0, 180.0) == pytest.approx(math.pi * EARTH_RADIUS_M)


@pytest.mark.parametrize("centre", [(22.54, 114.05), (60.0, 10.0), (-33.9, 151.2)])
def test_circle_boundary_in_every_direction(centre: tuple[float, float]) -> None:
    circle = Circle(*centre, 2000)
    bearings = np.arange(0, 360, 15)
    near = np.array([_destination(*centre, b, 1999.0) for b in bearings.tolist()])
    far = np.array([_destination(*centre, b, 2001.0) for b in bearings.tolist()])
    assert circle.contains(near[:, 0], near[:, 1]).all()
    assert not circle.contains(far[:, 0], far[:, 1]).any()
    min_lat, min_lon, max_lat, max_lon = circle.bbox()
    edge = np.array([_destination(*centre, b, 2000.0) for b in np.arange(0, 360, 1.0).tolist()])
    assert (edge[:, 0] >= min_lat).all() and (edge[:, 0] <= max_lat).all()
    assert (edge[:, 1] >= min_lon).all() and (edge[:, 1] <= max_lon).all()
    assert max_lat - min_lat == pytest.approx(edge[:, 0].max() - edge[:, 0].min(), rel=1e-3)  # and it is tight
    assert max_lon - min_lon == pytest.approx(edge[:, 1].max() - edge[:, 1].min(), rel=1e-3)


def test_circle_across_the_antimeridian_and_at_a_pole() -> None:
    circle = Circle(10.0, 179.99, 5000)
    assert circle.bbox()[1] == -180.0 and circle.bbox()[3] == 180.0
    assert circle.contains([10.0, 10.0, 10.0], [-179.99, 179.95, -179.9]).tolist() == [True, True, False]
    polar = Circle(89.99, 0.0, 5000)
    assert polar.bbox()[1:] == (-180.0, 90.0, 180.0)
    assert polar.contains([89.99], [179.0]).tolist() == [True]


def test_circle_shapes_of_input() -> None:
    circle = Circle(22.5, 114, 100)
    assert circle.lon == 114.0 and isinstance(circle.lon, float)
    assert circle.contains(22.5, 114.0).tolist() == [True]
    assert circle.contains(np.array([]), np.array([])).shape == (0,)
    assert circle.contains(np.array([22.5, np.nan]), np.array([114.0, np.nan])).tolist() == [True, False]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((22.5, 114.0, 0), "radius_m must be above 0"),
        ((22.5, 114.0, -5), "radius_m must be above 0"),
        ((22.5, 114.0, 2e6), "at most"),
        ((22.5, 114.0, float("nan")), "finite"),
        ((91.0, 114.0, 10), "latitude 91.0"),
        ((22.5, 181.0, 10), "longitude 181.0"),
        ((True, 114.0, 10), "circle lat must be a number"),
        (("22.5", 114.0, 10), "circle lat must be a number"),
    ],
)
def test_circle_validation(args: tuple[Any, Any, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Circle(*args)


def test_polygon_with_hole() -> None:
    poly = Polygon.from_geojson(_geojson(_square(114.0, 22.0, 115.0, 23.0), _square(114.4, 22.4, 114.6, 22.6)))
    assert poly.bbox() == (22.0, 114.0, 23.0, 115.0)
    lat = np.array([22.5, 22.2, 22.5, 22.5, 23.5, 22.41, 22.39])
    lon = np.array([114.5, 114.2, 114.9, 115.5, 114.5, 114.41, 114.41])
    assert poly.contains(lat, lon).tolist() == [False, True, True, False, False, False, True]


def test_concave_polygon_and_rays_through_vertices() -> None:
    # A "U": the notch between the arms is outside although it is inside the bounding box.
    u = Polygon.from_geojson(_geojson([(0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3), (0, 0)]))
    assert u.contains([2.0, 0.5, 2.0, 2.0], [1.5, 1.5, 0.5, 2.5]).tolist() == [False, True, True, True]
    # A diamond: points level with the left and right corners, where the ray passes through a vertex.
    diamond = Polygon.from_geojson(_geojson([(0, 1), (1, 0), (2, 1), (1, 2), (0, 1)]))
    lon = np.array([-0.5, 0.5, 1.0, 1.5, 2.5, 1.0, 1.0])
    lat = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.99, 2.01])
    assert diamond.contains(lat, lon).tolist() == [False, True, True, True, False, True, False]


def test_shared_edges_belong_to_exactly_one_polygon() -> None:
    tiles = [Polygon.from_geojson(_geojson(_square(x, y, x + 1, y + 1))) for x in (0, 1) for y in (0, 1)]
    pts = np.array([(x, y) for x in np.linspace(0.25, 1.75, 7) for y in np.linspace(0.25, 1.75, 7)])
    pts = np.vstack([pts, [[1.0, 1.0], [1.0, 0.5], [0.5, 1.0]]])
    hits = np.array([t.contains(pts[:, 1], pts[:, 0]) for t in tiles]).sum(axis=0)
    assert (hits == 1).all()


def test_matches_a_point_by_point_reference() -> None:
    rng = np.random.default_rng(3)
    for n in (3, 12, 60):
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radius = rng.uniform(0.2, 1.0, n)  # a star-shaped, generally concave polygon
        ring = np.column_stack([114.0 + radius * np.cos(angles), 22.5 + radius * np.sin(angles)])
        hole = np.array([[114.0, 22.45], [114.05, 22.5], [114.0, 22.55], [113.95, 22.5]])
        rings = [np.vstack([ring, ring[:1]]), np.vstack([hole, hole[:1]])]
        poly = Polygon.from_geojson({"type": "Polygon", "coordinates": [r.tolist() for r in rings]})
        lat, lon = rng.uniform(21.4, 23.6, 2000), rng.uniform(112.9, 115.1, 2000)
        k = min(n, 50)
        lat[:k], lon[:k] = ring[:k, 1], ring[:k, 0]  # on a vertex exactly
        lat[k : 2 * k] = ring[:k, 1]  # level with a vertex
        got = poly.contains(lat, lon)
        want = [_reference_even_odd(rings, float(a), float(b)) for a, b in zip(lat, lon, strict=True)]
        assert got.tolist() == want
        assert 0 < got.sum() < len(got)


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        ([[0, 0]], "must be a GeoJSON geometry object"),
        ({"type": "MultiPolygon", "coordinates": []}, "'MultiPolygon'"),
        ({"type": "Polygon", "coordinates": []}, "non-empty list of rings"),
        ({"type": "Polygon"}, "non-empty list of rings"),
        (_geojson([(0, 0), (1, 0), (0, 0)]), "outer ring has 3 positions; a ring needs at least 4"),
        (_geojson([(0, 0), (1, 0), (1, 1), (0, 1)]), "outer ring is not closed"),
        (_geojson(_square(0, 0, 1, 1), [(0.2, 0.2), (0.3, 0.2), (0.3, 0.3), (0.2, 0.2), (0.1, 0.1)]), "hole 1 is not"),
        (_geojson([(0, 0), (1, 0), (float("nan"), 1), (0, 0)]), "position 2, lon must be finite"),
        (_geojson([(0, 0), (1, 0), (float("inf"), 1), (0, 0)]), "must be finite"),
        (_geojson([(0, 0), (200, 0), (1, 1), (0, 0)]), "position 1: longitude 200"),
        (_geojson([(0, 0), (1, 95), (1, 1), (0, 0)]), "position 1: latitude 95"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1], [1, 1], [0, 0]]]}, r"position 1: expected \[lon, lat\]"),
        ({"type": "Polygon", "coordinates": [[[0, 0], ["1", 0], [1, 1], [0, 0]]]}, "lon must be a number"),
        ({"type": "Polygon", "coordinates": ["abcd"]}, "outer ring must be a list of positions"),
        (_geojson([(0, 0), (1, 1), (2, 2), (0, 0)]), "outer ring has no area"),
    ],
)
def test_polygon_validation(geometry: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Polygon.from_geojson(geometry)


def test_polygon_vertex_limit() -> None:
    angles = np.linspace(0, 2 * np.pi, MAX_VERTICES, endpoint=False)
    ring = np.column_stack([114 + 0.1 * np.cos(angles), 22.5 + 0.1 * np.sin(angles)]).tolist()
    with pytest.raises(ValueError, match=f"10001 positions, more than the limit of {MAX_VERTICES}"):
        Polygon.from_geojson({"type": "Polygon", "coordinates": [[*ring, ring[0]]]})
    big = Polygon.from_geojson({"type": "Polygon", "coordinates": [[*ring[:-1], ring[0]]]})
    assert big.contains([22.5, 22.5, 22.5], [114.0, 114.0999, 114.1001]).tolist() == [True, True, False]


def test_from_json() -> None:
    circle = from_json({"circle": {"lat": 22.5, "lon": 114, "radius_m": 500}})
    assert circle == Circle(22.5, 114.0, 500.0)
    poly = from_json({"polygon": _geojson(_square(114.0, 22.0, 115.0, 23.0))})
    assert isinstance(poly, Polygon) and poly.contains([22.5], [114.5]).tolist() == [True]
    for bad, message in [
        ([], "shape must be an object"),
        ({}, "exactly one of"),
        ({"circle": {}, "polygon": {}}, "exactly one of"),
        ({"circle": {"lat": 1, "lon": 2}}, "circle lacks radius_m"),
        ({"circle": [1, 2, 3]}, "circle must be an object"),
    ]:
        with pytest.raises(ValueError, match=message):
            from_json(bad)
    with pytest.raises(ValueError, match="'utm'"):
        from_json({"circle": {"lat": 22.5, "lon": 114, "radius_m": 500}}, "utm")


def test_from_json_reads_other_coordinate_systems() -> None:
    wgs = (22.5431, 114.0579)
    gcj = crs.wgs84_to_gcj02(*wgs)
    circle = from_json({"circle": {"lat": gcj[0], "lon": gcj[1], "radius_m": 50}}, "gcj02")
    assert isinstance(circle, Circle) and haversine_m(circle.lat, circle.lon, *wgs) < 0.01
    assert circle.contains([wgs[0]], [wgs[1]]).tolist() == [True]
    assert not Circle(gcj[0], gcj[1], 50).contains([wgs[0]], [wgs[1]]).any()  # read as WGS-84 it misses
    # A small square drawn on a Baidu map around the point: it holds the WGS-84 point once converted.
    bd = crs.wgs84_to_bd09(*wgs)
    square = _square(bd[1] - 0.0005, bd[0] - 0.0005, bd[1] + 0.0005, bd[0] + 0.0005)
    poly = from_json({"polygon": _geojson(square)}, "bd09")
    assert poly.contains([wgs[0]], [wgs[1]]).tolist() == [True]
    assert not from_json({"polygon": _geojson(square)}).contains([wgs[0]], [wgs[1]]).any()
