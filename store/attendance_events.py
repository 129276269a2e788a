"""Phones' check-ins and check-outs as they were judged (`attendance_events`), and reading them back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    person_id: int | None
    device_id: int
    kind: str  # "checkin" | "checkout"
    at: datetime
    lat: float
    lon: float
    accuracy_m: float | None
    accepted: bool
    reason: str | None
    mock: bool
    speed_kmh: float | None
    zone_id: int | None
    received_at: datetime


_COLS = (
    "id, person_id, device_id, kind, at, lat, lon, accuracy_m, accepted, reason, mock, speed_kmh, zone_id, received_at"
)


async def record(
    conn: psycopg.AsyncConnection,
    *,
    person_id: int | None,
    device_id: int,
    kind: str,
    at: datetime,
    lat: float,
    lon: float,
    accuracy_m: float | None,
    accepted: bool,
    reason: str | None,
    mock: bool,
    speed_kmh: float | None,
    zone_id: int | None,
) -> Event:
    """Store a judged event; the one stored first when the phone's message came again (its verdict stands)."""
    cur = await conn.execute(
        "INSERT INTO attendance_events (person_id, device_id, kind, at, lat, lon, accuracy_m, accepted, reason, mock,"
        f" speed_kmh, zone_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
        f" RETURNING {_COLS}",
        (person_id, device_id, kind, at, lat, lon, accuracy_m, accepted, reason, mock, speed_kmh, zone_id),
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute(
            f"SELECT {_COLS} FROM attendance_events WHERE device_id = %s AND at = %s AND kind = %s",  # type: ignore[arg-type]
            (device_id, at, kind),
        )
        row = await cur.fetchone()
        assert row is not None
    return Event(*row)


async def of_devices(
    conn: psycopg.AsyncConnection, device_ids: Sequence[int], since: datetime, until: datetime
) -> list[Event]:
    """The events of these phones from `since` to `until` (both included), by device and time."""
    cur = await conn.execute(
        f"SELECT {_COLS} FROM attendance_events WHERE device_id = ANY(%s) AND at BETWEEN %s AND %s"  # type: ignore[arg-type]
        " ORDER BY device_id, at, id",
        (list(device_ids), since, until),
    )
    return [Event(*row) for row in await cur.fetchall()]
