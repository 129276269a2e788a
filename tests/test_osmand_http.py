"""The OsmAnd HTTP endpoint end to end: real HTTP clients, the real database, 200 only after the commit."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import psycopg
import pytest

from ingest.batcher import Batcher
from ingest.osmand_http import OsmAndListener
from ingest.reports import ReportSink
from store import db as store_db
from store import devices
from store.devices import DeviceRecord
from store.positions import PositionWriter
from telematics.server import Server
from tracking.registry import Registry

# What the Traccar Client app for Android sends (HttpURLConnection, POST with the fields in the URL).
APP_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded",
    "User-Agent": "Dalvik/2.1.0 (Linux; U; Android 13; SM-A536B Build/TP1A.220624.014)",
    "Connection": "Keep-Alive",
    "Accept-Encoding": "gzip",
}
KNOT_KMH = 1.852

StartListener = Callable[..., Awaitable[tuple[OsmAndListener, str]]]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _app_query(uid: str, fix: datetime, lat: float, lon: float, **extra: Any) -> str:
    fields: dict[str, Any] = {
        "id": uid,
        "timestamp": int(fix.timestamp()),
        "lat": lat,
        "lon": lon,
        "speed": 10.0,
        "bearing": 87.5,
        "altitude": 41.0,
        "accuracy": 6.5,
        "batt": 73.0,
    }
    fields.update(extra)
    return urlencode(fields)


async def _new_device(db: psycopg.AsyncConnection, **kw: Any) -> str:
    uid = "osm-" + secrets.token_hex(5)
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind="inspector", name="test phone", **kw)])
    return uid


async def _device_id(db: psycopg.AsyncConnection, uid: str) -> int:
    device = await devices.by_uid(db, uid)
    assert device is not None
    return device.id


async def _rows(db: psycopg.AsyncConnection, uid: str) -> list[tuple[Any, ...]]:
    cur = await db.execute(
        """SELECT fix_time, lat, lon, speed_kmh, course, altitude_m, accuracy_m, mileage_km, protocol::text, extras
           FROM positions WHERE device_id = %s ORDER BY fix_time""",
        (await _device_id(db, uid),),
    )
    return await cur.fetchall()


@pytest.fixture
async def start_listener(server: Server) -> AsyncIterator[StartListener]:
    """Starts OsmAnd listeners on the test server's batcher, pool and counters; closes them after the test."""
    started: list[OsmAndListener] = []
    assert server.batcher is not None and server.pool is not None

    async def start(**kw: Any) -> tuple[OsmAndListener, str]:
        assert server.batcher is not None and server.pool is not None
        reports = ReportSink(server.batcher, server.counters, max_future=timedelta(minutes=10))
        listener = OsmAndListener(reports, Registry(server.pool), server.counters, **kw)
        port = await listener.start("127.0.0.1", 0)
        started.append(listener)
        return listener, f"http://127.0.0.1:{port}"

    yield start
    for listener in started:
        await listener.close()


@pytest.fixture
async def base(start_listener: StartListener) -> str:
    return (await start_listener())[1]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _post(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, str]:
    async with http.post(url, **kw) as r:
        return r.status, await r.text()


# --- the app's requests ------------------------------------------------------------------------


async def test_traccar_client_request_stored_before_200(
    server: Server, db: psycopg.AsyncConnection, base: str, http: aiohttp.ClientSession
) -> None:
    uid = await _new_device(db)
    stored_before = server.counters.values["osmand.stored"]
    start = _now() - timedelta(minutes=2)
    for i in range(3):
        fix = start + timedelta(seconds=15 * i)
        url = f"{base}/?{_app_query(uid, fix, 31.2304 + i / 1000, 121.4737)}"
        status, text = await _post(http, url, data=b"", headers=APP_HEADERS)
        assert (status, text) == (200, "")
        # The 200 arrived: the row must already be visible to another connection.
        rows = await _rows(db, uid)
        assert len(rows) == i + 1
        fix_time, lat, lon, speed, course, altitude, accuracy, _, protocol, extras = rows[-1]
        assert fix_time == fix
        assert lat == pytest.approx(31.2304 + i / 1000) and lon == pytest.approx(121.4737)
        assert speed == pytest.approx(10.0 * KNOT_KMH, rel=1e-6)  # the app sends knots; we store km/h
        assert course == pytest.approx(87.5) and altitude == pytest.approx(41.0) and accuracy == pytest.approx(6.5)
        assert protocol == "osmand" and extras["battery_pct"] == 73
    assert server.counters.values["osmand.stored"] == stored_before + 3


