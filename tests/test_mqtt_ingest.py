"""Phones over MQTT end to end: a real Mosquitto, real publishers, rows in TimescaleDB, acks after the commit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import psycopg
import pytest

from ingest.counters import Counters
from ingest.mqtt_ingest import MqttIngest
from ingest.reports import ReportSink
from protocols import phone_mqtt
from protocols.messages import Position
from store import devices, messages
from store.devices import DeviceRecord
from telematics.broker import Broker
from telematics.server import Server
from tests.conftest import API_TOKEN, ROOT
from tests.server_process import free_port
from tracking.registry import Registry

MakeIngest = Callable[..., Awaitable[MqttIngest]]


def _new_broker() -> Broker:
    (ROOT / "var").mkdir(exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="test-mosquitto-", dir=ROOT / "var"))
    broker = Broker(directory=directory, port=free_port())
    broker.start()
    return broker


def _stop_broker(broker: Broker) -> None:
    started = time.monotonic()
    broker.stop()
    assert time.monotonic() - started < 5, "Broker.stop reaps the broker it started at once"


def _remove_broker(broker: Broker) -> None:
    _stop_broker(broker)
    shutil.rmtree(broker.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    b = _new_broker()
    yield b
    _remove_broker(b)


@pytest.fixture
async def make_ingest(server: Server, broker: Broker) -> AsyncIterator[MakeIngest]:
    """Starts MqttIngest instances on the session's batcher and pool, each with counters of its own."""
    started: list[MqttIngest] = []

    async def make(client_id: str, *, on: Broker | None = None, **kw: Any) -> MqttIngest:
        assert server.batcher is not None and server.pool is not None
        b = on or broker
        counters = Counters()
        ingest = MqttIngest(
            ReportSink(server.batcher, counters),
            Registry(server.pool),
            counters,
            host=b.host,
            port=b.port,
            client_id=client_id,
            **kw,
        )
        await ingest.start()
        started.append(ingest)
        return ingest

    yield make
    for ingest in started:
        await ingest.close(drain_timeout=1)


def _client_id() -> str:
    return "test-ingest-" + secrets.token_hex(4)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _new_device(db: psycopg.AsyncConnection, *, enabled: bool = True) -> tuple[str, int]:
    uid = "insp-" + secrets.token_hex(5)
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind="inspector", protocol="mqtt", enabled=enabled)])
    device = await devices.by_uid(db, uid)
    assert device is not None
    return uid, device.id


async def _rows(db: psycopg.AsyncConnection, device_id: int) -> list[tuple[Any, ...]]:
    cur = await db.execute(
        """SELECT fix_time, lat, lon, speed_kmh, course, altitude_m, accuracy_m, protocol::text, extras
           FROM positions WHERE device_id = %s ORDER BY fix_time""",
        (device_id,),
    )
    return await cur.fetchall()


async def _eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool]) -> None:
    """Poll `check` until it holds; fail after 10 s."""
    deadline = asyncio.get_running_loop().time() + 10.0
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def _rows_become(db: psycopg.AsyncConnection, device_id: int, n: int) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []

    async def check() -> bool:
        nonlocal rows
        rows = await _rows(db, device_id)
        return len(rows) >= n

    await _eventually(check)
    return rows


async def _publish(broker: Broker, *messages: tuple[str, bytes], qos: int = 1) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=qos)


def _owntracks(fix: datetime, lat: float, lon: float, **extra: Any) -> bytes:
    return json.dumps({"_type": "location", "lat": lat, "lon": lon, "tst": int(fix.timestamp()), **extra}).encode()


async def _nothing_redelivered(make_ingest: MakeIngest, client_id: str) -> None:
    """A new session under the same client id gets nothing: every earlier message was acknowledged."""
    again = await make_ingest(client_id)
    await asyncio.sleep(0.5)
    assert again.counters.values["mqtt.messages"] == 0


# --------------------------------------------------------------------------------------------


async def test_owntracks_json_from_mosquitto_pub(
    broker: Broker, make_ingest: MakeIngest, db: psycopg.AsyncConnection
) -> None:
    uid, device_id = await _new_device(db)
    ingest = await make_ingest(_client_id())
    fix = _now() - timedelta(minutes=2)
    payload = _owntracks(fix, 31.2304, 121.4737, acc=8, alt=12, vel=18, cog=270, batt=76, tid="z7", conn="m")
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_pub",
        *("-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", f"owntracks/alice/{uid}", "-m", payload),
    )
    assert await proc.wait() == 0
    rows = await _rows_become(db, device_id, 1)
    assert len(rows) == 1
    time_, lat, lon, speed, course, alt, acc, protocol, extras = rows[0]
    assert time_ == fix
    assert (lat, lon) == (pytest.approx(31.2304), pytest.approx(121.4737))
    assert (speed, course, alt, acc) == (18, 270, 12, 8)
    assert protocol == "mqtt"
    assert extras["user"] == "alice" and extras["battery_pct"] == 76 and extras["tid"] == "z7"
    assert ingest.counters.values["ingest.positions.mqtt"] == 1


