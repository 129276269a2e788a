"""H3 cover of a shape: the cells wholly inside it, and the cells its boundary may pass through.

`cover(shape, resolution)` returns (interior, boundary), disjoint sorted int64 arrays, with this
guarantee for every point p, its cell c = latlng_to_cell(p, resolution) and `shape.contains`:

- c in interior -> p is inside;
- c in neither  -> p is outside;
- c in boundary -> either; only these points need the exact test.

Why it holds. The boundary of the shape (polygon rings, the circle, the corridor's offset lines
and end circles) is sampled at a spacing s of a quarter of the average cell edge, so every boundary
point lies within s/2 of a sample. A sample's neighbourhood of radius s/2 cannot reach beyond the
cell it lies in and that cell's neighbours (H3 hexagon edges are never shorter than about 0.7 of
the average edge, far more than s/2), so only those cells are candidates. A candidate is a boundary
cell when its centre is within its circumradius (the farthest vertex, with a margin) plus s/2 of a
sample: every cell that holds a boundary point passes this test, by the triangle inequality.
A cell holding no boundary point is connected and the shape's inside test cannot change within it,
so it is wholly inside or wholly outside, as its centre is. Interior cells are those cells whose
centre is inside the shape, found among the cells whose centre lies in the shape's (slightly
enlarged) bounding boxes.

Shapes near a pole or crossing the antimeridian are not supported (see geofence.shapes).
"""

from __future__ import annotations

import math

import h3.api.basic_int as h3
import numpy as np
import numpy.typing as npt

from geofence.shapes import EARTH_RADIUS_M, AnyShape, BBox, Circle, Corridor, MultiPolygon, Polygon, haversine_m

_Arr = npt.NDArray[np.float64]
Cells = npt.NDArray[np.int64]

_M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0
_RADIUS_MARGIN = 1.01  # on a cell's circumradius: rounding, and H3's slightly different sphere


def cover(shape: AnyShape, resolution: int) -> tuple[Cells, Cells]:
    """(interior, boundary) cells of `shape` at `resolution`; see the module docstring for the guarantee."""
    edge_m = h3.average_hexagon_edge_length(resolution, "m")
    spacing = edge_m / 4
    lat, lon = _boundary_samples(shape, spacing)
    boundary = _boundary_cells(lat, lon, spacing, resolution)
    interior = _interior_cells(shape, boundary, resolution, edge_m)
    return interior, boundary


def cells_of(lat: _Arr, lon: _Arr, resolution: int) -> Cells:
    """The H3 cell of each point (one call per point: h3 has no vectorized form)."""
    cell = h3.latlng_to_cell
    return np.fromiter(
        (cell(a, b, resolution) for a, b in zip(lat.tolist(), lon.tolist(), strict=True)), np.int64, len(lat)
    )


def _boundary_samples(shape: AnyShape, spacing: float) -> tuple[_Arr, _Arr]:
    """Points on (for a corridor: on a superset of) the shape's boundary, at most `spacing` metres apart."""
    if isinstance(shape, Circle):
        n = max(8, math.ceil(2 * math.pi * shape.radius_m / spacing))
        return _circle_points(shape.lat, shape.lon, shape.radius_m, n)
    if isinstance(shape, Polygon):
        return _polygon_samples(shape, spacing)
    if isinstance(shape, MultiPolygon):
        parts = [_polygon_samples(p, spacing) for p in shape.parts]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return _corridor_samples(shape, spacing)


def _circle_points(lat: float, lon: float, radius_m: float, n: int) -> tuple[_Arr, _Arr]:
    """n points at `radius_m` from the centre on the sphere, evenly spaced in bearing (the direct problem)."""
    p, lam, d = math.radians(lat), math.radians(lon), radius_m / EARTH_RADIUS_M
    b = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    p2 = np.arcsin(math.sin(p) * math.cos(d) + math.cos(p) * math.sin(d) * np.cos(b))
    lam2 = lam + np.arctan2(np.sin(b) * math.sin(d) * math.cos(p), math.cos(d) - math.sin(p) * np.sin(p2))
    return np.degrees(p2), np.degrees(lam2)