async def test_get_form_with_another_path(db: psycopg.AsyncConnection, base: str, http: aiohttp.ClientSession) -> None:
    """OsmAnd itself and older clients use GET, some set a path: both are the same endpoint."""
    uid = await _new_device(db)
    fix = _now() - timedelta(seconds=40)
    async with http.get(f"{base}/track/osmand?{_app_query(uid, fix, -33.86, 151.2, speed=0)}") as r:
        assert r.status == 200
    assert [(r[0], r[3]) for r in await _rows(db, uid)] == [(fix, 0.0)]


async def test_form_body(db: psycopg.AsyncConnection, base: str, http: aiohttp.ClientSession) -> None:
    uid = await _new_device(db)
    fix = _now() - timedelta(seconds=50)
    status, _ = await _post(http, f"{base}/", data=_app_query(uid, fix, 48.85, 2.35).encode(), headers=APP_HEADERS)
    assert status == 200
    assert [(r[0], r[1]) for r in await _rows(db, uid)] == [(fix, pytest.approx(48.85))]


async def test_json_body_batch(db: psycopg.AsyncConnection, base: str, http: aiohttp.ClientSession) -> None:
    """The newer app's JSON body (background-geolocation layout), two fixes batched after being offline."""
    uid = await _new_device(db)
    fixes = [_now() - timedelta(minutes=10), _now() - timedelta(minutes=9)]
    locations = [
        {
            "timestamp": fix.isoformat().replace("+00:00", "Z"),
            "coords": {
                "latitude": 22.54 + i / 100,
                "longitude": 114.05,
                "speed": 5.0,  # m/s
                "heading": 180,
                "altitude": 12,
                "accuracy": 4,
            },
            "is_moving": True,
            "odometer": 12345,
            "battery": {"level": 0.5, "is_charging": False},
        }
        for i, fix in enumerate(fixes)
    ]
    body = json.dumps({"device_id": uid, "location": locations})
    status, text = await _post(http, f"{base}/", data=body, headers={"Content-Type": "application/json"})
    assert (status, text) == (200, "")
    rows = await _rows(db, uid)
    assert [r[0] for r in rows] == fixes
    assert rows[0][3] == pytest.approx(18.0) and rows[0][7] == pytest.approx(12.345)
    assert rows[1][1] == pytest.approx(22.55) and rows[1][9]["moving"] is True


async def test_resent_report_stored_once(db: psycopg.AsyncConnection, base: str, http: aiohttp.ClientSession) -> None:
    uid = await _new_device(db)
    url = f"{base}/?{_app_query(uid, _now() - timedelta(minutes=1), 30.0, 120.0)}"
    for _ in range(3):  # as the app does when it missed our answer
        assert (await _post(http, url, data=b"", headers=APP_HEADERS))[0] == 200
    assert len(await _rows(db, uid)) == 1


async def test_heartbeat_without_coordinates(
    server: Server, db: psycopg.AsyncConnection, base: str, http: aiohttp.ClientSession
) -> None:
    uid = await _new_device(db)
    before = server.counters.values["osmand.heartbeats"]
    status, _ = await _post(http, f"{base}/?id={uid}&batt=50&cell=460,0,9520,3671", data=b"", headers=APP_HEADERS)
    assert status == 200
    assert await _rows(db, uid) == []
    assert server.counters.values["osmand.heartbeats"] == before + 1


# --- refusals ----------------------------------------------------------------------------------


