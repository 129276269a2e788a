"""Gathers reports into batches, writes each batch in one transaction, acknowledges after the commit.

`submit` is synchronous and cheap (no await per report). A batch closes on size or on a short
deadline. While more than `max_pending` reports wait, the batcher asks every registered reader to
pause (asyncio transport flow control) and resumes them once the backlog has halved: a slow
database slows the terminals down instead of growing memory or dropping reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
import psycopg

from ingest.counters import Counters
from store.batch import PositionBatch, PositionRow

log = logging.getLogger("telematics.ingest")

Ack = Callable[[bool], None]  # called once: True after the commit, False when the report was refused
# Called once for a batch handed in whole: which of its rows are stored (True) or refused (False).
Settle = Callable[[npt.NDArray[np.bool_]], None]


class Flow(Protocol):
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class FlowGate:
    """The batcher's flow control as an event, for producers that are not transports (an HTTP request, a
    stream consumer): while it is clear they wait before handing in more rows."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()

    def pause_reading(self) -> None:
        self.open.clear()

    def resume_reading(self) -> None:
        self.open.set()


class BatchWriter(Protocol):
    async def write(self, batch: PositionBatch) -> int: ...
    async def close(self) -> None: ...


class _Part(NamedTuple):
    """Rows that were handed in together and hear back together."""

    batch: PositionBatch
    settle: Settle


