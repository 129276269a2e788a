"""The fixes attendance judges: many phones' fixes over their shifts in one query, and a phone's last fix.

Every shift of a day at once can be a million fixes: they come as numpy columns (store.columns), not
as Python rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import psycopg

from store.columns import Field, fetch, packed

_FIELDS = (
    Field("device_id", "p.device_id", "integer"),
    Field("t_us", "p.fix_time", "timestamptz"),
    Field("lat", "p.lat", "double precision"),
    Field("lon", "p.lon", "double precision"),
)
# The constant bounds let TimescaleDB skip the chunks outside every window (store.columns binds them client side).
_FIXES = f"""SELECT {packed(_FIELDS)}
FROM positions p JOIN unnest(%s::integer[], %s::timestamptz[], %s::timestamptz[]) AS w (device_id, since, until)
  ON p.device_id = w.device_id AND p.fix_time BETWEEN w.since AND w.until
WHERE p.fix_time BETWEEN %s AND %s AND p.valid
ORDER BY p.device_id, p.fix_time"""


@dataclass(frozen=True, slots=True)
class Fixes:
    """Fixes sorted by device, then time (µs since the Unix epoch)."""

    device_id: npt.NDArray[np.int32]
    t_us: npt.NDArray[np.int64]
    lat: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]

    def of(
        self, device_id: int | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """One device's times, latitudes and longitudes (none for no device)."""
        a, b = (0, 0) if device_id is None else np.searchsorted(self.device_id, [device_id, device_id + 1])
        return self.t_us[a:b], self.lat[a:b], self.lon[a:b]


async def fixes(conn: psycopg.AsyncConnection, windows: Mapping[int, tuple[datetime, datetime]]) -> Fixes:
    """The valid fixes of each device from its window's start to its end (both included)."""
    if not windows:
        return Fixes(*(np.empty(0, f.dtype) for f in _FIELDS))
    ids = sorted(windows)
    since, until = [windows[i][0] for i in ids], [windows[i][1] for i in ids]
    return Fixes(**await fetch(conn, _FIXES, (ids, since, until, min(since), max(until)), _FIELDS))


async def last_fix_before(
    conn: psycopg.AsyncConnection, device_id: int, at: datetime
) -> tuple[datetime, float, float] | None:
    """The device's newest valid fix in the day before `at`: its time, latitude and longitude. (Older ones
    say nothing about how fast it moved: a day is time enough to cross any city.)"""
    cur = await conn.execute(
        "SELECT fix_time, lat, lon FROM positions WHERE device_id = %s AND fix_time < %s"
        " AND fix_time > %s - interval '1 day' AND valid ORDER BY fix_time DESC LIMIT 1",
        (device_id, at, at),
    )
    row = await cur.fetchone()
    return None if row is None else (row[0], float(row[1]), float(row[2]))
