"""The saved live state, the catch-up from positions and the device catalog, against TimescaleDB."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from store import devices, live_state
from store.devices import DeviceRecord, OrgUnitRecord
from telematics.server import Server
from tracking.live import LiveState

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds
S = 1_000_000


def _us(t: datetime) -> int:
    return int((t - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def _ids(n: int) -> np.ndarray:
    """Device ids no other test uses (positions and device_latest have no foreign key)."""
    base = 1_000_000 + secrets.randbelow(1_000_000_000)
    return np.arange(base, base + n, dtype=np.int32)


def _cols(ids: np.ndarray, fix: list[int], lat: list[float], seen: list[int], speed: list[float]) -> dict:
    return {
        "device_id": ids,
        "fix_time_us": np.array(fix, dtype=np.int64),
        "lat": np.array(lat, dtype=np.float64),
        "lon": np.array(lat, dtype=np.float64) + 91.5,
        "speed_kmh": np.array(speed, dtype=np.float32),
        "course": np.array(speed, dtype=np.float32) * 2,
        "last_seen_us": np.array(seen, dtype=np.int64),
    }


async def _load(conn: psycopg.AsyncConnection, ids: np.ndarray) -> dict:
    got = await live_state.load_latest(conn)
    assert (np.diff(got["device_id"]) > 0).all()
    keep = np.isin(got["device_id"], ids)
    return {k: v[keep] for k, v in got.items()}


async def test_save_and_load_round_trip(server: Server, db: psycopg.AsyncConnection) -> None:
    ids = _ids(4)
    cols = _cols(
        ids,
        fix=[T0 + 123_457, -1, T0 + 5 * S, -1],
        lat=[22.5, np.nan, 22.7, np.nan],
        seen=[T0 + 2 * S + 1, T0 + 9 * S, -1, -1],  # the second only sent heartbeats, the last nothing
        speed=[12.5, np.nan, np.nan, np.nan],
    )
    assert await live_state.save_latest(db, **cols) == 3
    got = await _load(db, ids)
    assert got["device_id"].dtype == np.int32 and got["speed_kmh"].dtype == np.float32
    assert got["device_id"].tolist() == ids[:3].tolist()
    assert got["fix_time_us"].tolist() == [T0 + 123_457, -1, T0 + 5 * S]
    assert got["last_seen_us"].tolist() == [T0 + 2 * S + 1, T0 + 9 * S, -1]
    np.testing.assert_array_equal(got["lat"], [22.5, np.nan, 22.7])
    np.testing.assert_array_equal(got["lon"], [114.0, np.nan, 114.2])
    np.testing.assert_array_equal(got["speed_kmh"], np.array([12.5, np.nan, np.nan], dtype=np.float32))
    np.testing.assert_array_equal(got["course"], np.array([25.0, np.nan, np.nan], dtype=np.float32))
    cur = await db.execute("SELECT fix_time, last_seen, lat IS NULL FROM device_latest WHERE device_id = %s", (ids[1],))
    assert await cur.fetchone() == (None, datetime(2026, 1, 1, 0, 0, 9, tzinfo=UTC), True)


async def test_save_never_moves_a_device_backwards(server: Server, db: psycopg.AsyncConnection) -> None:
    ids = _ids(3)
    await live_state.save_latest(db, **_cols(ids, [T0 + 10 * S] * 3, [22.5] * 3, [T0 + 10 * S] * 3, [5.0] * 3))
    # An older snapshot (another process, a slow save): device 0 has an older fix but a newer last_seen,
    # device 1 is older in both, device 2 newer in both.
    older = _cols(
        ids,
        fix=[T0 + 5 * S, T0 + 5 * S, T0 + 20 * S],
        lat=[23.0, 23.0, 23.5],
        seen=[T0 + 30 * S, T0 + 5 * S, T0 + 21 * S],
        speed=[1.0, 1.0, 2.0],
    )
    assert await live_state.save_latest(db, **older) == 2
    got = await _load(db, ids)
    assert got["fix_time_us"].tolist() == [T0 + 10 * S, T0 + 10 * S, T0 + 20 * S]
    assert got["lat"].tolist() == [22.5, 22.5, 23.5]
    assert got["speed_kmh"].tolist() == [5.0, 5.0, 2.0]
    assert got["last_seen_us"].tolist() == [T0 + 30 * S, T0 + 10 * S, T0 + 21 * S]
    assert await live_state.save_latest(db, **older) == 0  # nothing newer: nothing written


async def test_save_refuses_bad_columns(server: Server, db: psycopg.AsyncConnection) -> None:
    ids = _ids(2)
    cols = _cols(ids, [T0, T0], [1.0, 1.0], [T0, T0], [1.0, 1.0])
    with pytest.raises(ValueError, match="more than once"):
        await live_state.save_latest(db, **{**cols, "device_id": np.array([ids[0], ids[0]], dtype=np.int32)})
    with pytest.raises(ValueError, match="differ in length"):
        await live_state.save_latest(db, **{**cols, "lat": np.array([1.0])})
    assert await live_state.save_latest(db, **{k: v[:0] for k, v in cols.items()}) == 0


async def test_positions_since(server: Server, db: psycopg.AsyncConnection) -> None:
    a, b, c = (int(i) for i in _ids(3))
    now = datetime.now(UTC).replace(microsecond=0)
    since = now - timedelta(minutes=10)
    rows = [
        # device, fix time, receive time, lat, speed
        (a, since - timedelta(minutes=1), since - timedelta(seconds=1), 22.1, 10.0),  # received before: not caught up
        (a, since + timedelta(minutes=1), since + timedelta(minutes=1, seconds=2), 22.2, 11.0),
        (a, since + timedelta(minutes=2), since + timedelta(minutes=2, seconds=1), 22.3, None),  # newest fix of a
        (a, since - timedelta(minutes=5), since + timedelta(minutes=3), 22.4, 13.0),  # late backfill, newest receive
        (b, since - timedelta(hours=2), since + timedelta(minutes=4), 22.5, 14.0),  # backfill beyond the lookback
        (c, since - timedelta(minutes=30), since + timedelta(minutes=5, microseconds=7), 22.6, 15.0),
    ]
    await db.cursor().executemany(
        """INSERT INTO positions (device_id, fix_time, receive_time, lat, lon, speed_kmh, course, valid, h3_cell,
                                  protocol) VALUES (%s, %s, %s, %s, 114.0, %s, 90, true, 0, 'jt808')""",
        rows,
    )
    got = await live_state.positions_since(db, _us(since))
    keep = np.isin(got["device_id"], [a, b, c])
    got = {k: v[keep] for k, v in got.items()}

    assert got["device_id"].tolist() == [a, c]
    assert got["fix_time_us"].tolist() == [_us(since + timedelta(minutes=2)), _us(since - timedelta(minutes=30))]
    assert got["receive_time_us"].tolist() == [_us(since + timedelta(minutes=3)), _us(rows[5][2])]
    assert got["lat"].tolist() == [22.3, 22.6]
    assert np.isnan(got["speed_kmh"][0]) and got["speed_kmh"][1] == 15.0
    assert got["course"].tolist() == [90.0, 90.0]
    wider = await live_state.positions_since(db, _us(since), fix_lookback=timedelta(hours=3))
    assert b in wider["device_id"].tolist()


async def test_device_catalog(server: Server, db: psycopg.AsyncConnection) -> None:
    code = "unit-" + secrets.token_hex(3)
    await devices.upsert_units(db, [OrgUnitRecord(code, "Team")])
    uid = "cat" + secrets.token_hex(4)
    await devices.upsert_devices(
        db,
        [
            DeviceRecord(uid + "a", kind="muck", name="Truck 1", plate="粤B12345", org_unit=code, protocol="jt808"),
            DeviceRecord(uid + "b", kind="inspector", name="Li", enabled=False),
        ],
    )
    unit_id = (await devices.unit_codes(db))[code]
    catalog = await live_state.device_catalog(db)
    assert [d.id for d in catalog] == sorted(d.id for d in catalog)
    mine = {d.uid: d for d in catalog if d.uid.startswith(uid)}
    first, second = mine[uid + "a"], mine[uid + "b"]
    assert (first.kind, first.name, first.plate, first.org_unit_id, first.protocol, first.enabled) == (
        "muck",
        "Truck 1",
        "粤B12345",
        unit_id,
        "jt808",
        True,
    )
    assert (second.kind, second.plate, second.org_unit_id, second.protocol, second.enabled) == (
        "inspector",
        None,
        None,
        None,
        False,
    )


async def test_restart_from_saved_state_and_catch_up(server: Server, db: psycopg.AsyncConnection) -> None:
    """What a server does: save the live state, and at the next start load it and catch up from positions."""
    uid = "rs" + secrets.token_hex(4)
    await devices.upsert_devices(db, [DeviceRecord(f"{uid}-{i}", kind="sanitation") for i in range(3)])
    catalog = await live_state.device_catalog(db)
    mine = [d.id for d in catalog if d.uid.startswith(uid)]
    live = LiveState()
    live.load(catalog, await live_state.load_latest(db))
    now = datetime.now(UTC).replace(microsecond=0)
    t = _us(now) - 60 * S
    live.apply(
        np.array(mine[:2], dtype=np.int32),
        np.array([t, t], dtype=np.int64),
        np.array([22.5, 22.6]),
        np.array([114.0, 114.1]),
        np.array([10, 20], dtype=np.float32),
        np.array([90, 180], dtype=np.float32),
        np.array([t + S, t + S], dtype=np.int64),
    )
    await live_state.save_latest(db, **live.snapshot_for_save())

    # Committed after the save: a newer fix of the first device, a late one of the second.
    await db.cursor().executemany(
        """INSERT INTO positions (device_id, fix_time, receive_time, lat, lon, speed_kmh, valid, h3_cell, protocol)
           VALUES (%s, %s, %s, %s, 114.0, 5, true, 0, 'jt808')""",
        [
            (mine[0], now - timedelta(seconds=30), now - timedelta(seconds=29), 22.7),
            (mine[1], now - timedelta(seconds=90), now - timedelta(seconds=28), 22.8),
        ],
    )
    restarted = LiveState()
    restarted.load(await live_state.device_catalog(db), latest := await live_state.load_latest(db))
    since = int(latest["last_seen_us"].max()) - 60 * S
    caught_up = await live_state.positions_since(db, since)
    restarted.apply(**caught_up)
    slots = [restarted.slot(d) for d in mine]
    rows = restarted.rows([s for s in slots if s is not None], _us(now))
    assert [(r["lat"], r["speed_kmh"], r["status"]) for r in rows] == [
        (22.7, 5.0, "online"),
        (22.6, 20.0, "online"),
        (None, None, "never"),
    ]
    assert rows[1]["last_seen"] == (now - timedelta(seconds=28)).isoformat().replace("+00:00", "Z")


async def test_newest_fixes_seed_a_state_that_was_never_saved(server: Server, db: psycopg.AsyncConnection) -> None:
    tag = secrets.token_hex(4)
    await devices.upsert_devices(db, [DeviceRecord(uid=f"nf-{tag}-{i}", kind="muck", name="x") for i in range(2)])
    found = [await devices.by_uid(db, f"nf-{tag}-{i}") for i in range(2)]
    assert found[0] is not None and found[1] is not None
    a, quiet = found[0].id, found[1].id
    t = datetime(2026, 3, 1, tzinfo=UTC)
    rows = [(a, t + timedelta(days=d), t + timedelta(days=d, seconds=3), 22.0 + d) for d in (0, 5, 2)]
    await db.cursor().executemany(
        """INSERT INTO positions (device_id, fix_time, receive_time, lat, lon, speed_kmh, course, valid, h3_cell,
                                  protocol) VALUES (%s, %s, %s, %s, 114.0, 7, 90, true, 0, 'jt808')""",
        rows,
    )
    got = await live_state.newest_fixes(db)
    at = got["device_id"].tolist()
    assert a in at and quiet not in at  # a device that never reported has no newest fix
    i = at.index(a)
    assert (got["fix_time_us"][i], got["lat"][i]) == (_us(t + timedelta(days=5)), 27.0)
    assert got["last_seen_us"][i] == _us(t + timedelta(days=5, seconds=3))
