"""Coverage per shift on the running server: sweepers on their routes during yesterday's (or today's) 05:00-09:00
Beijing shift, computed from the stored fixes by the coverage job; a patrol on an unassigned duty grid; the
API's results and the share computed on demand."""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import psycopg

from alerts.coverage_job import CoverageJob
from geofence.shapes import EARTH_RADIUS_M
from telematics.server import Server
from tests.conftest import API_TOKEN
from tests.terminal import Terminal
from tests.test_alerts import _api, _truck

M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0
ROUTE_M = 1500.0


def _z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _last_shift(start_h: int, end_h: int) -> tuple[datetime, datetime]:
    """The last start_h:00-end_h:00 shift in Beijing (UTC+8) that ended at least ten minutes ago."""
    now = datetime.now(UTC)
    end = now.replace(hour=(end_h - 8) % 24, minute=0, second=0, microsecond=0)
    if end > now - timedelta(minutes=10):
        end -= timedelta(days=1)
    return end - timedelta(hours=end_h - start_h), end


def _east(lat: float, lon: float, metres: float) -> float:
    return lon + metres / (M_PER_DEG * math.cos(math.radians(lat)))


async def _route(server: Server, kind: str, shape: dict[str, Any], devices: list[int] | None) -> int:
    """A zone of `kind`, assigned to the devices (None: unassigned), known to the geofence; its id."""
    assert server.geofence is not None
    code = f"cov-{secrets.token_hex(4)}"
    status, zone = await _api(server, "POST", "/api/zones", {"code": code, "kind": kind, "shape": shape})
    assert status == 201, zone
    if devices is not None:
        status, _ = await _api(server, "PUT", f"/api/zones/{zone['id']}/assignments", {"devices": devices})
        assert status == 200
    await server.geofence.reload()
    return int(zone["id"])


def _corridor(lat: float, lon: float) -> dict[str, Any]:
    line = {"type": "LineString", "coordinates": [[lon, lat], [_east(lat, lon, ROUTE_M), lat]]}
    return {"corridor": {"line": line, "width_m": 30}}


async def _sweep(t: Terminal, start: datetime, lat: float, lon: float, upto: float, kmh: float) -> None:
    """Along the route from its west end to the fraction `upto` of it at `kmh`, a fix every 10 s."""
    step = kmh / 3.6 * 10
    n = math.ceil(ROUTE_M * upto / step)
    for i in range(n + 1):
        x = min(i * step, ROUTE_M * upto)  # the last fix at the end of the part
        serial = await t.report(start + timedelta(seconds=10 * i), lat, _east(lat, lon, x), speed_kmh=kmh)
        assert (await t.general_response())[0] == serial


async def _rule(server: Server, **fields: Any) -> dict[str, Any]:
    status, rule = await _api(server, "POST", "/api/rules", {"severity": 2, **fields})
    assert status == 201, rule
    return dict(rule)


async def _results(server: Server, **filters: Any) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    status, doc = await _api(server, "GET", f"/api/coverage?{query}")
    assert status == 200, doc
    return list(doc["coverage"])


async def _coverage_alerts(server: Server, device_id: int, rule_id: int) -> list[dict[str, Any]]:
    status, doc = await _api(server, "GET", f"/api/alerts?device={device_id}&kind=coverage&rule={rule_id}")
    assert status == 200
    return list(doc["alerts"])


