"""`telematics import staff|shifts FILE.csv`: staff and weekly shift patterns, by code, all rows or none.

Read like the device and unit files (tracking.device_import): every bad row is reported with its line
number and reason, and a file with any bad row writes nothing. Importing a file again updates the rows
in place.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import psycopg

from attendance import fields, plan
from store import attendance
from store.attendance import PatternRecord, StaffRecord
from tracking.device_import import CsvImportError, RowError, read_rows  # the one CSV reader of the imports

KINDS = ("staff", "shifts")
STAFF_COLUMNS = ("code", "name", "role", "unit", "team", "device", "enabled")
SHIFT_COLUMNS = (
    "code",
    "person",
    "unit",
    "team",
    "weekdays",
    "start",
    "end",
    "grid",
    "grace_min",
    "checkin_window_min",
    "absent_after_min",
    "valid_from",
    "valid_until",
)
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n"}

T = TypeVar("T")


def _required(row: dict[str, str], column: str, check: Callable[..., T], *args: Any) -> T:
    if not row.get(column):
        raise ValueError(f"{column} is empty")
    return check(row[column], *args)


def parse_staff(
    text: str, known_units: Collection[str], known_devices: Collection[str], owners: Mapping[str, str]
) -> list[StaffRecord]:
    """Staff in file order. `owners`: the uid of each device that is someone's phone, and their code; a
    phone may move to another person only when its owner is in the file too (with another phone or none)."""
    seen: dict[str, int] = {}
    phones: dict[str, int] = {}

    def parse(row: dict[str, str], line: int) -> StaffRecord:
        code = fields.code(row.get("code", ""))
        if code in seen:
            raise ValueError(f"code {code!r} repeats line {seen[code]}")
        seen[code] = line
        name = _required(row, "name", fields.name)
        role = _required(row, "role", fields.role)
        unit = row.get("unit") or None
        if unit is not None and unit not in known_units:
            raise ValueError(f"unit {unit!r} does not exist (import units first)")
        device = row.get("device") or None
        if device is not None:
            if device not in known_devices:
                raise ValueError(f"device {device!r} does not exist (import devices first)")
            if device in phones:
                raise ValueError(f"device {device!r} is the phone of line {phones[device]} already")
            phones[device] = line
        enabled = (row.get("enabled") or "true").lower()
        if enabled not in _TRUE | _FALSE:
            raise ValueError(f"enabled {enabled!r} must be true or false")
        return StaffRecord(code, name, role, unit, fields.team(row.get("team")), device, enabled in _TRUE)

    records = read_rows(text, STAFF_COLUMNS, "code", parse)
    errors = []
    for r in records:
        owner = owners.get(r.device) if r.device is not None else None
        if owner is not None and owner != r.code and owner not in seen:
            errors.append(
                RowError(seen[r.code], f"device {r.device!r} is the phone of {owner!r}, who is not in this file")
            )
    if errors:
        raise CsvImportError(errors)
    return records


def parse_shifts(
    text: str,
    known_units: Collection[str],
    known_staff: Collection[str],
    zone_kinds: Mapping[str, str],
    starts: Mapping[str, date],
    today: date,
) -> list[PatternRecord]:
    """Patterns in file order, each for a person (code) or a unit (code) and team. `zone_kinds`: the kind
    of each zone by code; `starts`: the valid_from of the patterns stored already, kept when the file
    leaves it out (a new pattern is then valid from `today`)."""
    seen: dict[str, int] = {}

    def parse(row: dict[str, str], line: int) -> PatternRecord:
        code = fields.code(row.get("code", ""))
        if code in seen:
            raise ValueError(f"code {code!r} repeats line {seen[code]}")
        seen[code] = line
        person, unit, team = row.get("person") or None, row.get("unit") or None, fields.team(row.get("team"))
        if (person is None) == (unit is None and team is None):
            raise ValueError("give a person, or a unit and a team (not both)")
        if person is not None and person not in known_staff:
            raise ValueError(f"person {person!r} does not exist (import staff first)")
        if person is None and (unit is None or team is None):
            raise ValueError("a team's pattern needs both unit and team")
        if unit is not None and unit not in known_units:
            raise ValueError(f"unit {unit!r} does not exist (import units first)")
        grid = _required(row, "grid", fields.code, "grid")
        if grid not in zone_kinds:
            raise ValueError(f"grid {grid!r}: no zone has this code")
        if zone_kinds[grid] != "duty_grid":
            raise ValueError(f"grid {grid!r} is a {zone_kinds[grid]} zone, not a duty_grid")
        timings = {
            what: fields.minutes(row[what], what) if row.get(what) else default
            for what, default in (
                ("grace_min", plan.DEFAULT_GRACE_MIN),
                ("checkin_window_min", plan.DEFAULT_CHECKIN_WINDOW_MIN),
                ("absent_after_min", plan.DEFAULT_ABSENT_AFTER_MIN),
            )
        }
        valid_from = fields.day(row["valid_from"], "valid_from") if row.get("valid_from") else None
        valid_from = valid_from or starts.get(code) or today
        valid_until = fields.day(row["valid_until"], "valid_until") if row.get("valid_until") else None
        if valid_until is not None and valid_until < valid_from:
            raise ValueError(f"valid_until {valid_until} is before valid_from {valid_from}")
        return PatternRecord(
            code=code,
            weekdays=_required(row, "weekdays", fields.weekdays),
            start=_required(row, "start", fields.clock, "start"),
            end=_required(row, "end", fields.clock, "end"),
            grid=grid,
            valid_from=valid_from,
            person=person,
            unit=unit,
            team=team,
            valid_until=valid_until,
            **timings,
        )

    return read_rows(text, SHIFT_COLUMNS, "code", parse)


async def load(conn: psycopg.AsyncConnection, what: str, text: str, known_units: Collection[str], tz: ZoneInfo) -> int:
    """Check the file against the database and write it in one transaction; how many rows.
    CsvImportError, with every bad row, when any row is bad."""
    if what == "staff":
        records = parse_staff(
            text, known_units, await attendance.device_uids(conn), await attendance.device_owners(conn)
        )
        async with conn.transaction():
            return await attendance.upsert_staff(conn, records)
    patterns = parse_shifts(
        text,
        known_units,
        await attendance.staff_codes(conn),
        await attendance.zone_codes(conn),
        await attendance.pattern_starts(conn),
        datetime.now(tz).date(),
    )
    async with conn.transaction():
        return await attendance.upsert_patterns(conn, patterns)
