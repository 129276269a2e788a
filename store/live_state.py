"""The saved live state (`device_latest`), the catch-up from positions after it, and the device catalog.

Columns move as numpy arrays both ways: in by binary COPY, out through store.columns. 100,000
devices are a few megabytes and take well under a second, where a row at a time would take many.
Times are microseconds since the Unix epoch (UTC); a missing time is -1 and a missing number NaN,
in and out (store.columns' conventions): the SQL turns them into NULL on the way in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import psycopg

from store.columns import Columns, Field, fetch, packed
from store.copy_binary import HEADER, TRAILER

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The columns of load_latest (and newest_fixes, positions_since), in the order of the result.
_LATEST = (
    Field("device_id", "device_id", "integer"),
    Field("fix_time_us", "fix_time", "timestamptz"),
    Field("lat", "lat", "double precision"),
    Field("lon", "lon", "double precision"),
    Field("speed_kmh", "speed_kmh", "real"),
    Field("course", "course", "real"),
    Field("last_seen_us", "last_seen", "timestamptz"),
)
# save_latest's columns in COPY order, as (name, big-endian type): those of the staging table below.
_SAVE = (
    ("device_id", ">i4"),
    ("fix_time_us", ">i8"),
    ("lat", ">f8"),
    ("lon", ">f8"),
    ("speed_kmh", ">f4"),
    ("course", ">f4"),
    ("last_seen_us", ">i8"),
)


def _ts(column: str) -> str:
    """Microseconds since the Unix epoch as a timestamptz, NULL for a negative value."""
    return f"CASE WHEN {column} >= 0 THEN timestamptz 'epoch' + {column} * interval '1 microsecond' END"


def _encode(cols: Columns) -> bytes:
    """The columns as binary COPY tuples of non-NULL fixed-width fields: field count, then length + value each."""
    parts: list[tuple[str, str]] = [("count", ">i2")]
    for name, wire in _SAVE:
        parts += [(f"{name}_len", ">i4"), (name, wire)]
    rows = np.empty(len(cols["device_id"]), dtype=np.dtype(parts))
    rows["count"] = len(_SAVE)
    for name, wire in _SAVE:
        rows[f"{name}_len"] = np.dtype(wire).itemsize
        rows[name] = cols[name]
    return HEADER + rows.tobytes() + TRAILER


_STAGE = """CREATE TEMP TABLE device_latest_in (
    device_id integer, fix_time_us bigint, lat double precision, lon double precision,
    speed_kmh real, course real, last_seen_us bigint) ON COMMIT DROP"""
_COPY_IN = "COPY device_latest_in FROM STDIN (FORMAT BINARY)"
_POSITION = ("fix_time", "lat", "lon", "speed_kmh", "course")
# The position moves only to a newer fix and last_seen only forward, so a save never undoes a newer
# one (another process, an older snapshot); a row where neither is newer is not written at all.
_NEWER_FIX = "excluded.fix_time > coalesce(d.fix_time, '-infinity')"
_UPSERT = f"""
INSERT INTO device_latest AS d (device_id, fix_time, lat, lon, speed_kmh, course, last_seen)
SELECT device_id, {_ts("fix_time_us")}, NULLIF(lat, 'NaN'), NULLIF(lon, 'NaN'),
       NULLIF(speed_kmh, 'NaN'), NULLIF(course, 'NaN'), {_ts("last_seen_us")}
FROM device_latest_in
ON CONFLICT (device_id) DO UPDATE SET
    {", ".join(f"{c} = CASE WHEN {_NEWER_FIX} THEN excluded.{c} ELSE d.{c} END" for c in _POSITION)},
    last_seen = GREATEST(d.last_seen, excluded.last_seen),
    saved_at = now()
