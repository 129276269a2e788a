"""HTTP routes for the attendance plan: staff, shift patterns, overrides, holidays and leave, and the
planned shifts of a day.

Admins change the plan; admins, dispatchers and auditors read it. Everything is within the caller's
units: a person of another unit, and their patterns, overrides and leave, answer 404 as if they did not
exist (a person without a unit is seen like a device without one). A holiday is seen by those it
applies to (a holiday of a unit applies to the units below it; one without a unit, to every unit) and
changed by those who see its unit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from access.errors import json_error, json_object
from access.principal import Principal, principal
from access.query import iso, unit_scope
from attendance import fields, plan
from attendance.model import PlannedShift
from store import attendance, devices, users, zones
from tracking.listing import unit_and_page

T = TypeVar("T")

READERS = ("admin", "dispatcher", "auditor")
MAX_ID = 2**31 - 1  # the id columns are integers


@dataclass(frozen=True, slots=True)
class Attendance:
    pool: AsyncConnectionPool
    tz: ZoneInfo  # the zone of the plan's local days and times (attendance.timezone)


ATTENDANCE = web.AppKey("attendance", Attendance)


# --- JSON --------------------------------------------------------------------------------------------


def _clock(t: time | None) -> str | None:
    return None if t is None else t.strftime("%H:%M")


def _day(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


def staff_json(s: attendance.Staff) -> dict[str, Any]:
    unit = None
    if s.unit is not None:
        unit = {"id": s.unit.id, "code": s.unit.code, "name": s.unit.name, "parent_id": s.unit.parent_id}
    return {
        "id": s.id,
        "code": s.code,
        "name": s.name,
        "role": s.role,
        "unit": unit,
        "team": s.team,
        "device": None if s.device_id is None else {"id": s.device_id, "uid": s.device_uid},
        "enabled": s.enabled,
    }


def pattern_json(p: attendance.ShiftPattern) -> dict[str, Any]:
    return {
        "id": p.id,
        "code": p.code,
        "person": p.staff_id,
        "unit": p.org_unit_id,
        "team": p.team,
        "weekdays": list(p.weekdays),
        "start": _clock(p.start),
        "end": _clock(p.end),
        "zone": p.zone_id,
        "grace_min": p.grace_min,
        "checkin_window_min": p.checkin_window_min,
        "absent_after_min": p.absent_after_min,
        "valid_from": _day(p.valid_from),
        "valid_until": _day(p.valid_until),
    }


def override_json(o: attendance.ShiftOverride) -> dict[str, Any]:
    return {
        "id": o.id,
        "person": o.staff_id,
        "day": _day(o.day),
        "kind": o.kind,
        "start": _clock(o.start),
        "end": _clock(o.end),
        "zone": o.zone_id,
        "note": o.note,
    }


def holiday_json(h: attendance.HolidayRow) -> dict[str, Any]:
    return {"id": h.id, "day": _day(h.day), "unit": h.org_unit_id, "name": h.name}


def leave_json(lv: attendance.LeaveRow) -> dict[str, Any]:
    return {
        "id": lv.id,
        "person": lv.staff_id,
        "from": _day(lv.first_day),
        "to": _day(lv.last_day),
        "kind": lv.kind,
        "note": lv.note,
    }


def shift_json(s: PlannedShift) -> dict[str, Any]:
    return {
        "person_id": s.person_id,
        "person_code": s.person_code,
        "person_name": s.person_name,
        "org_unit_id": s.org_unit_id,
        "device_id": s.device_id,
        "day": _day(s.day),
        "start": iso(s.start),
        "end": iso(s.end),
        "zone_id": s.zone_id,
        "grace_min": s.grace_min,
        "checkin_window_min": s.checkin_window_min,
        "absent_after_min": s.absent_after_min,
        "status": s.status,
        "leave_kind": s.leave_kind,
    }


# --- request parts --------------------------------------------------------------------------------------


def _reader(request: web.Request) -> Principal:
    who = principal(request)
    who.require(*READERS)
    return who


def _admin(request: web.Request) -> Principal:
    who = principal(request)
    who.require("admin")
    return who


def _checked(check: Callable[..., T], *args: Any) -> T:
    """A fields check whose ValueError becomes a 400 with its reason."""
    try:
        return check(*args)
    except ValueError as e:
        raise json_error(web.HTTPBadRequest, str(e)) from None


def _path_id(request: web.Request, what: str) -> int:
    row_id = int(request.match_info["id"])  # the routes admit digits only
    if row_id > MAX_ID:
        raise json_error(web.HTTPNotFound, f"no {what} {row_id}")
    return row_id


def _body_id(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_ID:
        raise json_error(web.HTTPBadRequest, f"{what}: an id")
    return value


def _only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise json_error(web.HTTPBadRequest, f"unknown fields {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def _dates(request: web.Request) -> tuple[date | None, date | None]:
    """The `from` and `to` query parameters (inclusive local dates; either may be left out)."""
    q = request.query
    first = _checked(fields.day, q["from"], "from") if q.get("from") else None
    last = _checked(fields.day, q["to"], "to") if q.get("to") else None
    if first is not None and last is not None and last < first:
        raise json_error(web.HTTPBadRequest, "to is before from")
    return first, last


def _person_param(request: web.Request) -> int | None:
    value = request.query.get("person")
    if not value:
        return None
    if not value.isdigit() or int(value) > MAX_ID:
        raise json_error(web.HTTPBadRequest, "person: an id")
    return int(value)


def _page(found: list[T], limit: int, offset: int) -> list[T]:
    return found[offset : offset + limit]


async def _unit_ref(conn: AsyncConnection, who: Principal, value: Any) -> int | None:
    """A unit id from a body: one of the caller's units, or null when the caller sees rows without one."""
    if value is None:
        if not who.sees_unit(None):
            raise json_error(web.HTTPBadRequest, "unit: required, one of your units")
        return None
    unit_id = _body_id(value, "unit")
    if not who.sees_unit(unit_id) or await users.unit_by_id(conn, unit_id) is None:
        raise json_error(web.HTTPBadRequest, f"unit: no unit {unit_id} among yours")
    return unit_id


