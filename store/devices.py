"""Devices and organisation units."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

KINDS = ("sanitation", "muck", "enforcement", "inspector", "other")
PROTOCOLS = ("jt808", "gt06", "h02", "nmea", "osmand", "mqtt")


@dataclass(frozen=True, slots=True)
class Device:
    id: int
    uid: str
    kind: str
    name: str
    plate: str | None
    org_unit_id: int | None
    protocol: str | None
    auth_code: str | None
    enabled: bool


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device as an import or the API describes it (the org unit by its code)."""

    uid: str
    kind: str = "other"
    name: str = ""
    plate: str | None = None
    org_unit: str | None = None
    protocol: str | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class OrgUnitRecord:
    code: str
    name: str
    parent: str | None = None


_DEVICE_COLS = "id, uid, kind::text, name, plate, org_unit_id, protocol::text, auth_code, enabled"


async def by_uid(conn: psycopg.AsyncConnection, uid: str) -> Device | None:
    cur = await conn.execute(f"SELECT {_DEVICE_COLS} FROM devices WHERE uid = %s", (uid,))  # type: ignore[arg-type]
    row = await cur.fetchone()
    return Device(*row) if row else None


async def set_auth_code(conn: psycopg.AsyncConnection, device_id: int, code: str) -> None:
    await conn.execute("UPDATE devices SET auth_code = %s, updated_at = now() WHERE id = %s", (code, device_id))


async def unit_codes(conn: psycopg.AsyncConnection) -> dict[str, int]:
    cur = await conn.execute("SELECT code, id FROM org_units")
    return {code: uid for code, uid in await cur.fetchall()}


async def upsert_units(conn: psycopg.AsyncConnection, units: Sequence[OrgUnitRecord]) -> int:
    """Insert or update units in the order given (parents first). All in the caller's transaction."""
    for u in units:
        await conn.execute(
            """INSERT INTO org_units (code, name, parent_id)
               VALUES (%s, %s, (SELECT id FROM org_units WHERE code = %s))
               ON CONFLICT (code) DO UPDATE SET name = excluded.name, parent_id = excluded.parent_id""",
            (u.code, u.name, u.parent),
        )
    return len(units)


async def upsert_devices(conn: psycopg.AsyncConnection, devices: Sequence[DeviceRecord]) -> int:
    """Insert or update devices by uid, in one statement. Org unit codes must exist."""
    if not devices:
        return 0
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO devices (uid, kind, name, plate, org_unit_id, protocol, enabled)
               VALUES (%s, %s::device_kind, %s, %s, (SELECT id FROM org_units WHERE code = %s),
                       %s::source_protocol, %s)
               ON CONFLICT (uid) DO UPDATE SET kind = excluded.kind, name = excluded.name,
                   plate = excluded.plate, org_unit_id = excluded.org_unit_id,
                   protocol = excluded.protocol, enabled = excluded.enabled, updated_at = now()""",
            [(d.uid, d.kind, d.name, d.plate, d.org_unit, d.protocol, d.enabled) for d in devices],
        )
    return len(devices)


async def ensure(conn: psycopg.AsyncConnection, uid: str, protocol: str) -> Device:
    """The device with this uid, created as kind `other` when missing (auto-registration)."""
    await conn.execute(
        """INSERT INTO devices (uid, name, protocol) VALUES (%s, %s, %s::source_protocol)
           ON CONFLICT (uid) DO NOTHING""",
        (uid, uid, protocol),
    )
    device = await by_uid(conn, uid)
    assert device is not None
    return device


async def by_ids(conn: psycopg.AsyncConnection, ids: Sequence[int]) -> dict[int, Device]:
    cur = await conn.execute(
        f"SELECT {_DEVICE_COLS} FROM devices WHERE id = ANY(%s)",  # type: ignore[arg-type]
        (list(ids),),
    )
    return {row[0]: Device(*row) for row in await cur.fetchall()}


@dataclass(frozen=True, slots=True)
class Listed:
    """A device as the API lists it, with its unit."""

    id: int
    uid: str
    kind: str
    name: str
    plate: str | None
    protocol: str | None
    enabled: bool
    unit_id: int | None
    unit_code: str | None
    unit_name: str | None
    unit_parent_id: int | None


async def search(
    conn: psycopg.AsyncConnection,
    *,
    unit_ids: Sequence[int] | None,
    with_unitless: bool,
    kind: str | None = None,
    text: str | None = None,
    device_id: int | None = None,
) -> list[Listed]:
    """Devices of the given units (None: all; `with_unitless`: and those without a unit), by id."""
    pattern = None if not text else "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    cur = await conn.execute(
        "SELECT d.id, d.uid, d.kind::text, d.name, d.plate, d.protocol::text, d.enabled,"
        " u.id, u.code, u.name, u.parent_id FROM devices d LEFT JOIN org_units u ON u.id = d.org_unit_id"
        " WHERE (%(units)s::integer[] IS NULL OR d.org_unit_id = ANY(%(units)s)"
        "        OR (%(unitless)s AND d.org_unit_id IS NULL))"
        " AND (%(kind)s::device_kind IS NULL OR d.kind = %(kind)s::device_kind)"
        " AND (%(id)s::integer IS NULL OR d.id = %(id)s)"
        " AND (%(pattern)s::text IS NULL OR d.uid ILIKE %(pattern)s OR d.name ILIKE %(pattern)s"
        "      OR d.plate ILIKE %(pattern)s)"
        " ORDER BY d.id",
        {
            "units": None if unit_ids is None else list(unit_ids),
            "unitless": with_unitless,
            "kind": kind,
            "id": device_id,
            "pattern": pattern,
        },
    )
    return [Listed(*row) for row in await cur.fetchall()]


async def create(
    conn: psycopg.AsyncConnection,
    uid: str,
    kind: str,
    name: str,
    plate: str | None,
    unit_id: int | None,
    protocol: str | None,
) -> int | None:
    """A new device's id; None when the uid is taken."""
    cur = await conn.execute(
        "INSERT INTO devices (uid, kind, name, plate, org_unit_id, protocol)"
        " VALUES (%s, %s::device_kind, %s, %s, %s, %s::source_protocol) ON CONFLICT (uid) DO NOTHING RETURNING id",
        (uid, kind, name, plate, unit_id, protocol),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


_CHANGEABLE = {
    "name": "name = %s",
    "plate": "plate = %s",
    "kind": "kind = %s::device_kind",
    "unit": "org_unit_id = %s",
    "enabled": "enabled = %s",
}


async def update(conn: psycopg.AsyncConnection, device_id: int, changes: dict[str, object]) -> bool:
    """Change some of name, plate, kind, unit (id) and enabled; False when there is no such device."""
    sets = [_CHANGEABLE[k] for k in changes]
    cur = await conn.execute(
        f"UPDATE devices SET {', '.join(sets)}, updated_at = now() WHERE id = %s",  # type: ignore[arg-type]
        (*changes.values(), device_id),
    )
    return cur.rowcount > 0


async def registered_before(conn: psycopg.AsyncConnection, t: datetime) -> set[int]:
    """The ids of the devices registered before a time."""
    cur = await conn.execute("SELECT id FROM devices WHERE created_at < %s", (t,))
    return {int(r[0]) for r in await cur.fetchall()}
