"""The process's live state: loaded at start, fed by every committed batch, saved and refreshed.

At start the state comes from `device_latest` (saved every few seconds) plus the positions
committed after that save, so a restart shows every device where it was without scanning the
positions table. Committed batches update it as they land (late fixes never move a device
back); heartbeats count as being seen. Devices added or changed in the database show up within
`refresh_s`. With several worker processes each one sees its own terminals' reports at once and
the others' through the saved state, within `save_s` + `refresh_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
from psycopg_pool import AsyncConnectionPool

from store import live_state
from store.batch import PositionBatch
from store.devices import Device
from tracking.live import LiveState

log = logging.getLogger("telematics.live")

# Rows received this long before the newest saved one may not have been in the saved state yet.
COMMIT_MARGIN_US = 60_000_000


class LiveService:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        state: LiveState,
        *,
        save_s: float = 5.0,
        refresh_s: float = 10.0,
        sweep_s: float = 1.0,
        shared: bool = False,
    ) -> None:
        self.pool = pool
        self.state = state
        self.save_s = save_s
        self.refresh_s = refresh_s
        self.sweep_s = sweep_s
        self.shared = shared  # other worker processes take reports too: read what they saved
        self.listeners: list[Callable[[], None]] = []  # told after anything changed (the WebSocket hub)
        self._saved_version = 0
        self._catalog_at: datetime | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._unknown: list[PositionBatch] = []  # fixes of devices not in the catalog yet, to take again
        self._learning: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with self.pool.connection() as conn:
            self._catalog_at = datetime.now(UTC)
            catalog = await live_state.device_catalog(conn)
            latest = await live_state.load_latest(conn)
            if not len(latest["device_id"]):  # nothing saved: not a reason to read the whole history below
                latest = await live_state.newest_fixes(conn)
            self.state.load(catalog, latest)
            newest = int(np.max(latest["last_seen_us"])) if len(latest["last_seen_us"]) else 0
            recent = await live_state.positions_since(conn, max(0, newest - COMMIT_MARGIN_US))
        self.state.apply(**recent)
        log.info("live state: %d devices, %d caught up from positions", len(catalog), len(recent["device_id"]))
        self._saved_version = self.state.current_version
        self._tasks = [
            asyncio.create_task(self._every(self.save_s, self._save), name="live-save"),
            asyncio.create_task(self._every(self.refresh_s, self._refresh), name="live-refresh"),
            asyncio.create_task(self._every(self.sweep_s, self._sweep), name="live-sweep"),
        ]

    async def close(self) -> None:
        if self._learning is not None:
            self._tasks.append(self._learning)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._save()
        except Exception:
            log.exception("saving the live state at shutdown failed")

    # --- fed by ingest -------------------------------------------------------------------------

    def committed(self, batch: PositionBatch) -> None:
        """A batch is in the database (the batcher's on_commit, or a processor's commit heard over NATS)."""
        unknown = self.state.unknown_fixes
        if self.state.apply_batch(batch):
            self._changed()
        if self.state.unknown_fixes > unknown:
            self._learn(batch)

    def _learn(self, batch: PositionBatch) -> None:
        """Fixes of devices added since the catalog was read (a single node learns of them from the terminal's
        connection; a processor or an API process only from their fixes): read the catalog now, not at the
        next refresh, and take the fixes again then."""
        if len(self._unknown) < 100:  # more waiting: they are all in the database, and the refresh reads them
            self._unknown.append(batch)
        if self._learning is None or self._learning.done():
            self._learning = asyncio.create_task(self._learn_now(), name="live-learn")

    async def _learn_now(self) -> None:
        try:
            await self._read_catalog()
        except Exception:
            log.exception("live state: reading new devices failed; the next refresh reads them")
        batches, self._unknown = self._unknown, []
        for batch in batches:
            if self.state.apply_batch(batch):
                self._changed()

    def know(self, device: Device) -> None:
        """A device read from the database (a terminal connecting): on the map from its first report."""
        self.state.set_device(
            device.id, device.uid, device.kind, device.org_unit_id, device.name, device.plate, device.enabled
        )

    def seen(self, device_id: int) -> None:
        """A heartbeat or other sign of life without a position."""
        if self.state.touch(device_id, time.time_ns() // 1000):
            self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    # --- periodic ------------------------------------------------------------------------------

    async def _every(self, seconds: float, step: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("live state: %s failed; again in %.0fs", getattr(step, "__name__", step), seconds)

    async def _save(self) -> None:
        version = self.state.current_version
        if version == self._saved_version:
            return
        snapshot = self.state.snapshot_for_save()
        changed = self.state.changed_since(self._saved_version)
        ids = self.state.column("device_id")[changed]
        keep = np.isin(snapshot["device_id"], ids)
        async with self.pool.connection() as conn:
            await live_state.save_latest(conn, **{name: col[keep] for name, col in snapshot.items()})
        self._saved_version = version

    async def _read_catalog(self) -> bool:
        """Devices added or changed since the last look; whether there were any."""
        started = datetime.now(UTC)
        assert self._catalog_at is not None
        async with self.pool.connection() as conn:
            changed = await live_state.device_catalog(conn, self._catalog_at - timedelta(seconds=5))
        self._catalog_at = started
        for d in changed:
            self.state.set_device(d.id, d.uid, d.kind, d.org_unit_id, d.name, d.plate, d.enabled)
        return bool(changed)

    async def _refresh(self) -> None:
        """Devices added or changed since the last look; with several workers, what the others saved."""
        changed = await self._read_catalog()
        moved = 0
        if self.shared:
            async with self.pool.connection() as conn:
                saved = await live_state.load_latest(conn)
            seen = saved.pop("last_seen_us")
            moved = self.state.apply(**saved, receive_time_us=seen)
        if changed or moved:
            self._changed()

    def _sweep(self) -> None:
        if len(self.state.sweep(time.time_ns() // 1000)):
            self._changed()
