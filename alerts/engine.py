"""The alert rules: alerts raised when a condition begins and ended when it ends.

Rules are rows of `alert_rules` (reloaded every `refresh_s`); each applies to the device kinds and
the unit (with the units below it) it names, or to all. Kinds:

- over zone transitions (with the geofence's hysteresis): `forbidden_zone` (entering a zone of
  kind `forbidden` raises, leaving ends) and `off_route` (leaving a `muck_route` corridor that
  applies to the truck raises, coming back ends);
- over the fixes themselves, held for a time (`conditions.py`, `runs.py`): `overspeed` (with speed
  zones), `alarm` (SOS and other JT/T 808 alarm bits), `forbidden_hours`, `stopped` (outside
  depots), `working_speed` (a sweeper on its route too fast to sweep) and `dumping` (a muck
  truck tipping, unloading (`unloading.py`) or standing outside construction and disposal sites);
- over time without fixes: `offline` while on shift (`offline.py`);
- over a whole shift: `coverage` of a route or patrol area (`coverage_job.py`);
- over a person's shift on a duty grid: `attendance` (late, absent, early leave, off post, ...:
  `attendance/job.py`).

Transitions marked late (a backfill) raise alerts marked late: recorded for the audit, shown as
such, never as something happening now; the rules over fixes pass late fixes by. Work is queued by
the synchronous commit path and done in order by one task, so the database round trips never hold
up ingest. Every alert records where it was seen (`evidence.lat`, `evidence.lon`) where a fix shows it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg_pool import AsyncConnectionPool

from alerts.conditions import RUN_RULES, Where, checks, evidence, site_kinds
from alerts.listeners import Listener, tell
from alerts.offline import Devices, OfflineWatcher
from alerts.runs import FixClock, RunTracker
from alerts.scope import rule_applies
from alerts.unloading import UnloadTracker
from alerts.zone_facts import ZoneFacts, Zones
from geofence.service import units_below
from geofence.transitions import Transition
from store import alerts, users
from store.alerts import EndAlert, NewAlert, Rule
from store.batch import PositionBatch

log = logging.getLogger("telematics.alerts")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# (device ids) -> (kind code per device (index in KINDS, -1 unknown), unit id per device (-1 none))
DeviceInfo = Callable[[npt.NDArray[np.int32]], tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]
_Change = NewAlert | EndAlert
# What starts and what ends each zone rule: (zone kind, raised on entering?)
ZONE_RULES = {"forbidden_zone": ("forbidden", True), "off_route": ("muck_route", False)}
RULE_KINDS = (*ZONE_RULES, *RUN_RULES, "offline", "coverage", "attendance")
_Rows = npt.NDArray[np.intp]
_Ids = npt.NDArray[np.int64]


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


class AlertEngine:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        zones: Zones,
        device_info: DeviceInfo,
        *,
        refresh_s: float = 10.0,
        max_queue: int = 100_000,
    ) -> None:
        self.pool = pool
        self.zones = zones
        self.facts = ZoneFacts(zones)
        self.device_info = device_info
        self.refresh_s = refresh_s
        self.max_queue = max_queue
        self.listeners: list[Listener] = []  # the live WebSocket
        self._rules: list[Rule] = []
        self._below: dict[int, set[int]] = {}
        self._queue: asyncio.Queue[list[_Change]] = asyncio.Queue()
        self._runs: dict[tuple[int, str], RunTracker] = {}
        self._clock = FixClock()  # what the rules over fixes have evaluated: one for all of them
        self._unloads: dict[int, UnloadTracker] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0

    async def start(self) -> None:
        await self.reload()
        self._tasks = [
            asyncio.create_task(self._work(), name="alerts"),
            asyncio.create_task(self._refresh(), name="alert-rules"),
        ]

    def watch_offline(self, devices: Devices, every_s: float = 30.0) -> OfflineWatcher:
        """Check the devices for silence (the `offline` rule): in one process of several."""
        watcher = OfflineWatcher(self, devices, self.device_info, every_s=every_s)
        self._tasks.append(asyncio.create_task(watcher.run(), name="alerts-offline"))
        return watcher

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def rules(self) -> list[Rule]:
        return self._rules

    async def reload(self) -> None:
        async with self.pool.connection() as conn:
            self._rules = await alerts.rules(conn, enabled_only=True)
            units = await users.all_units(conn)
        self._below = units_below(units)

    def transitions(self, found: list[Transition]) -> None:
        """From the geofence (synchronous, on the commit path): what begins and ends, queued for the writer."""
        rules = [r for r in self._rules if r.kind in ZONE_RULES]
        if not rules or not found:
            return
        kind, unit = self.device_info(np.array([t.device_id for t in found], dtype=np.int32))
        applies = {rule.id: self.applies_many(rule, kind, unit).tolist() for rule in rules}
        changes: list[_Change] = []
        for i, t in enumerate(found):  # in order: an end and a new start of the same alert must stay in order
            zone_kind = self.zones.zone_kinds.get(t.zone_id)
            for rule in rules:
                zone_wanted, raised_on_entering = ZONE_RULES[rule.kind]
                if zone_wanted != zone_kind or not applies[rule.id][i]:
                    continue
                if t.entered == raised_on_entering:
                    evidence = {"zone_id": t.zone_id, "began": _time(t.began_us).isoformat(),
                                "confirmed": _time(t.confirmed_us).isoformat()}  # fmt: skip
                    changes.append(
                        NewAlert(_time(t.began_us), t.device_id, rule.id, t.zone_id, rule.kind, rule.severity,
                                 t.late, evidence)
                    )  # fmt: skip
                else:
                    changes.append(EndAlert(t.device_id, rule.id, t.zone_id, _time(t.began_us), t.late))
        self.put(changes)

    def committed(self, batch: PositionBatch, row: _Rows, zone: _Ids) -> None:
        """Each committed batch with the applicable zones of its fixes (the geofence's fix consumers): the
        rules over fixes. `row`, `zone`: parallel arrays, a fix's batch row and a zone it lies in."""
        rules = [r for r in self._rules if r.kind in RUN_RULES]
        if not rules or not len(batch):
            return
        n = len(batch)
        kind, unit = self.device_info(batch.device_id)
        in_kinds: dict[tuple[str, ...], npt.NDArray[np.bool_]] = {}

        def inside(kinds: list[str]) -> npt.NDArray[np.bool_]:
            key = tuple(sorted(kinds))
            if key not in in_kinds:
                in_kinds[key] = self.facts.in_kinds(n, row, zone, kinds)
            return in_kinds[key]

        where = Where(inside, lambda: self.facts.speed_limit(n, row, zone), np.zeros(n, dtype=bool))
        scopes: dict[tuple[tuple[str, ...] | None, int | None], npt.NDArray[np.bool_]] = {}
        changes: list[_Change] = []
        for rule in rules:
            scope = (None if rule.device_kinds is None else tuple(rule.device_kinds), rule.org_unit_id)
            if scope not in scopes:  # rules of the same kinds and unit share the answer
                scopes[scope] = self.applies_many(rule, kind, unit)
            applies = scopes[scope]
            seen = where
            if rule.kind == "dumping":
                unloads = self._unloads.setdefault(rule.id, UnloadTracker())
                changes += self._unloaded(rule, unloads, batch, inside(site_kinds(rule.params)), applies)
                seen = replace(where, reports_load=unloads.reports_load(batch.device_id))
            for check in checks(rule, applies, batch, seen):
                tracker = self._runs.setdefault((rule.id, check.part), RunTracker(self._clock))
                for run in tracker.feed(batch.device_id, batch.fix_time, check.holds, check.value, check.limit,
                                        check.min_s):  # fmt: skip
                    if run.ended:
                        changes.append(EndAlert(run.device_id, rule.id, None, _time(run.at_us), False))
                        continue
                    shown = evidence(rule, check.part, run.peak, run.limit)
                    shown.update(_where(batch, run.row), raised_at_fix=_time(run.at_us).isoformat())
                    changes.append(
                        NewAlert(_time(run.began_us), run.device_id, rule.id, None, rule.kind, rule.severity, False,
                                 shown)
                    )  # fmt: skip
        self._clock.advance(batch.device_id, batch.fix_time)
        self.put(changes)

    def _unloaded(
        self,
        rule: Rule,
        unloads: UnloadTracker,
        batch: PositionBatch,
        allowed: npt.NDArray[np.bool_],
        applies: npt.NDArray[np.bool_],
    ) -> list[_Change]:
        """Dumping seen in the load state: an alert over the time between the last loaded and first empty fix."""
        lift_bit = rule.params.get("lift_bit")
        if lift_bit is not None:  # a terminal that reports its tipper is judged by it, not by its stops
            lifted = applies & (((batch.status >> int(lift_bit)) & 1) == 1)
            unloads.reporting.update(np.unique(batch.device_id[lifted]).tolist())
        changes: list[_Change] = []
        for u in unloads.feed(batch.device_id, batch.fix_time, batch.status, allowed, applies):
            shown = {"how": "unloaded", "load_before": "full" if u.load_before == 3 else "half",
                     "loaded_until": _time(u.loaded_us).isoformat(), "empty_from": _time(u.empty_us).isoformat(),
                     **_where(batch, u.row)}  # fmt: skip
            changes.append(
                NewAlert(_time(u.loaded_us), u.device_id, rule.id, None, rule.kind, rule.severity, False, shown)
            )
            changes.append(EndAlert(u.device_id, rule.id, None, _time(u.empty_us), False))
        return changes

    def put(self, changes: list[_Change]) -> None:
        if not changes:
            return
        if self._queue.qsize() >= self.max_queue:
            self.dropped += len(changes)  # the database is far behind: better no alert than no ingest
            log.error("alert queue full: %d alert changes not written", len(changes))
            return
        self._queue.put_nowait(changes)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.reload()
            except Exception:
                log.exception("reloading the alert rules failed")

    async def _work(self) -> None:
        while True:
            changes = await self._queue.get()
            while not self._queue.empty() and len(changes) < 5000:  # what waits goes along, in order
                changes += self._queue.get_nowait()
            try:
                await self._write(changes)
            except Exception:
                log.exception("writing %d alert changes failed", len(changes))

    def applies_many(
        self, rule: Rule, kind: npt.NDArray[np.int64], unit: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        return rule_applies(rule, kind, unit, self._below)

    async def _write(self, changes: list[_Change]) -> None:
        """In the order they happened: the end of an alert before a new start of the same one; the listeners
        see every step (raised, then ended) even when both are in one batch."""
        async with self.pool.connection() as conn:
            shown = await alerts.apply(conn, changes)
        tell(self.listeners, shown)


def _where(batch: PositionBatch, row: int) -> dict[str, Any]:
    return {"lat": round(float(batch.lat[row]), 6), "lon": round(float(batch.lon[row]), 6)}
