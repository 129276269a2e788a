"""Retention drops whole chunks older than the setting and keeps the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from store import positions
from telematics.server import Server


async def test_drop_older_than(server: Server, db: psycopg.AsyncConnection) -> None:
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=200), now - timedelta(days=10)
    await db.execute(
        """INSERT INTO positions (device_id, fix_time, receive_time, lat, lon, valid, h3_cell, protocol)
           VALUES (-1, %s, %s, 1, 1, true, 0, 'jt808'), (-1, %s, %s, 1, 1, true, 0, 'jt808')""",
        (old, now, recent, now),
    )
    dropped = await positions.drop_older_than(db, timedelta(days=180))
    assert len(dropped) == 1
    cur = await db.execute("SELECT fix_time FROM positions WHERE device_id = -1")
    assert [r[0] for r in await cur.fetchall()] == [recent]
    assert await positions.drop_older_than(db, timedelta(days=180)) == []