async def _person_ref(conn: AsyncConnection, who: Principal, value: Any) -> attendance.Staff:
    staff_id = _body_id(value, "person")
    person = await attendance.get_staff(conn, staff_id)
    if person is None or not who.sees_unit(person.unit.id if person.unit else None):
        raise json_error(web.HTTPBadRequest, f"person: no person {staff_id} among yours")
    return person


async def _grid_ref(conn: AsyncConnection, who: Principal, value: Any) -> int:
    zone_id = _body_id(value, "zone")
    zone = await zones.get(conn, zone_id)
    if zone is None or not who.sees_unit(zone.unit.id if zone.unit else None):
        raise json_error(web.HTTPBadRequest, f"zone: no zone {zone_id} among yours")
    if zone.kind != "duty_grid":
        raise json_error(web.HTTPBadRequest, f"zone: zone {zone_id} is a {zone.kind}, not a duty_grid")
    return zone_id


async def _device_ref(conn: AsyncConnection, who: Principal, value: Any) -> int | None:
    if value is None:
        return None
    device_id = _body_id(value, "device")
    found = await devices.by_ids(conn, [device_id])
    if device_id not in found or not who.sees_unit(found[device_id].org_unit_id):
        raise json_error(web.HTTPBadRequest, f"device: no device {device_id} among yours")
    return device_id


def _taken(e: attendance.Taken, what: str) -> web.HTTPException:
    reasons = {
        "code": f"another {what} has this code",
        "device": "the device is another person's phone",
        "day": f"the {what} exists already",
    }
    return json_error(web.HTTPConflict, reasons[e.what])


# --- staff ----------------------------------------------------------------------------------------------

_STAFF_FIELDS = ("code", "name", "role", "unit", "team", "device", "enabled")


