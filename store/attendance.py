"""The attendance plan: staff, weekly shift patterns, one-off overrides, holidays and leave, and the
shifts they give for a day. Turning the rows into shifts is attendance.plan's (sans-I/O); this module
reads what it needs.

Lists take the units to look in (None: all) and whether rows without a unit are in, like devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from attendance import plan
from attendance.model import PlannedShift
from store.users import Unit


class Taken(ValueError):
    """A unique key is in use; `what` names it: code, device (a phone is one person's) or day (a day's
    shift is replaced or cancelled once)."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(what)


def _taken(e: psycopg.errors.UniqueViolation) -> Taken:
    constraint = e.diag.constraint_name or ""
    for what in ("device", "code"):
        if what in constraint:
            return Taken(what)
    return Taken("day")


async def _insert(conn: psycopg.AsyncConnection, sql: str, params: dict[str, Any]) -> int:
    """Run an INSERT ... RETURNING id; Taken on a unique violation (the caller's transaction goes on)."""
    try:
        async with conn.transaction():
            cur = await conn.execute(sql, params)  # type: ignore[arg-type]
            row = await cur.fetchone()
    except psycopg.errors.UniqueViolation as e:
        raise _taken(e) from None
    assert row is not None
    return int(row[0])


async def _update(conn: psycopg.AsyncConnection, table: str, sets: list[str], row_id: int, values: list[Any]) -> bool:
    try:
        async with conn.transaction():
            cur = await conn.execute(
                f"UPDATE {table} SET {', '.join(sets)}, updated_at = now() WHERE id = %s",  # type: ignore[arg-type]
                (*values, row_id),
            )
    except psycopg.errors.UniqueViolation as e:
        raise _taken(e) from None
    return cur.rowcount > 0


_SCOPE = "(%(units)s::integer[] IS NULL OR {0} = ANY(%(units)s) OR (%(unitless)s AND {0} IS NULL))"


def _scope(unit_ids: Sequence[int] | None, with_unitless: bool) -> dict[str, Any]:
    return {"units": None if unit_ids is None else list(unit_ids), "unitless": with_unitless}


# --- staff -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Staff:
    id: int
    code: str
    name: str
    role: str
    unit: Unit | None
    team: str | None
    device_id: int | None
    device_uid: str | None
    enabled: bool


@dataclass(frozen=True, slots=True)
class StaffRecord:
    """A person as an import describes them: their unit by its code, their phone by its uid."""

    code: str
    name: str
    role: str
    unit: str | None = None
    team: str | None = None
    device: str | None = None
    enabled: bool = True


_STAFF = (
    "SELECT s.id, s.code, s.name, s.role::text, u.id, u.code, u.name, u.parent_id, s.team, s.device_id, d.uid,"
    " s.enabled FROM staff s LEFT JOIN org_units u ON u.id = s.org_unit_id LEFT JOIN devices d ON d.id = s.device_id"
)


def _staff(row: tuple[Any, ...]) -> Staff:
    unit = Unit(*row[4:8]) if row[4] is not None else None
    return Staff(row[0], row[1], row[2], row[3], unit, *row[8:12])


async def create_staff(
    conn: psycopg.AsyncConnection,
    *,
    code: str,
    name: str,
    role: str,
    unit_id: int | None,
    team: str | None,
    device_id: int | None,
    enabled: bool = True,
) -> int:
    """The new person's id; Taken("code") or Taken("device") when another person has either."""
    return await _insert(
        conn,
        "INSERT INTO staff (code, name, role, org_unit_id, team, device_id, enabled)"
        " VALUES (%(code)s, %(name)s, %(role)s::staff_role, %(unit)s, %(team)s, %(device)s, %(enabled)s) RETURNING id",
        {
            "code": code,
            "name": name,
            "role": role,
            "unit": unit_id,
            "team": team,
            "device": device_id,
            "enabled": enabled,
        },
    )