async def test_unknown_and_disabled_devices_get_404(
    server: Server, db: psycopg.AsyncConnection, base: str, http: aiohttp.ClientSession
) -> None:
    counters = server.counters.values
    unknown_before, disabled_before = counters["osmand.unknown_device"], counters["osmand.disabled_device"]
    uid = "osm-unknown-" + secrets.token_hex(4)
    status, text = await _post(http, f"{base}/?{_app_query(uid, _now(), 30.0, 120.0)}", data=b"", headers=APP_HEADERS)
    assert (status, text.strip()) == (404, "unknown device")
    assert await devices.by_uid(db, uid) is None  # not created, nothing stored
    assert counters["osmand.unknown_device"] == unknown_before + 1

    disabled = await _new_device(db, enabled=False)
    url = f"{base}/?{_app_query(disabled, _now(), 30.0, 120.0)}"
    status, text = await _post(http, url, data=b"", headers=APP_HEADERS)
    assert (status, text.strip()) == (404, "device disabled")
    assert await _rows(db, disabled) == []
    assert counters["osmand.disabled_device"] == disabled_before + 1


async def test_missing_id_is_400(server: Server, base: str, http: aiohttp.ClientSession) -> None:
    before = server.counters.values["osmand.bad_requests"]
    status, text = await _post(http, f"{base}/?lat=30.0&lon=120.0&timestamp=1700000000", data=b"", headers=APP_HEADERS)
    assert (status, text.strip()) == (400, "missing device id")
    assert server.counters.values["osmand.bad_requests"] == before + 1


async def test_bad_coordinates_and_future_fix_are_400(
    server: Server, db: psycopg.AsyncConnection, base: str, http: aiohttp.ClientSession
) -> None:
    uid = await _new_device(db)
    status, text = await _post(http, f"{base}/?{_app_query(uid, _now(), 91.5, 120.0)}", data=b"", headers=APP_HEADERS)
    assert (status, text.strip()) == (400, "bad lat")
    # Parses, but is two days ahead of the server clock: ReportSink queues nothing.
    bad_fixes = server.counters.values["ingest.bad_fixes"]
    future = _now() + timedelta(days=2)
    status, text = await _post(http, f"{base}/?{_app_query(uid, future, 30.0, 120.0)}", data=b"", headers=APP_HEADERS)
    assert status == 400 and "no storable fix" in text
    assert server.counters.values["ingest.bad_fixes"] == bad_fixes + 1
    assert await _rows(db, uid) == []


async def test_other_methods_are_405(base: str, http: aiohttp.ClientSession) -> None:
    async with http.put(f"{base}/?id=x&lat=1&lon=2", data=b"") as r:
        assert r.status == 405


async def test_oversize_body_is_413(
    server: Server, db: psycopg.AsyncConnection, start_listener: StartListener, http: aiohttp.ClientSession
) -> None:
    _, base = await start_listener(max_body=4096)
    uid = await _new_device(db)
    before = server.counters.values["osmand.too_large"]
    padding = "&pad=" + "x" * 5000
    body = (_app_query(uid, _now() - timedelta(seconds=5), 30.0, 120.0) + padding).encode()
    assert (await _post(http, f"{base}/", data=body, headers=APP_HEADERS))[0] == 413

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies while reading
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    assert (await _post(http, f"{base}/", data=chunked(), headers=APP_HEADERS))[0] == 413
    assert server.counters.values["osmand.too_large"] == before + 2
    assert await _rows(db, uid) == []
    fix = _now() - timedelta(seconds=3)
    assert (await _post(http, f"{base}/?{_app_query(uid, fix, 30.0, 120.0)}", data=b"", headers=APP_HEADERS))[0] == 200
    assert [r[0] for r in await _rows(db, uid)] == [fix]


# --- the commit --------------------------------------------------------------------------------


async def _lock_positions(dsn: str) -> psycopg.AsyncConnection:
    blocker = await psycopg.AsyncConnection.connect(dsn)
    await blocker.execute("LOCK TABLE positions IN SHARE ROW EXCLUSIVE MODE")
    return blocker


