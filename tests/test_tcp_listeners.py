"""GT06, H02 and NMEA terminals over real TCP into the real database; bad peers on every port."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from protocols import gt06, h02, jt808, nmea
from store import devices
from store.devices import DeviceRecord
from telematics.server import Server
from tests.terminal import Terminal


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _device(db: psycopg.AsyncConnection, uid: str, protocol: str) -> int:
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind="sanitation", protocol=protocol)])
    device = await devices.by_uid(db, uid)
    assert device is not None
    return device.id


async def _fixes(db: psycopg.AsyncConnection, device_id: int) -> list[tuple[datetime, float, float]]:
    cur = await db.execute(
        "SELECT fix_time, lat, lon FROM positions WHERE device_id = %s ORDER BY fix_time", (device_id,)
    )
    return [(t, round(lat, 5), round(lon, 5)) for t, lat, lon in await cur.fetchall()]


async def _eventually(check: object, within: float = 5.0) -> None:
    """For protocols without acks (NMEA): wait until the database shows what was sent."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        if await check():  # type: ignore[operator]
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("not stored in time")
        await asyncio.sleep(0.05)


@pytest.fixture
async def connect(server: Server) -> AsyncIterator[object]:
    opened: list[asyncio.StreamWriter] = []

    async def open_(protocol: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.ports[protocol])
        opened.append(writer)
        return reader, writer

    yield open_
    for w in opened:
        w.close()


async def test_gt06_login_position_ack_after_commit(connect: object, db: psycopg.AsyncConnection) -> None:
    imei = "86" + str(secrets.randbelow(10**13)).rjust(13, "0")
    device_id = await _device(db, imei, "gt06")
    reader, writer = await connect("gt06")  # type: ignore[operator]
    writer.write(gt06.encode_login(imei, serial=1))
    assert await asyncio.wait_for(reader.readexactly(10), 5) == gt06.ack_for(
        gt06.Gt06Decoder().feed(gt06.encode_login(imei, serial=1))[0]
    )
    fix = _now() - timedelta(seconds=30)
    writer.write(gt06.encode_position(time=fix, lat=-22.9, lon=-43.2, serial=2, speed_kmh=40, satellites=8))
    reply = await asyncio.wait_for(reader.readexactly(10), 5)
    assert reply[3] == 0x22 and reply[4:6] == b"\x00\x02"  # the position's own number and serial
    assert await _fixes(db, device_id) == [(fix, -22.9, -43.2)]  # stored before the reply


async def test_gt06_unknown_terminal_gets_no_login_reply(connect: object, db: psycopg.AsyncConnection) -> None:
    reader, writer = await connect("gt06")  # type: ignore[operator]
    writer.write(gt06.encode_login("869999999999999", serial=1))
    writer.write(gt06.encode_position(time=_now(), lat=1, lon=2, serial=2))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.5)


async def test_h02_text_and_binary(connect: object, db: psycopg.AsyncConnection) -> None:
    uid = str(4_000_000_000 + secrets.randbelow(10**9))
    device_id = await _device(db, uid, "h02")
    reader, writer = await connect("h02")  # type: ignore[operator]
    first = _now() - timedelta(minutes=2)
    writer.write(h02.encode_position(uid, first, 22.54321, 114.05432, speed_kmh=18.52))
    reply = await asyncio.wait_for(reader.readuntil(b"#"), 5)
    assert reply.startswith(f"*HQ,{uid},V4,V1,".encode())
    assert await _fixes(db, device_id) == [(first, 22.54321, 114.05432)]
    second = first + timedelta(minutes=1)
    writer.write(h02.encode_binary_position(uid, second, -33.9, 18.4))

    async def both() -> bool:
        return len(await _fixes(db, device_id)) == 2

    await _eventually(both)


async def test_nmea_identification_then_fixes(connect: object, db: psycopg.AsyncConnection) -> None:
    uid = f"T55-{secrets.token_hex(3)}"
    device_id = await _device(db, uid, "nmea")
    _, writer = await connect("nmea")  # type: ignore[operator]
    start = _now() - timedelta(minutes=5)
    writer.write(nmea.encode_identification(uid))
    for i in range(3):
        writer.write(nmea.encode_position(start + timedelta(seconds=i), 31.2 + i / 1000, 121.5, satellites=9))
    writer.close()  # the decoder flushes the last fix when the connection ends

    async def all_three() -> bool:
        return [f[0] for f in await _fixes(db, device_id)] == [start + timedelta(seconds=i) for i in range(3)]

    await _eventually(all_three)


def _garbage(n: int) -> bytes:
    """Random bytes without any protocol's start marker. Random bytes with one (a GT06 0x79 0x79 and a
    length of up to 64 KB, say) are a frame still arriving, which only the idle timeout ends."""
    return secrets.token_bytes(n).translate(bytes(0 if b in b"\x78\x79\x7e*$" else b for b in range(256)))


@pytest.mark.parametrize("protocol", ["jt808", "gt06", "h02", "nmea"])
async def test_bad_peers_do_not_disturb_a_good_terminal(
    server: Server, connect: object, db: psycopg.AsyncConnection, protocol: str
) -> None:
    """Garbage, an oversize frame and a silent peer on a port while a JT/T 808 terminal reports."""
    peers = [await connect(protocol) for _ in range(3)]  # type: ignore[operator]
    _, garbage = peers[0]
    garbage.write(_garbage(4096) + b"\x7e\x78\x78*HQ,$$\n" * 50)
    _, oversize = peers[1]
    oversize.write(b"\x7e" + b"\x01" * 200_000)  # no end flag: more than any frame may be
    # peers[2] says nothing at all.
    uid = "13" + str(secrets.randbelow(10**9)).rjust(9, "0")
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind="muck")])
    t = await Terminal(uid).connect(server.ports["jt808"])
    try:
        _, code = await t.register()
        assert await t.authenticate(code) == 0
        base = _now() - timedelta(minutes=1)
        for i in range(20):
            serial = await t.report(base + timedelta(seconds=i), 22.5, 114.0 + i / 1000)
            if not garbage.is_closing():
                with contextlib.suppress(RuntimeError, ConnectionError):  # the server may cut it off meanwhile
                    garbage.write(_garbage(512))
            assert await t.general_response() == (serial, jt808.MSG_LOCATION, 0)
    finally:
        await t.close()
    device = await devices.by_uid(db, uid)
    assert device is not None and len(await _fixes(db, device.id)) == 20
    assert server.counters.values[f"{protocol}.frame_errors"] > 0
    # The garbage peer was cut off: its connection is closed by the server.
    with contextlib.suppress(ConnectionError):  # reset or broken pipe: closed either way
        assert await asyncio.wait_for(peers[0][0].read(), 5) == b""
    assert server.counters.values[f"{protocol}.cut_off"] >= 1


async def test_h02_reports_in_one_read_each_answered(connect: object, db: psycopg.AsyncConnection) -> None:
    """H02 has no serials: three reports arriving together are three messages with three answers."""
    uid = str(4_000_000_000 + secrets.randbelow(10**9))
    device_id = await _device(db, uid, "h02")
    reader, writer = await connect("h02")  # type: ignore[operator]
    base = _now() - timedelta(minutes=3)
    writer.write(
        b"".join(h02.encode_position(uid, base + timedelta(seconds=i), 22.5, 114.0 + i / 100) for i in range(3))
    )
    replies = [await asyncio.wait_for(reader.readuntil(b"#"), 5) for _ in range(3)]
    assert all(r.startswith(f"*HQ,{uid},V4,V1,".encode()) for r in replies)
    assert len(await _fixes(db, device_id)) == 3
