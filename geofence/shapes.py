"""Shapes a dispatcher draws on the map, and "which of these points are inside", vectorized.

Coordinates are degrees, latitude then longitude in every signature here (GeoJSON input is
lon/lat and is read as such). Polygons are tested in the plane of longitude and latitude, which
is what the map shows at city scale; a polygon that crosses the antimeridian is not supported
(RFC 7946 asks for such shapes to be split).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

import numpy as np
import numpy.typing as npt

from geofence import crs

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
MAX_VERTICES = 10_000
MAX_RADIUS_M = 1_000_000.0  # far beyond a city; keeps the circle's bounding box meaningful

_Arr = npt.NDArray[np.float64]
_Mask = npt.NDArray[np.bool_]
BBox = tuple[float, float, float, float]  # min_lat, min_lon, max_lat, max_lon


class Shape(Protocol):
    def bbox(self) -> BBox: ...

    def contains(self, lat: npt.ArrayLike, lon: npt.ArrayLike) -> _Mask: ...


def haversine_m(lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike, lon2: npt.ArrayLike) -> Any:
    """Great-circle distance in metres on the mean sphere (within 0.5 % of the ellipsoid); broadcasts."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.subtract(lon2, lon1))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(h, 1.0)))


def _in_bbox(box: BBox, lat: _Arr, lon: _Arr) -> _Mask:
    min_lat, min_lon, max_lat, max_lon = box
    return (lat >= min_lat) & (lat <= max_lat) & (lon >= min_lon) & (lon <= max_lon)


def _points(lat: npt.ArrayLike, lon: npt.ArrayLike) -> tuple[_Arr, _Arr]:
    la, lo = np.broadcast_arrays(np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64))
    return la.ravel(), lo.ravel()


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, not {type(value).__name__}")
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(f"{what} must be finite, not {value}")
    return f


def _check_lat_lon(lat: float, lon: float, what: str) -> None:
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"{what}: latitude {lat} is outside -90..90")
    if not -180.0 <= lon <= 180.0:
        raise ValueError(f"{what}: longitude {lon} is outside -180..180")


@dataclass(frozen=True, slots=True)
class Circle:
    lat: float
    lon: float
    radius_m: float

    def __post_init__(self) -> None:
        lat, lon = _number(self.lat, "circle lat"), _number(self.lon, "circle lon")
        r = _number(self.radius_m, "radius_m")
        _check_lat_lon(lat, lon, "circle centre")
        if not 0 < r <= MAX_RADIUS_M:
            raise ValueError(f"radius_m must be above 0 and at most {MAX_RADIUS_M:.0f}, not {r}")
        for name, value in (("lat", lat), ("lon", lon), ("radius_m", r)):
            object.__setattr__(self, name, value)  # ints from JSON become floats

    def bbox(self) -> BBox:
        """The smallest lat/lon box around the circle; the full longitude range if it reaches a pole or the
        antimeridian (a looser box is still a correct prefilter)."""
        d = self.radius_m / EARTH_RADIUS_M
        lat = math.radians(self.lat)
        min_lat, max_lat = lat - d, lat + d
        if min_lat <= -math.pi / 2 or max_lat >= math.pi / 2:
            return max(math.degrees(min_lat), -90.0), -180.0, min(math.degrees(max_lat), 90.0), 180.0
        dlon = math.degrees(math.asin(math.sin(d) / math.cos(lat)))
        if self.lon - dlon < -180.0 or self.lon + dlon > 180.0:
            return math.degrees(min_lat), -180.0, math.degrees(max_lat), 180.0
        return math.degrees(min_lat), self.lon - dlon, math.degrees(max_lat), self.lon + dlon

    def contains(self, lat: npt.ArrayLike, lon: npt.ArrayLike) -> _Mask:
        """Points within `radius_m` of the centre (the boundary included)."""
        la, lo = _points(lat, lon)
        inside = _in_bbox(self.bbox(), la, lo)
        idx = np.flatnonzero(inside)
        inside[idx] = haversine_m(self.lat, self.lon, la[idx], lo[idx]) <= self.radius_m
        return inside


