"""Who was inside a shape between two times: the H3 cells to read, the exact test of the fixes read, and
the visits they make. Sans-I/O (numpy and h3).

The store indexes every fix by its H3 cell at the configured resolution (`positions_cell_time`), so a
shape becomes the cells that cover it (geofence.cover): a fix in an interior cell is inside, a fix in a
boundary cell is inside when the shape's exact test says so, and a fix in any other cell is outside and
is never read.

A visit is a run of one device's inside fixes with no gap longer than `max_gap_s` between two of them.
Only fixes in the cover are read, so the fixes just before and after a visit (outside the shape) are
not known: `entered` is the time of the first fix inside and `left` the time of the last fix inside.
The device crossed the boundary somewhere between its previous fix and `entered`, and between `left`
and its next fix. A device that goes out and comes back within `max_gap_s` makes one visit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import h3.api.basic_int as h3
import numpy as np
import numpy.typing as npt

from geofence.cover import cover
from geofence.shapes import EARTH_RADIUS_M, AnyShape

Cells = npt.NDArray[np.int64]
_Arr = npt.NDArray[np.float64]
_Mask = npt.NDArray[np.bool_]

DEFAULT_MAX_GAP_S = 300.0
# About 5,000 km² at resolution 9: a whole city. Past it the cover alone takes seconds and the fixes
# of a week in it would not fit in memory.
MAX_CELLS = 50_000
_M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0


@dataclass(frozen=True, slots=True, eq=False)
class Area:
    """A shape with its H3 cover at one resolution: the cells to read, and the test of what is read."""

    shape: AnyShape
    resolution: int
    interior: Cells  # wholly inside
    boundary: Cells  # partly inside: their fixes need the exact test

    @classmethod
    def of(cls, shape: AnyShape, resolution: int, max_cells: int = MAX_CELLS) -> Area:
        """ValueError when the shape's bounding box holds more than about `max_cells` cells."""
        cell_m2 = h3.average_hexagon_area(resolution, "m^2")
        if _bbox_m2(shape) / cell_m2 > max_cells:
            raise ValueError(
                f"the shape is too large: its bounding box may cover at most {max_cells * cell_m2 / 1e6:.0f} km²"
            )
        interior, boundary = cover(shape, resolution)
        return cls(shape, resolution, interior, boundary)

    @property
    def cells(self) -> Cells:
        return np.concatenate([self.interior, self.boundary])

    def inside(self, lat: _Arr, lon: _Arr, cell: Cells) -> _Mask:
        """Which of these fixes (their cell at `resolution` given) are inside the shape."""
        keep = np.isin(cell, self.interior)
        edge = np.flatnonzero(np.isin(cell, self.boundary))
        if edge.size:
            keep[edge] = self.shape.contains(lat[edge], lon[edge])
        return keep


def _bbox_m2(shape: AnyShape) -> float:
    min_lat, min_lon, max_lat, max_lon = shape.bbox()
    widest = math.cos(math.radians(0.0 if min_lat <= 0 <= max_lat else min(abs(min_lat), abs(max_lat))))
    return (max_lat - min_lat) * _M_PER_DEG * (max_lon - min_lon) * _M_PER_DEG * widest


@dataclass(frozen=True, slots=True)
class Visit:
    device_id: int
    entered_us: int  # the first fix inside, microseconds since the Unix epoch
    left_us: int  # the last fix inside
    fixes: int
    first: int  # row of the first and last fix inside, in the arrays given to `visits`
    last: int


def visits(device_id: npt.NDArray[np.integer], fix_time_us: npt.NDArray[np.int64], max_gap_s: float) -> list[Visit]:
    """The visits made by these inside fixes (of any devices, in any order), by device and then time."""
    n = len(device_id)
    if not n:
        return []
    order = np.lexsort((fix_time_us, device_id))
    d, t = device_id[order], fix_time_us[order]
    starts_visit = np.ones(n, dtype=np.bool_)
    starts_visit[1:] = (d[1:] != d[:-1]) | (np.diff(t) > max_gap_s * 1e6)
    starts = np.flatnonzero(starts_visit)
    ends = np.append(starts[1:], n) - 1
    return [
        Visit(int(d[s]), int(t[s]), int(t[e]), int(e - s + 1), int(order[s]), int(order[e]))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
    ]
