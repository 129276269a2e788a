"""Alerts to other systems: a real MQTT subscriber on the server's embedded Mosquitto and a real webhook
receiver on loopback get every change of an emergency-button alert; retries, refusals, a full queue
and the bounded flush at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import psycopg
import pytest
from aiohttp import web

from alerts.outputs import SIGNATURE_HEADER, AlertOutputs
from store import devices
from store.alerts import Alert
from store.devices import OrgUnitRecord
from telematics import config
from telematics.broker import Broker
from telematics.server import Server
from tests.conftest import API_TOKEN, ROOT, test_settings
from tests.server_process import free_port
from tests.terminal import Terminal, registered_terminal

SECRET = "s3cret-" + secrets.token_hex(4)


class Receiver:
    """A webhook endpoint: records every POST; `answers[(uid, kind, event)]` are statuses to answer first."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.answers: dict[tuple[str, str, str], list[int]] = {}
        self.url = ""
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.got.append((dict(request.headers), body))
        self.arrived.set()
        doc = json.loads(body)
        queued = self.answers.get((doc["uid"], doc["kind"], doc["event"]))
        return web.Response(status=queued.pop(0) if queued else 200)

    def posts(self, uid: str) -> list[tuple[dict[str, str], dict[str, Any], bytes]]:
        """The alarm alerts POSTed for this device, in the order they came."""
        out = [(h, json.loads(b), b) for h, b in self.got]
        return [(h, doc, b) for h, doc, b in out if doc["uid"] == uid and doc["kind"] == "alarm"]

    async def wait(self, uid: str, n: int) -> list[tuple[dict[str, str], dict[str, Any], bytes]]:
        deadline = time.monotonic() + 10
        while len(self.posts(uid)) < n and time.monotonic() < deadline:
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), deadline - time.monotonic())
        return self.posts(uid)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/hook", r.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    r.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield r
    await runner.cleanup()


@pytest.fixture(scope="module")
async def outputs_server(fresh_database: str, receiver: Receiver) -> AsyncIterator[Server]:
    """A server of its own: the embedded broker and the MQTT connection on, and the webhook set."""
    (ROOT / "var").mkdir(exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="test-alert-outputs-", dir=ROOT / "var"))
    s = test_settings(fresh_database, state)
    s.mqtt.enabled = True
    s.mqtt.port = free_port()
    s.mqtt.client_id = "test-alert-outputs-" + secrets.token_hex(4)
    s.alerts.webhook_url = receiver.url
    s.alerts.webhook_secret = SECRET
    s.alerts.webhook_retry_delay_s = 0.2
    srv = Server(s)
    await srv.start()
    try:
        deadline = time.monotonic() + 15
        while not (srv.mqtt is not None and srv.mqtt.connected):
            assert time.monotonic() < deadline, "the server did not connect to its broker"
            await asyncio.sleep(0.05)
        yield srv
    finally:
        await srv.close()
        Broker(state / "mosquitto", port=s.mqtt.port).stop()
        shutil.rmtree(state, ignore_errors=True)


async def _api(server: Server, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{server.ports['api']}{path}"
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http, http.request(method, url, json=body) as r:
        return r.status, await r.json()


async def _report(t: Terminal, at: datetime, alarm: int) -> None:
    serial = await t.report(at, 22.71, 114.41, alarm=alarm)
    assert (await t.general_response())[0] == serial  # acknowledged: committed


async def _next(sub: aiomqtt.Client, device_id: int) -> tuple[aiomqtt.Message, dict[str, Any]]:
    """The next alert change of this device on the subscription."""
    async with asyncio.timeout(10):
        async for message in sub.messages:
            doc = json.loads(bytes(message.payload))  # type: ignore[arg-type]
            if doc["device"] == device_id:
                return message, doc
    raise AssertionError("the subscription ended")


def _start() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)


