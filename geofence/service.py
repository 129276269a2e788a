"""Every committed batch against the zones that apply to its devices: the enter and exit transitions.

Zones are loaded from the database into a `ZoneIndex` at start (the H3 covers are computed in a
thread: several seconds for thousands of zones) and refreshed every `refresh_s`. Which zones apply to
a device: the zones assigned to it, to its kind or to its unit (or a unit above it); a zone with no
assignments applies to every device of its own unit and the units below it, and a zone with neither
assignments nor a unit to every device. The transitions (with hysteresis, late fixes apart: see
`transitions.py`) go to the registered consumers, which is where the alert rules take them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import h3.api.basic_int as h3
import numpy as np
import numpy.typing as npt
from psycopg_pool import AsyncConnectionPool

from geofence import shapes
from geofence.transitions import Transition, Transitions
from geofence.zone_index import ZoneIndex
from store import users, zones
from store.batch import PositionBatch
from store.devices import KINDS

log = logging.getLogger("telematics.geofence")

KIND_CODES = {k: i for i, k in enumerate(KINDS)}
# (device ids) -> (kind code per device (-1 unknown), unit id per device (-1 none))
DeviceInfo = Callable[[npt.NDArray[np.int32]], tuple[npt.NDArray[np.integer], npt.NDArray[np.integer]]]


def _member(keys: npt.NDArray[np.int64], values: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """np.isin for keys already sorted and unique: a binary search, without sorting both again."""
    if not len(keys):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    return keys[at] == values


class _Applies:
    """Which (zone, device) pairs count, as sorted int64 keys for vectorized membership tests."""

    def __init__(
        self, everywhere: Iterable[int], by_device: Iterable[int], by_kind: Iterable[int], by_unit: Iterable[int]
    ) -> None:
        self.everywhere = np.unique(np.fromiter(everywhere, dtype=np.int64))
        self.by_device = np.unique(np.fromiter(by_device, dtype=np.int64))
        self.by_kind = np.unique(np.fromiter(by_kind, dtype=np.int64))
        self.by_unit = np.unique(np.fromiter(by_unit, dtype=np.int64))

    def mask(
        self,
        zone: npt.NDArray[np.int64],
        device: npt.NDArray[np.int64],
        kind: npt.NDArray[np.int64],
        unit: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.bool_]:
        ok = _member(self.everywhere, zone)
        ok |= _member(self.by_device, (zone << 32) | device)
        ok |= _member(self.by_kind, (zone << 8) | kind)
        ok |= _member(self.by_unit, (zone << 32) | unit)
        return ok


class GeofenceService:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        device_info: DeviceInfo,
        *,
        resolution: int = 9,
        transitions: Transitions | None = None,
        refresh_s: float = 10.0,
        gather_ms: float = 0.0,
        gather_rows: int = 20_000,
    ) -> None:
        """`gather_ms`: committed batches wait up to this long to be evaluated together (or until
        `gather_rows` wait), so the fixed cost of a pass is paid once for several: 0, each at once."""
        self.pool = pool
        self.device_info = device_info
        self.resolution = resolution
        self.transitions = transitions or Transitions()
        self.refresh_s = refresh_s
        self.index = ZoneIndex(resolution)
        self.consumers: list[Callable[[list[Transition]], None]] = []
        # Each committed batch with the applicable zones each fix lies in, as parallel arrays (point index, zone
        # id), exact and without hysteresis: what the rules over fixes need (speed zones, depots, sites).
        self.fix_consumers: list[Callable[[PositionBatch, npt.NDArray[np.intp], npt.NDArray[np.int64]], None]] = []
        self._applies = _Applies((), (), (), ())
        self.zone_kinds: dict[int, str] = {}
        self.zone_properties: dict[int, dict[str, Any]] = {}
        self._as_of: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self.fixes = 0  # evaluated, for metrics and the benchmark
        self.events = 0
        self.gather_s = gather_ms / 1000
        self.gather_rows = gather_rows
        self._waiting: list[PositionBatch] = []
        self._waiting_rows = 0
        self._timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._refresh_forever(), name="geofence-refresh")

    async def close(self) -> None:
        self.flush()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # --- zones ----------------------------------------------------------------------------------

    async def reload(self) -> None:
        """All enabled zones and their assignments, into a new index that replaces the old one."""
        async with self.pool.connection() as conn:
            started = (await (await conn.execute("SELECT now()")).fetchone() or [None])[0]
            found = await zones.all_enabled(conn)
            assigned = await zones.assignments_of(conn, [z.id for z in found])
            below = units_below(await users.all_units(conn))
        index = ZoneIndex(self.resolution)

        def build() -> None:
            for z in found:
                try:
                    index.add(z.id, shapes.from_json(z.shape))
                except ValueError as e:  # stored before a check existed: skip it, say so, go on
                    log.error("zone %d (%s) not indexed: %s", z.id, z.code, e)

        await asyncio.to_thread(build)
        self.index = index
        self.zone_kinds = {z.id: z.kind for z in found}
        self.zone_properties = {z.id: z.properties for z in found}
        self._applies = _applicability(found, assigned, below)
        self._as_of = started
        log.info("geofence: %d zones indexed", len(index))

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                async with self.pool.connection() as conn:
                    assert self._as_of is not None
                    changes = await zones.changed_after(conn, self._as_of - timedelta(seconds=5))
                if changes.zones or changes.deleted:
                    await self.reload()  # rebuilding is simple and correct; zones change rarely
            except Exception:
                log.exception("geofence: refreshing the zones failed; trying again in %.0f s", self.refresh_s)

    # --- fixes ----------------------------------------------------------------------------------

    def applies(
        self,
        zone: npt.NDArray[np.int64],
        device: npt.NDArray[np.int64],
        kind: npt.NDArray[np.int64],
        unit: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.bool_]:
        """Whether each zone applies to each device (parallel arrays; kind codes index KINDS, -1 unknown)."""
        return self._applies.mask(zone, device, kind, unit)

    def committed(self, batch: PositionBatch) -> None:
        """A committed batch (the batcher's on_commit), evaluated now or with the next ones (`gather_ms`)."""
        if not len(batch):
            return
        self._waiting.append(batch)
        self._waiting_rows += len(batch)
        if self.gather_s <= 0 or self._waiting_rows >= self.gather_rows:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.gather_s, self.flush)

    def flush(self) -> None:
        """Evaluate the committed batches waiting, as one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiting:
            return
        batch = PositionBatch.concat(self._waiting)
        self._waiting, self._waiting_rows = [], 0
        self._evaluate(batch)

    def _evaluate(self, batch: PositionBatch) -> None:
        """Memberships and transitions to the consumers."""
        if not len(self.index):
            point, zone = np.empty(0, np.intp), np.empty(0, np.int64)
        else:
            cells = batch.h3_cell if self.resolution == self._batch_resolution(batch) else None
            point, zone = self.index.containing(batch.lat, batch.lon, cells)
        if len(point):
            device = batch.device_id[point].astype(np.int64)
            kind, unit = self.device_info(batch.device_id[point])
            keep = self._applies.mask(zone, device, np.asarray(kind, np.int64), np.asarray(unit, np.int64))
            point, zone = point[keep], zone[keep]
        for fix_consumer in self.fix_consumers:
            try:
                fix_consumer(batch, point, zone)
            except Exception:
                log.exception("geofence fix consumer %r failed", fix_consumer)
        if not len(self.index):
            return
        found = self.transitions.feed(batch.device_id, batch.fix_time, batch.accuracy_m.astype(np.float64), point, zone)
        self.fixes += len(batch)
        if found:
            self.events += len(found)
            for consumer in self.consumers:
                try:
                    consumer(found)
                except Exception:
                    log.exception("geofence consumer %r failed", consumer)

    @staticmethod
    def _batch_resolution(batch: PositionBatch) -> int:
        return int(h3.get_resolution(int(batch.h3_cell[0])))


def units_below(units: list[users.Unit]) -> dict[int, set[int]]:
    """Each unit and every unit below it."""
    children: dict[int | None, list[int]] = {}
    for u in units:
        children.setdefault(u.parent_id, []).append(u.id)
    out: dict[int, set[int]] = {}
    for u in units:
        seen, todo = {u.id}, [u.id]
        while todo:
            for c in children.get(todo.pop(), []):
                if c not in seen:
                    seen.add(c)
                    todo.append(c)
        out[u.id] = seen
    return out


def _applicability(
    found: list[zones.Zone], assigned: dict[int, zones.Assignments], below: dict[int, set[int]]
) -> _Applies:
    everywhere: list[int] = []
    by_device: list[int] = []
    by_kind: list[int] = []
    by_unit: list[int] = []
    for z in found:
        a = assigned.get(z.id, zones.Assignments())
        if not (a.devices or a.kinds or a.units):
            if z.unit is None:
                everywhere.append(z.id)
            else:
                by_unit += [(z.id << 32) | u for u in below.get(z.unit.id, {z.unit.id})]
            continue
        by_device += [(z.id << 32) | d for d in a.devices]
        by_kind += [(z.id << 8) | KIND_CODES[k] for k in a.kinds if k in KIND_CODES]
        for unit in a.units:
            by_unit += [(z.id << 32) | u for u in below.get(unit, {unit})]
    return _Applies(everywhere, by_device, by_kind, by_unit)
