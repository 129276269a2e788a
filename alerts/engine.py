"""The rules over zone transitions: alerts raised when a condition begins and ended when it ends.

Rules are rows of `alert_rules` (reloaded every `refresh_s`); each applies to the device kinds and
the unit (with the units below it) it names, or to all. Kinds handled so far:

- `forbidden_zone`: entering a zone of kind `forbidden` raises; leaving it ends the alert.
- `off_route`: leaving a `muck_route` corridor that applies to the truck raises; coming back ends it.

Transitions marked late (a backfill) raise alerts marked late: recorded for the audit, shown as
such, never as something happening now. Work is queued by the synchronous commit path and done in
order by one task, so the database round trips never hold up ingest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from geofence.service import units_below
from geofence.transitions import Transition
from store import alerts, users
from store.alerts import Alert, NewAlert, Rule

log = logging.getLogger("telematics.alerts")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# (device id) -> (kind name or None, unit id or None)
DeviceOf = Callable[[int], tuple[str | None, int | None]]
# What starts and what ends each zone rule: (zone kind, raised on entering?)
ZONE_RULES = {"forbidden_zone": ("forbidden", True), "off_route": ("muck_route", False)}


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


class AlertEngine:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        zone_kind: Callable[[int], str | None],
        device_of: DeviceOf,
        *,
        refresh_s: float = 10.0,
        max_queue: int = 100_000,
    ) -> None:
        self.pool = pool
        self.zone_kind = zone_kind
        self.device_of = device_of
        self.refresh_s = refresh_s
        self.max_queue = max_queue
        self.listeners: list[Callable[[Alert], None]] = []  # the live WebSocket
        self._rules: list[Rule] = []
        self._below: dict[int, set[int]] = {}
        self._queue: asyncio.Queue[list[Transition]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0

    async def start(self) -> None:
        await self.reload()
        self._tasks = [
            asyncio.create_task(self._work(), name="alerts"),
            asyncio.create_task(self._refresh(), name="alert-rules"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def reload(self) -> None:
        async with self.pool.connection() as conn:
            self._rules = await alerts.rules(conn, enabled_only=True)
            units = await users.all_units(conn)
        self._below = units_below(units)

    def transitions(self, found: list[Transition]) -> None:
        """From the geofence (synchronous, on the commit path): queued for the alert task."""
        if self._queue.qsize() >= self.max_queue:
            self.dropped += len(found)  # the database is far behind: better no alert than no ingest
            log.error("alert queue full: %d transitions not evaluated", len(found))
            return
        self._queue.put_nowait(found)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.reload()
            except Exception:
                log.exception("reloading the alert rules failed")

    async def _work(self) -> None:
        while True:
            found = await self._queue.get()
            try:
                await self._evaluate(found)
            except Exception:
                log.exception("evaluating %d transitions failed", len(found))

    def _applies(self, rule: Rule, device_id: int) -> bool:
        kind, unit = self.device_of(device_id)
        if rule.device_kinds is not None and kind not in rule.device_kinds:
            return False
        return rule.org_unit_id is None or (unit is not None and unit in self._below.get(rule.org_unit_id, set()))

    async def _evaluate(self, found: list[Transition]) -> None:
        raised: list[NewAlert] = []
        ended: list[tuple[Rule, Transition]] = []
        for t in found:
            zone_kind = self.zone_kind(t.zone_id)
            for rule in self._rules:
                wanted = ZONE_RULES.get(rule.kind)
                if wanted is None or wanted[0] != zone_kind or not self._applies(rule, t.device_id):
                    continue
                if t.entered == wanted[1]:
                    evidence = {"zone_id": t.zone_id, "began": _time(t.began_us).isoformat(),
                                "confirmed": _time(t.confirmed_us).isoformat()}  # fmt: skip
                    raised.append(
                        NewAlert(_time(t.began_us), t.device_id, rule.id, t.zone_id, rule.kind, rule.severity,
                                 t.late, evidence)
                    )  # fmt: skip
                else:
                    ended.append((rule, t))
        if not raised and not ended:
            return
        changed: list[int] = []
        async with self.pool.connection() as conn:
            if raised:
                changed += await alerts.raise_alerts(conn, raised)
            for rule, t in ended:
                changed += await alerts.end_alerts(conn, t.device_id, rule.id, t.zone_id, _time(t.began_us), t.late)
            shown = [a for a in [await alerts.get(conn, i) for i in changed] if a is not None]
        for alert in shown:
            for listener in self.listeners:
                try:
                    listener(alert)
                except Exception:
                    log.exception("alert listener %r failed", listener)
