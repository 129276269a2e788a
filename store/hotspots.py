"""Where the alerts of a time window were seen: their evidence's lat/lon, grouped by kind and place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql


@dataclass(frozen=True, slots=True)
class AlertPlaces:
    """One row per kind and place; the place is NaN for alerts whose evidence has no lat/lon."""

    kind: list[str]
    lat: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]
    count: npt.NDArray[np.int64]


# A coordinate that is not a JSON number (absent, null, text) is no place rather than an error.
_COORD = "CASE WHEN jsonb_typeof(a.evidence->'{0}') = 'number' THEN (a.evidence->>'{0}')::float8 END"


async def alert_places(
    conn: psycopg.AsyncConnection,
    since: datetime,
    until: datetime,
    *,
    unit_ids: Sequence[int] | None,
    with_unitless: bool,
    kinds: Sequence[str] | None = None,
    rule_ids: Sequence[int] | None = None,
) -> AlertPlaces:
    """Alerts that began in [since, until), of devices of `unit_ids` (None: every device;
    `with_unitless`: and those without a unit), of `kinds` and `rule_ids` (None: all)."""
    where = [sql.SQL("a.started_at >= {}").format(since), sql.SQL("a.started_at < {}").format(until)]
    if kinds is not None:
        where.append(sql.SQL("a.kind = ANY({})").format(list(kinds)))
    if rule_ids is not None:
        where.append(sql.SQL("a.rule_id = ANY({})").format(list(rule_ids)))
    if unit_ids is not None:
        where.append(
            sql.SQL(
                "a.device_id IN (SELECT id FROM devices WHERE org_unit_id = ANY({}) OR {} AND org_unit_id IS NULL)"
            ).format(list(unit_ids), with_unitless)
        )
    lat, lon = sql.SQL(_COORD.format("lat")), sql.SQL(_COORD.format("lon"))
    query = sql.SQL("SELECT a.kind, {} AS lat, {} AS lon, count(*) FROM alerts a WHERE {} GROUP BY 1, 2, 3").format(
        lat, lon, sql.SQL(" AND ").join(where)
    )
    cur = await conn.execute(query)
    rows = await cur.fetchall()
    return AlertPlaces(
        kind=[str(r[0]) for r in rows],
        lat=np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=np.float64),
        lon=np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=np.float64),
        count=np.array([r[3] for r in rows], dtype=np.int64),
    )