@dataclass(frozen=True, slots=True, eq=False)
class Polygon:
    """A polygon with holes. Build it with `from_geojson`; rings are (n, 2) arrays of lon, lat, closed.

    Inside means the even-odd rule over all rings with half-open edges: a point exactly on an edge
    shared by two adjacent polygons belongs to exactly one of them (the left/bottom edges of an
    axis-aligned square count as inside, the right/top ones as outside).
    """

    rings: tuple[npt.NDArray[np.float64], ...]
    _box: BBox = field(init=False, repr=False, compare=False)
    # Edges of all rings as flat arrays, the ones parallel to a latitude line left out (they never cross a ray).
    _edges: tuple[_Arr, _Arr, _Arr, _Arr] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for ring in self.rings:
            ring.flags.writeable = False  # the edges below are derived from them
        points = np.concatenate(self.rings)
        box = (
            float(points[:, 1].min()),
            float(points[:, 0].min()),
            float(points[:, 1].max()),
            float(points[:, 0].max()),
        )
        object.__setattr__(self, "_box", box)
        x0 = np.concatenate([r[:-1, 0] for r in self.rings])
        y0 = np.concatenate([r[:-1, 1] for r in self.rings])
        x1 = np.concatenate([r[1:, 0] for r in self.rings])
        y1 = np.concatenate([r[1:, 1] for r in self.rings])
        keep = y0 != y1
        object.__setattr__(self, "_edges", (x0[keep], y0[keep], x1[keep], y1[keep]))

    @classmethod
    def from_geojson(cls, geometry: Any) -> Polygon:
        """A GeoJSON Polygon geometry: {"type": "Polygon", "coordinates": [outer ring, hole, ...]}.

        Strict RFC 7946 reading: a ring must be closed (first position equal to the last) and have at
        least 4 positions; an unclosed ring is refused rather than closed silently, so a client bug
        shows up instead of being guessed at. Holes are not checked to lie inside the outer ring: the
        even-odd rule applies to whatever rings are given.
        """
        if not isinstance(geometry, Mapping):
            raise ValueError(f"polygon must be a GeoJSON geometry object, not {type(geometry).__name__}")
        if geometry.get("type") != "Polygon":
            raise ValueError(f"polygon geometry type must be 'Polygon', not {geometry.get('type')!r}")
        coords = geometry.get("coordinates")
        if not isinstance(coords, Sequence) or isinstance(coords, str) or not coords:
            raise ValueError("polygon coordinates must be a non-empty list of rings")
        total = sum(len(ring) for ring in coords if isinstance(ring, Sequence))
        if total > MAX_VERTICES:
            raise ValueError(f"polygon has {total} positions, more than the limit of {MAX_VERTICES}")
        return cls(tuple(_ring(ring, i) for i, ring in enumerate(coords)))

    def bbox(self) -> BBox:
        return self._box

    def contains(self, lat: npt.ArrayLike, lon: npt.ArrayLike) -> _Mask:
        la, lo = _points(lat, lon)
        inside = _in_bbox(self._box, la, lo)
        idx = np.flatnonzero(inside)
        if idx.size:
            inside[idx] = self._even_odd(la[idx], lo[idx])
        return inside

    def _even_odd(self, lat: _Arr, lon: _Arr) -> _Mask:
        # Points sorted by latitude: an edge can only be crossed by the ray of a point whose latitude
        # is in the edge's half-open latitude span, a contiguous run of the sorted points.
        order = np.argsort(lat, kind="stable")
        ys, xs = lat[order], lon[order]
        parity = np.zeros(len(ys), dtype=np.bool_)
        x0, y0, x1, y1 = self._edges
        lo_y, hi_y = np.minimum(y0, y1), np.maximum(y0, y1)
        starts = np.searchsorted(ys, lo_y, side="left")
        stops = np.searchsorted(ys, hi_y, side="left")
        slope = (x1 - x0) / (y1 - y0)
        for e in np.flatnonzero(stops > starts):
            a, b = starts[e], stops[e]
            cross = xs[a:b] < x0[e] + (ys[a:b] - y0[e]) * slope[e]
            parity[a:b] ^= cross
        result = np.empty_like(parity)
        result[order] = parity
        return result


