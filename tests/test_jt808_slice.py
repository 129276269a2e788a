"""The first slice end to end: a JT/T 808 terminal over real TCP, rows in TimescaleDB, the API."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import psycopg
import pytest

from protocols import jt808
from store import devices
from store.devices import DeviceRecord
from telematics.server import Server
from tests.conftest import API_TOKEN
from tests.terminal import Terminal


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _new_device(db: psycopg.AsyncConnection, **kw: object) -> str:
    uid = "13" + str(secrets.randbelow(10**9)).rjust(9, "0")
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind="muck", name="test truck", **kw)])  # type: ignore[arg-type]
    return uid


async def _device_id(db: psycopg.AsyncConnection, uid: str) -> int:
    device = await devices.by_uid(db, uid)
    assert device is not None
    return device.id


async def _rows(db: psycopg.AsyncConnection, device_id: int) -> list[tuple]:
    cur = await db.execute(
        "SELECT fix_time, lat, lon, speed_kmh, course, valid FROM positions WHERE device_id = %s ORDER BY fix_time",
        (device_id,),
    )
    return await cur.fetchall()


@pytest.fixture
async def terminal(server: Server, db: psycopg.AsyncConnection) -> AsyncIterator[Terminal]:
    """A registered and authenticated terminal on a fresh connection."""
    t = await Terminal(await _new_device(db)).connect(server.ports["jt808"])
    result, code = await t.register()
    assert result == 0 and code
    assert await t.authenticate(code) == 0
    yield t
    await t.close()


async def test_register_authenticate_report_ack_after_commit(
    server: Server, db: psycopg.AsyncConnection, terminal: Terminal
) -> None:
    device_id = await _device_id(db, terminal.device)
    start = _now() - timedelta(minutes=5)
    for i in range(5):
        fix = start + timedelta(seconds=10 * i)
        serial = await terminal.report(fix, 22.543 + i * 0.001, -114.05 - i * 0.001, speed_kmh=36.5, course=90)
        reply_serial, reply_id, result = await terminal.general_response()
        assert (reply_serial, reply_id, result) == (serial, jt808.MSG_LOCATION, 0)
        # The ack arrived: the row must already be visible to another connection.
        rows = await _rows(db, device_id)
        assert len(rows) == i + 1
        assert rows[-1][0] == fix
        assert rows[-1][1] == pytest.approx(22.543 + i * 0.001, abs=1e-6)
        assert rows[-1][2] == pytest.approx(-114.05 - i * 0.001, abs=1e-6)
        assert rows[-1][3] == pytest.approx(36.5) and rows[-1][4] == 90 and rows[-1][5] is True


async def test_no_ack_while_the_commit_cannot_happen(
    server: Server, fresh_database: str, db: psycopg.AsyncConnection, terminal: Terminal
) -> None:
    """Hold a lock that blocks inserts: the terminal gets no ack until the row is in."""
    device_id = await _device_id(db, terminal.device)
    blocker = await psycopg.AsyncConnection.connect(fresh_database)
    try:
        await blocker.execute("LOCK TABLE positions IN SHARE ROW EXCLUSIVE MODE")
        fix = _now() - timedelta(seconds=30)
        serial = await terminal.report(fix, 30.0, 120.0)
        with pytest.raises(TimeoutError):
            await terminal.general_response(wait=0.7)
        assert await _rows(db, device_id) == []
    finally:
        await blocker.rollback()  # releases the lock: the pending batch commits now
        await blocker.close()
    assert await terminal.general_response() == (serial, jt808.MSG_LOCATION, 0)
    assert [r[0] for r in await _rows(db, device_id)] == [fix]


async def test_resent_report_stored_once(db: psycopg.AsyncConnection, terminal: Terminal) -> None:
    device_id = await _device_id(db, terminal.device)
    fix = _now() - timedelta(minutes=1)
    body = jt808.encode_location_body(time=fix, lat=31.2, lon=121.5)
    for _ in range(3):  # as a terminal does when it missed our ack
        serial = await terminal.send(jt808.MSG_LOCATION, body)
        assert await terminal.general_response() == (serial, jt808.MSG_LOCATION, 0)
    assert len(await _rows(db, device_id)) == 1


async def test_batch_upload_acked_once_after_all_rows(db: psycopg.AsyncConnection, terminal: Terminal) -> None:
    device_id = await _device_id(db, terminal.device)
    base = _now() - timedelta(hours=2)
    items = [
        jt808.encode_location_body(time=base + timedelta(minutes=i), lat=39.9, lon=116.4 + i / 1000) for i in range(4)
    ]
    body = len(items).to_bytes(2) + b"\x01" + b"".join(len(i).to_bytes(2) + i for i in items)
    serial = await terminal.send(jt808.MSG_BATCH_LOCATION, body)
    assert await terminal.general_response() == (serial, jt808.MSG_BATCH_LOCATION, 0)
    assert len(await _rows(db, device_id)) == 4
    cur = await db.execute(
        "SELECT count(*) FROM positions WHERE device_id = %s AND extras->>'backfill' = 'true'", (device_id,)
    )
    assert (await cur.fetchone()) == (4,)


async def test_api_latest_position(server: Server, db: psycopg.AsyncConnection, terminal: Terminal) -> None:
    newest = _now() - timedelta(seconds=20)
    for fix, lat in ((newest, 22.6), (newest - timedelta(minutes=3), 22.5)):  # the older one arrives last
        serial = await terminal.report(fix, lat, 113.9, speed_kmh=12.3, course=270, mileage_km=1234.5)
        assert await terminal.general_response() == (serial, jt808.MSG_LOCATION, 0)
    url = f"http://127.0.0.1:{server.ports['api']}/api/devices/{terminal.device}/latest"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Authorization": f"Bearer {API_TOKEN}"}) as r:
            assert r.status == 200
            body = await r.json()
        assert body["device"] == terminal.device
        assert body["time"] == newest.isoformat().replace("+00:00", "Z")
        assert body["lat"] == pytest.approx(22.6) and body["lon"] == pytest.approx(113.9)
        assert body["speed_kmh"] == pytest.approx(12.3) and body["course"] == 270
        assert body["mileage_km"] == pytest.approx(1234.5) and body["protocol"] == "jt808"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_TOKEN}):
            async with http.get(url, headers=headers) as r:
                assert r.status == 401
                assert "error" in await r.json()
        unknown = f"http://127.0.0.1:{server.ports['api']}/api/devices/nope/latest"
        async with http.get(unknown, headers={"Authorization": f"Bearer {API_TOKEN}"}) as r:
            assert r.status == 404


async def test_report_before_authentication_is_refused(server: Server, db: psycopg.AsyncConnection) -> None:
    uid = await _new_device(db)
    t = await Terminal(uid).connect(server.ports["jt808"])
    try:
        serial = await t.report(_now(), 30.0, 120.0)
        assert await t.general_response() == (serial, jt808.MSG_LOCATION, jt808.RESULT_FAILURE)
        assert await t.authenticate("not-the-code") == jt808.RESULT_FAILURE
        assert await _rows(db, await _device_id(db, uid)) == []
    finally:
        await t.close()


async def test_unknown_terminal_registration_refused(server: Server) -> None:
    t = await Terminal("19999999999").connect(server.ports["jt808"])
    try:
        result, code = await t.register()
        assert result == 4 and code == ""
    finally:
        await t.close()


async def test_2019_terminal_and_reports_right_behind_authentication(
    server: Server, db: psycopg.AsyncConnection
) -> None:
    """A 2019 header terminal that sends its first report in the same packet as its authentication."""
    uid = await _new_device(db)
    t = await Terminal(uid, version=2019).connect(server.ports["jt808"])
    try:
        result, code = await t.register()
        assert result == 0
        fix = _now() - timedelta(seconds=5)
        auth_serial, auth = t.frame(jt808.MSG_AUTHENTICATION, jt808.encode_authentication_body(code, version=2019))
        loc_serial, loc = t.frame(jt808.MSG_LOCATION, jt808.encode_location_body(time=fix, lat=-33.9, lon=18.4))
        await t.send_raw(auth + loc)
        assert await t.general_response() == (auth_serial, jt808.MSG_AUTHENTICATION, 0)
        assert await t.general_response() == (loc_serial, jt808.MSG_LOCATION, 0)
        rows = await _rows(db, await _device_id(db, uid))
        assert [(r[0], r[1], r[2]) for r in rows] == [(fix, pytest.approx(-33.9), pytest.approx(18.4))]
    finally:
        await t.close()


async def test_bad_input_does_not_lose_the_next_good_report(
    server: Server, db: psycopg.AsyncConnection, terminal: Terminal
) -> None:
    device_id = await _device_id(db, terminal.device)
    counters = server.counters.values
    errors_before = counters["jt808.frame_errors"]
    _, good = terminal.frame(jt808.MSG_LOCATION, jt808.encode_location_body(time=_now(), lat=1.0, lon=2.0))
    corrupted = bytearray(good)
    corrupted[-2] ^= 0xFF  # wrong check code
    future = jt808.encode_location_body(time=_now() + timedelta(days=2), lat=1.0, lon=2.0)
    future_serial = await terminal.send(jt808.MSG_LOCATION, future)
    assert await terminal.general_response() == (future_serial, jt808.MSG_LOCATION, jt808.RESULT_MESSAGE_ERROR)
    await terminal.send_raw(b"garbage\x00\xff" + bytes(corrupted))
    fix = _now() - timedelta(seconds=1)
    serial = await terminal.report(fix, 45.0, 9.0)
    assert await terminal.general_response() == (serial, jt808.MSG_LOCATION, 0)
    assert [r[0] for r in await _rows(db, device_id)] == [fix]
    assert counters["jt808.frame_errors"] >= errors_before + 2
    assert server.counters.values["ingest.bad_fixes"] >= 1


async def test_unsupported_message_answered_not_disconnected(terminal: Terminal) -> None:
    serial = await terminal.send(0x5501, b"\x01\x02")
    assert await terminal.general_response() == (serial, 0x5501, jt808.RESULT_NOT_SUPPORTED)
    serial = await terminal.send(jt808.MSG_HEARTBEAT)
    assert await terminal.general_response() == (serial, jt808.MSG_HEARTBEAT, 0)


async def test_many_terminals_at_once(server: Server, db: psycopg.AsyncConnection) -> None:
    """Twenty terminals report concurrently; each report acked once and stored once."""

    async def one(i: int) -> str:
        t = await Terminal(await _new_device(db)).connect(server.ports["jt808"])
        try:
            _, code = await t.register()
            assert await t.authenticate(code) == 0
            base = _now() - timedelta(minutes=10)
            serials = [await t.report(base + timedelta(seconds=s), 30 + i / 100, 120 + s / 1000) for s in range(10)]
            acks = [await t.general_response() for _ in serials]
            assert sorted(a[0] for a in acks) == sorted(serials) and all(a[2] == 0 for a in acks)
            return t.device
        finally:
            await t.close()

    uids = await asyncio.gather(*(one(i) for i in range(20)))
    for uid in uids:
        assert len(await _rows(db, await _device_id(db, uid))) == 10


async def test_subpackaged_media_every_packet_answered(terminal: Terminal) -> None:
    """A photo in several packets: each packet gets 0x8001, the completed upload gets 0x8800."""
    photo = b"\xff\xd8" + bytes(range(256)) * 12 + b"\xff\xd9"
    location = jt808.encode_location_body(time=_now(), lat=22.5, lon=114.0)
    body = jt808.encode_media_body(7, photo, location=location)
    packets = jt808.encode_frames(0x0801, terminal.device, terminal.serial + 1, body, packet_size=1000)
    assert len(packets) >= 3
    terminal.serial += len(packets)
    await terminal.send_raw(b"".join(packets))
    replies = [jt808.decode_platform_frame(await terminal.recv()) for _ in packets]
    assert [r.msg_id for r in replies] == [jt808.MSG_GENERAL_RESPONSE] * (len(packets) - 1) + [0x8800]
    assert replies[-1].value is not None