async def get_staff(conn: psycopg.AsyncConnection, staff_id: int) -> Staff | None:
    cur = await conn.execute(f"{_STAFF} WHERE s.id = %s", (staff_id,))  # type: ignore[arg-type]
    row = await cur.fetchone()
    return _staff(row) if row else None


async def search_staff(
    conn: psycopg.AsyncConnection,
    *,
    unit_ids: Sequence[int] | None,
    with_unitless: bool,
    role: str | None = None,
    team: str | None = None,
    enabled: bool | None = None,
    text: str | None = None,
) -> list[Staff]:
    """Staff of the given units, by code; `text` is looked for in the code and the name."""
    pattern = None if not text else "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    cur = await conn.execute(
        f"{_STAFF} WHERE {_SCOPE.format('s.org_unit_id')}"  # type: ignore[arg-type]
        " AND (%(role)s::staff_role IS NULL OR s.role = %(role)s::staff_role)"
        " AND (%(team)s::text IS NULL OR s.team = %(team)s)"
        " AND (%(enabled)s::boolean IS NULL OR s.enabled = %(enabled)s)"
        " AND (%(pattern)s::text IS NULL OR s.code ILIKE %(pattern)s OR s.name ILIKE %(pattern)s)"
        " ORDER BY s.code",
        {**_scope(unit_ids, with_unitless), "role": role, "team": team, "enabled": enabled, "pattern": pattern},
    )
    return [_staff(row) for row in await cur.fetchall()]


_STAFF_CHANGES = {
    "code": "code = %s",
    "name": "name = %s",
    "role": "role = %s::staff_role",
    "unit": "org_unit_id = %s",
    "team": "team = %s",
    "device": "device_id = %s",
    "enabled": "enabled = %s",
}


async def update_staff(conn: psycopg.AsyncConnection, staff_id: int, changes: dict[str, Any]) -> bool:
    """Change some of code, name, role, unit (id), team, device (id) and enabled; False when there is no
    such person, Taken when another has the code or the device."""
    return await _update(conn, "staff", [_STAFF_CHANGES[k] for k in changes], staff_id, list(changes.values()))


