"""Who was here, and alert hotspots, on the running server: positions and alerts written through the
store, asked for over real HTTP by users of two units, and the audit log that records every query."""

from __future__ import annotations

import math
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import h3.api.basic_int as h3
import psycopg
import pytest

from access import tokens
from geofence import crs
from geofence.shapes import EARTH_RADIUS_M
from store import alerts, devices, users
from store.alerts import NewAlert
from store.batch import PositionBatch, PositionRow
from store.devices import DeviceRecord, OrgUnitRecord
from store.positions import PositionWriter
from store.users import Unit
from telematics.server import Server
from tests.conftest import API_TOKEN

M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0


@dataclass
class Units:
    a: Unit
    b: Unit


@pytest.fixture
async def units(db: psycopg.AsyncConnection) -> Units:
    """Two districts of a city: A and B see none of each other's devices."""
    tag = secrets.token_hex(3)
    await devices.upsert_units(
        db,
        [
            OrgUnitRecord(f"q-city-{tag}", "City"),
            OrgUnitRecord(f"q-a-{tag}", "District A", f"q-city-{tag}"),
            OrgUnitRecord(f"q-b-{tag}", "District B", f"q-city-{tag}"),
        ],
    )
    a, b = await users.unit_by_code(db, f"q-a-{tag}"), await users.unit_by_code(db, f"q-b-{tag}")
    assert a is not None and b is not None
    return Units(a, b)


async def _user(db: psycopg.AsyncConnection, role: str, unit: Unit) -> tuple[str, str]:
    """(name, token) of a new user."""
    name = f"q-{role}-{secrets.token_hex(3)}"
    user = await users.create_user(db, name, role, unit.id)
    assert user is not None
    return name, await tokens.issue(db, user.id, "test", None)


async def _device(db: psycopg.AsyncConnection, unit: Unit, name: str) -> int:
    uid = "q" + secrets.token_hex(6)
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind="muck", name=name, org_unit=unit.code)])
    found = await devices.by_uid(db, uid)
    assert found is not None
    return found.id


async def _call(server: Server, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{server.ports['api']}{path}"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.request(method, url, json=body) as r,
    ):
        return r.status, await r.json()


async def _audit(server: Server, user: str, action: str) -> list[dict[str, Any]]:
    status, doc = await _call(server, API_TOKEN, "GET", f"/api/audit?user={user}&action={action}")
    assert status == 200
    return list(reversed(doc["entries"]))  # oldest first


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


# --- who was here ----------------------------------------------------------------------------------------


@dataclass
class Place:
    lat: float
    lon: float

    def at(self, east_m: float, north_m: float) -> tuple[float, float]:
        return (
            self.lat + north_m / M_PER_DEG,
            self.lon + east_m / (M_PER_DEG * math.cos(math.radians(self.lat))),
        )


def _fixes(device_id: int, start: datetime, path: list[tuple[float, float]], resolution: int) -> list[PositionRow]:
    """A fix every 30 s from `start` at the (lat, lon) of `path`."""
    rows = []
    for i, (lat, lon) in enumerate(path):
        t = start + timedelta(seconds=30 * i)
        rows.append(
            PositionRow(device_id, t, t, lat, lon, True, h3.latlng_to_cell(lat, lon, resolution), "jt808", 20.0)
        )
    return rows


