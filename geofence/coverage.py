"""Coverage of a zone by one vehicle: the share of the zone's H3 cells it visited at working speed.

Sans-I/O (numpy and h3). `route_cells` turns a zone into the cells that make it up at one resolution;
`visited_cells` turns a vehicle's fixes into the cells it worked in; `measure` compares the two.

- A corridor (a sanitation route) is its centreline: the cells the line passes through, found by
  sampling it at a quarter of the cell edge (the samples of geofence.cover, so nothing is skipped).
- An area (polygon, multipolygon, circle: a patrol's duty grid) is the cells wholly inside it plus the
  boundary cells whose centre, or a point halfway from the centre to one of the corners, is inside: a
  sliver of a cell at the edge is left out, since no vehicle can be expected to be seen in it.
- A vehicle visits the cells within `tolerance_m` of its working path: its working fixes (speed
  within the bounds) and the straight line between two consecutive fixes that are both working, close
  enough in time, and not farther apart than the working speed allows (a GPS jump or a fast stretch in
  between is no work). The tolerance is the GPS error: a centreline crosses some cells only at a
  corner, and without it a sweeper that drove the whole route with fixes 6 m off (an ordinary error)
  misses those cells and scores about 0.93, now and then under 0.87; with 10 m it scores 1.
"""

from __future__ import annotations

from typing import NamedTuple

import h3.api.basic_int as h3
import numpy as np
import numpy.typing as npt

from geofence.cover import cells_of, cover, segment_samples
from geofence.shapes import EARTH_RADIUS_M, AnyShape, Corridor, haversine_m

Cells = npt.NDArray[np.int64]

# With no upper working speed, the speed above which the line between two fixes is not taken as driven.
PATH_CEILING_KMH = 120.0
# The average speed between two fixes may exceed the working speed by this factor (speed varies between
# reports), plus GPS_SLACK_M of position error, before the line between them stops counting.
SPEED_SLACK = 1.5
GPS_SLACK_M = 20.0
_M_PER_DEG = EARTH_RADIUS_M * np.pi / 180.0
_RING = np.radians(np.arange(0, 360, 60))  # the bearings of the points around a fix


class Coverage(NamedTuple):
    total: int  # cells of the route
    visited: int  # of those, cells visited
    share: float  # visited / total


def route_cells(shape: AnyShape, resolution: int) -> Cells:
    """The sorted cells that make up a zone at `resolution` (see the module docstring)."""
    spacing = h3.average_hexagon_edge_length(resolution, "m") / 4
    if isinstance(shape, Corridor):
        lon, lat = shape.line[:, 0], shape.line[:, 1]
        s_lat, s_lon = segment_samples(lat[:-1], lon[:-1], lat[1:], lon[1:], spacing)
        return np.unique(cells_of(s_lat, s_lon, resolution))
    interior, boundary = cover(shape, resolution)
    return np.union1d(interior, boundary[_partly_inside(shape, boundary)])


def _partly_inside(shape: AnyShape, cells: Cells) -> npt.NDArray[np.bool_]:
    """Per cell: its centre or a point halfway from the centre to one of its corners is inside the shape."""
    lat: list[float] = []
    lon: list[float] = []
    owner: list[int] = []
    for i, cell in enumerate(cells.tolist()):
        c_lat, c_lon = h3.cell_to_latlng(cell)
        corners = h3.cell_to_boundary(cell)
        lat += [c_lat] + [(c_lat + v_lat) / 2 for v_lat, _ in corners]
        lon += [c_lon] + [(c_lon + v_lon) / 2 for _, v_lon in corners]
        owner += [i] * (len(corners) + 1)
    inside = shape.contains(np.array(lat, dtype=np.float64), np.array(lon, dtype=np.float64))
    return np.bincount(np.array(owner, dtype=np.intp)[inside], minlength=len(cells)) > 0


def working(speed_kmh: npt.ArrayLike, min_speed: float = 0.0, max_speed: float | None = 15.0) -> npt.NDArray[np.bool_]:
    """Fixes at working speed: at least `min_speed` and at most `max_speed` (None: no upper bound). A fix
    without a speed (NaN) counts only when neither bound applies."""
    v = np.asarray(speed_kmh, dtype=np.float64)
    ok = np.ones(v.shape, dtype=np.bool_)
    if min_speed > 0:
        ok &= v >= min_speed
    if max_speed is not None:
        ok &= v <= max_speed
    return ok


def visited_cells(
    lat: npt.ArrayLike,
    lon: npt.ArrayLike,
    fix_time_us: npt.ArrayLike,
    speed_kmh: npt.ArrayLike,
    resolution: int,
    min_speed: float = 0.0,
    max_speed: float | None = 15.0,
    max_gap_s: float = 120.0,
    tolerance_m: float = 10.0,
) -> Cells:
    """The sorted cells one vehicle worked in, from its fixes in any order (see the module docstring)."""
    t = np.asarray(fix_time_us, dtype=np.int64)
    order = np.argsort(t, kind="stable")
    t = t[order]
    la = np.asarray(lat, dtype=np.float64)[order]
    lo = np.asarray(lon, dtype=np.float64)[order]
    ok = working(np.asarray(speed_kmh, dtype=np.float64)[order], min_speed, max_speed)
    # Each working fix and the points `tolerance_m` around it (the ends of the lines below included).
    r = tolerance_m / _M_PER_DEG
    w_lat, w_lon = la[ok][:, None], lo[ok][:, None]
    lats = [w_lat.ravel(), (w_lat + r * np.cos(_RING)).ravel()]
    lons = [w_lon.ravel(), (w_lon + r / np.cos(np.radians(w_lat)) * np.sin(_RING)).ravel()]
    if len(t) > 1:
        dt_s = np.diff(t) / 1e6
        distance = haversine_m(la[:-1], lo[:-1], la[1:], lo[1:])
        ceiling_ms = (PATH_CEILING_KMH if max_speed is None else max_speed) / 3.6 * SPEED_SLACK
        joined = ok[:-1] & ok[1:] & (dt_s > 0) & (dt_s <= max_gap_s) & (distance <= ceiling_ms * dt_s + GPS_SLACK_M)
        a = np.flatnonzero(joined)
        if len(a):
            # The line between the fixes and its two parallels `tolerance_m` to the left and right, sampled
            # as densely as a route's centreline.
            lat0, lon0, lat1, lon1 = la[a], lo[a], la[a + 1], lo[a + 1]
            kx = np.cos(np.radians(lat0))
            dx, dy = (lon1 - lon0) * kx, lat1 - lat0
            length = np.hypot(dx, dy)
            length[length == 0] = np.inf  # standing still: the line is a point, and so are its parallels
            n_lat, n_lon = dx / length * r, -dy / length * r / kx
            spacing = h3.average_hexagon_edge_length(resolution, "m") / 4
            for side in (0.0, 1.0, -1.0):
                s_lat, s_lon = segment_samples(
                    lat0 + side * n_lat, lon0 + side * n_lon, lat1 + side * n_lat, lon1 + side * n_lon, spacing
                )
                lats.append(s_lat)
                lons.append(s_lon)
    return np.unique(cells_of(np.concatenate(lats), np.concatenate(lons), resolution))


def measure(route: Cells, visited: Cells) -> Coverage:
    """How much of `route` (not empty) the `visited` cells cover; both sorted and unique, as returned above."""
    if not len(route):
        raise ValueError("a route of no cells has no coverage")
    hit = len(np.intersect1d(route, visited, assume_unique=True))
    return Coverage(len(route), hit, hit / len(route))
