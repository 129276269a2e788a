"""Fixes in a set of H3 cells during a time window: the read behind "who was here" (positions_cell_time).

The rows come back as one row of five binary strings, one per column (`string_agg` of each value's
binary send form), and become numpy arrays without a Python object per fix: a night at a depot is
a couple of hundred thousand fixes, which a binary COPY (a message and a Python step per row) took
0.8-2.4 s to read and this takes about 0.2 s. The values are bound client-side as literals, so the
planner sees the cells and the window as constants and excludes the chunks outside the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from store.copy_binary import PG_EPOCH_US


@dataclass(frozen=True, slots=True)
class CellFixes:
    device_id: npt.NDArray[np.int32]
    fix_time: npt.NDArray[np.int64]  # microseconds since the Unix epoch, UTC
    lat: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]
    h3_cell: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.device_id)


# Each column's binary send function and its type in the binary string (big-endian, as sent).
_COLUMNS = (
    ("device_id", "int4send", ">i4"),
    ("fix_time", "timestamptz_send", ">i8"),  # microseconds since 2000-01-01
    ("lat", "float8send", ">f8"),
    ("lon", "float8send", ">f8"),
    ("h3_cell", "int8send", ">i8"),
)
_AGGREGATES = sql.SQL(", ").join(sql.SQL(f"string_agg({send}({name}), '')") for name, send, _ in _COLUMNS)
_NAMES = sql.SQL(", ").join(sql.SQL(f"p.{name}") for name, _, _ in _COLUMNS)


async def in_cells(
    conn: psycopg.AsyncConnection,
    cells: Sequence[int],
    since: datetime,
    until: datetime,
    *,
    unit_ids: Sequence[int] | None,
    with_unitless: bool,
    kinds: Sequence[str] | None = None,
    limit: int,
) -> CellFixes:
    """The fixes in `cells` with since <= fix time < until, at most `limit` of them, in no order.

    Only devices of `unit_ids` (None: every device; `with_unitless`: and those without a unit) and of
    `kinds` (None: every kind) are read; the devices are filtered in the same statement, a small hash
    of device ids that each fix found through the cell index is checked against.
    """
    where = [
        sql.SQL("p.h3_cell = ANY({})").format(list(cells)),
        sql.SQL("p.fix_time >= {}").format(since),
        sql.SQL("p.fix_time < {}").format(until),
    ]
    devices: list[sql.Composable] = []
    if unit_ids is not None:
        devices.append(
            sql.SQL("(org_unit_id = ANY({}) OR {} AND org_unit_id IS NULL)").format(list(unit_ids), with_unitless)
        )
    if kinds is not None:
        devices.append(sql.SQL("kind::text = ANY({})").format(list(kinds)))
    if devices:
        where.append(sql.SQL("p.device_id IN (SELECT id FROM devices WHERE {})").format(sql.SQL(" AND ").join(devices)))
    query = sql.SQL("SELECT {} FROM (SELECT {} FROM positions p WHERE {} LIMIT {}) f").format(
        _AGGREGATES, _NAMES, sql.SQL(" AND ").join(where), limit
    )
    cur = conn.cursor(binary=True)
    await cur.execute(query)
    row = await cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY: always one row
    device_id, fix_time, lat, lon, cell = (
        np.frombuffer(blob or b"", dtype=kind).astype(kind[1:])
        for blob, (_, _, kind) in zip(row, _COLUMNS, strict=True)
    )
    return CellFixes(device_id, fix_time + PG_EPOCH_US, lat, lon, cell)
