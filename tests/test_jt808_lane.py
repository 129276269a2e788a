"""The JT/T 808 bulk lane: many frames per read, many terminals per pass, answered as one by one."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

import psycopg

from protocols import jt808
from store import devices
from store.devices import DeviceRecord
from telematics.server import Server
from tests.terminal import Terminal, registered_terminal


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _terminal(server: Server, db: psycopg.AsyncConnection, version: int = 2013) -> Terminal:
    t, _ = await registered_terminal(db, server.ports["jt808"], kind="sanitation", prefix="14", version=version)
    return t


def _location(t: Terminal, fix: datetime, lat: float, lon: float, **kw: object) -> tuple[int, bytes]:
    body = jt808.encode_location_body(time=fix, lat=lat, lon=lon, **kw)  # type: ignore[arg-type]
    return t.frame(jt808.MSG_LOCATION, body)


async def _answers(t: Terminal, count: int) -> list[tuple[int, int, int, int]]:
    """(platform serial, acked serial, acked id, result) of the next `count` 0x8001 frames."""
    out = []
    for _ in range(count):
        frame = await t.recv()
        raw = jt808.unescape(frame[1:-1])
        assert raw is not None and raw[:2] == b"\x80\x01"
        at = 15 if t.version == 2019 else 10
        out.append((int.from_bytes(raw[at : at + 2], "big"), *jt808.parse_general_response(frame)))
    return out


async def _stored(db: psycopg.AsyncConnection, uid: str) -> list[tuple]:
    device = await devices.by_uid(db, uid)
    assert device is not None
    cur = await db.execute(
        "SELECT fix_time, lat, lon, speed_kmh, satellites, mileage_km FROM positions WHERE device_id = %s"
        " ORDER BY fix_time",
        (device.id,),
    )
    return await cur.fetchall()


async def test_many_terminals_many_frames_per_write(server: Server, db: psycopg.AsyncConnection) -> None:
    terminals = [await _terminal(server, db, 2019 if i % 2 else 2013) for i in range(12)]
    bulk_before = server.counters.values["jt808.bulk_reports"]
    start = _now() - timedelta(hours=1)
    sent: dict[str, list[tuple[int, datetime, float]]] = {}
    heartbeats: dict[str, int] = {}
    for k, t in enumerate(terminals):
        frames = []
        sent[t.device] = []
        for i in range(30):
            fix = start + timedelta(seconds=i)
            lat = 22.5 + k / 100 + i / 10000
            serial, frame = _location(t, fix, lat, 114.05, speed_kmh=36.5, satellites=9, mileage_km=1234.5)
            sent[t.device].append((serial, fix, lat))
            frames.append(frame)
            if i == 14:  # a heartbeat among the reports goes through the connection's own path
                heartbeats[t.device], hb = t.frame(jt808.MSG_HEARTBEAT)
                frames.append(hb)
        t.writer.write(b"".join(frames))  # type: ignore[union-attr]
    for t in terminals:
        await t.writer.drain()  # type: ignore[union-attr]

    for t in terminals:
        answers = await _answers(t, 31)
        by_serial = {acked: (acked_id, result) for _, acked, acked_id, result in answers}
        assert by_serial[heartbeats[t.device]] == (jt808.MSG_HEARTBEAT, 0)
        for serial, _, _ in sent[t.device]:
            assert by_serial[serial] == (jt808.MSG_LOCATION, 0)
        platform = [s for s, *_ in answers]
        assert len(set(platform)) == 31  # every answer has a serial of its own on this connection
        rows = await _stored(db, t.device)
        assert [(r[0], round(r[1], 6)) for r in rows] == [(fix, round(lat, 6)) for _, fix, lat in sent[t.device]]
        assert all((r[2], r[3], r[4], r[5]) == (114.05, 36.5, 9, 1234.5) for r in rows)
    # Whole writes arrive as whole reads on loopback: nearly all went through the lane.
    assert server.counters.values["jt808.bulk_reports"] - bulk_before >= 300
    for t in terminals:
        await t.close()


async def test_frames_that_are_not_plain_reports_get_their_own_answer(
    server: Server, db: psycopg.AsyncConnection
) -> None:
    t = await _terminal(server, db)
    other = Terminal("13999999999")
    now = _now()
    good1, f1 = _location(t, now - timedelta(seconds=3), 22.6, 114.1)
    future, f2 = _location(t, now + timedelta(days=2), 22.6, 114.1)  # a fix ahead of the clock
    _, f3 = _location(other, now - timedelta(seconds=2), 22.6, 114.1)  # another terminal's phone number
    other_serial = 1
    good2, f4 = _location(t, now - timedelta(seconds=1), 22.6, 114.1)
    await t.send_raw(f1 + f2 + f3 + f4)
    answers = {(acked, acked_id): result for _, acked, acked_id, result in await _answers(t, 4)}
    assert answers[(good1, jt808.MSG_LOCATION)] == jt808.RESULT_OK
    assert answers[(good2, jt808.MSG_LOCATION)] == jt808.RESULT_OK
    assert answers[(future, jt808.MSG_LOCATION)] == jt808.RESULT_MESSAGE_ERROR
    assert answers[(other_serial, jt808.MSG_LOCATION)] == jt808.RESULT_FAILURE
    assert [r[0] for r in await _stored(db, t.device)] == [now - timedelta(seconds=3), now - timedelta(seconds=1)]
    await t.close()


async def test_frames_split_across_reads_and_garbage_between_frames(
    server: Server, db: psycopg.AsyncConnection
) -> None:
    t = await _terminal(server, db)
    now = _now()
    frames = [_location(t, now - timedelta(seconds=10 - i), 22.7, 114.2) for i in range(6)]
    data = b"".join(f for _, f in frames[:3])
    cut = len(data) - 7
    await t.send_raw(data[:cut])  # the last frame is cut in two
    await asyncio.sleep(0.05)
    await t.send_raw(data[cut:])
    # Stray bytes between two whole frames: the read is decoded by the connection alone.
    await t.send_raw(frames[3][1] + b"\x01\x02" + frames[4][1] + frames[5][1])
    answers = await _answers(t, 6)
    assert sorted(acked for _, acked, _, _ in answers) == sorted(s for s, _ in frames)
    assert all(result == 0 for *_, result in answers)
    assert len(await _stored(db, t.device)) == 6
    await t.close()


async def test_reports_before_authentication_are_refused(server: Server, db: psycopg.AsyncConnection) -> None:
    uid = "14" + str(secrets.randbelow(10**9)).rjust(9, "0")
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind="muck", name="lane")])
    t = await Terminal(uid).connect(server.ports["jt808"])
    serials = [_location(t, _now() - timedelta(seconds=i), 22.5, 114.0) for i in range(3)]
    await t.send_raw(b"".join(f for _, f in serials))
    answers = await _answers(t, 3)
    assert {(acked, result) for _, acked, _, result in answers} == {(s, jt808.RESULT_FAILURE) for s, _ in serials}
    assert await _stored(db, uid) == []
    await t.close()
