"""Alerts from zone rules on the running server: off the approved route and back, a forbidden zone,
the live push, acknowledgement, and a backfill that raises only a late alert."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import psycopg

from store import devices, users
from store.devices import OrgUnitRecord
from telematics.server import Server
from tests.conftest import API_TOKEN
from tests.terminal import Terminal, registered_terminal

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ROUTE_LAT = 22.6301  # an east-west corridor, 200 m wide, along this latitude


async def _api(server: Server, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{server.ports['api']}{path}"
    async with aiohttp.ClientSession(headers=AUTH) as http, http.request(method, url, json=body) as r:
        return r.status, await r.json()


async def _truck(server: Server, db: psycopg.AsyncConnection, kind: str = "muck") -> tuple[Terminal, int]:
    return await registered_terminal(db, server.ports["jt808"], kind=kind, prefix="17")


async def _drive(t: Terminal, start: datetime, points: list[tuple[float, float]], step_s: int = 10) -> None:
    for i, (lat, lon) in enumerate(points):
        serial = await t.report(start + timedelta(seconds=step_s * i), lat, lon)
        assert (await t.general_response())[0] == serial


async def _alerts(server: Server, device_id: int, want: int, **filters: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in {"device": str(device_id), **filters}.items())
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        status, doc = await _api(server, "GET", f"/api/alerts?{query}")
        assert status == 200
        if len(doc["alerts"]) >= want or asyncio.get_running_loop().time() > deadline:
            return list(doc["alerts"])
        await asyncio.sleep(0.05)


async def _ended(server: Server, device_id: int, kind: str) -> dict[str, Any]:
    """The device's one alert of this kind, once its end is recorded (raising and ending are two writes)."""
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        found = [a for a in await _alerts(server, device_id, 1) if a["kind"] == kind]
        if (len(found) == 1 and found[0]["ended"]) or asyncio.get_running_loop().time() > deadline:
            assert len(found) == 1, found
            return found[0]
        await asyncio.sleep(0.05)


async def test_muck_truck_leaves_its_route_for_two_minutes_and_returns(
    server: Server, db: psycopg.AsyncConnection
) -> None:
    assert server.geofence is not None
    t, device_id = await _truck(server, db)
    line = {"type": "LineString", "coordinates": [[114.20, ROUTE_LAT], [114.30, ROUTE_LAT]]}
    status, zone = await _api(
        server,
        "POST",
        "/api/zones",
        {
            "code": "route-" + secrets.token_hex(3),
            "kind": "muck_route",
            "shape": {"corridor": {"line": line, "width_m": 200}},
        },
    )
    assert status == 201, zone
    status, _ = await _api(server, "PUT", f"/api/zones/{zone['id']}/assignments", {"devices": [device_id]})
    assert status == 200
    await server.geofence.reload()

    url = f"ws://127.0.0.1:{server.ports['api']}/api/live/ws?token={API_TOKEN}"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"type": "subscribe"}))
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
        on, off = (ROUTE_LAT, 114.25), (ROUTE_LAT + 0.01, 114.25)  # off: about 1.1 km north
        # 1 min on the route, 2 min off it (12 fixes, 10 s apart), back on for 1 min.
        await _drive(t, start, [on] * 6 + [off] * 12 + [on] * 6)
        alert = await _ended(server, device_id, "off_route")
        assert alert["kind"] == "off_route" and alert["zone"] == zone["id"] and not alert["late"]
        assert alert["started"] == (start + timedelta(seconds=60)).isoformat().replace("+00:00", "Z")
        assert alert["ended"] == (start + timedelta(seconds=180)).isoformat().replace("+00:00", "Z")
        pushed = []
        async with asyncio.timeout(5):
            while not pushed:
                doc = json.loads((await ws.receive()).data)
                if doc["type"] == "alert" and doc["alert"]["id"] == alert["id"]:
                    pushed.append(doc["alert"])
    status, acked = await _api(
        server, "POST", f"/api/alerts/{alert['id']}/ack", {"comment": "司机已回到路线", "close": True}
    )
    assert status == 200 and acked["state"] == "closed" and acked["ack"]["by"] == "system"
    assert (await _api(server, "POST", f"/api/alerts/{alert['id']}/ack", {}))[0] == 409
    await t.close()


