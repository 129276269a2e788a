"""Zones (geofences) and their assignments to devices, device kinds and units.

Shapes and properties are stored as the application checked them; nothing here reads their contents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from store.users import Unit

KINDS = (
    "duty_grid",
    "sanitation_route",
    "muck_route",
    "construction_site",
    "disposal_site",
    "forbidden",
    "speed_zone",
    "depot",
    "generic",
)  # the zone_kind enum


class CodeTaken(ValueError):
    """Another zone has this code already."""


@dataclass(frozen=True, slots=True)
class Zone:
    id: int
    code: str | None
    name: str
    kind: str
    shape: dict[str, Any]
    properties: dict[str, Any]
    unit: Unit | None
    enabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ZoneRecord:
    """A zone as an import describes it: keyed by code, its unit by the unit's code."""

    code: str
    shape: dict[str, Any]
    name: str = ""
    kind: str = "generic"
    properties: dict[str, Any] = field(default_factory=dict)
    unit: str | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Assignments:
    """What a zone applies to: these devices, every device of these kinds, every device of these units."""

    devices: tuple[int, ...] = ()
    kinds: tuple[str, ...] = ()
    units: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Changes:
    zones: list[Zone]  # created or changed (disabled ones too), assignments included
    deleted: list[int]
    as_of: datetime  # the database's time of the query


_SELECT = (
    "SELECT z.id, z.code, z.name, z.kind::text, z.shape, z.properties, u.id, u.code, u.name, u.parent_id,"
    " z.enabled, z.created_at, z.updated_at FROM zones z LEFT JOIN org_units u ON u.id = z.org_unit_id"
)


def _zone(row: tuple[Any, ...]) -> Zone:
    unit = Unit(*row[6:10]) if row[6] is not None else None
    return Zone(row[0], row[1], row[2], row[3], row[4], row[5], unit, *row[10:13])


async def create(
    conn: psycopg.AsyncConnection,
    *,
    code: str | None,
    name: str,
    kind: str,
    shape: dict[str, Any],
    properties: dict[str, Any],
    unit_id: int | None,
    enabled: bool = True,
) -> int:
    """The new zone's id; CodeTaken when another zone has the code."""
    cur = await conn.execute(
        "INSERT INTO zones (code, name, kind, shape, properties, org_unit_id, enabled)"
        " VALUES (%s, %s, %s::zone_kind, %s, %s, %s, %s) ON CONFLICT (code) DO NOTHING RETURNING id",
        (code, name, kind, Jsonb(shape), Jsonb(properties), unit_id, enabled),
    )
    row = await cur.fetchone()
    if row is None:
        raise CodeTaken(code)
    return int(row[0])


async def get(conn: psycopg.AsyncConnection, zone_id: int) -> Zone | None:
    cur = await conn.execute(f"{_SELECT} WHERE z.id = %s", (zone_id,))  # type: ignore[arg-type]
    row = await cur.fetchone()
    return _zone(row) if row else None


async def search(
    conn: psycopg.AsyncConnection,
    *,
    unit_ids: Sequence[int] | None,
    with_unitless: bool,
    kind: str | None = None,
    enabled: bool | None = None,
    text: str | None = None,
) -> list[Zone]:
    """Zones of the given units (None: all; `with_unitless`: and those without a unit), by id;
    `text` is looked for in the code and the name."""
    pattern = None if not text else "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    cur = await conn.execute(
        f"{_SELECT} WHERE (%(units)s::integer[] IS NULL OR z.org_unit_id = ANY(%(units)s)"  # type: ignore[arg-type]
        "                  OR (%(unitless)s AND z.org_unit_id IS NULL))"
        " AND (%(kind)s::zone_kind IS NULL OR z.kind = %(kind)s::zone_kind)"
        " AND (%(enabled)s::boolean IS NULL OR z.enabled = %(enabled)s)"
        " AND (%(pattern)s::text IS NULL OR z.code ILIKE %(pattern)s OR z.name ILIKE %(pattern)s)"
        " ORDER BY z.id",
        {
            "units": None if unit_ids is None else list(unit_ids),
            "unitless": with_unitless,
            "kind": kind,
            "enabled": enabled,
            "pattern": pattern,
        },
    )
    return [_zone(row) for row in await cur.fetchall()]


_CHANGEABLE = {
    "code": "code = %s",
    "name": "name = %s",
    "kind": "kind = %s::zone_kind",
    "shape": "shape = %s",
    "properties": "properties = %s",
    "unit": "org_unit_id = %s",
    "enabled": "enabled = %s",
}


async def update(conn: psycopg.AsyncConnection, zone_id: int, changes: dict[str, Any]) -> bool:
    """Change some of code, name, kind, shape, properties, unit (id) and enabled; False when there is no
    such zone, CodeTaken when another zone has the new code."""
    sets = [_CHANGEABLE[k] for k in changes]
    values = [Jsonb(v) if k in ("shape", "properties") else v for k, v in changes.items()]
    try:
        async with conn.transaction():
            cur = await conn.execute(
                f"UPDATE zones SET {', '.join(sets)}, updated_at = now() WHERE id = %s",  # type: ignore[arg-type]
                (*values, zone_id),
            )
    except psycopg.errors.UniqueViolation:
        raise CodeTaken(changes.get("code")) from None
    return cur.rowcount > 0