async def test_msgpack_location_and_checkin_from_aiomqtt(
    broker: Broker, make_ingest: MakeIngest, db: psycopg.AsyncConnection
) -> None:
    uid, device_id = await _new_device(db)
    await make_ingest(_client_id())
    fix = _now() - timedelta(minutes=5)
    location = Position(
        protocol="mqtt", device=uid, time=fix, lat=22.5431, lon=114.0579, valid=True, speed_kmh=4.5, accuracy_m=5
    )
    checkin = Position(
        protocol="mqtt",
        device=uid,
        time=fix + timedelta(seconds=30),
        lat=22.5432,
        lon=114.058,
        valid=True,
        extras={"event": "checkin", "post": "P-17", "mock": True},
    )
    await _publish(
        broker,
        (phone_mqtt.topic_for(uid), phone_mqtt.encode_location(location, fmt="msgpack")),
        (phone_mqtt.event_topic_for(uid), phone_mqtt.encode_location(checkin, fmt="msgpack")),
    )
    rows = await _rows_become(db, device_id, 2)
    assert [r[0] for r in rows] == [fix, fix + timedelta(seconds=30)]
    assert rows[0][1:3] == (pytest.approx(22.5431), pytest.approx(114.0579))
    assert rows[0][3] == pytest.approx(4.5) and rows[0][6] == 5
    assert rows[1][8] == {"event": "checkin", "post": "P-17", "mock": True}


async def test_resent_message_stored_once(broker: Broker, make_ingest: MakeIngest, db: psycopg.AsyncConnection) -> None:
    uid, device_id = await _new_device(db)
    ingest = await make_ingest(_client_id())
    fix = _now() - timedelta(minutes=1)
    payload = _owntracks(fix, 39.9, 116.4)
    await _publish(broker, *[(phone_mqtt.topic_for(uid), payload)] * 3)
    await _eventually(lambda: ingest.counters.values["ingest.positions.mqtt"] == 3)
    await _eventually(lambda: not ingest._conn or not ingest._conn.unacked)  # all three committed and acked
    rows = await _rows(db, device_id)
    assert [r[0] for r in rows] == [fix]


async def test_bad_input_counted_and_next_good_message_stored(
    broker: Broker, make_ingest: MakeIngest, db: psycopg.AsyncConnection
) -> None:
    uid, device_id = await _new_device(db)
    disabled_uid, disabled_id = await _new_device(db, enabled=False)
    client_id = _client_id()
    ingest = await make_ingest(client_id)
    fix = _now() - timedelta(seconds=40)
    good = _owntracks(fix, 30.0, 120.0)
    topic = phone_mqtt.topic_for(uid)
    await _publish(
        broker,
        (phone_mqtt.topic_for("nobody-" + secrets.token_hex(3)), good),  # unknown device
        (phone_mqtt.topic_for(disabled_uid), good),  # disabled device
        (topic, b"\x00\x01garbage"),  # neither JSON nor msgpack
        (topic, b"{not json"),
        (topic, b"\x81\xc1"),  # a msgpack map header, then an invalid byte
        (topic, b'{"_type":"location","lon":120.0,"tst":1700000000}'),  # no lat
        (topic, _owntracks(_now() + timedelta(days=3), 30.0, 120.0)),  # a fix days ahead of the clock
        (f"owntracks/bob/{uid}/event", b'{"_type":"transition","event":"enter"}'),
        (topic, good),
    )
    rows = await _rows_become(db, device_id, 1)
    assert [r[0] for r in rows] == [fix]
    counters = ingest.counters.values
    await _eventually(lambda: counters["mqtt.messages"] == 9 and ingest._conn is not None and not ingest._conn.unacked)
    assert counters["mqtt.bad_messages"] == 4
    assert counters["mqtt.bad_messages.bad_json"] == 1 and counters["mqtt.bad_messages.bad_msgpack"] == 1
    assert counters["mqtt.bad_messages.unknown_encoding"] == 1 and counters["mqtt.bad_messages.bad_lat"] == 1
    assert counters["mqtt.unknown_devices"] == 1 and counters["mqtt.disabled_devices"] == 1
    assert counters["ingest.bad_fixes"] == 1 and counters["mqtt.unsupported"] == 1
    assert await _rows(db, disabled_id) == []
    # Everything above was acknowledged (good and bad alike), so nothing comes back.
    await ingest.close()
    await _nothing_redelivered(make_ingest, client_id)


