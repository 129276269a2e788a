"""Dispatcher messages down to JT/T 808 terminals: sent, acknowledged, queued while offline, expired."""

from __future__ import annotations

import asyncio
import secrets
import struct
from typing import Any

import aiohttp
import psycopg

from protocols import gt06, jt808
from store import devices, messages
from store.devices import DeviceRecord
from telematics.server import Server
from tests.conftest import API_TOKEN
from tests.terminal import Terminal

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


async def _device(db: psycopg.AsyncConnection) -> tuple[str, int]:
    uid = "15" + str(secrets.randbelow(10**9)).rjust(9, "0")
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind="muck", name="msg")])
    device = await devices.by_uid(db, uid)
    assert device is not None
    return uid, device.id


async def _online(server: Server, uid: str) -> Terminal:
    t = await Terminal(uid).connect(server.ports["jt808"])
    result, code = await t.register()
    assert result == 0
    assert await t.authenticate(code) == 0
    return t


async def _api(server: Server, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{server.ports['api']}{path}"
    async with aiohttp.ClientSession(headers=AUTH) as http, http.request(method, url, json=body) as r:
        return r.status, await r.json()


async def _state(server: Server, message_id: int, device_id: int, want: str, wait: float = 5.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        status, m = await _api(server, "GET", f"/api/messages/{message_id}")
        assert status == 200
        (d,) = [d for d in m["deliveries"] if d["device"] == device_id]
        if d["state"] == want or asyncio.get_running_loop().time() > deadline:
            assert d["state"] == want, d
            return d
        await asyncio.sleep(0.05)


async def _text_frame(t: Terminal) -> jt808.PlatformFrame:
    while True:
        frame = jt808.decode_platform_frame(await t.recv())
        if frame.msg_id == jt808.MSG_TEXT:
            return frame


async def _answer(t: Terminal, frame: jt808.PlatformFrame, result: int = 0) -> None:
    await t.send(jt808.MSG_TERMINAL_RESPONSE, struct.pack(">HHB", frame.serial, jt808.MSG_TEXT, result))


async def test_text_to_a_connected_terminal_is_acknowledged(server: Server, db: psycopg.AsyncConnection) -> None:
    uid, device_id = await _device(db)
    t = await _online(server, uid)
    status, m = await _api(server, "POST", "/api/messages", {"devices": [device_id], "text": "请到3号消纳场卸土"})
    assert status == 201, m
    assert m["text"] == "请到3号消纳场卸土" and m["by"] == "system"
    frame = await _text_frame(t)
    assert frame.value.text == "请到3号消纳场卸土"
    await _state(server, m["id"], device_id, "sent")
    await _answer(t, frame)
    d = await _state(server, m["id"], device_id, "acknowledged")
    assert d["uid"] == uid
    await t.close()


async def test_terminal_that_refuses_marks_the_delivery_failed(server: Server, db: psycopg.AsyncConnection) -> None:
    uid, device_id = await _device(db)
    t = await _online(server, uid)
    _, m = await _api(server, "POST", "/api/messages", {"devices": [device_id], "text": "test"})
    await _answer(t, await _text_frame(t), result=jt808.RESULT_FAILURE)
    await _state(server, m["id"], device_id, "failed")
    await t.close()


async def test_offline_terminal_gets_the_text_when_it_connects(server: Server, db: psycopg.AsyncConnection) -> None:
    uid, device_id = await _device(db)
    _, m = await _api(server, "POST", "/api/messages", {"devices": [device_id], "text": "收到请回复"})
    await asyncio.sleep(0.2)
    await _state(server, m["id"], device_id, "queued")
    t = await _online(server, uid)
    frame = await _text_frame(t)
    assert frame.value.text == "收到请回复"
    await _answer(t, frame)
    await _state(server, m["id"], device_id, "acknowledged")
    await t.close()


async def test_unanswered_text_goes_again_on_reconnect(server: Server, db: psycopg.AsyncConnection) -> None:
    uid, device_id = await _device(db)
    t = await _online(server, uid)
    _, m = await _api(server, "POST", "/api/messages", {"devices": [device_id], "text": "again"})
    await _text_frame(t)
    await _state(server, m["id"], device_id, "sent")
    await t.close()  # lost before answering
    t = await _online(server, uid)
    await _answer(t, await _text_frame(t))
    await _state(server, m["id"], device_id, "acknowledged")
    await t.close()


async def test_message_expires_while_the_terminal_is_away(server: Server, db: psycopg.AsyncConnection) -> None:
    uid, device_id = await _device(db)
    _, m = await _api(server, "POST", "/api/messages", {"devices": [device_id], "text": "late", "expires_s": 1})
    await asyncio.sleep(1.2)
    await messages.expire(db)  # what the server's own expiry task does every 30 s (it may have done it already)
    await _state(server, m["id"], device_id, "expired")
    t = await _online(server, uid)  # an expired text is not sent
    with_text = asyncio.create_task(_text_frame(t))
    done, _ = await asyncio.wait({with_text}, timeout=0.5)
    assert not done
    with_text.cancel()
    await t.close()


async def test_bad_requests(server: Server, db: psycopg.AsyncConnection) -> None:
    _, device_id = await _device(db)
    for body, status in [
        ({"devices": [device_id]}, 400),
        ({"devices": [], "text": "x"}, 400),
        ({"devices": [device_id], "text": "x" * 301}, 400),
        ({"devices": [device_id], "text": "x", "expires_s": 0}, 400),
        ({"devices": [2_000_000_000], "text": "x"}, 404),
    ]:
        got, answer = await _api(server, "POST", "/api/messages", body)
        assert got == status, (body, answer)
        assert "error" in answer
    assert (await _api(server, "GET", "/api/messages/999999999"))[0] == 404


async def test_gt06_terminal_gets_a_command_and_answers_it(server: Server, db: psycopg.AsyncConnection) -> None:
    imei = "8680" + str(secrets.randbelow(10**11)).rjust(11, "0")
    await devices.upsert_devices(db, [DeviceRecord(uid=imei, kind="enforcement", protocol="gt06")])
    device = await devices.by_uid(db, imei)
    assert device is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.ports["gt06"])
    writer.write(gt06.encode_login(imei, serial=1))
    await asyncio.wait_for(reader.readexactly(10), 5)  # the login's answer
    _, m = await _api(server, "POST", "/api/messages", {"devices": [device.id], "text": "STATUS#"})
    head = await asyncio.wait_for(reader.readexactly(4), 5)
    assert head[:2] == b"\x78\x78" and head[3] == gt06.MSG_COMMAND
    rest = await reader.readexactly(head[2] + 2 - 1)
    flag = int.from_bytes(rest[1:5])
    assert rest[5 : 5 + len(b"STATUS#")] == b"STATUS#"
    reply = b"STATUS: OK"
    writer.write(gt06.encode_frame(gt06.MSG_STRING, bytes([4 + len(reply)]) + flag.to_bytes(4) + reply, serial=2))
    await _state(server, m["id"], device.id, "acknowledged")
    # Chinese text cannot go to a GT06 terminal: its commands are ASCII.
    _, m = await _api(server, "POST", "/api/messages", {"devices": [device.id], "text": "收车"})
    d = await _state(server, m["id"], device.id, "failed")
    assert "ASCII" in d["detail"]
    writer.close()