async def delete(conn: psycopg.AsyncConnection, zone_id: int) -> bool:
    """Delete a zone and its assignments, leaving a note for changed_after; False when there is none."""
    cur = await conn.execute(
        """WITH gone AS (DELETE FROM zones WHERE id = %s RETURNING id)
           INSERT INTO zone_deletions (zone_id) SELECT id FROM gone
           ON CONFLICT (zone_id) DO UPDATE SET deleted_at = now()""",
        (zone_id,),
    )
    return cur.rowcount > 0


async def set_assignments(conn: psycopg.AsyncConnection, zone_id: int, assigned: Assignments) -> bool:
    """Replace what the zone applies to; False when there is no such zone. Device and unit ids must exist."""
    async with conn.transaction():
        cur = await conn.execute("UPDATE zones SET updated_at = now() WHERE id = %s", (zone_id,))
        if cur.rowcount == 0:
            return False
        await conn.execute("DELETE FROM zone_assignments WHERE zone_id = %s", (zone_id,))
        await conn.execute(
            """INSERT INTO zone_assignments (zone_id, device_id, device_kind, org_unit_id)
               SELECT %(zone)s, d, NULL::device_kind, NULL::integer FROM unnest(%(devices)s::integer[]) d
               UNION SELECT %(zone)s, NULL, k, NULL FROM unnest(%(kinds)s::device_kind[]) k
               UNION SELECT %(zone)s, NULL, NULL, u FROM unnest(%(units)s::integer[]) u""",
            {
                "zone": zone_id,
                "devices": list(assigned.devices),
                "kinds": list(assigned.kinds),
                "units": list(assigned.units),
            },
        )
    return True


async def assignments_of(conn: psycopg.AsyncConnection, zone_ids: Sequence[int]) -> dict[int, Assignments]:
    """The assignments of each of the zones (empty ones included), each list sorted."""
    cur = await conn.execute(
        """SELECT z.id,
                  ARRAY(SELECT device_id FROM zone_assignments a WHERE a.zone_id = z.id AND device_id IS NOT NULL
                        ORDER BY 1),
                  ARRAY(SELECT device_kind::text FROM zone_assignments a
                        WHERE a.zone_id = z.id AND device_kind IS NOT NULL ORDER BY 1),
                  ARRAY(SELECT org_unit_id FROM zone_assignments a WHERE a.zone_id = z.id AND org_unit_id IS NOT NULL
                        ORDER BY 1)
           FROM unnest(%s::integer[]) z (id)""",
        (list(zone_ids),),
    )
    return {row[0]: Assignments(tuple(row[1]), tuple(row[2]), tuple(row[3])) for row in await cur.fetchall()}


async def assignments(conn: psycopg.AsyncConnection, zone_id: int) -> Assignments:
    return (await assignments_of(conn, [zone_id]))[zone_id]


async def upsert_by_code(conn: psycopg.AsyncConnection, records: Sequence[ZoneRecord]) -> int:
    """Insert or update zones by code, all or none (one transaction). Unit codes must exist.
    Assignments of existing zones are kept."""
    if not records:
        return 0
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO zones (code, name, kind, shape, properties, org_unit_id, enabled)
               VALUES (%s, %s, %s::zone_kind, %s, %s, (SELECT id FROM org_units WHERE code = %s), %s)
               ON CONFLICT (code) DO UPDATE SET name = excluded.name, kind = excluded.kind,
                   shape = excluded.shape, properties = excluded.properties,
                   org_unit_id = excluded.org_unit_id, enabled = excluded.enabled, updated_at = now()""",
            [(r.code, r.name, r.kind, Jsonb(r.shape), Jsonb(r.properties), r.unit, r.enabled) for r in records],
        )
    return len(records)


async def all_enabled(conn: psycopg.AsyncConnection) -> list[Zone]:
    """Every enabled zone, by id: what an in-memory index starts from."""
    cur = await conn.execute(f"{_SELECT} WHERE z.enabled ORDER BY z.id")  # type: ignore[arg-type]
    return [_zone(row) for row in await cur.fetchall()]


async def changed_after(conn: psycopg.AsyncConnection, t: datetime) -> Changes:
    """Zones created, changed (or their assignments changed) and deleted after `t`.

    A change is stamped with its transaction's start, so one committed just after this call may carry a
    time before `as_of`: pass the previous `as_of` less a few seconds, and take repeats as no-ops.
    """
    cur = await conn.execute("SELECT now()")
    row = await cur.fetchone()
    assert row is not None
    as_of: datetime = row[0]
    cur = await conn.execute(f"{_SELECT} WHERE z.updated_at > %s ORDER BY z.id", (t,))  # type: ignore[arg-type]
    changed = [_zone(r) for r in await cur.fetchall()]
    cur = await conn.execute("SELECT zone_id FROM zone_deletions WHERE deleted_at > %s ORDER BY 1", (t,))
    return Changes(changed, [int(r[0]) for r in await cur.fetchall()], as_of)