async def upsert_staff(conn: psycopg.AsyncConnection, records: Sequence[StaffRecord]) -> int:
    """Insert or update staff by code, in the caller's transaction. Unit codes and device uids must exist,
    and a device may be another person's only when that person is among the records too."""
    if not records:
        return 0
    # Let go of the records' phones first, so that two people can swap theirs in one file.
    await conn.execute(
        "UPDATE staff SET device_id = NULL WHERE code = ANY(%s) AND device_id IS NOT NULL", ([r.code for r in records],)
    )
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO staff (code, name, role, org_unit_id, team, device_id, enabled)
               VALUES (%s, %s, %s::staff_role, (SELECT id FROM org_units WHERE code = %s), %s,
                       (SELECT id FROM devices WHERE uid = %s), %s)
               ON CONFLICT (code) DO UPDATE SET name = excluded.name, role = excluded.role,
                   org_unit_id = excluded.org_unit_id, team = excluded.team, device_id = excluded.device_id,
                   enabled = excluded.enabled, updated_at = now()""",
            [(r.code, r.name, r.role, r.unit, r.team, r.device, r.enabled) for r in records],
        )
    return len(records)


async def staff_codes(conn: psycopg.AsyncConnection) -> dict[str, int]:
    cur = await conn.execute("SELECT code, id FROM staff")
    return {code: staff_id for code, staff_id in await cur.fetchall()}


async def device_owners(conn: psycopg.AsyncConnection) -> dict[str, str]:
    """The uid of every device that is someone's phone, and that person's code."""
    cur = await conn.execute("SELECT d.uid, s.code FROM staff s JOIN devices d ON d.id = s.device_id")
    return {uid: code for uid, code in await cur.fetchall()}


async def device_uids(conn: psycopg.AsyncConnection) -> set[str]:
    cur = await conn.execute("SELECT uid FROM devices")
    return {row[0] for row in await cur.fetchall()}


# --- shift patterns ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShiftPattern:
    id: int
    code: str | None
    staff_id: int | None
    org_unit_id: int | None
    team: str | None
    weekdays: tuple[int, ...]
    start: time
    end: time
    zone_id: int
    grace_min: int
    checkin_window_min: int
    absent_after_min: int
    valid_from: date
    valid_until: date | None
    scope_unit_id: int | None  # the team's unit, or the person's: who may see the pattern


@dataclass(frozen=True, slots=True)
class PatternRecord:
    """A pattern as an import describes it: a person by code, or a unit (code) and team; the grid by its code."""

    code: str
    weekdays: tuple[int, ...]
    start: time
    end: time
    grid: str
    valid_from: date
    person: str | None = None
    unit: str | None = None
    team: str | None = None
    grace_min: int = plan.DEFAULT_GRACE_MIN
    checkin_window_min: int = plan.DEFAULT_CHECKIN_WINDOW_MIN
    absent_after_min: int = plan.DEFAULT_ABSENT_AFTER_MIN
    valid_until: date | None = None


_PATTERN_COLS = (
    "p.id, p.code, p.staff_id, p.org_unit_id, p.team, p.weekdays, p.start_local, p.end_local, p.zone_id,"
    " p.grace_min, p.checkin_window_min, p.absent_after_min, p.valid_from, p.valid_until"
)
_PATTERNS = (
    f"SELECT {_PATTERN_COLS}, COALESCE(p.org_unit_id, s.org_unit_id)"
    " FROM shift_patterns p LEFT JOIN staff s ON s.id = p.staff_id"
)


def _pattern(row: tuple[Any, ...]) -> ShiftPattern:
    values = list(row)
    values[5] = tuple(values[5])  # weekdays: a list from the database
    return ShiftPattern(*values)


async def create_pattern(
    conn: psycopg.AsyncConnection,
    *,
    code: str | None,
    staff_id: int | None,
    unit_id: int | None,
    team: str | None,
    weekdays: Sequence[int],
    start: time,
    end: time,
    zone_id: int,
    grace_min: int,
    checkin_window_min: int,
    absent_after_min: int,
    valid_from: date,
    valid_until: date | None,
) -> int:
    """The new pattern's id (for a person, or for a unit's team); Taken("code") when the code is in use."""
    return await _insert(
        conn,
        """INSERT INTO shift_patterns (code, staff_id, org_unit_id, team, weekdays, start_local, end_local, zone_id,
               grace_min, checkin_window_min, absent_after_min, valid_from, valid_until)
           VALUES (%(code)s, %(staff)s, %(unit)s, %(team)s, %(weekdays)s::smallint[], %(start)s, %(end)s, %(zone)s,
               %(grace)s, %(window)s, %(absent)s, %(from)s, %(until)s) RETURNING id""",
        {
            "code": code,
            "staff": staff_id,
            "unit": unit_id,
            "team": team,
            "weekdays": list(weekdays),
            "start": start,
            "end": end,
            "zone": zone_id,
            "grace": grace_min,
            "window": checkin_window_min,
            "absent": absent_after_min,
            "from": valid_from,
            "until": valid_until,
        },
    )


async def get_pattern(conn: psycopg.AsyncConnection, pattern_id: int) -> ShiftPattern | None:
    cur = await conn.execute(f"{_PATTERNS} WHERE p.id = %s", (pattern_id,))  # type: ignore[arg-type]
    row = await cur.fetchone()
    return _pattern(row) if row else None


async def search_patterns(
    conn: psycopg.AsyncConnection,
    *,
    unit_ids: Sequence[int] | None,
    with_unitless: bool,
    staff_id: int | None = None,
) -> list[ShiftPattern]:
    """Patterns of the given units' teams and people, by id; `staff_id`: that person's own only."""
    cur = await conn.execute(
        f"{_PATTERNS} WHERE {_SCOPE.format('COALESCE(p.org_unit_id, s.org_unit_id)')}"  # type: ignore[arg-type]
        " AND (%(staff)s::integer IS NULL OR p.staff_id = %(staff)s) ORDER BY p.id",
        {**_scope(unit_ids, with_unitless), "staff": staff_id},
    )
    return [_pattern(row) for row in await cur.fetchall()]


_PATTERN_CHANGES = {
    "code": "code = %s",
    "weekdays": "weekdays = %s::smallint[]",
    "start": "start_local = %s",
    "end": "end_local = %s",
    "zone": "zone_id = %s",
    "grace_min": "grace_min = %s",
    "checkin_window_min": "checkin_window_min = %s",
    "absent_after_min": "absent_after_min = %s",
    "valid_from": "valid_from = %s",
    "valid_until": "valid_until = %s",
}
PATTERN_CHANGES = tuple(_PATTERN_CHANGES)


async def update_pattern(conn: psycopg.AsyncConnection, pattern_id: int, changes: dict[str, Any]) -> bool:
    """Change some of PATTERN_CHANGES (zone: an id); False when there is no such pattern."""
    values = [list(v) if k == "weekdays" else v for k, v in changes.items()]
    return await _update(conn, "shift_patterns", [_PATTERN_CHANGES[k] for k in changes], pattern_id, values)


async def delete_pattern(conn: psycopg.AsyncConnection, pattern_id: int) -> bool:
    cur = await conn.execute("DELETE FROM shift_patterns WHERE id = %s", (pattern_id,))
    return cur.rowcount > 0


async def pattern_starts(conn: psycopg.AsyncConnection) -> dict[str, date]:
    """The valid_from of every pattern with a code, by code (an import keeps it when the file leaves it out)."""
    cur = await conn.execute("SELECT code, valid_from FROM shift_patterns WHERE code IS NOT NULL")
    return {code: start for code, start in await cur.fetchall()}


async def upsert_patterns(conn: psycopg.AsyncConnection, records: Sequence[PatternRecord]) -> int:
    """Insert or update patterns by code, in the caller's transaction. Staff, unit and zone codes must exist."""
    if not records:
        return 0
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO shift_patterns (code, staff_id, org_unit_id, team, weekdays, start_local, end_local,
                   zone_id, grace_min, checkin_window_min, absent_after_min, valid_from, valid_until)
               VALUES (%s, (SELECT id FROM staff WHERE code = %s), (SELECT id FROM org_units WHERE code = %s), %s,
                   %s::smallint[], %s, %s, (SELECT id FROM zones WHERE code = %s), %s, %s, %s, %s, %s)
               ON CONFLICT (code) DO UPDATE SET staff_id = excluded.staff_id, org_unit_id = excluded.org_unit_id,
                   team = excluded.team, weekdays = excluded.weekdays, start_local = excluded.start_local,
                   end_local = excluded.end_local, zone_id = excluded.zone_id, grace_min = excluded.grace_min,
                   checkin_window_min = excluded.checkin_window_min, absent_after_min = excluded.absent_after_min,
                   valid_from = excluded.valid_from, valid_until = excluded.valid_until, updated_at = now()""",
            [
                (
                    r.code,
                    r.person,
                    r.unit,
                    r.team,
                    list(r.weekdays),
                    r.start,
                    r.end,
                    r.grid,
                    r.grace_min,
                    r.checkin_window_min,
                    r.absent_after_min,
                    r.valid_from,
                    r.valid_until,
                )
                for r in records
            ],
        )
    return len(records)


async def zone_codes(conn: psycopg.AsyncConnection) -> dict[str, str]:
    """The kind of every zone with a code, by code."""
    cur = await conn.execute("SELECT code, kind::text FROM zones WHERE code IS NOT NULL")
    return {code: kind for code, kind in await cur.fetchall()}


# --- overrides -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShiftOverride:
    id: int
    staff_id: int
    day: date
    kind: str
    start: time | None
    end: time | None
    zone_id: int | None
    note: str
    scope_unit_id: int | None  # the person's unit


_OVERRIDES = (
    "SELECT o.id, o.staff_id, o.day, o.kind::text, o.start_local, o.end_local, o.zone_id, o.note, s.org_unit_id"
    " FROM shift_overrides o JOIN staff s ON s.id = o.staff_id"
)


async def create_override(
    conn: psycopg.AsyncConnection,
    *,
    staff_id: int,
    day: date,
    kind: str,
    start: time | None,
    end: time | None,
    zone_id: int | None,
    note: str = "",
) -> int:
    """The new override's id; Taken("day") when the person's shift that day is replaced or cancelled already."""
    return await _insert(
        conn,
        "INSERT INTO shift_overrides (staff_id, day, kind, start_local, end_local, zone_id, note)"
        " VALUES (%(staff)s, %(day)s, %(kind)s::shift_override_kind, %(start)s, %(end)s, %(zone)s, %(note)s)"
        " RETURNING id",
        {"staff": staff_id, "day": day, "kind": kind, "start": start, "end": end, "zone": zone_id, "note": note},
    )


async def get_override(conn: psycopg.AsyncConnection, override_id: int) -> ShiftOverride | None:
    cur = await conn.execute(f"{_OVERRIDES} WHERE o.id = %s", (override_id,))  # type: ignore[arg-type]
    row = await cur.fetchone()
    return ShiftOverride(*row) if row else None


async def search_overrides(
    conn: psycopg.AsyncConnection,
    *,
    unit_ids: Sequence[int] | None,
    with_unitless: bool,
    staff_id: int | None = None,
    first: date | None = None,
    last: date | None = None,
) -> list[ShiftOverride]:
    """Overrides of the given units' people from `first` to `last` (inclusive; None: open), by day."""
    cur = await conn.execute(
        f"{_OVERRIDES} WHERE {_SCOPE.format('s.org_unit_id')}"  # type: ignore[arg-type]
        " AND (%(staff)s::integer IS NULL OR o.staff_id = %(staff)s)"
        " AND (%(first)s::date IS NULL OR o.day >= %(first)s) AND (%(last)s::date IS NULL OR o.day <= %(last)s)"
        " ORDER BY o.day, o.id",
        {**_scope(unit_ids, with_unitless), "staff": staff_id, "first": first, "last": last},
    )
    return [ShiftOverride(*row) for row in await cur.fetchall()]