async def test_logout_and_heartbeat_counted(
    broker: Broker, make_ingest: MakeIngest, db: psycopg.AsyncConnection
) -> None:
    uid, _ = await _new_device(db)
    ingest = await make_ingest(_client_id())
    await _publish(
        broker,
        (f"owntracks/carol/{uid}", b'{"_type":"lwt","tst":1700000000}'),
        (f"owntracks/carol/{uid}", b'{"_type":"status"}'),
    )
    counters = ingest.counters.values
    await _eventually(lambda: counters["mqtt.logouts"] + counters["mqtt.heartbeats"] == 2)
    assert counters["mqtt.logouts"] == 1 and counters["mqtt.heartbeats"] == 1 and counters["mqtt.messages"] == 2


async def test_persistent_session_delivers_what_was_published_while_down(
    broker: Broker, make_ingest: MakeIngest, db: psycopg.AsyncConnection
) -> None:
    uid, device_id = await _new_device(db)
    client_id = _client_id()
    first = await make_ingest(client_id)
    await first.close()
    fixes = [_now() - timedelta(minutes=10, seconds=s) for s in (0, 10)]
    await _publish(broker, *[(phone_mqtt.topic_for(uid), _owntracks(f, 45.0, 9.0)) for f in fixes])
    await asyncio.sleep(0.2)
    assert await _rows(db, device_id) == []  # nobody subscribed: the broker holds them
    second = await make_ingest(client_id)
    rows = await _rows_become(db, device_id, 2)
    assert sorted(r[0] for r in rows) == sorted(fixes)
    assert second.counters.values["mqtt.messages"] == 2


