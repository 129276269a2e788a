"""The numpy-built binary COPY stores exactly the values of the batch, NULLs and extras included."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from store.batch import PositionBatch, PositionRow
from store.positions import PositionWriter
from telematics.server import Server


def _rows(device_id: int, n: int, seed: int) -> list[PositionRow]:
    rng = random.Random(seed)
    start = datetime(2026, 11, 20, tzinfo=UTC)
    maybe = lambda v: v if rng.random() < 0.7 else None  # noqa: E731
    return [
        PositionRow(
            device_id=device_id,
            fix_time=start + timedelta(seconds=i, microseconds=rng.randrange(1_000_000)),
            receive_time=start + timedelta(seconds=i + 2),
            lat=rng.uniform(-90, 90),
            lon=rng.uniform(-180, 180),
            valid=rng.random() < 0.8,
            h3_cell=rng.getrandbits(62),
            protocol=rng.choice(["jt808", "gt06", "h02", "nmea", "osmand", "mqtt"]),
            speed_kmh=maybe(round(rng.uniform(0, 200), 1)),
            course=maybe(float(rng.randrange(360))),
            altitude_m=maybe(float(rng.randrange(-400, 9000))),
            accuracy_m=maybe(float(rng.randrange(1, 100))),
            satellites=maybe(rng.randrange(0, 40)),
            status=rng.getrandbits(32),
            alarm=rng.getrandbits(32),
            mileage_km=maybe(round(rng.uniform(0, 1e6), 1)),
            extras=rng.choice([None, None, None, {"rssi": 17}, {"x01": "ab\u00e9", "nested": {"a": [1, 2.5, None]}}]),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [1, 7, 1500])
async def test_what_is_written_is_what_comes_back(server: Server, fresh_database: str, n: int) -> None:
    device_id = -1000 - n
    rows = _rows(device_id, n, seed=n)
    conn = await psycopg.AsyncConnection.connect(fresh_database, autocommit=True)
    try:
        writer = PositionWriter(conn)
        assert await writer.write(PositionBatch.from_rows(rows)) == n
        assert await writer.write(PositionBatch.from_rows(rows)) == 0  # the same rows again: stored once
        cur = await conn.execute(
            """SELECT fix_time, receive_time, lat, lon, valid, h3_cell, protocol::text, speed_kmh, course,
                      altitude_m, accuracy_m, satellites, status, alarm, mileage_km, extras
               FROM positions WHERE device_id = %s ORDER BY fix_time""",
            (device_id,),
        )
        stored = await cur.fetchall()
    finally:
        await conn.close()
    assert len(stored) == n
    for row, got in zip(rows, stored, strict=True):
        expected = (
            row.fix_time, row.receive_time, row.lat, row.lon, row.valid, row.h3_cell, row.protocol,
            row.speed_kmh, row.course, row.altitude_m, row.accuracy_m, row.satellites,
            row.status, row.alarm, row.mileage_km, row.extras,
        )  # fmt: skip
        for want, have in zip(expected, got, strict=True):
            if isinstance(want, float):
                assert have is not None and math.isclose(have, want, rel_tol=1e-6), (want, have)
            else:
                assert have == want
