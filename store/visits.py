"""Fixes in a set of H3 cells during a time window: the read behind "who was here" (positions_cell_time).

The rows become numpy arrays through store.columns, without a Python object per fix: a night at a
depot is a couple of hundred thousand fixes. The values are bound client-side as literals, so the
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

from store.columns import Field, fetch, packed


@dataclass(frozen=True, slots=True)
class CellFixes:
    device_id: npt.NDArray[np.int32]
    fix_time: npt.NDArray[np.int64]  # microseconds since the Unix epoch, UTC
    lat: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]
    h3_cell: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.device_id)


_FIELDS = (
    Field("device_id", "p.device_id", "integer"),
    Field("fix_time", "p.fix_time", "timestamptz"),
    Field("lat", "p.lat", "double precision"),
    Field("lon", "p.lon", "double precision"),
    Field("h3_cell", "p.h3_cell", "bigint"),
)


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
    query = sql.SQL("SELECT {} FROM positions p WHERE {} LIMIT {}").format(
        sql.SQL(packed(_FIELDS)), sql.SQL(" AND ").join(where), limit
    )
    return CellFixes(**await fetch(conn, query, None, _FIELDS))
