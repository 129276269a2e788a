"""The attendance alerts, raised and ended every `every_s` from what is stored (one process runs it).

Each pass judges every planned shift that goes on now or ended within `lookback` (attendance.evaluate)
and makes the alerts of the `attendance` rule match what the shifts call for (attendance.alerting): an
alert is known by its device, kind and start, so one raised before (by this pass or an earlier process)
is not raised again; one that is over gets its end; one going on that no shift calls for any more (the
plan changed, late fixes closed a gap, the rule was turned off) ends now. Only the alerts that began
within the windows of the shifts looked at are matched so; one of a shift that left the look back while
no server ran ends when the device's next alert of its kind begins. A shift is judged for the last time
once its check-out window and `settle` are over; late data after that shows in the reports, not in
alerts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from psycopg_pool import AsyncConnectionPool

from alerts.listeners import tell
from attendance.alerting import Wanted, wanted
from attendance.evaluate import Judged, evaluate, windows
from attendance.params import ATTENDANCE
from store import alerts, attendance
from store.alerts import Alert, NewAlert

log = logging.getLogger("telematics.attendance")

_Key = tuple[int, int, str, datetime]  # device, rule, kind, start


class AttendanceJob:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        tz: ZoneInfo,
        listeners: Sequence[Callable[[Alert], None]] = (),
        *,
        every_s: float = 30.0,
        lookback: timedelta = timedelta(hours=12),
        settle: timedelta = timedelta(minutes=10),
    ) -> None:
        self.pool = pool
        self.tz = tz
        self.listeners = listeners  # told of each alert raised or ended (the live WebSocket, the outputs)
        self.every_s = every_s
        self.lookback = lookback
        self.settle = settle
        self._final: dict[tuple[int, datetime], datetime] = {}  # shifts judged for the last time -> their end

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("attendance pass failed")
            await asyncio.sleep(self.every_s)

    async def check(self, now: datetime | None = None) -> None:
        """One pass as of `now` (default: the clock)."""
        now = now or datetime.now(UTC)
        async with self.pool.connection() as conn:
            rule_ids = [r.id for r in await alerts.rules(conn) if r.kind == ATTENDANCE]  # disabled too: to end theirs
            shifts = [
                s
                for s in await attendance.planned_overlapping(conn, now - self.lookback, now, self.tz)
                if s.device_id is not None and (s.person_id, s.start) not in self._final
            ]
            judged = [j for j in await evaluate(conn, shifts, now) if j.rule is not None]
            # The alerts of these shifts, a rule's that is off now included: those will end.
            since = min([windows(s)[0] for s in shifts], default=now)
            known = await alerts.of_rules(conn, rule_ids, since, now) if rule_ids else []
            shown = await self._reconcile(conn, judged, known, now)
        tell(self.listeners, shown)
        for j in judged:
            s = j.record.shift
            if now >= windows(s)[1] + self.settle:
                self._final[(s.person_id, s.start)] = s.end
        self._final = {k: end for k, end in self._final.items() if end > now - 2 * self.lookback}

    async def _reconcile(
        self, conn: psycopg.AsyncConnection, judged: list[Judged], known: list[Alert], now: datetime
    ) -> list[Alert]:
        """Raise and end what differs; each alert read back after each change (raised, then ended)."""
        want: dict[_Key, tuple[Judged, Wanted]] = {}
        for j in judged:
            assert j.rule is not None and j.record.shift.device_id is not None
            for w in wanted(j.record, j.refused):
                want[(j.record.shift.device_id, j.rule.id, w.kind, w.started)] = (j, w)
        have = {(a.device_id, a.rule_id, a.kind, a.started_at): a for a in known}
        shown: list[Alert] = []

        async def show(ids: list[int]) -> None:
            for alert_id in ids:
                found = await alerts.get(conn, alert_id)
                if found is not None:
                    shown.append(found)

        async def end(a: Alert, at: datetime) -> None:
            await show(await alerts.end_alerts(conn, a.device_id, a.rule_id, a.zone_id, at, False, a.kind))

        # Ends first: a new alert of a kind is raised only while the device has none of that kind going on.
        for key, a in have.items():
            if a.ended_at is None and key not in want:
                await end(a, now)
        for key, (_, w) in want.items():
            old = have.get(key)
            if old is not None and old.ended_at is None and w.ended is not None:
                await end(old, w.ended)
        for key, (j, w) in want.items():
            if key in have:
                continue
            device, rule_id, kind, started = key
            assert j.rule is not None
            zone = j.record.shift.zone_id
            # One of the kind still going on from before the window (no pass judged its shift to the end) would
            # keep the new one out: it ends where the new one begins.
            await show(await alerts.end_alerts(conn, device, rule_id, zone, started, False, kind))
            new = NewAlert(started, device, rule_id, zone, kind, j.rule.severity, False, w.evidence)
            raised = await alerts.raise_alerts(conn, [new])
            await show(raised)
            if raised and w.ended is not None:
                await show(await alerts.end_alerts(conn, device, rule_id, zone, w.ended, False, kind))
        return shown
