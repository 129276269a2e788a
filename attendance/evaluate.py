"""Shifts judged from what is stored: the reports and the alert job both start here.

One pass reads, for all the shifts at once: the phones' kinds, the attendance rules and the unit tree, the
duty grids, every phone's fixes over its shifts (one query, read as columns) and the phones' check-in/out events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg

from attendance.derive import DayRecord, PhoneMark, derive, to_us
from attendance.model import PlannedShift
from attendance.params import Judges, Params
from geofence.shapes import Shape, from_json
from store import alerts, attendance_events, attendance_fixes, devices, users, zones
from store.alerts import Rule
from store.attendance_events import Event


@dataclass(frozen=True, slots=True)
class Judged:
    record: DayRecord
    rule: Rule | None  # the attendance rule that judges the person (None: defaults, and no alerts)
    refused: list[Event] = field(default_factory=list)  # the phone's refused check-ins/outs in the shift's windows


def windows(s: PlannedShift) -> tuple[datetime, datetime]:
    """From the check-in window's start to the check-out window's end."""
    reach = timedelta(minutes=s.checkin_window_min)
    return s.start - reach, s.end + reach


async def grids(conn: psycopg.AsyncConnection, zone_ids: Iterable[int]) -> dict[int, Shape]:
    """The shapes of these zones (a zone gone or with a shape that no longer reads is left out)."""
    out: dict[int, Shape] = {}
    for zone_id in sorted(set(zone_ids)):
        zone = await zones.get(conn, zone_id)
        if zone is not None:
            try:
                out[zone_id] = from_json(zone.shape)
            except ValueError:
                continue
    return out


async def judges(conn: psycopg.AsyncConnection) -> Judges:
    return Judges(await alerts.rules(conn, enabled_only=True), await users.all_units(conn))


async def evaluate(conn: psycopg.AsyncConnection, shifts: Sequence[PlannedShift], now: datetime) -> list[Judged]:
    """Each shift as of `now`, in the order given."""
    phones = sorted({s.device_id for s in shifts if s.device_id is not None and s.status == "planned"})
    kinds = {d.id: d.kind for d in (await devices.by_ids(conn, phones)).values()}
    rules = await judges(conn)
    shapes = await grids(conn, [s.zone_id for s in shifts if s.zone_id is not None])
    spans: dict[int, tuple[datetime, datetime]] = {}
    for s in shifts:
        if s.device_id in kinds and s.status == "planned":
            since, until = windows(s)
            until = min(until, now)
            if s.device_id in spans:
                since, until = min(since, spans[s.device_id][0]), max(until, spans[s.device_id][1])
            spans[s.device_id] = (since, until)
    fixes = await attendance_fixes.fixes(conn, {d: w for d, w in spans.items() if w[0] <= w[1]})
    events: dict[int, list[Event]] = {}
    if spans:
        since = min(w[0] for w in spans.values())
        for e in await attendance_events.of_devices(conn, sorted(spans), since, now):
            events.setdefault(e.device_id, []).append(e)
    now_us = to_us(now)
    out = []
    for s in shifts:
        phone = s.device_id if s.device_id in kinds else None
        rule = rules.rule(s.org_unit_id, None if phone is None else kinds[phone])
        since, until = windows(s)
        mine = [e for e in events.get(phone, []) if since <= e.at <= until] if phone is not None else []
        marks = [PhoneMark(to_us(e.at), e.lat, e.lon, e.kind) for e in mine if e.accepted]
        t, lat, lon = fixes.of(phone)
        grid = shapes.get(s.zone_id) if s.zone_id is not None else None
        record = derive(s, grid, t, lat, lon, now_us, Params() if rule is None else Params.of(rule.params), marks)
        out.append(Judged(record, rule, [e for e in mine if not e.accepted]))
    return out
