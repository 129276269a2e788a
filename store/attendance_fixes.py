"""The fixes attendance judges: many phones' fixes over their shifts in one binary COPY, and a phone's last fix.

Every shift of a day at once can be a million fixes: they come as numpy columns (one structured array
over the COPY stream), not as Python rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import psycopg

from store.copy_binary import HEADER, PG_EPOCH_US, TRAILER

# One COPY tuple: the field count, then each field's length and value (all NOT NULL, fixed width).
_ROW = np.dtype(
    [("n", ">i2"), ("dl", ">i4"), ("device_id", ">i4"), ("tl", ">i4"), ("t", ">i8"),
     ("al", ">i4"), ("lat", ">f8"), ("ol", ">i4"), ("lon", ">f8")]
)  # fmt: skip
# The constant bounds let TimescaleDB skip the chunks outside every window (COPY binds them client side).
_FIXES = """SELECT p.device_id, p.fix_time, p.lat, p.lon
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
        return _decode(HEADER + TRAILER)
    ids = sorted(windows)
    since, until = [windows[i][0] for i in ids], [windows[i][1] for i in ids]
    chunks: list[bytes] = []
    query = f"COPY ({_FIXES}) TO STDOUT (FORMAT BINARY)"
    async with conn.cursor().copy(query, (ids, since, until, min(since), max(until))) as copy:  # type: ignore[arg-type]
        async for block in copy:
            chunks.append(bytes(block))
    return _decode(b"".join(chunks))


def _decode(data: bytes) -> Fixes:
    if not data.startswith(HEADER[:11]) or data[-2:] != TRAILER:
        raise ValueError("not a whole binary COPY stream")
    start = 19 + int.from_bytes(data[15:19], "big")  # signature, flags, header extension
    rows = np.frombuffer(data[start:-2], dtype=_ROW)
    return Fixes(
        rows["device_id"].astype(np.int32),
        rows["t"].astype(np.int64) + PG_EPOCH_US,
        rows["lat"].astype(np.float64),
        rows["lon"].astype(np.float64),
    )


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