async def test_no_ack_before_commit_and_redelivery_after_a_crash(
    broker: Broker, make_ingest: MakeIngest, db: psycopg.AsyncConnection, fresh_database: str
) -> None:
    uid, device_id = await _new_device(db)
    client_id = _client_id()
    crashed = await make_ingest(client_id)
    fix = _now() - timedelta(seconds=90)
    blocker = await psycopg.AsyncConnection.connect(fresh_database)
    try:
        await blocker.execute("LOCK TABLE positions IN SHARE ROW EXCLUSIVE MODE")
        await _publish(broker, (phone_mqtt.topic_for(uid), _owntracks(fix, -33.9, 18.4)))
        await _eventually(lambda: crashed.counters.values["ingest.positions.mqtt"] == 1)
        await asyncio.sleep(0.3)
        assert await _rows(db, device_id) == []
        assert crashed._conn is not None and len(crashed._conn.unacked) == 1  # received, not acknowledged

        # A crash before the commit: the socket goes away without DISCONNECT, the tasks die with it.
        sock = crashed._conn.paho.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        tasks = [t for t in (crashed._task, *crashed._workers) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await crashed.close(drain_timeout=0)

        # The broker still holds the message: a new process with the same client id gets it again.
        restarted = await make_ingest(client_id)
        await _eventually(lambda: restarted.counters.values["ingest.positions.mqtt"] == 1)
        assert await _rows(db, device_id) == []
    finally:
        await blocker.rollback()  # the pending batches (the crashed one's and the restarted one's) commit now
        await blocker.close()
    rows = await _rows_become(db, device_id, 1)
    assert [r[0] for r in rows] == [fix]
    await _eventually(lambda: restarted._conn is not None and not restarted._conn.unacked)
    await restarted.close()
    await _nothing_redelivered(make_ingest, client_id)  # acked once it was committed


async def test_reconnects_after_the_broker_goes_away(
    make_ingest: MakeIngest, db: psycopg.AsyncConnection, caplog: pytest.LogCaptureFixture
) -> None:
    own = _new_broker()
    try:
        uid, device_id = await _new_device(db)
        ingest = await make_ingest(_client_id(), on=own, reconnect_min_s=0.05, reconnect_max_s=0.2)
        with caplog.at_level(logging.WARNING, logger="telematics.mqtt"):
            await asyncio.to_thread(_stop_broker, own)
            await _eventually(lambda: ingest.counters.values["mqtt.connect_failures"] >= 3)
            assert not ingest.connected
            await asyncio.to_thread(own.start)
            await _eventually(lambda: ingest.connected)
        assert ingest.counters.values["mqtt.disconnects"] == 1
        assert ingest.counters.values["mqtt.connections"] == 2
        lost = [r for r in caplog.records if r.name == "telematics.mqtt" and r.levelno >= logging.WARNING]
        assert len(lost) == 1 and "lost" in lost[0].getMessage()  # one line for the outage, not one per attempt
        fix = _now() - timedelta(seconds=15)
        await _publish(own, (phone_mqtt.topic_for(uid), _owntracks(fix, 1.3, 103.8)))
        assert [r[0] for r in await _rows_become(db, device_id, 1)] == [fix]
    finally:
        await asyncio.to_thread(_remove_broker, own)


async def test_start_fails_without_a_broker(server: Server) -> None:
    assert server.batcher is not None and server.pool is not None
    counters = Counters()
    ingest = MqttIngest(
        ReportSink(server.batcher, counters), Registry(server.pool), counters, host="127.0.0.1", port=free_port()
    )
    with pytest.raises(aiomqtt.MqttError):
        await ingest.start()
    with contextlib.suppress(Exception):
        await ingest.close()
    assert not ingest.connected


async def test_the_composed_server_starts_its_broker_and_subscribes(
    fresh_database: str, db: psycopg.AsyncConnection, server: Server
) -> None:
    """`telematics serve` with the defaults: the embedded Mosquitto, the subscriber, a phone's report stored."""
    from tests.conftest import test_settings

    state = Path(tempfile.mkdtemp(prefix="test-serve-mqtt-", dir=ROOT / "var"))
    settings = test_settings(fresh_database, state)
    settings.mqtt.enabled = True
    settings.mqtt.port = free_port()
    settings.mqtt.client_id = _client_id()
    composed = Server(settings)
    await composed.start()
    broker = Broker(state / "mosquitto", port=settings.mqtt.port)
    try:
        assert composed.mqtt is not None
        await _eventually(lambda: composed.mqtt is not None and composed.mqtt.connected)
        uid, device_id = await _new_device(db)
        fix = _now() - timedelta(seconds=5)
        payload = json.dumps({"_type": "location", "lat": 22.54, "lon": 114.05, "tst": int(fix.timestamp())})
        proc = await asyncio.create_subprocess_exec(
            "mosquitto_pub", "-p", str(settings.mqtt.port), "-q", "1", "-t", f"owntracks/zhang/{uid}", "-m", payload
        )
        assert await proc.wait() == 0

        async def stored() -> bool:
            return [r[0] for r in await _rows(db, device_id)] == [fix]

        await _eventually(stored)
    finally:
        await composed.close()
        _remove_broker(broker)
        shutil.rmtree(state, ignore_errors=True)


async def test_shared_subscriptions_spread_the_phones_over_subscribers(
    broker: Broker, make_ingest: MakeIngest, db: psycopg.AsyncConnection
) -> None:
    """What several workers do: each message to exactly one of the subscribers, all stored once."""
    uid, device_id = await _new_device(db)
    group = "g" + secrets.token_hex(3)
    shared = [f"$share/{group}/{topic}" for topic in phone_mqtt.SUBSCRIPTIONS]
    first = await make_ingest(_client_id(), subscriptions=shared)
    second = await make_ingest(_client_id(), subscriptions=shared)
    base = _now() - timedelta(hours=1)
    await _publish(
        broker,
        *((phone_mqtt.topic_for(uid), _owntracks(base + timedelta(seconds=i), 30.0, 120.0)) for i in range(100)),
    )
    assert len(await _rows_become(db, device_id, 100)) == 100
    taken = [first.counters.values["mqtt.messages"], second.counters.values["mqtt.messages"]]
    assert sum(taken) == 100 and min(taken) > 0, taken


async def test_phone_gets_a_dispatcher_message_and_its_ack_is_recorded(
    server: Server, broker: Broker, make_ingest: MakeIngest, db: psycopg.AsyncConnection
) -> None:
    uid, device_id = await _new_device(db)
    ingest = await make_ingest(_client_id())
    assert server.downlink is not None
    ingest.downlink = server.downlink
    server.downlink.publish_phone = ingest.publish_message
    try:
        async with aiomqtt.Client(broker.host, broker.port) as phone:
            await phone.subscribe(phone_mqtt.message_topic_for(uid), qos=1)
            url = f"http://127.0.0.1:{server.ports['api']}/api/messages"
            async with (
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_TOKEN}"}) as http,
                http.post(url, json={"devices": [device_id], "text": "请到北门集合"}) as r,
            ):
                assert r.status == 201
                message_id = (await r.json())["id"]
            async with asyncio.timeout(10):
                async for got in phone.messages:
                    doc = json.loads(bytes(got.payload))  # type: ignore[arg-type]
                    assert doc == {"_type": "message", "id": message_id, "text": "请到北门集合"}
                    break
            await phone.publish(phone_mqtt.event_topic_for(uid), json.dumps({"_type": "ack", "id": message_id}), qos=1)

        async def acknowledged() -> bool:
            m = await messages.get(db, message_id)
            return m is not None and m.deliveries[0].state == "acknowledged"

        await _eventually(acknowledged)
    finally:
        server.downlink.publish_phone = None