async def delete_override(conn: psycopg.AsyncConnection, override_id: int) -> bool:
    cur = await conn.execute("DELETE FROM shift_overrides WHERE id = %s", (override_id,))
    return cur.rowcount > 0


# --- holidays ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HolidayRow:
    id: int
    day: date
    org_unit_id: int | None  # None: every unit
    name: str


_HOLIDAYS = "SELECT id, day, org_unit_id, name FROM holidays"


async def create_holiday(conn: psycopg.AsyncConnection, *, day: date, unit_id: int | None, name: str) -> int:
    """The new holiday's id; Taken("day") when the unit (or every unit) has one that day already."""
    return await _insert(
        conn,
        "INSERT INTO holidays (day, org_unit_id, name) VALUES (%(day)s, %(unit)s, %(name)s) RETURNING id",
        {"day": day, "unit": unit_id, "name": name},
    )


async def get_holiday(conn: psycopg.AsyncConnection, holiday_id: int) -> HolidayRow | None:
    cur = await conn.execute(f"{_HOLIDAYS} WHERE id = %s", (holiday_id,))  # type: ignore[arg-type]
    row = await cur.fetchone()
    return HolidayRow(*row) if row else None


async def search_holidays(
    conn: psycopg.AsyncConnection, *, unit_ids: Sequence[int] | None, first: date | None, last: date | None
) -> list[HolidayRow]:
    """Holidays of every unit and of the given units (None: all), from `first` to `last`, by day."""
    cur = await conn.execute(
        f"{_HOLIDAYS} WHERE {_SCOPE.format('org_unit_id')}"  # type: ignore[arg-type]
        " AND (%(first)s::date IS NULL OR day >= %(first)s) AND (%(last)s::date IS NULL OR day <= %(last)s)"
        " ORDER BY day, id",
        {**_scope(unit_ids, True), "first": first, "last": last},
    )
    return [HolidayRow(*row) for row in await cur.fetchall()]