class Batcher:
    def __init__(
        self,
        connect_writer: Callable[[], Awaitable[BatchWriter]],
        counters: Counters,
        *,
        max_rows: int = 1000,
        max_delay: float = 0.01,
        max_pending: int = 50000,
        on_commit: list[Callable[[PositionBatch], None]] | None = None,
        observe: Callable[[int, float], None] | None = None,
        writers: int = 2,
    ) -> None:
        self._connect_writer = connect_writer
        # More than one: while a batch is being committed the next is written on another connection,
        # so a report waits for about one commit, not for the one before it as well.
        self._writers: list[BatchWriter | None] = [None] * writers
        self.counters = counters
        self.max_rows = max_rows
        self.max_delay = max_delay
        self.max_pending = max_pending
        self.on_commit = on_commit or []
        self.observe = observe  # (rows in the batch, seconds from write to commit), for metrics
        # Two ways in: single rows (the per-message path) and whole batches (the bulk path).
        self._rows: list[PositionRow] = []
        self._acks: list[Ack] = []
        self._parts: list[_Part] = []
        self._pending = 0
        self._wake = asyncio.Event()
        self._flows: set[Flow] = set()
        self._paused = False
        self._first_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # --- producers ----------------------------------------------------------------------

    def submit(self, row: PositionRow, ack: Ack) -> None:
        self._rows.append(row)
        self._acks.append(ack)
        self._added(1)

    def submit_batch(self, batch: PositionBatch, settle: Settle) -> None:
        """Queue rows already in columns; `settle` hears once which were stored."""
        n = len(batch)
        if n > self.max_rows:  # keeps each transaction near the configured size
            for part in _split(_Part(batch, settle), -(-n // self.max_rows)):
                self._parts.append(part)
        else:
            self._parts.append(_Part(batch, settle))
        self._added(n)

    def _added(self, n: int) -> None:
        if self._pending == 0:
            self._first_at = time.monotonic()
        self._pending += n
        if self._pending >= self.max_rows or self._pending == n:
            self._wake.set()
        if not self._paused and self._pending >= self.max_pending:
            self._pause()

    def register(self, flow: Flow) -> None:
        self._flows.add(flow)
        if self._paused:
            flow.pause_reading()

    def unregister(self, flow: Flow) -> None:
        self._flows.discard(flow)

    @property
    def pending(self) -> int:
        return self._pending

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
        self._tasks = [asyncio.create_task(self._run(k), name=f"batcher-{k}") for k in range(len(self._writers))]

    async def close(self) -> None:
        """Write what is pending, then stop."""
        self._closing = True
        self._wake.set()
        await asyncio.gather(*self._tasks)
        for k, writer in enumerate(self._writers):
            if writer is not None:
                await writer.close()
                self._writers[k] = None

    async def _run(self, slot: int) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self._first_at + self.max_delay - time.monotonic()
            if wait > 0 and self._pending < self.max_rows and not self._closing:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            parts = self._take()
            if self._pending:
                self._first_at = time.monotonic()
            await self._write(parts, slot)
            if self._paused and self._pending <= self.max_pending // 2:
                self._resume()

    def _take(self) -> list[_Part]:
        """About `max_rows` rows of what waits, oldest ways in first."""
        parts: list[_Part] = []
        taken = 0
        if self._rows:
            rows, acks = self._rows[: self.max_rows], self._acks[: self.max_rows]
            del self._rows[: self.max_rows]
            del self._acks[: self.max_rows]
            parts.append(_Part(PositionBatch.from_rows(rows), _each(acks)))
            taken = len(rows)
        while self._parts and (taken == 0 or taken + len(self._parts[0].batch) <= self.max_rows):
            part = self._parts.pop(0)
            parts.append(part)
            taken += len(part.batch)
        self._pending -= taken
        return parts

    async def _write(self, parts: list[_Part], slot: int) -> None:
        batch = PositionBatch.concat([p.batch for p in parts])
        n = len(batch)
        delay = 0.1
        while True:
            try:
                writer = self._writers[slot]
                if writer is None:
                    writer = self._writers[slot] = await self._connect_writer()
                started = time.monotonic()
                inserted = await writer.write(batch)
                if self.observe is not None:
                    self.observe(n, time.monotonic() - started)
                break
            except (psycopg.OperationalError, OSError) as e:
                # The database is away: keep the batch, reconnect, try again; nothing is acked meanwhile.
                self.counters.inc("store.write_retries")
                log.warning("batch of %d not written (%s); retrying in %.1fs", n, e, delay)
                self._writers[slot] = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as e:
                # A row the database (or the writer) refuses: split until it is isolated, so the good
                # rows still land and the loop never dies on one bad report.
                if n == 1:
                    self.counters.inc("store.rows_refused")
                    log.error(
                        "report refused: %r (device %d, fix time %d µs)", e, batch.device_id[0], batch.fix_time[0]
                    )
                    _settle(parts[0], np.zeros(1, dtype=bool))
                    return
                halves = (
                    [parts[: len(parts) // 2], parts[len(parts) // 2 :]]
                    if len(parts) > 1
                    else [[p] for p in _split(parts[0], 2)]
                )
                for half in halves:
                    await self._write(half, slot)
                return
        self.counters.inc("store.rows_written", inserted)
        self.counters.inc("store.rows_duplicate", n - inserted)
        self.counters.inc("store.batches")
        for part in parts:
            _settle(part, np.ones(len(part.batch), dtype=bool))
        for consumer in self.on_commit:
            try:
                consumer(batch)
            except Exception:
                log.exception("batch consumer %r failed", consumer)


def _settle(part: _Part, stored: npt.NDArray[np.bool_]) -> None:
    try:
        part.settle(stored)
    except Exception:  # one producer's failure to answer must not stop the writing loop
        log.exception("answering a batch of %d failed", len(part.batch))


def _each(acks: list[Ack]) -> Settle:
    def settle(stored: npt.NDArray[np.bool_]) -> None:
        for ack, ok in zip(acks, stored.tolist(), strict=True):
            ack(ok)

    return settle


def _split(part: _Part, pieces: int) -> list[_Part]:
    """`part` in `pieces` (at most its length) parts whose outcomes are gathered into one call of its `settle`."""
    n = len(part.batch)
    bounds = [n * k // pieces for k in range(pieces + 1)]
    outcome = np.zeros(n, dtype=bool)
    left = [pieces]

    def piece(start: int) -> Settle:
        def settle(stored: npt.NDArray[np.bool_]) -> None:
            outcome[start : start + len(stored)] = stored
            left[0] -= 1
            if left[0] == 0:
                part.settle(outcome)

        return settle

    return [_Part(part.batch.take(slice(lo, hi)), piece(lo)) for lo, hi in itertools.pairwise(bounds)]