WHERE {_NEWER_FIX} OR excluded.last_seen > coalesce(d.last_seen, '-infinity')
"""


async def save_latest(
    conn: psycopg.AsyncConnection,
    device_id: npt.NDArray[np.int32],
    fix_time_us: npt.NDArray[np.int64],
    lat: npt.NDArray[np.float64],
    lon: npt.NDArray[np.float64],
    speed_kmh: npt.NDArray[np.float32],
    course: npt.NDArray[np.float32],
    last_seen_us: npt.NDArray[np.int64],
) -> int:
    """Upsert the live state in one transaction of its own; the number of rows written.

    Devices with neither a fix nor a last-seen time are skipped. Device ids must be unique.
    """
    cols: Columns = {
        "device_id": np.asarray(device_id),
        "fix_time_us": np.asarray(fix_time_us),
        "lat": np.asarray(lat),
        "lon": np.asarray(lon),
        "speed_kmh": np.asarray(speed_kmh),
        "course": np.asarray(course),
        "last_seen_us": np.asarray(last_seen_us),
    }
    if len({len(v) for v in cols.values()}) != 1:
        raise ValueError("save_latest: the columns differ in length")
    if len(np.unique(cols["device_id"])) != len(cols["device_id"]):
        raise ValueError("save_latest: a device id appears more than once")
    keep = (cols["fix_time_us"] >= 0) | (cols["last_seen_us"] >= 0)
    cols = {k: v[keep] for k, v in cols.items()}
    if not keep.any():
        return 0
    async with conn.transaction():
        await conn.execute(_STAGE)
        async with conn.cursor().copy(_COPY_IN) as copy:
            await copy.write(_encode(cols))
        cur = await conn.execute(_UPSERT)  # type: ignore[arg-type]
        return cur.rowcount


_LOAD = f"SELECT {packed(_LATEST)} FROM device_latest ORDER BY device_id"


async def load_latest(conn: psycopg.AsyncConnection) -> Columns:
    """The saved state: device_id, fix_time_us, lat, lon, speed_kmh, course, last_seen_us, sorted by device."""
    return await fetch(conn, _LOAD, (), _LATEST)


# One index probe per device (newest first, LIMIT 1: TimescaleDB stops at the newest chunk holding a row),
# rather than a scan of the whole history for the newest row of each device.
_NEWEST_FIX = (
    Field("device_id", "d.id", "integer"),
    *(f._replace(sql=f"p.{f.sql}") for f in _LATEST[1:-1]),
    Field("last_seen_us", "p.receive_time", "timestamptz"),
)
_NEWEST = f"""SELECT {packed(_NEWEST_FIX)}
FROM devices d CROSS JOIN LATERAL (
    SELECT fix_time, lat, lon, speed_kmh, course, receive_time FROM positions
    WHERE device_id = d.id ORDER BY fix_time DESC LIMIT 1
) p ORDER BY d.id"""


async def newest_fixes(conn: psycopg.AsyncConnection) -> Columns:
    """Each device's newest stored fix, in the form of load_latest (last_seen_us: when it was received): the
    state to start from when none was saved (a first start on a database loaded with history)."""
    return await fetch(conn, _NEWEST, (), _NEWEST_FIX)


# positions is a hypertable partitioned on fix_time with no index on receive_time: a filter on
# receive_time alone would read every chunk of the retention period. The fix-time bound lets
# TimescaleDB exclude all chunks but the newest one or two (store.columns binds it client-side, a
# plan-time constant); those are still read whole, which a restart pays once and which is cheaper
# than indexing receive_time on every stored row. The bound only drops rows received after the
# save whose fix is older than the lookback, i.e. late backfill, which cannot be a device's newest
# fix once it has reported live again (and the next live report sets the state anyway).
_SINCE = (*_LATEST[:-1], Field("receive_time_us", "max(receive_time) OVER (PARTITION BY device_id)", "timestamptz"))
_SINCE_QUERY = f"""SELECT DISTINCT ON (device_id) {packed(_SINCE)}
FROM positions
WHERE receive_time > %s AND fix_time > %s
ORDER BY device_id, fix_time DESC"""


async def positions_since(
    conn: psycopg.AsyncConnection, receive_time_us: int, *, fix_lookback: timedelta = timedelta(hours=1)
) -> Columns:
    """Per device, its newest fix among the rows received after `receive_time_us` whose fix time is
    within `fix_lookback` before it, with the newest receive time of those rows: device_id, fix_time_us,
    lat, lon, speed_kmh, course, receive_time_us (the arguments of LiveState.apply).

    After load_latest, start at its newest last_seen_us minus the longest time from receiving a report
    to committing it (a minute is ample): every row received before that was committed, and so in the
    saved state, when it was taken. The overlap costs nothing, as applying a fix twice changes nothing.
    """
    since = _EPOCH + timedelta(microseconds=receive_time_us)
    return await fetch(conn, _SINCE_QUERY, (since, since - fix_lookback), _SINCE)


class CatalogDevice(NamedTuple):
    id: int
    uid: str
    kind: str
    name: str
    plate: str | None
    org_unit_id: int | None
    protocol: str | None
    enabled: bool


async def device_catalog(conn: psycopg.AsyncConnection, changed_after: datetime | None = None) -> list[CatalogDevice]:
    """Every device (disabled ones too, marked so), by id; or those changed after a time."""
    cur = await conn.execute(
        "SELECT id, uid, kind::text, name, plate, org_unit_id, protocol::text, enabled FROM devices"
        " WHERE %s::timestamptz IS NULL OR updated_at > %s ORDER BY id",
        (changed_after, changed_after),
    )
    return [CatalogDevice(*row) for row in await cur.fetchall()]
