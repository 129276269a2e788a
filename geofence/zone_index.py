"""Which zones contain each fix of a batch: an H3 cell lookup, exact tests only in boundary cells.

Every zone is covered once, when added (geofence.cover). The covers of all zones become one array
of cells sorted with parallel arrays (zone, boundary or not), rebuilt on the first lookup after a
change. A lookup finds the entries of each fix's cell with two binary searches, keeps the interior
ones as they are and decides the boundary ones with the shapes' own arithmetic, run for all zones
of a kind at once (one numpy pass per kind, not one per zone): with thousands of zones a batch
touches the boundary of thousands of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from geofence.cover import cells_of, cover
from geofence.shapes import AnyShape, Circle, Corridor, MultiPolygon, Polygon, haversine_m, point_segment_d2

_Arr = npt.NDArray[np.float64]
_Idx = npt.NDArray[np.intp]
_Mask = npt.NDArray[np.bool_]
_I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class _Zone:
    shape: AnyShape
    interior: _I64
    boundary: _I64


class ZoneIndex:
    """Zones (Circle, Polygon, MultiPolygon, Corridor) by integer id, at one H3 resolution."""

    def __init__(self, resolution: int = 9) -> None:
        self.resolution = resolution
        self._zones: dict[int, _Zone] = {}
        self._table: _Table | None = None

    def __len__(self) -> int:
        return len(self._zones)

    def __contains__(self, zone_id: int) -> bool:
        return zone_id in self._zones

    def add(self, zone_id: int, shape: AnyShape) -> None:
        """Adds the zone, or replaces the shape of a zone with this id."""
        if not isinstance(shape, Circle | Polygon | MultiPolygon | Corridor):
            raise TypeError(f"not a zone shape: {type(shape).__name__}")
        interior, boundary = cover(shape, self.resolution)
        self._zones[int(zone_id)] = _Zone(shape, interior, boundary)
        self._table = None

    def remove(self, zone_id: int) -> None:
        """KeyError if there is no such zone."""
        del self._zones[int(zone_id)]
        self._table = None

    def containing(
        self, lat: npt.ArrayLike, lon: npt.ArrayLike, cells: npt.ArrayLike | None = None
    ) -> tuple[_Idx, _I64]:
        """Every (point, zone) with the point inside the zone, as its shape's `contains` says: two parallel
        arrays, point index (ascending) and zone id. `cells`, when given, are the points' H3 cells at this
        index's resolution (a batch's h3_cell column), so they need not be computed again."""
        la = np.ascontiguousarray(lat, dtype=np.float64).ravel()
        lo = np.ascontiguousarray(lon, dtype=np.float64).ravel()
        if cells is None:
            c = cells_of(la, lo, self.resolution)
        else:
            c = np.asarray(cells, dtype=np.int64).ravel()
            if len(c) != len(la):
                raise ValueError(f"{len(c)} cells for {len(la)} points")
        if self._table is None:
            self._table = _Table(list(self._zones.items()))
        return self._table.containing(la, lo, c)


class _Table:
    """The covers of all zones as one sorted array of cells, and the zones' shapes as flat arrays."""

    def __init__(self, zones: Sequence[tuple[int, _Zone]]) -> None:
        self.zone_ids = np.array([zid for zid, _ in zones], dtype=np.int64)
        cells = [z.interior for _, z in zones] + [z.boundary for _, z in zones]
        slots = [np.full(len(z.interior), i, np.int32) for i, (_, z) in enumerate(zones)]
        slots += [np.full(len(z.boundary), i, np.int32) for i, (_, z) in enumerate(zones)]
        flags = [np.zeros(len(z.interior), np.bool_) for _, z in zones] + [
            np.ones(len(z.boundary), np.bool_) for _, z in zones
        ]
        all_cells = np.concatenate(cells) if cells else np.zeros(0, np.int64)
        order = np.argsort(all_cells, kind="stable")
        self.cells = all_cells[order]
        self.slot = np.concatenate(slots)[order] if slots else np.zeros(0, np.int32)
        self.boundary = np.concatenate(flags)[order] if flags else np.zeros(0, np.bool_)
        shapes = [z.shape for _, z in zones]
        self.kind = np.array([_kind_index(s) for s in shapes], dtype=np.int8)
        self.circles = _Circles(shapes)
        self.polygons = _Polygons(shapes)
        self.corridors = _Corridors(shapes)

    def containing(self, lat: _Arr, lon: _Arr, cells: _I64) -> tuple[_Idx, _I64]:
        first = np.searchsorted(self.cells, cells, side="left")
        count = np.searchsorted(self.cells, cells, side="right") - first
        total = int(count.sum())
        point = np.repeat(np.arange(len(cells)), count)
        entry = np.arange(total) - np.repeat(np.cumsum(count) - count, count) + np.repeat(first, count)
        slot = self.slot[entry]
        keep = ~self.boundary[entry]
        check = np.flatnonzero(~keep)
        if check.size:
            p, s = point[check], slot[check]
            kind = self.kind[s]
            kernels: tuple[_Circles | _Polygons | _Corridors, ...] = (self.circles, self.polygons, self.corridors)
            for k, kernel in enumerate(kernels):
                of_kind = np.flatnonzero(kind == k)
                if of_kind.size:
                    keep[check[of_kind]] = kernel.contains(s[of_kind], lat[p[of_kind]], lon[p[of_kind]])
        return point[keep], self.zone_ids[slot[keep]]


