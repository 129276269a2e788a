"""Coverage per shift: the fixes it is computed from, its results, and the shifts already computed.

Fixes come out as numpy columns (store.columns): a shift of a whole sanitation fleet is a few hundred
thousand rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from store.columns import Columns, Field, fetch, packed

# The columns of `fixes`, in the order of the result.
_FIXES = (
    Field("device_id", "device_id", "integer"),
    Field("fix_time_us", "fix_time", "timestamptz"),
    Field("lat", "lat", "double precision"),
    Field("lon", "lon", "double precision"),
    Field("speed_kmh", "speed_kmh", "real"),
)
_FIX_QUERY = f"""SELECT {packed(_FIXES)} FROM positions
WHERE device_id = ANY(%s::integer[]) AND fix_time >= %s AND fix_time < %s AND valid
ORDER BY device_id, fix_time"""


async def fixes(conn: psycopg.AsyncConnection, device_ids: Sequence[int], start: datetime, end: datetime) -> Columns:
    """The valid fixes of the devices in [start, end): device_id, fix_time_us, lat, lon, speed_kmh (NaN when not
    reported), sorted by device and fix time."""
    return await fetch(conn, _FIX_QUERY, (list(device_ids), start, end), _FIXES)


@dataclass(frozen=True, slots=True)
class ShiftResult:
    rule_id: int
    device_id: int
    zone_id: int
    shift_start: datetime
    shift_end: datetime
    cells_total: int
    cells_visited: int
    share: float


@dataclass(frozen=True, slots=True)
class StoredResult:
    rule_id: int
    rule_name: str
    device_id: int
    device_uid: str
    org_unit_id: int | None
    zone_id: int
    shift_start: datetime
    shift_end: datetime
    cells_total: int
    cells_visited: int
    share: float
    computed_at: datetime
    alert_id: int | None


async def save(conn: psycopg.AsyncConnection, r: ShiftResult) -> bool:
    """Store a result unless this rule, device, zone and shift have one; whether it was stored now."""
    cur = await conn.execute(
        "INSERT INTO shift_coverage (rule_id, device_id, zone_id, shift_start, shift_end, cells_total,"
        " cells_visited, share) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (r.rule_id, r.device_id, r.zone_id, r.shift_start, r.shift_end, r.cells_total, r.cells_visited, r.share),
    )
    return cur.rowcount > 0


async def set_alert(conn: psycopg.AsyncConnection, r: ShiftResult, alert_id: int) -> None:
    await conn.execute(
        "UPDATE shift_coverage SET alert_id = %s WHERE rule_id = %s AND device_id = %s AND zone_id = %s"
        " AND shift_start = %s",
        (alert_id, r.rule_id, r.device_id, r.zone_id, r.shift_start),
    )


async def mark_computed(
    conn: psycopg.AsyncConnection, rule_id: int, start: datetime, end: datetime, results: int
) -> None:
    await conn.execute(
        "INSERT INTO coverage_shifts (rule_id, shift_start, shift_end, results) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (rule_id, start, end, results),
    )


async def computed_since(conn: psycopg.AsyncConnection, since: datetime) -> set[tuple[int, datetime]]:
    """(rule id, shift start) of the shifts computed that end after `since`."""
    cur = await conn.execute("SELECT rule_id, shift_start FROM coverage_shifts WHERE shift_end > %s", (since,))
    return {(int(rule_id), start) for rule_id, start in await cur.fetchall()}


async def search(
    conn: psycopg.AsyncConnection,
    *,
    unit_ids: Sequence[int] | None,
    with_unitless: bool,
    device_id: int | None = None,
    zone_id: int | None = None,
    rule_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
) -> list[StoredResult]:
    """Results of the devices of the given units (None: all; `with_unitless`: and those without a unit) whose
    shift starts in [since, until), newest shift first."""
    cur = await conn.execute(
        "SELECT c.rule_id, r.name, c.device_id, d.uid, d.org_unit_id, c.zone_id, c.shift_start, c.shift_end,"
        " c.cells_total, c.cells_visited, c.share, c.computed_at, c.alert_id"
        " FROM shift_coverage c JOIN devices d ON d.id = c.device_id JOIN alert_rules r ON r.id = c.rule_id"
        " WHERE (%(units)s::integer[] IS NULL OR d.org_unit_id = ANY(%(units)s)"
        "   OR (%(unitless)s AND d.org_unit_id IS NULL))"
        " AND (%(device)s::integer IS NULL OR c.device_id = %(device)s)"
        " AND (%(zone)s::integer IS NULL OR c.zone_id = %(zone)s)"
        " AND (%(rule)s::integer IS NULL OR c.rule_id = %(rule)s)"
        " AND (%(since)s::timestamptz IS NULL OR c.shift_start >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR c.shift_start < %(until)s)"
        " ORDER BY c.shift_start DESC, c.rule_id, c.device_id, c.zone_id LIMIT %(limit)s",
        {
            "units": None if unit_ids is None else list(unit_ids),
            "unitless": with_unitless,
            "device": device_id,
            "zone": zone_id,
            "rule": rule_id,
            "since": since,
            "until": until,
            "limit": limit,
        },
    )
    return [StoredResult(*row) for row in await cur.fetchall()]