async def test_forbidden_zone_and_a_late_backfill(server: Server, db: psycopg.AsyncConnection) -> None:
    assert server.geofence is not None
    t, device_id = await _truck(server, db, kind="sanitation")
    centre = (22.6501, 114.3001)
    status, _ = await _api(
        server,
        "POST",
        "/api/zones",
        {"code": "no-" + secrets.token_hex(3), "kind": "forbidden",
         "shape": {"circle": {"lat": centre[0], "lon": centre[1], "radius_m": 150}}},
    )  # fmt: skip
    assert status == 201
    await server.geofence.reload()  # unassigned, without a unit: it applies to every device
    now = datetime.now(UTC).replace(microsecond=0)
    outside = (centre[0] + 0.01, centre[1])
    await _drive(t, now - timedelta(minutes=5), [outside] * 3 + [centre] * 4)
    (live,) = await _alerts(server, device_id, 1)
    assert live["kind"] == "forbidden_zone" and live["ended"] is None and not live["late"]
    # Yesterday's fixes inside the same zone, sent now: one more alert, marked late and ended.
    await _drive(t, now - timedelta(days=1), [centre] * 4 + [outside] * 4)
    deadline = asyncio.get_running_loop().time() + 5
    while True:  # raising and ending are two writes
        found = await _alerts(server, device_id, 2)
        late = [a for a in found if a["late"]]
        if (late and late[0]["ended"]) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert len(found) == 2 and len(late) == 1 and late[0]["ended"] is not None
    await t.close()


async def test_overspeed_rule_made_through_the_api(server: Server, db: psycopg.AsyncConnection) -> None:
    assert server.alerts is not None
    status, rule = await _api(
        server,
        "POST",
        "/api/rules",
        {"name": "环卫车超速", "kind": "overspeed", "params": {"limit_kmh": 40, "min_s": 20},
         "device_kinds": ["sanitation"], "severity": 2},
    )  # fmt: skip
    assert status == 201, rule
    await server.alerts.reload()  # what the engine does by itself within refresh_s
    t, device_id = await _truck(server, db, kind="sanitation")
    other, other_id = await _truck(server, db, kind="muck")  # the rule is for sanitation vehicles only
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    speeds = [30, 30, 55, 60, 58, 52, 35, 30]  # over 40 km/h from 20 s to 50 s
    for i, kmh in enumerate(speeds):
        for truck in (t, other):
            serial = await truck.report(start + timedelta(seconds=10 * i), 22.70, 114.40 + i / 1000, speed_kmh=kmh)
            assert (await truck.general_response())[0] == serial
    alert = await _ended(server, device_id, "overspeed")
    assert alert["rule"]["id"] == rule["id"]
    assert alert["started"] == (start + timedelta(seconds=20)).isoformat().replace("+00:00", "Z")
    assert alert["ended"] == (start + timedelta(seconds=60)).isoformat().replace("+00:00", "Z")
    assert alert["evidence"]["max_kmh"] == 60 and alert["evidence"]["limit_kmh"] == 40
    assert [a for a in await _alerts(server, other_id, 0) if a["kind"] == "overspeed"] == []
    await t.close()
    await other.close()
    status, _ = await _api(server, "PATCH", f"/api/rules/{rule['id']}", {"enabled": False})  # other tests' sweepers
    assert status == 200
    await server.alerts.reload()