def _ring(ring: Any, index: int) -> npt.NDArray[np.float64]:
    what = "outer ring" if index == 0 else f"hole {index}"
    if not isinstance(ring, Sequence) or isinstance(ring, str):
        raise ValueError(f"{what} must be a list of positions")
    if len(ring) < 4:
        raise ValueError(f"{what} has {len(ring)} positions; a ring needs at least 4 (closed, 3 corners)")
    points = np.empty((len(ring), 2), dtype=np.float64)
    for i, pos in enumerate(ring):
        if not isinstance(pos, Sequence) or isinstance(pos, str) or not 2 <= len(pos) <= 3:
            raise ValueError(f"{what}, position {i}: expected [lon, lat] (optionally with altitude)")
        lon, lat = _number(pos[0], f"{what}, position {i}, lon"), _number(pos[1], f"{what}, position {i}, lat")
        _check_lat_lon(lat, lon, f"{what}, position {i}")
        points[i] = lon, lat
    if not np.array_equal(points[0], points[-1]):
        raise ValueError(f"{what} is not closed: its first position {ring[0]} differs from its last {ring[-1]}")
    x, y = points[:, 0], points[:, 1]
    if np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]) == 0:  # twice the signed area (shoelace)
        raise ValueError(f"{what} has no area (its corners are on one line)")
    return points


@dataclass(frozen=True, slots=True, eq=False)
class MultiPolygon:
    """Polygons taken together: inside means inside any of them (each by its own even-odd rule)."""

    parts: tuple[Polygon, ...]
    _box: BBox = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError("a multipolygon needs at least one polygon")
        boxes = np.array([p.bbox() for p in self.parts])
        box = (float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max()))
        object.__setattr__(self, "_box", box)

    @classmethod
    def from_geojson(cls, geometry: Any) -> MultiPolygon:
        """A GeoJSON MultiPolygon: {"type": "MultiPolygon", "coordinates": [polygon, ...]}, each polygon
        read as strictly as `Polygon.from_geojson` reads one; MAX_VERTICES counts all of them together."""
        if not isinstance(geometry, Mapping):
            raise ValueError(f"multipolygon must be a GeoJSON geometry object, not {type(geometry).__name__}")
        if geometry.get("type") != "MultiPolygon":
            raise ValueError(f"multipolygon geometry type must be 'MultiPolygon', not {geometry.get('type')!r}")
        coords = geometry.get("coordinates")
        if not isinstance(coords, Sequence) or isinstance(coords, str) or not coords:
            raise ValueError("multipolygon coordinates must be a non-empty list of polygons")
        total = sum(len(r) for p in coords if _is_list(p) for r in p if _is_list(r))
        if total > MAX_VERTICES:
            raise ValueError(f"multipolygon has {total} positions, more than the limit of {MAX_VERTICES}")
        parts = []
        for i, poly in enumerate(coords):
            try:
                parts.append(Polygon.from_geojson({"type": "Polygon", "coordinates": poly}))
            except ValueError as e:
                raise ValueError(f"polygon {i}: {e}") from None
        return cls(tuple(parts))

    def bbox(self) -> BBox:
        return self._box

    def contains(self, lat: npt.ArrayLike, lon: npt.ArrayLike) -> _Mask:
        la, lo = _points(lat, lon)
        inside = np.zeros(len(la), dtype=np.bool_)
        for part in self.parts:
            inside |= part.contains(la, lo)
        return inside


def point_segment_d2(px: Any, py: Any, ax: Any, ay: Any, dx: Any, dy: Any, inv_len2: Any) -> Any:
    """Squared distance from points (px, py) to segments from (ax, ay) along (dx, dy), in a plane; inv_len2 is
    1 / (dx² + dy²), or 0 for a segment of no length. Broadcasts; Corridor and the zone index share it, so
    they agree to the last bit."""
    t = np.clip(((px - ax) * dx + (py - ay) * dy) * inv_len2, 0.0, 1.0)
    ex, ey = px - (ax + t * dx), py - (ay + t * dy)
    return ex * ex + ey * ey