async def test_who_was_inside_a_200_m_circle_at_night(
    server: Server, db: psycopg.AsyncConnection, fresh_database: str, units: Units
) -> None:
    res = server.settings.database.h3_resolution
    # A place of its own (no other test drives here), three nights ago.
    centre = Place(22.70 + random.uniform(0, 0.05), 113.82 + random.uniform(0, 0.05))
    night = (datetime.now(UTC) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    passing = await _device(db, units.a, "passes through")
    parked = await _device(db, units.a, "parks inside")
    near = await _device(db, units.a, "drives past 300 m away")
    other = await _device(db, units.b, "district B, parks inside")

    def passing_at(i: int) -> tuple[float, float]:  # 01:50 + 30 s * i; in the circle from 02:10 to 02:14
        dt = 30 * i - 22 * 60
        north = 1.5 * dt if abs(dt) <= 120 else math.copysign(180 + 8 * (abs(dt) - 120), dt)
        return centre.at(20, north)

    def parked_at(i: int) -> tuple[float, float]:  # 00:30 + 30 s * i; drives in, parks 01:00-03:00, leaves
        t = 30 * i - 30 * 60
        if t < 0:
            return centre.at(0, -50 + 10 * t)
        if t > 7200:
            return centre.at(0, -50 - 10 * (t - 7200))
        return centre.at(random.uniform(-3, 3), -50 + random.uniform(-3, 3))

    rows = _fixes(passing, night + timedelta(hours=1, minutes=50), [passing_at(i) for i in range(81)], res)
    rows += _fixes(parked, night + timedelta(minutes=30), [parked_at(i) for i in range(361)], res)
    rows += _fixes(near, night + timedelta(hours=1), [centre.at(300, -1500 + 150 * i) for i in range(21)], res)
    rows += _fixes(other, night + timedelta(hours=2), [centre.at(10, 10)] * 11, res)
    writer = PositionWriter(await psycopg.AsyncConnection.connect(fresh_database, autocommit=True))
    try:
        assert await writer.write(PositionBatch.from_rows(rows)) == len(rows)
    finally:
        await writer.close()

    auditor, auditor_token = await _user(db, "auditor", units.a)
    dispatcher_b, b_token = await _user(db, "dispatcher", units.b)
    window = {"from": _iso(night), "to": _iso(night + timedelta(hours=6))}
    ask = {"circle": {"lat": centre.lat, "lon": centre.lon, "radius_m": 200}, **window}

    status, doc = await _call(server, auditor_token, "POST", "/api/query/visited", ask)
    assert status == 200, doc
    assert [d["id"] for d in doc["devices"]] == [parked, passing]  # by first entry
    by_id = {d["id"]: d for d in doc["devices"]}
    first, last = _iso(night + timedelta(hours=2, minutes=10)), _iso(night + timedelta(hours=2, minutes=14))
    assert [(v["entered"], v["left"], v["fixes"]) for v in by_id[passing]["visits"]] == [(first, last, 9)]
    assert (by_id[passing]["first"], by_id[passing]["last"], by_id[passing]["name"]) == (first, last, "passes through")
    first, last = _iso(night + timedelta(hours=1)), _iso(night + timedelta(hours=3))
    assert [(v["entered"], v["left"], v["fixes"]) for v in by_id[parked]["visits"]] == [(first, last, 241)]
    lat, lon = passing_at(40)  # the first fix inside, 02:10
    assert by_id[passing]["visits"][0]["first_fix"] == pytest.approx({"lat": lat, "lon": lon}, abs=1e-6)

    # The same circle drawn on a GCJ-02 map: the same answer, the places in GCJ-02.
    gcj_lat, gcj_lon = crs.convert(centre.lat, centre.lon, "wgs84", "gcj02")
    ask_gcj = {"circle": {"lat": gcj_lat, "lon": gcj_lon, "radius_m": 200}, **window}
    status, gcj = await _call(server, auditor_token, "POST", "/api/query/visited?crs=gcj02", ask_gcj)
    assert status == 200, gcj
    assert [[v["entered"] for v in d["visits"]] for d in gcj["devices"]] == [
        [v["entered"] for v in d["visits"]] for d in doc["devices"]
    ]
    want = crs.convert(lat, lon, "wgs84", "gcj02")
    got = gcj["devices"][1]["visits"][0]["first_fix"]
    assert (got["lat"], got["lon"]) == pytest.approx(want, abs=1e-6)

    # District B sees its own truck only; the configured token sees every one.
    status, doc_b = await _call(server, b_token, "POST", "/api/query/visited", ask)
    assert status == 200 and [d["id"] for d in doc_b["devices"]] == [other]
    status, doc_all = await _call(server, API_TOKEN, "POST", "/api/query/visited", ask)
    assert status == 200 and sorted(d["id"] for d in doc_all["devices"]) == sorted([passing, parked, other])

    # Refusals say why.
    too_long = {**ask, "to": _iso(night + timedelta(days=8))}
    status, err = await _call(server, auditor_token, "POST", "/api/query/visited", too_long)
    assert status == 400 and "longer than 7 days" in err["error"]
    status, err = await _call(server, auditor_token, "POST", "/api/query/visited", {**window, "circle": {"lat": 22.5}})
    assert status == 400 and err["error"].startswith("shape:") and "radius_m" in err["error"]
    status, err = await _call(server, auditor_token, "POST", "/api/query/visited", {**ask, "from": "yesterday"})
    assert status == 400 and "from" in err["error"]

    # Every query is in the audit log, the refused ones too.
    entries = await _audit(server, auditor, "query.visited")
    assert [e["outcome"] for e in entries] == ["ok", "ok", "bad_request", "bad_request", "bad_request"]
    assert entries[0]["target"] == {"shape": {"circle": ask["circle"]}, "crs": "wgs84", **window}
    assert entries[1]["target"]["crs"] == "gcj02" and entries[0]["role"] == "auditor"
    assert [e["outcome"] for e in await _audit(server, dispatcher_b, "query.visited")] == ["ok"]


# --- hotspots --------------------------------------------------------------------------------------------


async def _alert(db: psycopg.AsyncConnection, device: int, kind: str, at: datetime, where: dict[str, Any]) -> None:
    """An alert of the first standing rule of `kind`, raised and ended (so the next one is raised too)."""
    rule = next(r for r in await alerts.rules(db) if r.kind == kind)
    assert await alerts.raise_alerts(db, [NewAlert(at, device, rule.id, None, kind, rule.severity, False, where)])
    assert await alerts.end_alerts(db, device, rule.id, None, at + timedelta(minutes=1), False)


async def test_alert_hotspots_on_h3_cells(server: Server, db: psycopg.AsyncConnection, units: Units) -> None:
    start = (datetime.now(UTC) - timedelta(days=10)).replace(minute=0, second=0, microsecond=0)
    truck, other_truck = await _device(db, units.a, "truck"), await _device(db, units.a, "another truck")
    # p1 at the centre of its cell at resolution 8, so that a place 100 m away is in that cell too
    p1, p2 = Place(*h3.cell_to_latlng(h3.latlng_to_cell(22.61, 114.02, 8))), Place(22.65, 114.08)
    near_p1 = p1.at(80, -60)
    await _alert(db, truck, "overspeed", start + timedelta(minutes=1), {"lat": p1.lat, "lon": p1.lon, "max_kmh": 70})
    await _alert(db, truck, "overspeed", start + timedelta(minutes=5), {"lat": near_p1[0], "lon": near_p1[1]})
    await _alert(db, other_truck, "stopped", start + timedelta(minutes=7), {"lat": p1.lat, "lon": p1.lon})
    await _alert(db, other_truck, "stopped", start + timedelta(minutes=20), {"lat": p2.lat, "lon": p2.lon})
    await _alert(db, truck, "offline", start + timedelta(minutes=30), {"last_contact": "long ago"})  # no place
    await _alert(db, truck, "overspeed", start + timedelta(hours=1), {"lat": p2.lat, "lon": p2.lon})  # after `to`
    auditor, token = await _user(db, "auditor", units.a)
    _, b_token = await _user(db, "dispatcher", units.b)
    window = f"from={_iso(start)}&to={_iso(start + timedelta(hours=1))}"

    status, doc = await _call(server, token, "GET", f"/api/alerts/hotspots?{window}")
    assert status == 200, doc
    assert doc["type"] == "FeatureCollection"
    cells = [h3.int_to_str(h3.latlng_to_cell(p.lat, p.lon, 8)) for p in (p1, p2)]
    assert [f["properties"] for f in doc["features"]] == [
        {"cell": cells[0], "count": 3, "by_kind": {"overspeed": 2, "stopped": 1}},
        {"cell": cells[1], "count": 1, "by_kind": {"stopped": 1}},
    ]
    assert doc["properties"]["alerts"] == 4 and doc["properties"]["unplaced"] == 1
    assert doc["properties"]["resolution"] == 8
    ring = doc["features"][0]["geometry"]["coordinates"][0]
    assert len(ring) == 7 and ring[0] == ring[-1]

    status, doc = await _call(server, token, "GET", f"/api/alerts/hotspots?{window}&kind=overspeed&resolution=11")
    assert status == 200
    assert [f["properties"]["count"] for f in doc["features"]] == [1, 1]  # p1 and the place 100 m away
    status, doc = await _call(server, b_token, "GET", f"/api/alerts/hotspots?{window}")
    assert status == 200 and doc["features"] == [] and doc["properties"]["unplaced"] == 0

    status, err = await _call(server, token, "GET", f"/api/alerts/hotspots?{window}&resolution=4")
    assert status == 400 and "resolution" in err["error"]
    far = f"from={_iso(start)}&to={_iso(start + timedelta(days=93))}"
    status, err = await _call(server, token, "GET", f"/api/alerts/hotspots?{far}")
    assert status == 400 and "92 days" in err["error"]

    entries = await _audit(server, auditor, "query.hotspots")
    assert [e["outcome"] for e in entries] == ["ok", "ok", "bad_request", "bad_request"]
    assert entries[0]["target"] == {"from": _iso(start), "to": _iso(start + timedelta(hours=1))}
    assert entries[1]["target"]["kind"] == "overspeed"