async def delete_holiday(conn: psycopg.AsyncConnection, holiday_id: int) -> bool:
    cur = await conn.execute("DELETE FROM holidays WHERE id = %s", (holiday_id,))
    return cur.rowcount > 0


async def unit_parents(conn: psycopg.AsyncConnection) -> dict[int, int | None]:
    cur = await conn.execute("SELECT id, parent_id FROM org_units")
    return {unit_id: parent for unit_id, parent in await cur.fetchall()}


# --- leave -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaveRow:
    id: int
    staff_id: int
    first_day: date
    last_day: date
    kind: str
    note: str
    scope_unit_id: int | None  # the person's unit


_LEAVE = (
    "SELECT l.id, l.staff_id, l.first_day, l.last_day, l.kind, l.note, s.org_unit_id"
    " FROM leave l JOIN staff s ON s.id = l.staff_id"
)


async def create_leave(
    conn: psycopg.AsyncConnection, *, staff_id: int, first_day: date, last_day: date, kind: str, note: str = ""
) -> int:
    return await _insert(
        conn,
        "INSERT INTO leave (staff_id, first_day, last_day, kind, note)"
        " VALUES (%(staff)s, %(first)s, %(last)s, %(kind)s, %(note)s) RETURNING id",
        {"staff": staff_id, "first": first_day, "last": last_day, "kind": kind, "note": note},
    )