@dataclass(frozen=True, slots=True, eq=False)
class Corridor:
    """A route corridor: the points within width_m / 2 of a polyline (round ends and joins).

    Distances are measured in a local equirectangular plane centred on the line's bounding box
    (metres east and north): at city scale it is within a fraction of a percent of the true distance.
    `line` is an (n, 2) array of lon, lat.
    """

    line: npt.NDArray[np.float64]
    width_m: float
    origin: tuple[float, float, float, float] = field(init=False, repr=False, compare=False)  # lat0, lon0, kx, ky
    # Segments in the plane: start x, start y, dx, dy, 1 / length² (0 for a repeated position).
    segments: tuple[_Arr, _Arr, _Arr, _Arr, _Arr] = field(init=False, repr=False, compare=False)
    half2: float = field(init=False, repr=False, compare=False)
    _box: BBox = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        w = _number(self.width_m, "width_m")
        if not 0 < w <= MAX_RADIUS_M:
            raise ValueError(f"width_m must be above 0 and at most {MAX_RADIUS_M:.0f}, not {w}")
        object.__setattr__(self, "width_m", w)
        self.line.flags.writeable = False
        lon, lat = self.line[:, 0], self.line[:, 1]
        lat0, lon0 = (float(lat.min()) + float(lat.max())) / 2, (float(lon.min()) + float(lon.max())) / 2
        ky = EARTH_RADIUS_M * math.pi / 180.0
        kx = ky * math.cos(math.radians(lat0))
        object.__setattr__(self, "origin", (lat0, lon0, kx, ky))
        x, y = self.project(lat, lon)
        dx, dy = np.diff(x), np.diff(y)
        len2 = dx * dx + dy * dy
        inv = np.divide(1.0, len2, out=np.zeros_like(len2), where=len2 > 0)
        object.__setattr__(self, "segments", (x[:-1], y[:-1], dx, dy, inv))
        half = w / 2
        object.__setattr__(self, "half2", half * half)
        # Exact in the plane: a point farther than `half` from the line's box along either axis is outside.
        box = (
            float(lat.min()) - half / ky,
            float(lon.min()) - half / kx,
            float(lat.max()) + half / ky,
            float(lon.max()) + half / kx,
        )
        object.__setattr__(self, "_box", box)

    @classmethod
    def from_geojson(cls, geometry: Any, width_m: Any) -> Corridor:
        """A GeoJSON LineString of at least 2 positions, not all the same, and the corridor's width."""
        if not isinstance(geometry, Mapping):
            raise ValueError(f"corridor line must be a GeoJSON geometry object, not {type(geometry).__name__}")
        if geometry.get("type") != "LineString":
            raise ValueError(f"corridor line geometry type must be 'LineString', not {geometry.get('type')!r}")
        coords = geometry.get("coordinates")
        if not _is_list(coords) or len(coords) < 2:
            raise ValueError("corridor line coordinates must be a list of at least 2 positions")
        if len(coords) > MAX_VERTICES:
            raise ValueError(f"corridor line has {len(coords)} positions, more than the limit of {MAX_VERTICES}")
        points = _positions(coords, "corridor line")
        if (points == points[0]).all():
            raise ValueError("corridor line has no length (all its positions are the same)")
        return cls(points, width_m)

    def project(self, lat: Any, lon: Any) -> tuple[Any, Any]:
        """Metres east and north of the origin in the corridor's plane."""
        lat0, lon0, kx, ky = self.origin
        return (lon - lon0) * kx, (lat - lat0) * ky

    def bbox(self) -> BBox:
        return self._box

    def contains(self, lat: npt.ArrayLike, lon: npt.ArrayLike) -> _Mask:
        """Points within width_m / 2 of the line (the boundary included)."""
        la, lo = _points(lat, lon)
        inside = _in_bbox(self._box, la, lo)
        idx = np.flatnonzero(inside)
        if idx.size:
            x, y = self.project(la[idx], lo[idx])
            best = np.full(idx.size, np.inf)
            for ax, ay, dx, dy, inv in zip(*self.segments, strict=True):
                np.minimum(best, point_segment_d2(x, y, ax, ay, dx, dy, inv), out=best)
            inside[idx] = best <= self.half2
        return inside