def _kind_index(shape: AnyShape) -> int:
    """The kernel of the shape, in the order of _Table.containing."""
    return 0 if isinstance(shape, Circle) else 2 if isinstance(shape, Corridor) else 1


def _ranges(counts: npt.NDArray[np.int64], owners: _Idx) -> tuple[_Idx, _Idx]:
    """For owners with `counts[owner]` items stored contiguously from `offsets[owner]`: each (row, item)
    pair, as the row it expands and the item's flat index."""
    offsets = np.cumsum(counts) - counts
    n = counts[owners]
    row = np.repeat(np.arange(len(owners)), n)
    item = np.arange(len(row)) - np.repeat(np.cumsum(n) - n, n) + np.repeat(offsets[owners], n)
    return row, item


class _Circles:
    """Circle.contains for many circles at once: the same bounding box and haversine test."""

    def __init__(self, shapes: Sequence[AnyShape]) -> None:
        n = len(shapes)
        self.lat, self.lon, self.radius = np.zeros(n), np.zeros(n), np.zeros(n)
        self.box = np.zeros((n, 4))
        for i, s in enumerate(shapes):
            if isinstance(s, Circle):
                self.lat[i], self.lon[i], self.radius[i] = s.lat, s.lon, s.radius_m
                self.box[i] = s.bbox()

    def contains(self, slot: _Idx, lat: _Arr, lon: _Arr) -> _Mask:
        inside = _in_boxes(self.box[slot], lat, lon)
        i = np.flatnonzero(inside)
        s = slot[i]
        inside[i] = haversine_m(self.lat[s], self.lon[s], lat[i], lon[i]) <= self.radius[s]
        return inside


class _Polygons:
    """Polygon.contains (and MultiPolygon's: any part) for many polygons at once: each part's bounding box,
    then the parity of the same half-open ray crossings, over every (point, edge of its part) pair."""

    def __init__(self, shapes: Sequence[AnyShape]) -> None:
        parts_of = [(s,) if isinstance(s, Polygon) else s.parts if isinstance(s, MultiPolygon) else () for s in shapes]
        parts = [p for ps in parts_of for p in ps]
        self.part_count = np.array([len(ps) for ps in parts_of], dtype=np.int64)
        self.part_box = np.array([p.bbox() for p in parts], dtype=np.float64).reshape(-1, 4)
        edges = [p._edges for p in parts]
        self.edge_count = np.array([len(e[0]) for e in edges], dtype=np.int64)
        x0, y0, x1, y1 = (np.concatenate([e[k] for e in edges]) if edges else np.zeros(0) for k in range(4))
        self.x0, self.y0 = x0, y0
        self.lo_y, self.hi_y = np.minimum(y0, y1), np.maximum(y0, y1)
        self.slope = (x1 - x0) / (y1 - y0)

    def contains(self, slot: _Idx, lat: _Arr, lon: _Arr) -> _Mask:
        row, part = _ranges(self.part_count, slot)
        near = np.flatnonzero(_in_boxes(self.part_box[part], lat[row], lon[row]))
        row, part = row[near], part[near]
        pair, edge = _ranges(self.edge_count, part)
        y, x = lat[row][pair], lon[row][pair]
        span = (y >= self.lo_y[edge]) & (y < self.hi_y[edge])
        pair, edge, y, x = pair[span], edge[span], y[span], x[span]
        cross = x < self.x0[edge] + (y - self.y0[edge]) * self.slope[edge]
        odd = np.bincount(pair[cross], minlength=len(part)) & 1
        return np.bincount(row[odd.astype(np.bool_)], minlength=len(slot)) > 0


class _Corridors:
    """Corridor.contains for many corridors at once: the same plane, bounding box and segment distances."""

    def __init__(self, shapes: Sequence[AnyShape]) -> None:
        n = len(shapes)
        self.origin = np.zeros((n, 4))
        self.half2 = np.zeros(n)
        self.box = np.zeros((n, 4))
        corridors = [s if isinstance(s, Corridor) else None for s in shapes]
        self.seg_count = np.array([0 if c is None else len(c.segments[0]) for c in corridors], dtype=np.int64)
        segments = [c.segments for c in corridors if c is not None]
        for i, c in enumerate(corridors):
            if c is not None:
                self.origin[i], self.half2[i], self.box[i] = c.origin, c.half2, c.bbox()
        self.seg = [np.concatenate([s[k] for s in segments]) if segments else np.zeros(0) for k in range(5)]

    def contains(self, slot: _Idx, lat: _Arr, lon: _Arr) -> _Mask:
        inside = _in_boxes(self.box[slot], lat, lon)
        i = np.flatnonzero(inside)
        s = slot[i]
        lat0, lon0, kx, ky = self.origin[s].T
        x, y = (lon[i] - lon0) * kx, (lat[i] - lat0) * ky  # Corridor.project, term for term
        row, seg = _ranges(self.seg_count, s)
        ax, ay, dx, dy, inv = (a[seg] for a in self.seg)
        d2 = point_segment_d2(x[row], y[row], ax, ay, dx, dy, inv)
        best = np.minimum.reduceat(d2, np.cumsum(self.seg_count[s]) - self.seg_count[s]) if len(d2) else d2
        inside[i] = best <= self.half2[s]
        return inside


def _in_boxes(box: _Arr, lat: _Arr, lon: _Arr) -> _Mask:
    """Per point, inside its own min_lat, min_lon, max_lat, max_lon box (edges included, as shapes do)."""
    return (lat >= box[:, 0]) & (lat <= box[:, 2]) & (lon >= box[:, 1]) & (lon <= box[:, 3])
