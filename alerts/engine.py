"""The rules over zone transitions: alerts raised when a condition begins and ended when it ends.

Rules are rows of `alert_rules` (reloaded every `refresh_s`); each applies to the device kinds and
the unit (with the units below it) it names, or to all. Kinds handled so far:

- `forbidden_zone`: entering a zone of kind `forbidden` raises; leaving it ends the alert.
- `off_route`: leaving a `muck_route` corridor that applies to the truck raises; coming back ends it.
- `overspeed` (params `limit_kmh`, `min_s`): over the limit for `min_s` seconds raises (from the first
  fix over it); the first fix at or under it ends the alert (`runs.py`).
- `alarm` (params `bits`, default [0], the emergency button; `min_s` default 0): any of those JT/T 808
  alarm bits set raises; the first fix without them ends the alert.
- `forbidden_hours` (params `allowed`: [["22:00", "06:00"], ...] local time, `utc_offset_h` default 8,
  `min_speed_kmh` default 5, `min_s`): driving outside the permitted hours (muck trucks: nights only).

Transitions marked late (a backfill) raise alerts marked late: recorded for the audit, shown as
such, never as something happening now. Work is queued by the synchronous commit path and done in
order by one task, so the database round trips never hold up ingest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg_pool import AsyncConnectionPool

from alerts.runs import RunTracker
from geofence.service import units_below
from geofence.transitions import Transition
from store import alerts, users
from store.alerts import Alert, NewAlert, Rule
from store.batch import PositionBatch
from store.devices import KINDS

log = logging.getLogger("telematics.alerts")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# (device ids) -> (kind code per device (index in KINDS, -1 unknown), unit id per device (-1 none))
DeviceInfo = Callable[[npt.NDArray[np.int32]], tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]
_End = tuple[int, int, int | None, datetime, bool]  # device, rule, zone, end time, late
_Change = NewAlert | _End
# What starts and what ends each zone rule: (zone kind, raised on entering?)
ZONE_RULES = {"forbidden_zone": ("forbidden", True), "off_route": ("muck_route", False)}
RUN_RULES = ("overspeed", "alarm", "forbidden_hours")  # conditions of the fixes themselves, held for params.min_s
RULE_KINDS = (*ZONE_RULES, *RUN_RULES)


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


class AlertEngine:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        zone_kind: Callable[[int], str | None],
        device_info: DeviceInfo,
        *,
        refresh_s: float = 10.0,
        max_queue: int = 100_000,
    ) -> None:
        self.pool = pool
        self.zone_kind = zone_kind
        self.device_info = device_info
        self.refresh_s = refresh_s
        self.max_queue = max_queue
        self.listeners: list[Callable[[Alert], None]] = []  # the live WebSocket
        self._rules: list[Rule] = []
        self._below: dict[int, set[int]] = {}
        self._queue: asyncio.Queue[list[_Change]] = asyncio.Queue()
        self._runs: dict[int, RunTracker] = {}
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
        """From the geofence (synchronous, on the commit path): what begins and ends, queued for the writer."""
        rules = [r for r in self._rules if r.kind in ZONE_RULES]
        if not rules or not found:
            return
        kind, unit = self.device_info(np.array([t.device_id for t in found], dtype=np.int32))
        applies = {rule.id: self._applies_many(rule, kind, unit).tolist() for rule in rules}
        changes: list[_Change] = []
        for i, t in enumerate(found):  # in order: an end and a new start of the same alert must stay in order
            zone_kind = self.zone_kind(t.zone_id)
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
                    changes.append((t.device_id, rule.id, t.zone_id, _time(t.began_us), t.late))
        self._put(changes)

    def committed(self, batch: PositionBatch) -> None:
        """Each committed batch (the batcher's on_commit): the rules over fixes themselves (overspeed, alarms)."""
        rules = [r for r in self._rules if r.kind in RUN_RULES]
        if not rules or not len(batch):
            return
        kind, unit = self.device_info(batch.device_id)
        changes: list[_Change] = []
        for rule in rules:
            applies = self._applies_many(rule, kind, unit)
            min_s = float(rule.params.get("min_s", 10 if rule.kind == "overspeed" else 0))
            if rule.kind == "overspeed":
                limit = np.where(applies, float(rule.params.get("limit_kmh", 60)), np.nan)
                value = batch.speed_kmh.astype(np.float64)
                holds = value > limit
            elif rule.kind == "forbidden_hours":
                value = batch.speed_kmh.astype(np.float64)
                limit = np.full(len(batch), float(rule.params.get("min_speed_kmh", 5)))
                holds = applies & (value >= limit) & ~_allowed(batch.fix_time, rule.params)
            else:  # alarm: any of the JT/T 808 alarm bits named (default bit 0, the emergency button)
                mask = sum(1 << int(b) for b in rule.params.get("bits", [0]))
                value = batch.alarm.astype(np.float64)
                limit = np.full(len(batch), float(mask))
                holds = applies & ((batch.alarm & mask) != 0)
            tracker = self._runs.setdefault(rule.id, RunTracker())
            for run in tracker.feed(batch.device_id, batch.fix_time, holds, value, limit, min_s):
                if run.ended:
                    changes.append((run.device_id, rule.id, None, _time(run.at_us), False))
                    continue
                if rule.kind == "overspeed":
                    evidence: dict[str, Any] = {"limit_kmh": run.limit, "max_kmh": round(run.peak, 1)}
                elif rule.kind == "forbidden_hours":
                    evidence = {"allowed": rule.params.get("allowed", []), "max_kmh": round(run.peak, 1)}
                else:
                    evidence = {"alarm": int(run.peak), "bits": sorted(rule.params.get("bits", [0]))}
                evidence["raised_at_fix"] = _time(run.at_us).isoformat()
                changes.append(
                    NewAlert(_time(run.began_us), run.device_id, rule.id, None, rule.kind, rule.severity, False,
                             evidence)
                )  # fmt: skip
        self._put(changes)

    def _put(self, changes: list[_Change]) -> None:
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
            try:
                await self._write(changes)
            except Exception:
                log.exception("writing %d alert changes failed", len(changes))

    def _applies_many(
        self, rule: Rule, kind: npt.NDArray[np.int64], unit: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        ok = np.ones(len(kind), dtype=bool)
        if rule.device_kinds is not None:
            ok &= np.isin(kind, [KINDS.index(k) for k in rule.device_kinds if k in KINDS])
        if rule.org_unit_id is not None:
            ok &= np.isin(unit, sorted(self._below.get(rule.org_unit_id, set())))
        return ok

    async def _write(self, changes: list[_Change]) -> None:
        """In the order they happened: the end of an alert before a new start of the same one."""
        changed: list[int] = []
        async with self.pool.connection() as conn:
            for change in changes:
                if isinstance(change, NewAlert):
                    changed += await alerts.raise_alerts(conn, [change])
                else:
                    changed += await alerts.end_alerts(conn, *change)
            shown = [a for a in [await alerts.get(conn, i) for i in changed] if a is not None]
        for alert in shown:
            for listener in self.listeners:
                try:
                    listener(alert)
                except Exception:
                    log.exception("alert listener %r failed", listener)


def _allowed(fix_time_us: npt.NDArray[np.int64], params: dict[str, Any]) -> npt.NDArray[np.bool_]:
    """Whether each fix falls in one of the rule's permitted windows of local time (a window may span midnight)."""
    offset_s = round(float(params.get("utc_offset_h", 8)) * 3600)
    of_day = (fix_time_us // 1_000_000 + offset_s) % 86_400
    ok = np.zeros(len(fix_time_us), dtype=bool)
    for start, end in params.get("allowed", []):
        a, b = _seconds(start), _seconds(end)
        ok |= ((of_day >= a) & (of_day < b)) if a <= b else ((of_day >= a) | (of_day < b))
    return ok


def _seconds(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 3600 + int(minutes) * 60