def _polygon_samples(polygon: Polygon, spacing: float) -> tuple[_Arr, _Arr]:
    ring = np.concatenate([np.column_stack([r[:-1], r[1:]]) for r in polygon.rings])  # x0, y0, x1, y1 per edge
    return segment_samples(ring[:, 1], ring[:, 0], ring[:, 3], ring[:, 2], spacing)


def segment_samples(lat0: _Arr, lon0: _Arr, lat1: _Arr, lon1: _Arr, spacing: float) -> tuple[_Arr, _Arr]:
    """Points along straight lon/lat segments. A segment's length is bounded above with the longest metre
    per degree of longitude over its span (the cosine at the latitude nearest the equator), so the true
    spacing is never more than asked."""
    cos_max = np.cos(np.radians(np.where(lat0 * lat1 <= 0, 0.0, np.minimum(np.abs(lat0), np.abs(lat1)))))
    length = np.hypot((lon1 - lon0) * cos_max, lat1 - lat0) * _M_PER_DEG
    return _along(lat0, lon0, lat1, lon1, length / spacing)


def _along(a0: _Arr, b0: _Arr, a1: _Arr, b1: _Arr, pieces: _Arr) -> tuple[_Arr, _Arr]:
    """Points evenly spaced along straight segments (a, b coordinates), both ends included, each segment
    cut into at least `pieces` pieces."""
    n = np.maximum(1, np.ceil(pieces)).astype(np.int64)
    seg = np.repeat(np.arange(len(n)), n)
    t = (np.arange(len(seg)) - np.repeat(np.cumsum(n) - n, n)) / n[seg]
    a = np.concatenate([a0[seg] + t * (a1 - a0)[seg], a1])
    b = np.concatenate([b0[seg] + t * (b1 - b0)[seg], b1])
    return a, b


def _corridor_samples(corridor: Corridor, spacing: float) -> tuple[_Arr, _Arr]:
    """The corridor is the union of one capsule per segment, so its boundary lies on the capsules'
    boundaries: both offset lines of every segment and a full circle around every vertex."""
    lat0, lon0, kx, ky = corridor.origin
    # Plane metres to true metres: east-west distances grow by up to cos(lat) / cos(lat0) away from lat0.
    min_lat, _, max_lat, _ = corridor.bbox()
    nearest_equator = 0.0 if min_lat * max_lat <= 0 else min(abs(min_lat), abs(max_lat))
    step = spacing * math.cos(math.radians(lat0)) / math.cos(math.radians(nearest_equator))
    half = corridor.width_m / 2
    ax, ay, dx, dy, _ = corridor.segments
    length = np.hypot(dx, dy)
    keep = length > 0
    ax, ay, dx, dy, length = ax[keep], ay[keep], dx[keep], dy[keep], length[keep]
    nx, ny = -dy / length * half, dx / length * half  # the left normal, half the width long
    xs: list[_Arr] = []
    ys: list[_Arr] = []
    for sx, sy in ((ax + nx, ay + ny), (ax - nx, ay - ny)):
        x, y = _along(sx, sy, sx + dx, sy + dy, length / step)
        xs.append(x)
        ys.append(y)
    n = max(8, math.ceil(2 * math.pi * half / step))
    angle = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    vx, vy = corridor.project(corridor.line[:, 1], corridor.line[:, 0])
    xs.append((vx[:, None] + half * np.cos(angle)).ravel())
    ys.append((vy[:, None] + half * np.sin(angle)).ravel())
    x, y = np.concatenate(xs), np.concatenate(ys)
    return lat0 + y / ky, lon0 + x / kx


def _boundary_cells(lat: _Arr, lon: _Arr, spacing: float, resolution: int) -> Cells:
    """The cells within reach of the samples (see the module docstring)."""
    seeds, seed_of = np.unique(cells_of(lat, lon, resolution), return_inverse=True)
    disks = [h3.grid_disk(int(c), 1) for c in seeds.tolist()]
    sizes = np.array([len(d) for d in disks], dtype=np.int64)
    near, near_of = np.unique(
        np.fromiter((c for d in disks for c in d), np.int64, int(sizes.sum())), return_inverse=True
    )
    c_lat, c_lon, radius = _centres_and_radii(near)
    # Every (sample, cell of its seed's disk) pair.
    starts = np.cumsum(sizes) - sizes
    per_sample = sizes[seed_of]
    sample = np.repeat(np.arange(len(lat)), per_sample)
    slot = np.arange(len(sample)) - np.repeat(np.cumsum(per_sample) - per_sample, per_sample) + starts[seed_of][sample]
    cell = near_of[slot]
    reach = haversine_m(lat[sample], lon[sample], c_lat[cell], c_lon[cell]) <= radius[cell] + spacing / 2
    return near[np.unique(cell[reach])]