async def test_mqtt_subscriber_gets_raised_acknowledged_ended_and_closed(
    outputs_server: Server, db: psycopg.AsyncConnection
) -> None:
    srv = outputs_server
    code = "unit-" + secrets.token_hex(3)
    await devices.upsert_units(db, [OrgUnitRecord(code=code, name="执法一队")])
    cur = await db.execute("SELECT id FROM org_units WHERE code = %s", (code,))
    row = await cur.fetchone()
    assert row is not None
    unit_id = int(row[0])
    t, device_id = await registered_terminal(db, srv.ports["jt808"], kind="enforcement", prefix="18")
    await db.execute("UPDATE devices SET org_unit_id = %s WHERE id = %s", (unit_id, device_id))
    start = _start()
    async with aiomqtt.Client("127.0.0.1", srv.settings.mqtt.port) as sub:
        await sub.subscribe(f"city/alerts/{unit_id}/#", qos=1)
        await _report(t, start, alarm=0)
        await _report(t, start + timedelta(seconds=10), alarm=1)  # the emergency button
        message, raised = await _next(sub, device_id)
        assert message.topic.value == f"city/alerts/{unit_id}/alarm"
        assert message.qos == 1 and not message.retain
        assert (raised["event"], raised["state"], raised["ended"], raised["severity"]) == ("raised", "raised", None, 4)
        alert_id = raised["id"]

        status, _ = await _api(srv, "POST", f"/api/alerts/{alert_id}/ack", {"comment": "在路上"})
        assert status == 200
        _, acknowledged = await _next(sub, device_id)
        assert (acknowledged["id"], acknowledged["event"]) == (alert_id, "acknowledged")
        assert acknowledged["ack"]["comment"] == "在路上" and acknowledged["ended"] is None

        await _report(t, start + timedelta(seconds=20), alarm=0)  # released: the alert ends
        _, ended = await _next(sub, device_id)
        assert (ended["id"], ended["event"], ended["state"]) == (alert_id, "ended", "acknowledged")
        assert ended["ended"] == (start + timedelta(seconds=20)).isoformat().replace("+00:00", "Z")

        status, _ = await _api(srv, "POST", f"/api/alerts/{alert_id}/ack", {"close": True})
        assert status == 200
        _, closed = await _next(sub, device_id)
        assert (closed["id"], closed["event"], closed["state"]) == (alert_id, "closed", "closed")
    for _ in range(200):  # counted when the broker's PUBACK is back, which may come after the subscriber has it
        if srv.counters.values["alerts.mqtt.delivered"] >= 4:
            break
        await asyncio.sleep(0.01)
    assert srv.counters.values["alerts.mqtt.delivered"] >= 4
    await t.close()


async def test_webhook_gets_signed_posts(
    outputs_server: Server, receiver: Receiver, db: psycopg.AsyncConnection
) -> None:
    t, device_id = await registered_terminal(db, outputs_server.ports["jt808"], kind="enforcement", prefix="18")
    start = _start()
    await _report(t, start, alarm=0)
    await _report(t, start + timedelta(seconds=10), alarm=1)
    await _report(t, start + timedelta(seconds=20), alarm=0)
    posts = await receiver.wait(t.device, 2)
    assert [doc["event"] for _, doc, _ in posts] == ["raised", "ended"]
    for headers, doc, body in posts:
        assert headers["Content-Type"] == "application/json"
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
        assert (doc["device"], doc["severity"], doc["evidence"]["bits"]) == (device_id, 4, [0])
    await t.close()


