"""What the rules over fixes need to know of the zones each fix lies in: their kinds and speed limits.

The geofence hands every committed batch on with the applicable zones of each fix as two parallel
arrays (row, zone id). This turns them into per-row answers with numpy: "in a depot?", "in a
construction or disposal site?", "the lowest speed limit of the speed zones it is in".
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from store.zones import KINDS as ZONE_KINDS

_Rows = npt.NDArray[np.intp]
_Ids = npt.NDArray[np.int64]


class Zones(Protocol):
    """The geofence's current zones (replaced as a whole when they change)."""

    zone_kinds: dict[int, str]
    zone_properties: dict[int, dict[str, Any]]


class ZoneFacts:
    """The zones' kinds and speed limits as sorted arrays, rebuilt when the geofence reloads its zones."""

    def __init__(self, zones: Zones) -> None:
        self.zones = zones
        self._of: dict[int, str] | None = None
        self._ids = np.empty(0, np.int64)
        self._kind = np.empty(0, np.int8)
        self._limit = np.empty(0, np.float64)

    def _current(self) -> None:
        if self._of is self.zones.zone_kinds:
            return
        kinds = self._of = self.zones.zone_kinds
        props = self.zones.zone_properties
        ids = sorted(kinds)
        self._ids = np.array(ids, dtype=np.int64)
        self._kind = np.array([ZONE_KINDS.index(kinds[z]) for z in ids], dtype=np.int8)
        self._limit = np.array([_limit(props.get(z, {})) for z in ids], dtype=np.float64)

    def _at(self, zone: _Ids) -> npt.NDArray[np.intp]:
        """Each zone's position in the arrays (zones the geofence holds, so every id is there)."""
        self._current()
        return np.minimum(np.searchsorted(self._ids, zone), max(len(self._ids) - 1, 0))

    def in_kinds(self, n: int, row: _Rows, zone: _Ids, kinds: list[str]) -> npt.NDArray[np.bool_]:
        """For each of n rows: whether it lies in a zone of one of these kinds."""
        out = np.zeros(n, dtype=bool)
        if len(row) and len(self.zones.zone_kinds):
            at = self._at(zone)
            wanted = np.zeros(len(ZONE_KINDS), dtype=bool)
            wanted[[ZONE_KINDS.index(k) for k in kinds if k in ZONE_KINDS]] = True
            hit = wanted[self._kind[at]] & (self._ids[at] == zone)
            out[row[hit]] = True
        return out

    def speed_limit(self, n: int, row: _Rows, zone: _Ids) -> npt.NDArray[np.float64]:
        """For each of n rows: the lowest limit (km/h) of the speed zones it lies in; NaN outside them."""
        out = np.full(n, np.inf)
        if len(row) and len(self.zones.zone_kinds):
            at = self._at(zone)
            ok = (self._ids[at] == zone) & ~np.isnan(self._limit[at])
            np.minimum.at(out, row[ok], self._limit[at][ok])
        out[np.isinf(out)] = np.nan
        return out


def _limit(properties: dict[str, Any]) -> float:
    value = properties.get("speed_limit_kmh")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return float("nan")