def _centres_and_radii(cells: Cells) -> tuple[_Arr, _Arr, _Arr]:
    """Each cell's centre and the distance from it to its farthest vertex, with a margin, in metres."""
    centres = np.array([h3.cell_to_latlng(c) for c in cells.tolist()], dtype=np.float64).reshape(-1, 2)
    rings = [h3.cell_to_boundary(c) for c in cells.tolist()]
    sizes = np.array([len(r) for r in rings], dtype=np.int64)
    vertices = np.array([v for r in rings for v in r], dtype=np.float64).reshape(-1, 2)
    owner = np.repeat(np.arange(len(cells)), sizes)
    d = haversine_m(centres[owner, 0], centres[owner, 1], vertices[:, 0], vertices[:, 1])
    radius = np.maximum.reduceat(d, np.cumsum(sizes) - sizes) if len(d) else np.zeros(0)
    return centres[:, 0], centres[:, 1], radius * _RADIUS_MARGIN + 0.01


def _interior_cells(shape: AnyShape, boundary: Cells, resolution: int, edge_m: float) -> Cells:
    """Cells off the boundary whose centre is inside, among the cells whose centre is in a candidate box."""
    found: list[Cells] = []
    for box in _boxes(shape):
        cells = h3.h3shape_to_cells(h3.LatLngPoly(_corners(_grow(box, edge_m))), resolution)
        found.append(np.array(cells, dtype=np.int64))
    candidates = np.setdiff1d(np.unique(np.concatenate(found)), boundary, assume_unique=True)
    if not len(candidates):
        return candidates
    centres = np.array([h3.cell_to_latlng(c) for c in candidates.tolist()], dtype=np.float64).reshape(-1, 2)
    return candidates[shape.contains(centres[:, 0], centres[:, 1])]


def _boxes(shape: AnyShape) -> list[BBox]:
    """Boxes that together hold every inside point: one per part, and one per segment of a corridor."""
    if isinstance(shape, MultiPolygon):
        return [p.bbox() for p in shape.parts]
    if not isinstance(shape, Corridor):
        return [shape.bbox()]
    _, _, kx, ky = shape.origin
    half = shape.width_m / 2
    lon, lat = shape.line[:, 0], shape.line[:, 1]
    lo_lat, hi_lat = np.minimum(lat[:-1], lat[1:]) - half / ky, np.maximum(lat[:-1], lat[1:]) + half / ky
    lo_lon, hi_lon = np.minimum(lon[:-1], lon[1:]) - half / kx, np.maximum(lon[:-1], lon[1:]) + half / kx
    return list(zip(lo_lat.tolist(), lo_lon.tolist(), hi_lat.tolist(), hi_lon.tolist(), strict=True))


def _grow(box: BBox, edge_m: float) -> BBox:
    """The box made larger by two cell edges and a percent of its size: H3 fills the box with planar
    tests on its corners' edges while the earth is round, and a centre on the box's edge must be found."""
    min_lat, min_lon, max_lat, max_lon = box
    span_m = math.hypot(max_lat - min_lat, max_lon - min_lon) * _M_PER_DEG
    margin = (2 * edge_m + 0.01 * span_m) / _M_PER_DEG
    widest = max(abs(min_lat), abs(max_lat)) + margin
    margin_lon = margin / max(math.cos(math.radians(min(widest, 89.0))), 1e-6)
    return (
        max(min_lat - margin, -90.0),
        max(min_lon - margin_lon, -180.0),
        min(max_lat + margin, 90.0),
        min(max_lon + margin_lon, 180.0),
    )


def _corners(box: BBox) -> list[tuple[float, float]]:
    min_lat, min_lon, max_lat, max_lon = box
    return [(min_lat, min_lon), (min_lat, max_lon), (max_lat, max_lon), (max_lat, min_lon)]