async def _visible_staff(conn: AsyncConnection, who: Principal, staff_id: int) -> attendance.Staff:
    person = await attendance.get_staff(conn, staff_id)
    if person is None or not who.sees_unit(person.unit.id if person.unit else None):
        raise json_error(web.HTTPNotFound, f"no person {staff_id}")
    return person


async def list_staff(request: web.Request) -> web.Response:
    who = _reader(request)
    q = request.query
    unit, limit, offset = unit_and_page(request)
    role = q.get("role") or None
    if role is not None:
        _checked(fields.role, role)
    enabled = q.get("enabled") or None
    if enabled not in (None, "true", "false"):
        raise json_error(web.HTTPBadRequest, "enabled: true or false")
    async with request.app[ATTENDANCE].pool.connection() as conn:
        unit_ids, unitless = await unit_scope(conn, who, None if unit is None else [unit])
        found = await attendance.search_staff(
            conn,
            unit_ids=unit_ids,
            with_unitless=unitless,
            role=role,
            team=q.get("team") or None,
            enabled=None if enabled is None else enabled == "true",
            text=q.get("q"),
        )
    return web.json_response({"staff": [staff_json(s) for s in _page(found, limit, offset)], "total": len(found)})


async def one_staff(request: web.Request) -> web.Response:
    who = _reader(request)
    async with request.app[ATTENDANCE].pool.connection() as conn:
        person = await _visible_staff(conn, who, _path_id(request, "person"))
    return web.json_response(staff_json(person))


