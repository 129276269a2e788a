"""The one way every listener hands positions to storage: check, queue, and hear back after the commit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from ingest.batcher import Batcher, Settle
from ingest.counters import Counters
from ingest.fixes import BadFix, to_row
from protocols.messages import Position
from store.batch import PositionBatch
from store.devices import Device

Done = Callable[[bool], None]


class ReportSink:
    def __init__(
        self,
        batcher: Batcher,
        counters: Counters,
        *,
        h3_resolution: int = 9,
        max_future: timedelta = timedelta(minutes=10),
    ) -> None:
        self.batcher = batcher
        self.counters = counters
        self.h3_resolution = h3_resolution
        self.max_future = max_future

    def submit(self, device: Device, positions: Sequence[Position], done: Done, *, peer: str) -> int:
        """Queue a message's positions for `device`; `done(True)` once all are committed, `done(False)`
        if the database refused any. Bad fixes are counted and left out. Returns how many were queued:
        when none were, `done` is never called and the caller answers the terminal with an error."""
        now = datetime.now(UTC)
        rows = []
        for pos in positions:
            try:
                rows.append(to_row(pos, device.id, now, h3_resolution=self.h3_resolution, max_future=self.max_future))
            except BadFix as e:
                self.counters.bad_input("ingest.bad_fixes", peer, str(e))
        if not rows:
            return 0
        self.counters.inc(f"ingest.positions.{positions[0].protocol}", len(rows))
        ack = _AllCommitted(len(rows), done)
        for row in rows:
            self.batcher.submit(row, ack)
        return len(rows)

    def submit_batch(self, batch: PositionBatch, settle: Settle, *, protocol: str) -> None:
        """Queue rows a bulk decoder built in columns and `fixes_ok` passed."""
        self.counters.inc(f"ingest.positions.{protocol}", len(batch))
        self.batcher.submit_batch(batch, settle)


class _AllCommitted:
    """Calls `done` once, after all `n` rows are settled: True only if all were stored."""

    __slots__ = ("_done", "_ok", "_remaining")

    def __init__(self, n: int, done: Done) -> None:
        self._remaining = n
        self._ok = True
        self._done = done

    def __call__(self, ok: bool) -> None:
        self._ok = self._ok and ok
        self._remaining -= 1
        if self._remaining == 0:
            self._done(self._ok)