def _is_list(value: Any) -> TypeGuard[Sequence[Any]]:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _positions(coords: Sequence[Any], what: str) -> npt.NDArray[np.float64]:
    points = np.empty((len(coords), 2), dtype=np.float64)
    for i, pos in enumerate(coords):
        if not _is_list(pos) or not 2 <= len(pos) <= 3:
            raise ValueError(f"{what}, position {i}: expected [lon, lat] (optionally with altitude)")
        lon, lat = _number(pos[0], f"{what}, position {i}, lon"), _number(pos[1], f"{what}, position {i}, lat")
        _check_lat_lon(lat, lon, f"{what}, position {i}")
        points[i] = lon, lat
    return points


AnyShape = Circle | Polygon | MultiPolygon | Corridor
SHAPE_KINDS = ("circle", "polygon", "multipolygon", "corridor")


def from_json(obj: Any, crs_name: str = "wgs84") -> AnyShape:
    """{"circle": {"lat", "lon", "radius_m"}}, {"polygon": GeoJSON Polygon}, {"multipolygon": GeoJSON
    MultiPolygon} or {"corridor": {"line": GeoJSON LineString, "width_m"}}, read in `crs_name` and
    converted to WGS-84 (the vertices one by one: the offsets vary over kilometres, not metres)."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"shape must be an object, not {type(obj).__name__}")
    kinds = [k for k in SHAPE_KINDS if k in obj]
    if len(kinds) != 1:
        raise ValueError("shape must have exactly one of 'circle', 'polygon', 'multipolygon' or 'corridor'")
    if crs_name not in crs.NAMES:
        raise ValueError(f"unknown coordinate system {crs_name!r}: expected one of {', '.join(crs.NAMES)}")
    if kinds[0] == "circle":
        spec = obj["circle"]
        if not isinstance(spec, Mapping):
            raise ValueError("circle must be an object with lat, lon and radius_m")
        missing = [k for k in ("lat", "lon", "radius_m") if k not in spec]
        if missing:
            raise ValueError(f"circle lacks {', '.join(missing)}")
        circle = Circle(spec["lat"], spec["lon"], spec["radius_m"])
        if crs_name == "wgs84":
            return circle
        lat, lon = crs.convert(circle.lat, circle.lon, crs_name, "wgs84")
        return Circle(lat, lon, circle.radius_m)
    if kinds[0] == "corridor":
        spec = obj["corridor"]
        if not isinstance(spec, Mapping) or "line" not in spec or "width_m" not in spec:
            raise ValueError("corridor must be an object with line (a GeoJSON LineString) and width_m")
        corridor = Corridor.from_geojson(spec["line"], spec["width_m"])
        return corridor if crs_name == "wgs84" else Corridor(_to_wgs84(corridor.line, crs_name), corridor.width_m)
    if kinds[0] == "multipolygon":
        multi = MultiPolygon.from_geojson(obj["multipolygon"])
        if crs_name == "wgs84":
            return multi
        return MultiPolygon(tuple(Polygon(tuple(_to_wgs84(r, crs_name) for r in p.rings)) for p in multi.parts))
    polygon = Polygon.from_geojson(obj["polygon"])
    if crs_name == "wgs84":
        return polygon
    return Polygon(tuple(_to_wgs84(ring, crs_name) for ring in polygon.rings))


def _to_wgs84(points: npt.NDArray[np.float64], crs_name: str) -> npt.NDArray[np.float64]:
    lats, lons = crs.convert(points[:, 1], points[:, 0], crs_name, "wgs84")
    return np.column_stack([lons, lats])