async def _staff_changes(conn: AsyncConnection, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if "code" in body:
        changes["code"] = _checked(fields.code, body["code"])
    if "name" in body:
        changes["name"] = _checked(fields.name, body["name"])
    if "role" in body:
        changes["role"] = _checked(fields.role, body["role"])
    if "unit" in body:
        changes["unit"] = await _unit_ref(conn, who, body["unit"])
    if "team" in body:
        changes["team"] = _checked(fields.team, body["team"])
    if "device" in body:
        changes["device"] = await _device_ref(conn, who, body["device"])
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise json_error(web.HTTPBadRequest, "enabled: true or false")
        changes["enabled"] = body["enabled"]
    return changes


async def create_staff(request: web.Request) -> web.Response:
    """POST /api/staff {code, name, role, unit?, team?, device?, enabled?}."""
    who = _admin(request)
    body = await json_object(request)
    _only(body, _STAFF_FIELDS)
    for required in ("code", "name", "role"):
        if required not in body:
            raise json_error(web.HTTPBadRequest, f"{required}: required")
    async with request.app[ATTENDANCE].pool.connection() as conn:
        body.setdefault("unit", None)
        given = await _staff_changes(conn, who, body)
        try:
            staff_id = await attendance.create_staff(
                conn,
                code=given["code"],
                name=given["name"],
                role=given["role"],
                unit_id=given["unit"],
                team=given.get("team"),
                device_id=given.get("device"),
                enabled=given.get("enabled", True),
            )
        except attendance.Taken as e:
            raise _taken(e, "person") from None
        person = await attendance.get_staff(conn, staff_id)
    assert person is not None
    return web.json_response(staff_json(person), status=201)


async def change_staff(request: web.Request) -> web.Response:
    who = _admin(request)
    staff_id = _path_id(request, "person")
    body = await json_object(request)
    _only(body, _STAFF_FIELDS)
    if not body:
        raise json_error(web.HTTPBadRequest, f"change some of {', '.join(_STAFF_FIELDS)}")
    async with request.app[ATTENDANCE].pool.connection() as conn:
        await _visible_staff(conn, who, staff_id)
        changes = await _staff_changes(conn, who, body)
        try:
            await attendance.update_staff(conn, staff_id, changes)
        except attendance.Taken as e:
            raise _taken(e, "person") from None
        person = await attendance.get_staff(conn, staff_id)
    assert person is not None
    return web.json_response(staff_json(person))


# --- shift patterns --------------------------------------------------------------------------------------

_PATTERN_FIELDS = ("code", "person", "unit", "team", *attendance.PATTERN_CHANGES)
_MINUTES_DEFAULTS = {
    "grace_min": plan.DEFAULT_GRACE_MIN,
    "checkin_window_min": plan.DEFAULT_CHECKIN_WINDOW_MIN,
    "absent_after_min": plan.DEFAULT_ABSENT_AFTER_MIN,
}


async def _visible_pattern(conn: AsyncConnection, who: Principal, pattern_id: int) -> attendance.ShiftPattern:
    found = await attendance.get_pattern(conn, pattern_id)
    if found is None or not who.sees_unit(found.scope_unit_id):
        raise json_error(web.HTTPNotFound, f"no shift pattern {pattern_id}")
    return found


async def _pattern_changes(conn: AsyncConnection, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """The changeable fields of a body, checked (the keys of attendance.PATTERN_CHANGES)."""
    changes: dict[str, Any] = {}
    if "code" in body:
        changes["code"] = None if body["code"] is None else _checked(fields.code, body["code"])
    if "weekdays" in body:
        changes["weekdays"] = _checked(fields.weekdays, body["weekdays"])
    for end in ("start", "end"):
        if end in body:
            changes[end] = _checked(fields.clock, body[end], end)
    if "zone" in body:
        changes["zone"] = await _grid_ref(conn, who, body["zone"])
    for what in _MINUTES_DEFAULTS:
        if what in body:
            changes[what] = _checked(fields.minutes, body[what], what)
    if "valid_from" in body:
        changes["valid_from"] = _checked(fields.day, body["valid_from"], "valid_from")
    if "valid_until" in body:
        until = body["valid_until"]
        changes["valid_until"] = None if until is None else _checked(fields.day, until, "valid_until")
    return changes


def _check_validity(valid_from: date, valid_until: date | None) -> None:
    if valid_until is not None and valid_until < valid_from:
        raise json_error(web.HTTPBadRequest, "valid_until is before valid_from")


async def list_patterns(request: web.Request) -> web.Response:
    who = _reader(request)
    unit, limit, offset = unit_and_page(request)
    async with request.app[ATTENDANCE].pool.connection() as conn:
        unit_ids, unitless = await unit_scope(conn, who, None if unit is None else [unit])
        found = await attendance.search_patterns(
            conn, unit_ids=unit_ids, with_unitless=unitless, staff_id=_person_param(request)
        )
    return web.json_response({"patterns": [pattern_json(p) for p in _page(found, limit, offset)], "total": len(found)})


async def one_pattern(request: web.Request) -> web.Response:
    who = _reader(request)
    async with request.app[ATTENDANCE].pool.connection() as conn:
        found = await _visible_pattern(conn, who, _path_id(request, "shift pattern"))
    return web.json_response(pattern_json(found))


async def create_pattern(request: web.Request) -> web.Response:
    """POST /api/shift-patterns {person | unit and team, weekdays, start, end, zone, ...}."""
    who = _admin(request)
    att = request.app[ATTENDANCE]
    body = await json_object(request)
    _only(body, _PATTERN_FIELDS)
    for required in ("weekdays", "start", "end", "zone"):
        if required not in body:
            raise json_error(web.HTTPBadRequest, f"{required}: required")
    team_given = "unit" in body or "team" in body
    if ("person" in body) == team_given:
        raise json_error(web.HTTPBadRequest, "give a person, or a unit and a team (not both)")
    async with att.pool.connection() as conn:
        staff_id = unit_id = team = None
        if "person" in body:
            staff_id = (await _person_ref(conn, who, body["person"])).id
        else:
            team = _checked(fields.team, body.get("team"))
            if body.get("unit") is None or team is None:
                raise json_error(web.HTTPBadRequest, "a team's pattern needs both unit and team")
            unit_id = await _unit_ref(conn, who, body["unit"])
        given = await _pattern_changes(conn, who, body)
        valid_from = given.get("valid_from") or datetime.now(att.tz).date()
        _check_validity(valid_from, given.get("valid_until"))
        try:
            pattern_id = await attendance.create_pattern(
                conn,
                code=given.get("code"),
                staff_id=staff_id,
                unit_id=unit_id,
                team=team,
                weekdays=given["weekdays"],
                start=given["start"],
                end=given["end"],
                zone_id=given["zone"],
                grace_min=given.get("grace_min", plan.DEFAULT_GRACE_MIN),
                checkin_window_min=given.get("checkin_window_min", plan.DEFAULT_CHECKIN_WINDOW_MIN),
                absent_after_min=given.get("absent_after_min", plan.DEFAULT_ABSENT_AFTER_MIN),
                valid_from=valid_from,
                valid_until=given.get("valid_until"),
            )
        except attendance.Taken as e:
            raise _taken(e, "shift pattern") from None
        found = await attendance.get_pattern(conn, pattern_id)
    assert found is not None
    return web.json_response(pattern_json(found), status=201)


async def change_pattern(request: web.Request) -> web.Response:
    who = _admin(request)
    pattern_id = _path_id(request, "shift pattern")
    body = await json_object(request)
    _only(body, attendance.PATTERN_CHANGES)
    if not body:
        raise json_error(web.HTTPBadRequest, f"change some of {', '.join(attendance.PATTERN_CHANGES)}")
    async with request.app[ATTENDANCE].pool.connection() as conn:
        old = await _visible_pattern(conn, who, pattern_id)
        changes = await _pattern_changes(conn, who, body)
        _check_validity(changes.get("valid_from", old.valid_from), changes.get("valid_until", old.valid_until))
        try:
            await attendance.update_pattern(conn, pattern_id, changes)
        except attendance.Taken as e:
            raise _taken(e, "shift pattern") from None
        found = await attendance.get_pattern(conn, pattern_id)
    assert found is not None
    return web.json_response(pattern_json(found))


async def delete_pattern(request: web.Request) -> web.Response:
    who = _admin(request)
    pattern_id = _path_id(request, "shift pattern")
    async with request.app[ATTENDANCE].pool.connection() as conn:
        await _visible_pattern(conn, who, pattern_id)
        await attendance.delete_pattern(conn, pattern_id)
    return web.Response(status=204)


# --- overrides ---------------------------------------------------------------------------------------------

_OVERRIDE_FIELDS = ("person", "day", "kind", "start", "end", "zone", "note")


async def list_overrides(request: web.Request) -> web.Response:
    who = _reader(request)
    unit, limit, offset = unit_and_page(request)
    first, last = _dates(request)
    async with request.app[ATTENDANCE].pool.connection() as conn:
        unit_ids, unitless = await unit_scope(conn, who, None if unit is None else [unit])
        found = await attendance.search_overrides(
            conn, unit_ids=unit_ids, with_unitless=unitless, staff_id=_person_param(request), first=first, last=last
        )
    return web.json_response(
        {"overrides": [override_json(o) for o in _page(found, limit, offset)], "total": len(found)}
    )


async def create_override(request: web.Request) -> web.Response:
    """POST /api/shift-overrides {person, day, kind: replace|cancel|extra, start?, end?, zone?, note?}."""
    who = _admin(request)
    body = await json_object(request)
    _only(body, _OVERRIDE_FIELDS)
    kind = body.get("kind")
    if kind not in plan.OVERRIDE_KINDS:
        raise json_error(web.HTTPBadRequest, f"kind: one of {', '.join(plan.OVERRIDE_KINDS)}")
    given = [k for k in ("start", "end", "zone") if body.get(k) is not None]
    if kind == "cancel" and given:
        raise json_error(web.HTTPBadRequest, "a cancel takes no start, end or zone")
    if kind == "extra" and len(given) < 3:
        raise json_error(web.HTTPBadRequest, "an extra shift needs start, end and zone")
    if kind == "replace" and not given:
        raise json_error(web.HTTPBadRequest, "a replace needs some of start, end and zone")
    day = _checked(fields.day, body.get("day"), "day")
    start = _checked(fields.clock, body["start"], "start") if "start" in given else None
    end = _checked(fields.clock, body["end"], "end") if "end" in given else None
    note = _checked(fields.note, body.get("note", ""))
    async with request.app[ATTENDANCE].pool.connection() as conn:
        person = await _person_ref(conn, who, body.get("person"))
        zone_id = await _grid_ref(conn, who, body["zone"]) if "zone" in given else None
        try:
            override_id = await attendance.create_override(
                conn, staff_id=person.id, day=day, kind=kind, start=start, end=end, zone_id=zone_id, note=note
            )
        except attendance.Taken as e:
            raise _taken(e, f"replace or cancel of {person.code} on {day}") from None
        found = await attendance.get_override(conn, override_id)
    assert found is not None
    return web.json_response(override_json(found), status=201)


async def delete_override(request: web.Request) -> web.Response:
    who = _admin(request)
    override_id = _path_id(request, "shift override")
    async with request.app[ATTENDANCE].pool.connection() as conn:
        found = await attendance.get_override(conn, override_id)
        if found is None or not who.sees_unit(found.scope_unit_id):
            raise json_error(web.HTTPNotFound, f"no shift override {override_id}")
        await attendance.delete_override(conn, override_id)
    return web.Response(status=204)


# --- holidays ---------------------------------------------------------------------------------------------


async def _holiday_units(conn: AsyncConnection, who: Principal, unit: int | None) -> list[int] | None:
    """The units whose holidays apply to the caller's units (or to the asked unit and those below it,
    among the caller's): those units and the units above them. None: every unit's."""
    unit_ids, _ = await unit_scope(conn, who, None if unit is None else [unit])
    if unit_ids is None:
        return None
    parents = await attendance.unit_parents(conn)
    applying = set(unit_ids)
    for unit_id in unit_ids:
        applying |= plan.units_up(unit_id, parents)
    return sorted(applying)


async def list_holidays(request: web.Request) -> web.Response:
    who = _reader(request)
    unit, limit, offset = unit_and_page(request)
    first, last = _dates(request)
    async with request.app[ATTENDANCE].pool.connection() as conn:
        found = await attendance.search_holidays(
            conn, unit_ids=await _holiday_units(conn, who, unit), first=first, last=last
        )
    return web.json_response({"holidays": [holiday_json(h) for h in _page(found, limit, offset)], "total": len(found)})


async def create_holiday(request: web.Request) -> web.Response:
    """POST /api/holidays {day, unit?: id or null (every unit), name?}."""
    who = _admin(request)
    body = await json_object(request)
    _only(body, ("day", "unit", "name"))
    day = _checked(fields.day, body.get("day"), "day")
    name = body.get("name", "")
    if not isinstance(name, str) or len(name) > fields.MAX_NAME:
        raise json_error(web.HTTPBadRequest, f"name must be text of at most {fields.MAX_NAME} characters")
    async with request.app[ATTENDANCE].pool.connection() as conn:
        unit_id = await _unit_ref(conn, who, body.get("unit"))
        try:
            holiday_id = await attendance.create_holiday(conn, day=day, unit_id=unit_id, name=name)
        except attendance.Taken as e:
            raise _taken(e, f"holiday of unit {unit_id} on {day}" if unit_id else f"holiday on {day}") from None
        found = await attendance.get_holiday(conn, holiday_id)
    assert found is not None
    return web.json_response(holiday_json(found), status=201)


async def delete_holiday(request: web.Request) -> web.Response:
    who = _admin(request)
    holiday_id = _path_id(request, "holiday")
    async with request.app[ATTENDANCE].pool.connection() as conn:
        found = await attendance.get_holiday(conn, holiday_id)
        applying = await _holiday_units(conn, who, None)
        if found is None or not (found.org_unit_id is None or applying is None or found.org_unit_id in applying):
            raise json_error(web.HTTPNotFound, f"no holiday {holiday_id}")
        if not who.sees_unit(found.org_unit_id):
            raise json_error(web.HTTPForbidden, "this holiday is set above your units")
        await attendance.delete_holiday(conn, holiday_id)
    return web.Response(status=204)


# --- leave --------------------------------------------------------------------------------------------------


async def list_leave(request: web.Request) -> web.Response:
    who = _reader(request)
    unit, limit, offset = unit_and_page(request)
    first, last = _dates(request)
    async with request.app[ATTENDANCE].pool.connection() as conn:
        unit_ids, unitless = await unit_scope(conn, who, None if unit is None else [unit])
        found = await attendance.search_leave(
            conn, unit_ids=unit_ids, with_unitless=unitless, staff_id=_person_param(request), first=first, last=last
        )
    return web.json_response({"leave": [leave_json(lv) for lv in _page(found, limit, offset)], "total": len(found)})


async def create_leave(request: web.Request) -> web.Response:
    """POST /api/leave {person, from, to (inclusive), kind, note?}."""
    who = _admin(request)
    body = await json_object(request)
    _only(body, ("person", "from", "to", "kind", "note"))
    first = _checked(fields.day, body.get("from"), "from")
    last = _checked(fields.day, body.get("to"), "to")
    if last < first:
        raise json_error(web.HTTPBadRequest, "to is before from")
    kind = _checked(fields.leave_kind, body.get("kind"))
    note = _checked(fields.note, body.get("note", ""))
    async with request.app[ATTENDANCE].pool.connection() as conn:
        person = await _person_ref(conn, who, body.get("person"))
        leave_id = await attendance.create_leave(
            conn, staff_id=person.id, first_day=first, last_day=last, kind=kind, note=note
        )
        found = await attendance.get_leave(conn, leave_id)
    assert found is not None
    return web.json_response(leave_json(found), status=201)


async def delete_leave(request: web.Request) -> web.Response:
    who = _admin(request)
    leave_id = _path_id(request, "leave")
    async with request.app[ATTENDANCE].pool.connection() as conn:
        found = await attendance.get_leave(conn, leave_id)
        if found is None or not who.sees_unit(found.scope_unit_id):
            raise json_error(web.HTTPNotFound, f"no leave {leave_id}")
        await attendance.delete_leave(conn, leave_id)
    return web.Response(status=204)


# --- planned shifts --------------------------------------------------------------------------------------


async def list_shifts(request: web.Request) -> web.Response:
    """GET /api/shifts?date=YYYY-MM-DD&unit=: the shifts starting on that local day, with their status."""
    who = _reader(request)
    att = request.app[ATTENDANCE]
    day = _checked(fields.day, request.query.get("date"), "date")
    unit, _, _ = unit_and_page(request)
    async with att.pool.connection() as conn:
        unit_ids, unitless = await unit_scope(conn, who, None if unit is None else [unit])
        # Staff without a unit come only with every unit's: then the caller's scope is applied here.
        found = await attendance.planned(conn, day, att.tz, None if unitless else unit_ids)
    shifts = [s for s in found if who.sees_unit(s.org_unit_id)]
    return web.json_response(
        {"date": day.isoformat(), "timezone": att.tz.key, "shifts": [shift_json(s) for s in shifts]}
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/staff", list_staff),
        web.post("/api/staff", create_staff),
        web.get(r"/api/staff/{id:\d+}", one_staff),
        web.patch(r"/api/staff/{id:\d+}", change_staff),
        web.get("/api/shift-patterns", list_patterns),
        web.post("/api/shift-patterns", create_pattern),
        web.get(r"/api/shift-patterns/{id:\d+}", one_pattern),
        web.patch(r"/api/shift-patterns/{id:\d+}", change_pattern),
        web.delete(r"/api/shift-patterns/{id:\d+}", delete_pattern),
        web.get("/api/shift-overrides", list_overrides),
        web.post("/api/shift-overrides", create_override),
        web.delete(r"/api/shift-overrides/{id:\d+}", delete_override),
        web.get("/api/holidays", list_holidays),
        web.post("/api/holidays", create_holiday),
        web.delete(r"/api/holidays/{id:\d+}", delete_holiday),
        web.get("/api/leave", list_leave),
        web.post("/api/leave", create_leave),
        web.delete(r"/api/leave/{id:\d+}", delete_leave),
        web.get("/api/shifts", list_shifts),
    ]
