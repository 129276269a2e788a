"""Gathers reports into batches, writes each batch in one transaction, acknowledges after the commit.

`submit` is synchronous and cheap (no await per report). A batch closes on size or on a short
deadline. While more than `max_pending` reports wait, the batcher asks every registered reader to
pause (asyncio transport flow control) and resumes them once the backlog has halved: a slow
database slows the terminals down instead of growing memory or dropping reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import psycopg

from ingest.counters import Counters
from store.batch import PositionBatch, PositionRow

log = logging.getLogger("telematics.ingest")

Ack = Callable[[bool], None]  # called once: True after the commit, False when the report was refused


class Flow(Protocol):
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class BatchWriter(Protocol):
    async def write(self, batch: PositionBatch) -> int: ...
    async def close(self) -> None: ...


class Batcher:
    def __init__(
        self,
        connect_writer: Callable[[], Awaitable[BatchWriter]],
        counters: Counters,
        *,
        max_rows: int = 2000,
        max_delay: float = 0.02,
        max_pending: int = 50000,
        on_commit: list[Callable[[PositionBatch], None]] | None = None,
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        self._connect_writer = connect_writer
        self._writer: BatchWriter | None = None
        self.counters = counters
        self.max_rows = max_rows
        self.max_delay = max_delay
        self.max_pending = max_pending
        self.on_commit = on_commit or []
        self.observe = observe  # (rows in the batch, seconds from write to commit), for metrics
        self._rows: list[PositionRow] = []
        self._acks: list[Ack] = []
        self._wake = asyncio.Event()
        self._flows: set[Flow] = set()
        self._paused = False
        self._first_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # --- producers ----------------------------------------------------------------------

    def submit(self, row: PositionRow, ack: Ack) -> None:
        if not self._rows:
            self._first_at = time.monotonic()
        self._rows.append(row)
        self._acks.append(ack)
        if len(self._rows) >= self.max_rows or len(self._rows) == 1:
            self._wake.set()
        if not self._paused and len(self._rows) >= self.max_pending:
            self._pause()

    def register(self, flow: Flow) -> None:
        self._flows.add(flow)
        if self._paused:
            flow.pause_reading()

    def unregister(self, flow: Flow) -> None:
        self._flows.discard(flow)

    @property
    def pending(self) -> int:
        return len(self._rows)

    @property
    def paused(self) -> bool:
        return self._paused

    def _pause(self) -> None:
        self._paused = True
        self.counters.inc("ingest.backpressure_pauses")
        for flow in list(self._flows):
            flow.pause_reading()

    def _resume(self) -> None:
        self._paused = False
        for flow in list(self._flows):
            flow.resume_reading()

    # --- the writing loop ---------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batcher")

    async def close(self) -> None:
        """Write what is pending, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    async def _run(self) -> None:
        while True:
            if not self._rows:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self._first_at + self.max_delay - time.monotonic()
            if wait > 0 and len(self._rows) < self.max_rows and not self._closing:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            rows = self._rows[: self.max_rows]
            acks = self._acks[: self.max_rows]
            del self._rows[: self.max_rows]
            del self._acks[: self.max_rows]
            if self._rows:
                self._first_at = time.monotonic()
            await self._write(rows, acks)
            if self._paused and len(self._rows) <= self.max_pending // 2:
                self._resume()

    async def _write(self, rows: list[PositionRow], acks: list[Ack]) -> None:
        batch = PositionBatch.from_rows(rows)
        delay = 0.1
        while True:
            try:
                if self._writer is None:
                    self._writer = await self._connect_writer()
                started = time.monotonic()
                inserted = await self._writer.write(batch)
                if self.observe is not None:
                    self.observe(len(rows), time.monotonic() - started)
                break
            except (psycopg.OperationalError, OSError) as e:
                # The database is away: keep the batch, reconnect, try again; nothing is acked meanwhile.
                self.counters.inc("store.write_retries")
                log.warning("batch of %d not written (%s); retrying in %.1fs", len(rows), e, delay)
                self._writer = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as e:
                # A row the database (or the writer) refuses: split until it is isolated, so the good
                # rows still land and the loop never dies on one bad report.
                if len(rows) == 1:
                    self.counters.inc("store.rows_refused")
                    log.error("report refused: %r (%r)", e, rows[0])
                    acks[0](False)
                    return
                mid = len(rows) // 2
                await self._write(rows[:mid], acks[:mid])
                await self._write(rows[mid:], acks[mid:])
                return
        self.counters.inc("store.rows_written", inserted)
        self.counters.inc("store.rows_duplicate", len(rows) - inserted)
        self.counters.inc("store.batches")
        for ack in acks:
            ack(True)
        for consumer in self.on_commit:
            try:
                consumer(batch)
            except Exception:
                log.exception("batch consumer %r failed", consumer)