async def test_no_200_while_the_commit_cannot_happen(
    fresh_database: str, db: psycopg.AsyncConnection, base: str, http: aiohttp.ClientSession
) -> None:
    uid = await _new_device(db)
    fix = _now() - timedelta(seconds=30)
    url = f"{base}/?{_app_query(uid, fix, 30.0, 120.0)}"
    blocker = await _lock_positions(fresh_database)
    try:
        answer = asyncio.create_task(_post(http, url, data=b"", headers=APP_HEADERS))
        done, _ = await asyncio.wait({answer}, timeout=0.8)
        assert not done, "answered before the row could be committed"
        assert await _rows(db, uid) == []
    finally:
        await blocker.rollback()  # releases the lock: the pending batch commits now
        await blocker.close()
    assert await answer == (200, "")
    assert [r[0] for r in await _rows(db, uid)] == [fix]


async def test_commit_slower_than_the_request_timeout_is_503_and_lands_later(
    server: Server,
    fresh_database: str,
    db: psycopg.AsyncConnection,
    start_listener: StartListener,
    http: aiohttp.ClientSession,
) -> None:
    _, base = await start_listener(request_timeout=0.5)
    uid = await _new_device(db)
    fix = _now() - timedelta(seconds=20)
    url = f"{base}/?{_app_query(uid, fix, 30.0, 120.0)}"
    before = server.counters.values["osmand.timeouts"]
    blocker = await _lock_positions(fresh_database)
    try:
        status, _ = await _post(http, url, data=b"", headers=APP_HEADERS)
        assert status == 503
        assert server.counters.values["osmand.timeouts"] == before + 1
    finally:
        await blocker.rollback()
        await blocker.close()
    # The queued row still lands, and the app's resend is answered 200 and stored once.
    assert (await _post(http, url, data=b"", headers=APP_HEADERS))[0] == 200
    assert [r[0] for r in await _rows(db, uid)] == [fix]


async def test_client_gone_before_the_commit(
    fresh_database: str, db: psycopg.AsyncConnection, base: str, http: aiohttp.ClientSession
) -> None:
    uid = await _new_device(db)
    fix = _now() - timedelta(seconds=25)
    port = int(base.rsplit(":", 1)[1])
    request = f"POST /?{_app_query(uid, fix, 30.0, 120.0)} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    blocker = await _lock_positions(fresh_database)
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request.encode())
        await writer.drain()
        await asyncio.sleep(0.3)  # the request is in, its row queued behind the lock
        writer.close()  # the phone loses its connection
        await writer.wait_closed()
    finally:
        await blocker.rollback()
        await blocker.close()
    later = fix + timedelta(seconds=5)
    status, _ = await _post(http, f"{base}/?{_app_query(uid, later, 30.0, 120.0)}", data=b"", headers=APP_HEADERS)
    assert status == 200
    assert [r[0] for r in await _rows(db, uid)] == [fix, later]


async def test_garbage_on_the_port_does_not_hurt_a_good_client(
    server: Server, db: psycopg.AsyncConnection, base: str, http: aiohttp.ClientSession
) -> None:
    uid = await _new_device(db)
    bad_http = server.counters.values["osmand.bad_http"]
    port = int(base.rsplit(":", 1)[1])

    async def garbage(i: int) -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            payloads = [
                b"\x00\xff\x7e\x02\x00garbage\r\n\r\n",
                b"POST /?id=" + b"9" * 100_000 + b" HTTP/1.1\r\n\r\n",  # request line far too long
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nid=",  # promises a body, never sends it
                b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunk size
            ]
            writer.write(payloads[i % len(payloads)])
            await writer.drain()
            await asyncio.sleep(0.2)
        except ConnectionError:
            pass  # the server may drop such a connection before we are done writing
        finally:
            writer.close()

    async def good() -> list[int]:
        start = _now() - timedelta(minutes=5)
        statuses = []
        for i in range(20):
            url = f"{base}/?{_app_query(uid, start + timedelta(seconds=i), 30.0 + i / 1000, 120.0)}"
            statuses.append((await _post(http, url, data=b"", headers=APP_HEADERS))[0])
        return statuses

    results = await asyncio.gather(good(), *(garbage(i) for i in range(12)))
    assert results[0] == [200] * 20
    assert len(await _rows(db, uid)) == 20
    assert server.counters.values["osmand.bad_http"] == bad_http + 9  # counted, not a traceback each


