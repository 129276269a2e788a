"""The recent stored fixes of one partition's devices, as a PositionBatch: what a processor replays
through the geofence and the rules when it takes a partition over (see distributed/processor.py).

Partition = device_id modulo the partition count, as the gateways route reports. Protocol and extras
are not read: the rules do not use them.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from store import tracks
from store.batch import PositionBatch
from store.columns import Field, fetch, packed

_FIELDS = [
    Field("device_id", "device_id", "integer"),
    *tracks.FIELDS,
    Field("status", "status", "bigint"),
    Field("alarm", "alarm", "bigint"),
    Field("h3_cell", "h3_cell", "bigint"),
]
_QUERY = (
    f"SELECT {packed(_FIELDS)} FROM positions"
    " WHERE fix_time >= %s AND fix_time <= %s AND device_id %% %s = %s ORDER BY fix_time, device_id"
)


async def read(
    conn: psycopg.AsyncConnection, partition: int, partitions: int, since: datetime, until: datetime
) -> PositionBatch:
    """The partition's fixes with fix times in [since, until], oldest first."""
    cols = await fetch(conn, _QUERY, (since, until, partitions, partition), _FIELDS)  # type: ignore[arg-type]
    n = len(cols["device_id"])
    return PositionBatch(**cols, protocol=["" for _ in range(n)], extras=[None] * n)  # type: ignore[arg-type]
