"""Writing position batches and reading positions back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from store import copy_binary
from store.batch import COLUMNS, PositionBatch

_COLS = ", ".join(COLUMNS)
# A per-connection staging table: COPY cannot skip duplicates, INSERT ... ON CONFLICT can.
_STAGING = "CREATE TEMP TABLE IF NOT EXISTS positions_staging (LIKE positions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
_COPY = f"COPY positions_staging ({_COLS}) FROM STDIN (FORMAT BINARY)"
_MERGE = (
    f"INSERT INTO positions ({_COLS}) SELECT {_COLS} FROM positions_staging "
    "ON CONFLICT (device_id, fix_time) DO NOTHING"
)


class PositionWriter:
    """Writes batches on one dedicated connection, one transaction per batch.

    `write` returns after the commit: a caller may acknowledge the reports then, and not before.
    """

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        if not conn.autocommit:
            raise ValueError("PositionWriter needs an autocommit connection (it manages its transactions)")
        self._conn = conn
        self._staged = False

    async def close(self) -> None:
        await self._conn.close()

    async def write(self, batch: PositionBatch) -> int:
        """Store the batch once (duplicates of stored reports are skipped); the number of new rows."""
        if not len(batch):
            return 0
        conn = self._conn
        if not self._staged:
            await conn.execute(_STAGING)  # outside the batch transaction, so a rollback keeps it
            self._staged = True
        async with conn.transaction():
            async with conn.cursor().copy(_COPY) as copy:  # type: ignore[arg-type]
                await copy.write(copy_binary.encode(batch))
            cur = await conn.execute(_MERGE)  # type: ignore[arg-type]
            return cur.rowcount


@dataclass(frozen=True, slots=True)
class StoredPosition:
    device_id: int
    fix_time: datetime
    receive_time: datetime
    lat: float
    lon: float
    speed_kmh: float | None
    course: float | None
    altitude_m: float | None
    accuracy_m: float | None
    satellites: int | None
    valid: bool
    status: int
    alarm: int
    mileage_km: float | None
    h3_cell: int
    protocol: str
    extras: dict[str, Any] | None


_SELECT = f"SELECT {_COLS} FROM positions"


async def latest(conn: psycopg.AsyncConnection, device_id: int) -> StoredPosition | None:
    """The newest fix of a device (by fix time, so a late backfill never hides a newer fix)."""
    cur = await conn.execute(
        f"{_SELECT} WHERE device_id = %s ORDER BY fix_time DESC LIMIT 1",  # type: ignore[arg-type]
        (device_id,),
    )
    row = await cur.fetchone()
    return StoredPosition(*row) if row else None


async def fix_seconds_by_uid(conn: psycopg.AsyncConnection) -> list[tuple[str, int]]:
    """(device uid, fix time in whole Unix seconds) of every stored report: for checking a load run."""
    cur = await conn.execute(
        "SELECT d.uid, extract(epoch FROM p.fix_time)::bigint FROM positions p JOIN devices d ON d.id = p.device_id"
    )
    return [(str(uid), int(t)) for uid, t in await cur.fetchall()]


async def set_chunk_interval(conn: psycopg.AsyncConnection, interval: timedelta) -> None:
    """Applies to chunks created from now on; existing chunks keep their size."""
    await conn.execute("SELECT set_chunk_time_interval('positions', %s::interval)", (interval,))


async def drop_older_than(conn: psycopg.AsyncConnection, age: timedelta) -> list[str]:
    """Retention: drop whole chunks older than `age`; the names of the dropped chunks."""
    cur = await conn.execute("SELECT drop_chunks('positions', older_than => %s::interval)", (age,))
    return [str(r[0]) for r in await cur.fetchall()]


async def bulk_load(conn: psycopg.AsyncConnection, batch: PositionBatch) -> None:
    """COPY a batch straight into positions, for loading history in bulk (benchmarks, migrations from another
    platform): no duplicate check, so the caller must bring rows that are not stored yet."""
    async with conn.cursor().copy(f"COPY positions ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:  # type: ignore[arg-type]
        await copy.write(copy_binary.encode(batch))