async def get_leave(conn: psycopg.AsyncConnection, leave_id: int) -> LeaveRow | None:
    cur = await conn.execute(f"{_LEAVE} WHERE l.id = %s", (leave_id,))  # type: ignore[arg-type]
    row = await cur.fetchone()
    return LeaveRow(*row) if row else None


async def search_leave(
    conn: psycopg.AsyncConnection,
    *,
    unit_ids: Sequence[int] | None,
    with_unitless: bool,
    staff_id: int | None = None,
    first: date | None = None,
    last: date | None = None,
) -> list[LeaveRow]:
    """Leave of the given units' people that overlaps `first` to `last` (None: open), by first day."""
    cur = await conn.execute(
        f"{_LEAVE} WHERE {_SCOPE.format('s.org_unit_id')}"  # type: ignore[arg-type]
        " AND (%(staff)s::integer IS NULL OR l.staff_id = %(staff)s)"
        " AND (%(first)s::date IS NULL OR l.last_day >= %(first)s)"
        " AND (%(last)s::date IS NULL OR l.first_day <= %(last)s)"
        " ORDER BY l.first_day, l.id",
        {**_scope(unit_ids, with_unitless), "staff": staff_id, "first": first, "last": last},
    )
    return [LeaveRow(*row) for row in await cur.fetchall()]


async def delete_leave(conn: psycopg.AsyncConnection, leave_id: int) -> bool:
    cur = await conn.execute("DELETE FROM leave WHERE id = %s", (leave_id,))
    return cur.rowcount > 0


# --- the planned shifts --------------------------------------------------------------------------------


