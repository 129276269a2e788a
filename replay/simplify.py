"""Fewer points for display: Douglas-Peucker in metres, by a tolerance or to a point count.

Douglas-Peucker keeps a point when it lies farther than the tolerance from the chord of the piece
it is in, splitting there and going on in both halves. Run once to the bottom, it gives every point
an importance: the largest tolerance at which it would still be kept (its own distance, capped by
the importance of the split that made its piece). Then "tolerance t" is the points of importance
above t, and "N points" is the N most important: the same points Douglas-Peucker keeps at the
tolerance that yields N, with no search over tolerances.

The recursion is run level by level: every piece of one level is measured in one vectorized step,
so the Python work grows with the depth of the split tree (tens of levels for a day of driving),
not with the number of points. Distances are to the chord as a segment (a loop that returns to its
start is measured from the start point), in the local plane of `replay.geo.local_xy`.

Points passed in `keep` are always kept (the caller passes stop arrivals and departures); `turns`
finds another kind worth keeping. Kept points split the track before anything is measured, so the
rest is simplified between them. With `points=N` the answer has more than N points only when the
kept ones alone are more.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from replay.geo import local_xy

_Arr = npt.NDArray[np.float64]
_Mask = npt.NDArray[np.bool_]
_Index = npt.NDArray[np.intp]

_FLOOR_M = 0.01  # a piece whose points all lie within a centimetre of its chord is not split further
TURN_DEG = 60.0
TURN_LEG_M = 20.0


def importance(x: _Arr, y: _Arr, keep: _Mask | None = None) -> _Arr:
    """For each point, the largest tolerance (metres) at which Douglas-Peucker keeps it; infinite for
    the first, the last and the `keep` points."""
    n = len(x)
    imp = np.zeros(n)
    if n == 0:
        return imp
    anchor = np.zeros(n, dtype=bool) if keep is None else keep.copy()
    anchor[[0, -1]] = True
    imp[anchor] = np.inf
    bounds = np.flatnonzero(anchor)
    starts, ends, caps = bounds[:-1], bounds[1:], np.full(len(bounds) - 1, np.inf)
    while True:
        inner = ends - starts - 1
        more = inner > 0
        starts, ends, caps, inner = starts[more], ends[more], caps[more], inner[more]
        if not len(starts):
            return imp
        # The inner points of every piece, piece after piece, and the piece each belongs to.
        piece = np.repeat(np.arange(len(starts)), inner)
        offsets = np.concatenate(([0], np.cumsum(inner)[:-1]))
        idx = starts[piece] + 1 + (np.arange(len(piece)) - offsets[piece])
        d = _to_segment(x[idx], y[idx], x[starts][piece], y[starts][piece], x[ends][piece], y[ends][piece])
        dmax = np.maximum.reduceat(d, offsets)
        at_max = np.flatnonzero(d == dmax[piece])
        first = at_max[np.unique(piece[at_max], return_index=True)[1]]  # the first farthest point of each piece
        split = idx[first]
        value = np.minimum(dmax, caps)
        imp[split] = value
        flat = dmax < _FLOOR_M  # below the floor: each point's own distance ranks it, no more splits
        if flat.any():
            in_flat = flat[piece]
            imp[idx[in_flat]] = np.minimum(d[in_flat], caps[piece[in_flat]])
        go = ~flat
        starts, ends = np.concatenate((starts[go], split[go])), np.concatenate((split[go], ends[go]))
        caps = np.concatenate((value[go], value[go]))


def simplify(
    lat: npt.ArrayLike,
    lon: npt.ArrayLike,
    *,
    tolerance_m: float | None = None,
    points: int | None = None,
    keep: _Mask | None = None,
) -> _Index:
    """Indices (ascending) of the points to show: those Douglas-Peucker keeps at `tolerance_m`, or
    the `points` most important ones; the first, last and `keep` points always."""
    if (tolerance_m is None) == (points is None):
        raise ValueError("simplify by a tolerance or to a number of points, one of the two")
    x, y = local_xy(lat, lon)
    n = len(x)
    if points is not None and points >= n:
        return np.arange(n)
    imp = importance(x, y, keep)
    if tolerance_m is not None:
        return np.flatnonzero(imp > tolerance_m)
    assert points is not None
    wanted = max(points, int(np.isinf(imp).sum()))
    return np.sort(np.argsort(-imp, kind="stable")[:wanted])


def turns(lat: npt.ArrayLike, lon: npt.ArrayLike, *, min_deg: float = TURN_DEG, min_leg_m: float = TURN_LEG_M) -> _Mask:
    """Points where the heading changes by more than `min_deg` between the leg in and the leg out.

    The heading comes from the positions, not the reported course (missing on some terminals, and
    noise when slow); legs shorter than `min_leg_m` (jitter at a standstill) are not judged.
    """
    x, y = local_xy(lat, lon)
    out = np.zeros(len(x), dtype=bool)
    if len(x) < 3:
        return out
    dx, dy = np.diff(x), np.diff(y)
    heading = np.degrees(np.arctan2(dy, dx))
    change = np.abs((np.diff(heading) + 180.0) % 360.0 - 180.0)
    long_legs = np.hypot(dx, dy) >= min_leg_m
    out[1:-1] = (change > min_deg) & long_legs[:-1] & long_legs[1:]
    return out


def _to_segment(px: _Arr, py: _Arr, ax: _Arr, ay: _Arr, bx: _Arr, by: _Arr) -> _Arr:
    """Distance of each point p to its segment a-b."""
    dx, dy = bx - ax, by - ay
    len2 = dx * dx + dy * dy
    t = np.divide((px - ax) * dx + (py - ay) * dy, len2, out=np.zeros_like(len2), where=len2 > 0)
    t = np.clip(t, 0.0, 1.0)
    return np.asarray(np.hypot(px - (ax + t * dx), py - (ay + t * dy)), dtype=np.float64)