async def test_webhook_answering_500_gets_it_again_and_400_gives_it_up(
    outputs_server: Server, receiver: Receiver, db: psycopg.AsyncConnection
) -> None:
    counters = outputs_server.counters.values
    before = Counter({k: counters[k] for k in ("alerts.webhook.retries", "alerts.webhook.failed")})
    t, _ = await registered_terminal(db, outputs_server.ports["jt808"], kind="enforcement", prefix="18")
    receiver.answers[(t.device, "alarm", "raised")] = [500]  # the first time; then 200
    receiver.answers[(t.device, "alarm", "ended")] = [400]  # refused: not sent again
    start = _start()
    await _report(t, start, alarm=0)
    await _report(t, start + timedelta(seconds=10), alarm=1)
    await _report(t, start + timedelta(seconds=20), alarm=0)
    await _report(t, start + timedelta(seconds=30), alarm=1)  # pressed again: a new alert
    posts = await receiver.wait(t.device, 4)
    # In order: the refused "ended" was given up before the next alert went out, not tried again.
    assert [doc["event"] for _, doc, _ in posts] == ["raised", "raised", "ended", "raised"]
    assert posts[0][2] == posts[1][2] and posts[0][0][SIGNATURE_HEADER] == posts[1][0][SIGNATURE_HEADER]
    assert posts[3][1]["id"] != posts[0][1]["id"]
    assert counters["alerts.webhook.retries"] - before["alerts.webhook.retries"] == 1
    assert counters["alerts.webhook.failed"] - before["alerts.webhook.failed"] == 1
    await t.close()


def _alert(alert_id: int) -> Alert:
    now = datetime.now(UTC)
    return Alert(alert_id, now, None, 1, "13800000000", None, 1, "一键报警", None, "alarm", 4, "raised", False,
                 {"bits": [0]}, now, None, None, None, None)  # fmt: skip


async def test_close_flushes_the_queue_and_a_full_queue_drops(receiver: Receiver) -> None:
    counts: Counter[str] = Counter()

    def count(name: str, n: int) -> None:
        counts[name] += n

    flushed = AlertOutputs(count, webhook_url=receiver.url, queue_size=10)
    await flushed.start()
    ids = [9_000_000 + secrets.randbelow(1_000_000) for _ in range(3)]
    for i in ids:
        flushed.changed(_alert(i))
    await flushed.close(flush_s=5)
    assert [doc["id"] for _, doc, _ in receiver.posts("13800000000")][-3:] == ids
    assert counts["alerts.webhook.delivered"] == 3

    counts.clear()
    nowhere = AlertOutputs(
        count, webhook_url=f"http://127.0.0.1:{free_port()}/", webhook_retries=20, webhook_retry_delay_s=0.05,
        queue_size=2,
    )  # fmt: skip
    await nowhere.start()
    for i in range(4):
        nowhere.changed(_alert(i))  # synchronous: two fit the queue, two are dropped
    assert counts["alerts.webhook.dropped"] == 2
    began = time.monotonic()
    await nowhere.close(flush_s=0.5)
    assert time.monotonic() - began < 2
    assert counts["alerts.webhook.dropped"] == 4 and counts["alerts.webhook.delivered"] == 0
    assert counts["alerts.webhook.retries"] >= 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('webhook_url = "ftp://x"', "alerts.webhook_url"),
        ('mqtt_topic_prefix = "city/+/alerts"', "alerts.mqtt_topic_prefix"),
        ('mqtt_topic_prefix = "city/alerts/"', "alerts.mqtt_topic_prefix"),
        ("webhook_retries = 99", "alerts.webhook_retries"),
        ("webhook_timeout_s = 0", "alerts.webhook_timeout_s"),
        ("queue_size = 0", "alerts.queue_size"),
    ],
)
def test_bad_alert_settings_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(f"[alerts]\n{text}\n")
    with pytest.raises(config.ConfigError, match=message):
        config.load(path, env={})


def test_alert_settings_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[alerts]\nwebhook_url = "https://ops.example.gov/hook"\nwebhook_timeout_s = 3\nqueue_size = 5\n')
    a = config.load(path, env={}).alerts
    assert (a.webhook_url, a.webhook_timeout_s, a.queue_size, a.mqtt_topic_prefix) == (
        "https://ops.example.gov/hook",
        3.0,
        5,
        "city/alerts",
    )
