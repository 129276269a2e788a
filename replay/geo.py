"""Distances for replay: great-circle steps along a track, and a local plane in metres."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from geofence.shapes import EARTH_RADIUS_M, haversine_m

_Arr = npt.NDArray[np.float64]
_M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0


def steps_m(lat: npt.ArrayLike, lon: npt.ArrayLike) -> _Arr:
    """Great-circle distance from each fix to the next (one fewer than the fixes)."""
    la, lo = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    return np.asarray(haversine_m(la[:-1], lo[:-1], la[1:], lo[1:]), dtype=np.float64)


def local_xy(lat: npt.ArrayLike, lon: npt.ArrayLike) -> tuple[_Arr, _Arr]:
    """Metres east and north of the track's middle, on the plane tangent there (equirectangular).

    At city scale (tens of kilometres) distances in this plane are within a fraction of a percent
    of the great circle: plenty for a stop radius or a display tolerance.
    """
    la, lo = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    if not len(la):
        return la.copy(), lo.copy()
    lat0 = (float(la.min()) + float(la.max())) / 2
    lon0 = (float(lo.min()) + float(lo.max())) / 2
    return (lo - lon0) * (_M_PER_DEG * math.cos(math.radians(lat0))), (la - lat0) * _M_PER_DEG