async def _roster(
    conn: psycopg.AsyncConnection, first: date, last: date, unit_ids: Sequence[int] | None
) -> plan.Roster:
    """What the plan of the local days `first` to `last` needs, for the enabled staff of the units."""
    units = None if unit_ids is None else list(unit_ids)
    cur = await conn.execute(
        "SELECT id, code, name, org_unit_id, team, device_id FROM staff"
        " WHERE enabled AND (%(units)s::integer[] IS NULL OR org_unit_id = ANY(%(units)s)) ORDER BY code",
        {"units": units},
    )
    people = [plan.Person(*row) for row in await cur.fetchall()]
    window = {"ids": [p.id for p in people], "units": units, "first": first, "last": last}
    cur = await conn.execute(
        f"SELECT {_PATTERN_COLS} FROM shift_patterns p"  # type: ignore[arg-type]
        " WHERE p.valid_from <= %(last)s AND (p.valid_until IS NULL OR p.valid_until >= %(first)s)"
        " AND (p.staff_id = ANY(%(ids)s)"
        "      OR (p.org_unit_id IS NOT NULL AND (%(units)s::integer[] IS NULL OR p.org_unit_id = ANY(%(units)s))))",
        window,
    )
    patterns = [
        plan.Pattern(
            id=r[0],
            staff_id=r[2],
            org_unit_id=r[3],
            team=r[4],
            weekdays=frozenset(r[5]),
            start=r[6],
            end=r[7],
            zone_id=r[8],
            grace_min=r[9],
            checkin_window_min=r[10],
            absent_after_min=r[11],
            valid_from=r[12],
            valid_until=r[13],
        )
        for r in await cur.fetchall()
    ]
    cur = await conn.execute(
        "SELECT staff_id, day, kind::text, start_local, end_local, zone_id FROM shift_overrides"
        " WHERE staff_id = ANY(%(ids)s) AND day BETWEEN %(first)s AND %(last)s",
        window,
    )
    overrides = [plan.Override(*row) for row in await cur.fetchall()]
    cur = await conn.execute(
        "SELECT day, org_unit_id, name FROM holidays WHERE day BETWEEN %(first)s AND %(last)s", window
    )
    holidays = [plan.Holiday(*row) for row in await cur.fetchall()]
    cur = await conn.execute(
        "SELECT staff_id, first_day, last_day, kind FROM leave"
        " WHERE staff_id = ANY(%(ids)s) AND first_day <= %(last)s AND last_day >= %(first)s",
        window,
    )
    leave = [plan.Leave(*row) for row in await cur.fetchall()]
    return plan.Roster(people, patterns, overrides, holidays, leave, await unit_parents(conn))


async def planned(
    conn: psycopg.AsyncConnection, day: date, tz: ZoneInfo, unit_ids: Sequence[int] | None
) -> list[PlannedShift]:
    """Every person's shifts starting on the local `day` (unit_ids None: all units; else the staff of those
    units), leave, holidays and cancellations applied: their status says which. By start, then person."""
    return plan.expand(day, tz, await _roster(conn, day, day, unit_ids))


# A shift lasts at most a day and the hour a daylight saving change adds: one that overlaps a window
# starts at most this many local days before the window's first.
_LONGEST_SHIFT_DAYS = 2


async def planned_overlapping(
    conn: psycopg.AsyncConnection, start: datetime, end: datetime, tz: ZoneInfo
) -> list[PlannedShift]:
    """Every shift to be worked (status "planned"; leave, holidays and cancellations left out), of all
    units, whose [start, end) overlaps the UTC window [start, end): what the live evaluator judges."""
    first = start.astimezone(tz).date() - timedelta(days=_LONGEST_SHIFT_DAYS)
    last = end.astimezone(tz).date()
    roster = await _roster(conn, first, last, None)
    found = [
        s
        for day in plan.days(first, last)
        for s in plan.expand(day, tz, roster)
        if s.status == "planned" and s.start < end and s.end > start
    ]
    found.sort(key=lambda s: (s.start, s.person_code, s.end))
    return found