async def test_body_that_never_arrives_is_408(
    server: Server, db: psycopg.AsyncConnection, start_listener: StartListener
) -> None:
    _, base = await start_listener(request_timeout=0.5)
    port = int(base.rsplit(":", 1)[1])
    before = server.counters.values["osmand.timeouts"]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nid=")  # and then nothing
        status_line = await asyncio.wait_for(reader.readline(), 5)
        assert status_line.startswith(b"HTTP/1.1 408")
        assert server.counters.values["osmand.timeouts"] == before + 1
    finally:
        writer.close()


async def test_backpressure_holds_requests_until_the_database_catches_up(
    server: Server, fresh_database: str, db: psycopg.AsyncConnection, http: aiohttp.ClientSession
) -> None:
    """With a backlog past max_pending, a request waits before its rows are queued, then is stored."""
    assert server.pool is not None
    counters = server.counters

    async def connect_writer() -> PositionWriter:
        return PositionWriter(await store_db.connect(fresh_database, autocommit=True))

    batcher = Batcher(connect_writer, counters, max_rows=10, max_delay=0.005, max_pending=1)
    batcher.start()
    listener = OsmAndListener(ReportSink(batcher, counters), Registry(server.pool), counters)
    base = f"http://127.0.0.1:{await listener.start('127.0.0.1', 0)}"
    uid = await _new_device(db)
    fixes = [_now() - timedelta(seconds=60), _now() - timedelta(seconds=50)]
    waits = counters.values["osmand.backpressure_waits"]
    blocker = await _lock_positions(fresh_database)
    try:
        first = asyncio.create_task(_post(http, f"{base}/?{_app_query(uid, fixes[0], 30.0, 120.0)}", data=b""))
        for _ in range(100):  # its row fills the backlog: the batcher pauses its readers
            if batcher.paused:
                break
            await asyncio.sleep(0.01)
        assert batcher.paused
        second = asyncio.create_task(_post(http, f"{base}/?{_app_query(uid, fixes[1], 30.0, 120.0)}", data=b""))
        done, _ = await asyncio.wait({first, second}, timeout=0.5)
        assert not done
        assert counters.values["osmand.backpressure_waits"] == waits + 1
        assert batcher.pending == 0  # the first row is in the blocked write; the second was not queued
    finally:
        await blocker.rollback()
        await blocker.close()
    try:
        assert await first == (200, "") and await second == (200, "")
        assert [r[0] for r in await _rows(db, uid)] == fixes
    finally:
        await listener.close()
        await batcher.close()


async def test_the_composed_server_listens_for_the_app(server: Server, db: psycopg.AsyncConnection) -> None:
    """`telematics serve` starts this listener (port 5055 by default; ephemeral in the tests)."""
    uid = f"app-{secrets.token_hex(4)}"
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind="inspector", protocol="osmand")])
    t = int(datetime.now(UTC).timestamp()) - 10
    url = f"http://127.0.0.1:{server.ports['osmand']}/?id={uid}&timestamp={t}&lat=22.5431&lon=114.0579&speed=5.4"
    async with aiohttp.ClientSession() as http, http.post(url) as r:
        assert r.status == 200
    cur = await db.execute(
        "SELECT p.lat, p.speed_kmh FROM positions p JOIN devices d ON d.id = p.device_id WHERE d.uid = %s", (uid,)
    )
    ((lat, speed),) = await cur.fetchall()
    assert lat == pytest.approx(22.5431) and speed == pytest.approx(5.4 * 1.852, abs=1e-3)