async def test_emergency_button_raises_a_critical_alert(server: Server, db: psycopg.AsyncConnection) -> None:
    t, device_id = await _truck(server, db, kind="enforcement")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    for i, alarm in enumerate([0, 1, 1, 1, 0]):  # bit 0: the emergency button, held for 30 s
        serial = await t.report(start + timedelta(seconds=10 * i), 22.71, 114.41, alarm=alarm)
        assert (await t.general_response())[0] == serial
    alert = await _ended(server, device_id, "alarm")
    assert alert["severity"] == 4 and alert["evidence"]["bits"] == [0]
    assert alert["started"] == (start + timedelta(seconds=10)).isoformat().replace("+00:00", "Z")
    assert alert["ended"] == (start + timedelta(seconds=40)).isoformat().replace("+00:00", "Z")
    status, bad = await _api(server, "POST", "/api/rules", {"name": "x", "kind": "alarm", "params": {"bits": [40]}})
    assert status == 400 and "bits" in bad["error"]
    await t.close()


async def test_muck_truck_driving_outside_its_permitted_night_hours(
    server: Server, db: psycopg.AsyncConnection
) -> None:
    assert server.alerts is not None
    status, rule = await _api(
        server,
        "POST",
        "/api/rules",
        {"name": "渣土车限时通行", "kind": "forbidden_hours", "device_kinds": ["muck"],
         "params": {"allowed": [["22:00", "06:00"]], "min_s": 30}},
    )  # fmt: skip
    assert status == 201, rule
    await server.alerts.reload()
    t, device_id = await _truck(server, db)
    # 14:00 Beijing time (06:00 UTC), today's or yesterday's, whichever is past: driving at 35 km/h for a
    # minute, then (when it is past too) the same at midnight, which the permit allows.
    now = datetime.now(UTC)
    day = now.replace(hour=6, minute=0, second=0, microsecond=0)  # 14:00 in Beijing
    if day > now - timedelta(minutes=5):
        day -= timedelta(days=1)
    night = day + timedelta(hours=10)  # 00:00 in Beijing: allowed
    for start in (day, night) if night < now - timedelta(minutes=5) else (day,):  # in time order
        for i, kmh in enumerate([35] * 7 + [0]):
            serial = await t.report(start + timedelta(seconds=10 * i), 22.72, 114.42 + i / 1000, speed_kmh=kmh)
            assert (await t.general_response())[0] == serial
    alert = await _ended(server, device_id, "forbidden_hours")
    assert alert["started"] == day.isoformat().replace("+00:00", "Z")
    assert alert["ended"] == (day + timedelta(seconds=70)).isoformat().replace("+00:00", "Z")
    bad_rule = {"name": "x", "kind": "forbidden_hours", "params": {"allowed": [["25:00", "06:00"]]}}
    assert (await _api(server, "POST", "/api/rules", bad_rule))[0] == 400
    await t.close()


async def test_alerts_of_one_unit_and_those_below_it(server: Server, db: psycopg.AsyncConnection) -> None:
    tag = secrets.token_hex(3)
    units = [OrgUnitRecord(f"u-{tag}", "City"), OrgUnitRecord(f"d-{tag}", "District", f"u-{tag}"),
             OrgUnitRecord(f"o-{tag}", "Other", f"u-{tag}")]  # fmt: skip
    await devices.upsert_units(db, units)
    city, district, other = [await users.unit_by_code(db, f"{c}-{tag}") for c in ("u", "d", "o")]
    assert city is not None and district is not None and other is not None
    t, device_id = await _truck(server, db, kind="enforcement")
    status, _ = await _api(server, "PATCH", f"/api/devices/{device_id}", {"unit": district.id})
    assert status == 200
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    await _drive_alarm(t, start)
    assert [a["device"] for a in await _alerts(server, device_id, 1, unit=str(city.id))] == [device_id]
    assert await _alerts(server, device_id, 0, unit=str(other.id)) == []
    await t.close()


async def _drive_alarm(t: Terminal, start: datetime) -> None:
    for i, alarm in enumerate([1, 1, 0]):
        serial = await t.report(start + timedelta(seconds=10 * i), 22.72, 114.42, alarm=alarm)
        assert (await t.general_response())[0] == serial
