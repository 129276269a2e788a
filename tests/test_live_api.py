"""The live map's API against the real server: live state, counts, select, the WebSocket feed."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import psycopg

from access import tokens
from access.routes import ACCESS
from store import devices, users
from store.devices import OrgUnitRecord
from telematics import openapi
from telematics.server import Server
from tests.conftest import API_TOKEN
from tests.terminal import Terminal, registered_terminal

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _terminal(server: Server, db: psycopg.AsyncConnection, kind: str = "muck") -> tuple[Terminal, int]:
    return await registered_terminal(db, server.ports["jt808"], kind=kind, prefix="16")


async def _get(server: Server, path: str) -> Any:
    url = f"http://127.0.0.1:{server.ports['api']}{path}"
    async with aiohttp.ClientSession(headers=AUTH) as http, http.get(url) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def _post(server: Server, path: str, body: Any) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{server.ports['api']}{path}"
    async with aiohttp.ClientSession(headers=AUTH) as http, http.post(url, json=body) as r:
        return r.status, await r.json()


async def test_live_state_counts_and_select(server: Server, db: psycopg.AsyncConnection) -> None:
    t, device_id = await _terminal(server, db)
    await t.report(_now() - timedelta(seconds=5), 31.2001, 121.4001, speed_kmh=30)
    await t.general_response()
    await t.report(_now() - timedelta(hours=1), 31.5, 121.9)  # late: must not move the device back
    await t.general_response()
    live = await _get(server, "/api/live?bbox=121.3,31.1,121.5,31.3")
    (row,) = [d for d in live["devices"] if d["id"] == device_id]
    assert (row["lat"], row["lon"], row["status"], row["moving"]) == (31.2001, 121.4001, "online", True)
    gcj = await _get(server, "/api/live?bbox=121.3,31.1,121.5,31.3&crs=gcj02")
    (shifted,) = [d for d in gcj["devices"] if d["id"] == device_id]
    assert 0.001 < abs(shifted["lon"] - 121.4001) < 0.01  # GCJ-02 is a few hundred metres off
    outside = await _get(server, "/api/live?bbox=100,20,101,21")
    assert device_id not in [d["id"] for d in outside["devices"]]

    counts = await _get(server, "/api/live/counts")
    assert counts["total"]["online"] >= 1 and counts["by_kind"]["muck"]["online"] >= 1

    status, picked = await _post(server, "/api/select", {"circle": {"lat": 31.2, "lon": 121.4, "radius_m": 300}})
    assert status == 200 and device_id in [d["id"] for d in picked["devices"]]
    status, picked = await _post(server, "/api/select", {"circle": {"lat": 31.3, "lon": 121.4, "radius_m": 300}})
    assert status == 200 and device_id not in [d["id"] for d in picked["devices"]]
    polygon = {"type": "Polygon", "coordinates": [[[121.39, 31.19], [121.41, 31.19], [121.41, 31.21], [121.39, 31.19]]]}
    status, picked = await _post(server, "/api/select", {"polygon": polygon})
    assert status == 200 and device_id in [d["id"] for d in picked["devices"]]
    status, error = await _post(server, "/api/select", {"circle": {"lat": 95, "lon": 0, "radius_m": 1}})
    assert status == 400 and "error" in error
    await t.close()


async def test_websocket_snapshot_then_deltas(server: Server, db: psycopg.AsyncConnection) -> None:
    t, device_id = await _terminal(server, db, kind="sanitation")
    await t.report(_now() - timedelta(seconds=20), 30.6, 114.3)
    await t.general_response()
    url = f"ws://127.0.0.1:{server.ports['api']}/api/live/ws?token={API_TOKEN}"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_str(
            json.dumps({"type": "subscribe", "bbox": [114.0, 30.0, 115.0, 31.0], "kinds": ["sanitation"]})
        )
        snapshot = json.loads((await ws.receive(timeout=5)).data)
        assert snapshot["type"] == "snapshot"
        assert [d["lat"] for d in snapshot["devices"] if d["id"] == device_id] == [30.6]
        await t.report(_now() - timedelta(seconds=1), 30.61, 114.31)
        await t.general_response()
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            doc = json.loads((await ws.receive(timeout=5)).data)
            if doc["type"] == "delta" and any(d["id"] == device_id for d in doc["devices"]):
                (row,) = [d for d in doc["devices"] if d["id"] == device_id]
                assert row["lat"] == 30.61
                break
            assert asyncio.get_running_loop().time() < deadline
    await t.close()


async def test_websocket_needs_a_token(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"ws://127.0.0.1:{server.ports['api']}/api/live/ws?token=wrong"
        try:
            async with http.ws_connect(url):
                raise AssertionError("connected without a valid token")
        except aiohttp.WSServerHandshakeError as e:
            assert e.status == 401


async def test_openapi_document_describes_every_api_route(server: Server) -> None:
    assert server.runner is not None
    assert openapi.missing(server.runner.app) == []
    doc = await _get(server, "/api/openapi.json")
    assert doc["openapi"].startswith("3.") and "/api/select" in doc["paths"]
    url = f"http://127.0.0.1:{server.ports['api']}/api/openapi.json"
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        assert r.status == 401


async def test_devices_list_create_change(server: Server, db: psycopg.AsyncConnection) -> None:
    uid = "17" + str(secrets.randbelow(10**9)).rjust(9, "0")
    status, created = await _post(
        server, "/api/devices", {"uid": uid, "kind": "enforcement", "name": "执法车 9", "plate": "粤B0009"}
    )
    assert status == 201 and created["uid"] == uid and created["kind"] == "enforcement"
    assert (await _post(server, "/api/devices", {"uid": uid}))[0] == 409
    assert (await _post(server, "/api/devices", {"uid": uid + "1", "kind": "tank"}))[0] == 400
    found = await _get(server, f"/api/devices?q={uid[-6:]}&kind=enforcement")
    assert [d["id"] for d in found["devices"]] == [created["id"]] and found["total"] == 1
    assert (await _get(server, f"/api/devices/{created['id']}"))["plate"] == "粤B0009"
    never = await _get(server, "/api/live?kind=enforcement")
    assert [d["status"] for d in never["devices"] if d["id"] == created["id"]] == ["never"]

    url = f"http://127.0.0.1:{server.ports['api']}/api/devices/{created['id']}"
    async with aiohttp.ClientSession(headers=AUTH) as http, http.patch(url, json={"enabled": False}) as r:
        assert r.status == 200 and (await r.json())["enabled"] is False
    hidden = await _get(server, "/api/live?kind=enforcement")
    assert created["id"] not in [d["id"] for d in hidden["devices"]]
    async with aiohttp.ClientSession(headers=AUTH) as http, http.patch(url, json={"colour": "red"}) as r:
        assert r.status == 400


async def test_websocket_closes_when_its_token_is_revoked(server: Server, db: psycopg.AsyncConnection) -> None:
    code = "ws-" + secrets.token_hex(3)
    await devices.upsert_units(db, [OrgUnitRecord(code, "WS unit")])
    unit = await users.unit_by_code(db, code)
    assert unit is not None
    user = await users.create_user(db, "ws-" + secrets.token_hex(3), "dispatcher", unit.id)
    assert user is not None
    token = await tokens.issue(db, user.id, "test", None)
    assert server.hub is not None and server.runner is not None
    server.hub.token_check_s = 0.2
    try:
        url = f"ws://127.0.0.1:{server.ports['api']}/api/live/ws?token={token}"
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"type": "subscribe"}))
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "snapshot"
            await users.revoke_tokens(db, user.id)
            server.runner.app[ACCESS].authenticator.forget(token)  # as a logout in this process does
            while True:
                msg = await ws.receive(timeout=5)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
            assert ws.close_code == 4401
    finally:
        server.hub.token_check_s = 30.0
