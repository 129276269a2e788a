"""The phones' check-ins and check-outs, as the MQTT ingest hands them over: judged, recorded, answered.

The ingest calls the desk with each check-in/out (a Position whose `extras["event"]` names it); every
claim is recorded in `attendance_events` with its verdict. Its position is stored as a fix too unless
it is a fake (a mock location, a jump from across town): a fake never moves the phone on the map nor
counts as being anywhere, while an honest claim refused for being outside the grid or off shift still
shows where the phone was. The phone is told the verdict on its message topic; a phone that is not
connected then learns nothing, and its claim stands as judged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from zoneinfo import ZoneInfo

import psycopg
import psycopg_pool
from psycopg_pool import AsyncConnectionPool

from attendance import checkin
from attendance.evaluate import grids, judges
from protocols import phone_mqtt
from protocols.messages import Position
from store import attendance, attendance_events, attendance_fixes
from store.attendance_events import Event
from store.devices import Device

log = logging.getLogger("telematics.attendance")

Publish = Callable[[str, bytes], Awaitable[None]]
# The plan allows check-in windows of up to 12 hours: a shift whose windows hold a time overlaps this reach.
_REACH = timedelta(hours=12)


class CheckinDesk:
    def __init__(self, pool: AsyncConnectionPool, tz: ZoneInfo, publish: Publish | None = None) -> None:
        self.pool = pool
        self.tz = tz
        self.publish = publish  # the ingest's MQTT connection; None: no answers

    async def __call__(self, device: Device, claim: Position) -> bool:
        """Judge and record the phone's check-in or check-out; True when its position is to be stored as a fix.
        While the database is away it keeps trying, so the message stays unacknowledged meanwhile."""
        c = checkin.Claim(claim.extras["event"], claim.time, claim.lat, claim.lon, claim.extras.get("mock") is True)
        delay = 0.1
        while True:
            try:
                stored = await self._record(device, c, claim.accuracy_m)
                break
            except (psycopg.OperationalError, psycopg_pool.PoolTimeout, OSError) as e:
                log.warning("check-in of %s not judged (%s); retrying in %.1fs", device.uid, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        await self._answer(device.uid, stored)
        return stored.reason not in checkin.FAKE

    async def _record(self, device: Device, c: checkin.Claim, accuracy_m: float | None) -> Event:
        async with self.pool.connection() as conn:
            shifts = await attendance.planned_overlapping(conn, c.at - _REACH, c.at + _REACH, self.tz)
            shift = checkin.shift_at(shifts, device.id, c.at)
            grid = None
            if shift is not None and shift.zone_id is not None:
                grid = (await grids(conn, [shift.zone_id])).get(shift.zone_id)
            previous = await attendance_fixes.last_fix_before(conn, device.id, c.at)
            unit = shift.org_unit_id if shift is not None else device.org_unit_id
            params = (await judges(conn)).params(unit, device.kind)
            verdict = checkin.judge(c, shift, grid, previous, params.max_walk_kmh)
            return await attendance_events.record(
                conn,
                person_id=None if shift is None else shift.person_id,
                device_id=device.id,
                kind=c.kind,
                at=c.at,
                lat=c.lat,
                lon=c.lon,
                accuracy_m=accuracy_m,
                accepted=verdict.accepted,
                reason=verdict.reason,
                mock=c.mock,
                speed_kmh=verdict.speed_kmh,
                zone_id=None if shift is None else shift.zone_id,
            )

    async def _answer(self, uid: str, e: Event) -> None:
        if self.publish is None:
            return
        try:
            payload = phone_mqtt.encode_attendance_answer(e.kind, e.at, e.accepted, e.reason)
            await self.publish(phone_mqtt.message_topic_for(uid), payload)
        except Exception as err:  # the broker is away, or the uid is no topic level: the verdict stands
            log.warning("attendance answer to %s not sent: %s", uid, err)
