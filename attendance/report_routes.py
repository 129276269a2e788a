"""HTTP routes of the attendance reports: a day per person (JSON or CSV), counts per unit, on duty now.

Every report is judged as of the moment it is asked (attendance.evaluate): a day still going on shows
its shifts so far. Admins, dispatchers and auditors read them, within their units; `unit` narrows to a
unit and those below it. The per-person report is recorded in the audit log (it shows where people were).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web
from psycopg import AsyncConnection

from access import audit
from access.errors import json_error
from access.principal import Principal, principal
from attendance import fields, report
from attendance.admin_routes import ATTENDANCE
from attendance.alerting import iso
from attendance.derive import to_us
from attendance.evaluate import evaluate
from attendance.model import PlannedShift
from store import attendance, users
from store.users import Unit
from tracking.listing import unit_and_page
from tracking.live import ONLINE
from tracking.live_api import LIVE

READERS = ("admin", "dispatcher", "auditor")
FORMATS = ("json", "csv")


async def _scope(conn: AsyncConnection, who: Principal, unit: int | None) -> tuple[list[Unit], bool]:
    """The units to report (the caller's, or the asked one and those below it among them) and whether people
    without a unit are in."""
    units = [u for u in await users.all_units(conn) if who.sees_unit(u.id)]
    if unit is None:
        return units, who.sees_unit(None)
    if unit not in {u.id for u in units}:
        raise json_error(web.HTTPNotFound, f"no unit {unit}")
    below = set(await users.unit_subtree(conn, unit))
    return [u for u in units if u.id in below], False


async def _day_shifts(request: web.Request) -> tuple[date, list[Unit], list[PlannedShift]]:
    who = principal(request)
    who.require(*READERS)
    att = request.app[ATTENDANCE]
    try:
        day = fields.day(request.query.get("date") or datetime.now(att.tz).date().isoformat(), "date")
    except ValueError as e:
        raise json_error(web.HTTPBadRequest, str(e)) from None
    unit, _, _ = unit_and_page(request)
    async with att.pool.connection() as conn:
        units, unitless = await _scope(conn, who, unit)
        ids = {u.id for u in units}
        found = await attendance.planned(conn, day, att.tz, None if unitless else sorted(ids))
    return day, units, [s for s in found if s.org_unit_id in ids or (unitless and s.org_unit_id is None)]


async def day_report(request: web.Request) -> web.Response:
    """GET /api/attendance?date=YYYY-MM-DD&unit=&format=json|csv"""
    fmt = request.query.get("format") or "json"
    if fmt not in FORMATS:
        raise json_error(web.HTTPBadRequest, f"format: one of {', '.join(FORMATS)}")
    day, _, shifts = await _day_shifts(request)
    att = request.app[ATTENDANCE]
    now = datetime.now(UTC)
    async with att.pool.connection() as conn:
        records = [j.record for j in await evaluate(conn, shifts, now)]
    target = {"date": day.isoformat(), "unit": request.query.get("unit") or None}
    await audit.record(request, "export.csv" if fmt == "csv" else "attendance.report", target)
    if fmt == "csv":
        name = f"attendance-{day.isoformat()}.csv"
        return web.Response(
            text=report.records_csv(records),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return web.json_response(
        {
            "date": day.isoformat(),
            "timezone": att.tz.key,
            "as_of": iso(now),
            "shifts": [report.record_json(r) for r in records],
        }
    )


async def day_summary(request: web.Request) -> web.Response:
    """GET /api/attendance/summary?date=&unit=: the day's counts per unit."""
    day, units, shifts = await _day_shifts(request)
    att = request.app[ATTENDANCE]
    now = datetime.now(UTC)
    async with att.pool.connection() as conn:
        records = [j.record for j in await evaluate(conn, shifts, now)]
    counts = [(r.shift.org_unit_id, report.summary_counts(r)) for r in records]
    return web.json_response(
        {
            "date": day.isoformat(),
            "timezone": att.tz.key,
            "as_of": iso(now),
            **report.by_unit(counts, units, report.SUMMARY),
        }
    )


async def on_duty_now(request: web.Request) -> web.Response:
    """GET /api/attendance/now?unit=: the people whose shift goes on now, online and offline, per unit."""
    who = principal(request)
    who.require(*READERS)
    att = request.app[ATTENDANCE]
    state = request.app[LIVE].state
    now = datetime.now(UTC)
    unit, _, _ = unit_and_page(request)
    async with att.pool.connection() as conn:
        units, unitless = await _scope(conn, who, unit)
        found = await attendance.planned_overlapping(conn, now, now + timedelta(microseconds=1), att.tz)
    ids = {u.id for u in units}
    status = state.status(to_us(now))
    counts: list[tuple[int | None, dict[str, Any]]] = []
    for s in found:
        if not (s.org_unit_id in ids or (unitless and s.org_unit_id is None)):
            continue
        slot = None if s.device_id is None else state.slot(s.device_id)
        online = slot is not None and int(status[slot]) == ONLINE
        counts.append((s.org_unit_id, {"on_duty": 1, "online": int(online), "offline": int(not online)}))
    return web.json_response({"time": iso(now), **report.by_unit(counts, units, report.NOW)})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/attendance", day_report),
        web.get("/api/attendance/summary", day_summary),
        web.get("/api/attendance/now", on_duty_now),
    ]