async def test_sweepers_covering_seventy_percent_all_and_too_fast(server: Server, db: psycopg.AsyncConnection) -> None:
    assert server.coverage is not None
    start, end = _last_shift(5, 9)
    lat0, lon0 = 22.5401, 113.9301
    sweepers = []
    for i, (upto, kmh) in enumerate([(0.7, 12.0), (1.0, 12.0), (1.0, 40.0)]):
        t, device_id = await _truck(server, db, kind="sanitation")
        lat = lat0 + 0.002 * i  # routes 220 m apart
        zone_id = await _route(server, "sanitation_route", _corridor(lat, lon0), [device_id])
        await _sweep(t, start + timedelta(minutes=20), lat, lon0, upto, kmh)
        await t.close()
        sweepers.append((device_id, zone_id))
    # A rule of the city's kind, made through the API, after the shift (it is computed all the same).
    params = {"zone_kind": "sanitation_route", "shifts": [["05:00", "09:00"]], "max_speed_kmh": 15, "min_share": 0.9}
    status, wrong = await _api(server, "POST", "/api/rules", {"name": "x", "kind": "coverage", "params": {}})
    assert status == 400 and "shifts" in wrong["error"]
    status, wrong = await _api(
        server, "POST", "/api/rules", {"name": "x", "kind": "coverage", "params": {**params, "min_speed_kmh": 20}}
    )
    assert status == 400 and "max_speed_kmh" in wrong["error"]
    rule = await _rule(server, name="清扫覆盖率", kind="coverage", device_kinds=["sanitation"], params=params)
    status, wrong = await _api(server, "PATCH", f"/api/rules/{rule['id']}", {"params": {"min_share": 0.8}})
    assert status == 400 and "shifts" in wrong["error"]

    url = f"ws://127.0.0.1:{server.ports['api']}/api/live/ws?token={API_TOKEN}"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"type": "subscribe"}))
        await server.coverage.run_once()
        pushed: set[int] = set()  # the alerts the live WebSocket was told of (the engine's listeners)
        async with asyncio.timeout(5):
            while len(pushed) < 2:
                doc = json.loads((await ws.receive()).data)
                ours = doc["type"] == "alert" and doc["alert"]["device"] in {d for d, _ in sweepers}
                if ours and doc["alert"]["rule"]["id"] == rule["id"]:  # (other tests' sweepers may be judged too)
                    pushed.add(doc["alert"]["device"])

    (part, full, fast) = sweepers
    assert pushed == {part[0], fast[0]}
    (row,) = await _results(server, rule=rule["id"], device=part[0])
    assert row["zone"] == part[1] and abs(row["share"] - 0.70) <= 0.03, row
    assert row["shift_start"] == _z(start) and row["shift_end"] == _z(end)
    assert row["cells_visited"] == round(row["share"] * row["cells_total"]) and row["cells_total"] > 35
    (alert,) = await _coverage_alerts(server, part[0], rule["id"])
    assert alert["id"] == row["alert"] and alert["zone"] == part[1] and not alert["late"]
    assert alert["started"] == _z(start) and alert["ended"] == _z(end)
    assert alert["evidence"]["share"] == round(row["share"], 4) and alert["evidence"]["min_share"] == 0.9
    assert alert["evidence"]["total"] == row["cells_total"] and alert["evidence"]["shift_end"] == _z(end)

    (row,) = await _results(server, rule=rule["id"], device=full[0])
    assert row["share"] >= 0.98 and row["alert"] is None
    assert await _coverage_alerts(server, full[0], rule["id"]) == []

    (row,) = await _results(server, rule=rule["id"], device=fast[0])
    assert row["share"] == 0 and row["cells_visited"] == 0 and row["alert"] is not None
    assert len(await _coverage_alerts(server, fast[0], rule["id"])) == 1

    # Again, after a restart (a new job), and as if another process had computed the shift at the same time
    # (its record of the computed shift not seen): nothing is stored or raised twice.
    assert server.pool is not None and server.geofence is not None
    await CoverageJob(server.pool, server.geofence, []).run_once()
    await db.execute("DELETE FROM coverage_shifts WHERE rule_id = %s", (rule["id"],))
    await CoverageJob(server.pool, server.geofence, []).run_once()
    cur = await db.execute(
        "SELECT s.results, (SELECT count(*) FROM shift_coverage c WHERE c.rule_id = s.rule_id"
        " AND c.shift_start = s.shift_start) FROM coverage_shifts s WHERE s.rule_id = %s AND s.shift_start = %s",
        (rule["id"], start),
    )
    ((recorded, stored),) = await cur.fetchall()  # (other tests' sweepers of the shift may be among them)
    assert recorded == stored >= len(sweepers)
    for device_id, _ in sweepers:
        assert len(await _results(server, rule=rule["id"], device=device_id)) == 1
    assert len(await _coverage_alerts(server, part[0], rule["id"])) == 1
    assert len(await _coverage_alerts(server, fast[0], rule["id"])) == 1
    assert {r["device"] for r in await _results(server, rule=rule["id"], to=_z(start))} == set()
    listed = await _results(server, rule=rule["id"], **{"from": _z(start)})
    assert {d for d, _ in sweepers} <= {r["device"] for r in listed}  # with other tests' sweepers of the shift
    await _api(server, "PATCH", f"/api/rules/{rule['id']}", {"enabled": False})  # leave other tests' devices be


