"""The `offline` rule: a device not heard from (no fix, no heartbeat) for longer than a limit while on shift.

Params: `max_s` [1800], `shifts` (windows of local time when silence counts; none: always),
`utc_offset_h` [8], `max_age_s` [7 days]: a device silent for longer than that is out of service,
not offline on shift. Checked every `every_s` against the live state (one process does it); the
alert begins at the last contact and ends at the contact seen by the next check after it returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from alerts import windows
from store import alerts
from store.alerts import EndAlert, NewAlert, Rule

log = logging.getLogger("telematics.alerts")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Devices(Protocol):
    """The live state: every known device, when it was last heard from and where."""

    def __len__(self) -> int: ...
    def column(self, name: str) -> npt.NDArray[Any]: ...


class Engine(Protocol):
    pool: Any

    @property
    def rules(self) -> list[Rule]: ...

    def applies_many(
        self, rule: Rule, kind: npt.NDArray[np.int64], unit: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]: ...
    def put(self, changes: list[Any]) -> None: ...


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


class OfflineWatcher:
    def __init__(
        self,
        engine: Engine,
        devices: Devices,
        device_info: Callable[[npt.NDArray[np.int32]], tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]],
        *,
        every_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.devices = devices
        self.device_info = device_info
        self.every_s = every_s

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("checking for offline devices failed")
            await asyncio.sleep(self.every_s)

    async def check(self, now_us: int | None = None) -> None:
        """One pass: end the alerts of devices heard from again, raise those of devices silent too long."""
        rules = [r for r in self.engine.rules if r.kind == "offline"]
        async with self.engine.pool.connection() as conn:
            going_on = await alerts.ongoing(conn, "offline")
        if not rules and not going_on:
            return
        now = round(time.time() * 1e6) if now_us is None else now_us
        n = len(self.devices)
        ids = self.devices.column("device_id")[:n].astype(np.int64)
        seen = self.devices.column("last_seen_us")[:n]
        lat, lon = self.devices.column("lat")[:n], self.devices.column("lon")[:n]
        slot = {d: i for i, d in enumerate(ids.tolist())}
        changes: list[Any] = []
        open_ = set()
        for device, rule_id, began in going_on:
            i = slot.get(device)
            began_us = round((began - _EPOCH).total_seconds() * 1e6)
            if i is not None and int(seen[i]) > began_us:
                changes.append(EndAlert(device, rule_id, None, _time(int(seen[i])), False))
            else:
                open_.add((device, rule_id))
        kind, unit = self.device_info(ids.astype(np.int32))
        for rule in rules:
            p = rule.params
            if "shifts" in p and not windows.within(np.array([now]), p["shifts"], windows.offset_s(p))[0]:
                continue
            silent = now - seen
            due = self.engine.applies_many(rule, kind, unit) & (seen >= 0)
            due &= (silent > float(p.get("max_s", 1800)) * 1e6) & (silent <= float(p.get("max_age_s", 7 * 86400)) * 1e6)
            for i in np.flatnonzero(due).tolist():
                device = int(ids[i])
                if (device, rule.id) in open_:
                    continue
                where = {} if np.isnan(lat[i]) else {"lat": round(float(lat[i]), 6), "lon": round(float(lon[i]), 6)}
                last = _time(int(seen[i]))
                shown = {"last_seen": last.isoformat(), "max_s": float(p.get("max_s", 1800)), **where}
                changes.append(NewAlert(last, device, rule.id, None, rule.kind, rule.severity, False, shown))
        self.engine.put(changes)