async def test_patrol_of_an_unassigned_duty_grid(server: Server, db: psycopg.AsyncConnection) -> None:
    """A grid assigned to nobody applies to every patrol: only those that patrolled in it get a result."""
    start, end = _last_shift(14, 18)
    lat0, lon0 = 22.5601, 113.9501  # a 600 m square
    corners = [[lon0, lat0], [_east(lat0, lon0, 600), lat0]]
    top = lat0 + 600 / M_PER_DEG
    ring = [*corners, [_east(top, lon0, 600), top], [lon0, top], [lon0, lat0]]
    zone_id = await _route(server, "duty_grid", {"polygon": {"type": "Polygon", "coordinates": [ring]}}, None)
    patrol, patrol_id = await _truck(server, db, kind="enforcement")
    elsewhere, elsewhere_id = await _truck(server, db, kind="enforcement")
    # Three streets across the southern part of the grid, 60 m apart, at 25 km/h; the other car far away.
    t = start + timedelta(minutes=30)
    for k in range(3):
        lat = lat0 + (30 + 60 * k) / M_PER_DEG
        xs = range(0, 601, 60) if k % 2 == 0 else range(600, -1, -60)
        for x in xs:
            for car, where in ((patrol, lat), (elsewhere, lat - 0.02)):
                serial = await car.report(t, where, _east(lat, lon0, x), speed_kmh=25)
                assert (await car.general_response())[0] == serial
            t += timedelta(seconds=9)
    await patrol.close()
    await elsewhere.close()
    params = {"zone_kind": "duty_grid", "shifts": [["14:00", "18:00"]], "max_speed_kmh": None, "resolution": 10,
              "min_share": 0.6}  # fmt: skip
    rule = await _rule(server, name="巡查覆盖率", kind="coverage", device_kinds=["enforcement"], params=params)
    assert server.coverage is not None
    await server.coverage.run_once()

    (row,) = await _results(server, rule=rule["id"], zone=zone_id)
    assert row["device"] == patrol_id and 0.25 < row["share"] < 0.6, row
    assert await _results(server, rule=rule["id"], device=elsewhere_id) == []
    (alert,) = await _coverage_alerts(server, patrol_id, rule["id"])
    assert alert["zone"] == zone_id and alert["started"] == _z(start) and alert["ended"] == _z(end)
    await _api(server, "PATCH", f"/api/rules/{rule['id']}", {"enabled": False})


async def test_live_share_of_a_sweeper_now(server: Server, db: psycopg.AsyncConnection) -> None:
    """How far is the sweeper: half its route swept in the last twenty minutes."""
    t, device_id = await _truck(server, db, kind="sanitation")
    lat, lon = 22.5301, 113.9101
    zone_id = await _route(server, "sanitation_route", _corridor(lat, lon), [device_id])
    began = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    await _sweep(t, began, lat, lon, 0.5, 10.0)
    await t.close()

    path = f"/api/coverage/live?device={device_id}&zone={zone_id}&from={_z(began)}"
    status, doc = await _api(server, "GET", path)
    assert status == 200, doc
    # About 40 cells (25 m edges) on 1.5 km: a cell is 2.5 %, and the GPS tolerance reaches past the last fix.
    assert abs(doc["share"] - 0.5) <= 0.05 and doc["resolution"] == 11 and doc["fixes"] == 28
    assert doc["cells_visited"] == round(doc["share"] * doc["cells_total"])
    doc_share = doc["share"]
    # The hour before it set out: nothing.
    before = f"/api/coverage/live?device={device_id}&zone={zone_id}&from={_z(began - timedelta(hours=1))}"
    status, doc = await _api(server, "GET", f"{before}&to={_z(began)}")
    assert status == 200 and doc["share"] == 0 and doc["fixes"] == 0
    # With a rule's params: the city's standing sweeping rule (the same as the defaults).
    status, rules = await _api(server, "GET", "/api/rules")
    standing = next(r for r in rules["rules"] if r["kind"] == "coverage" and "sweeping" in r["name"])
    status, with_rule = await _api(server, "GET", f"{path}&rule={standing['id']}")
    assert status == 200 and with_rule["rule"] == standing["id"] and with_rule["share"] == doc_share

    assert (await _api(server, "GET", f"/api/coverage/live?device={device_id}&zone={zone_id}"))[0] == 400
    assert (await _api(server, "GET", f"/api/coverage/live?device={device_id}&zone=999999&from={_z(began)}"))[0] == 404
    long_ago = _z(began - timedelta(days=8))
    assert (await _api(server, "GET", f"/api/coverage/live?device={device_id}&zone={zone_id}&from={long_ago}"))[
        0
    ] == 400
