"""Track replay, trips and mileage on the running server: a known day of driving written through the
store's own writer, asked for over real HTTP by users of a city and of a county below it, and the
audit log that records every call, the refused ones included."""

from __future__ import annotations

import csv
import io
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import gpxpy
import psycopg
import pytest

from access import tokens
from geofence import crs
from store import devices, users
from store.devices import DeviceRecord, OrgUnitRecord
from store.positions import PositionWriter
from store.users import Unit
from telematics.server import Server
from tests.conftest import API_TOKEN
from tests.replay.synthetic import LAT0, LON0, day_of_driving

# Two days ago at 00:00 UTC (08:00 in Shenzhen): recent enough for retention, not in the future.
START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
DAY = timedelta(days=1)
ALL = {"from": START.isoformat(), "to": (START + DAY).isoformat()}


@dataclass
class Fleet:
    city: Unit
    county: Unit
    city_device: int
    county_device: int
    city_auditor: tuple[str, str]  # (name, token)
    county_auditor: tuple[str, str]


async def _user(db: psycopg.AsyncConnection, role: str, unit: Unit) -> tuple[str, str]:
    name = f"r-{role}-{secrets.token_hex(3)}"
    user = await users.create_user(db, name, role, unit.id)
    assert user is not None
    return name, await tokens.issue(db, user.id, "test", None)


async def _device(db: psycopg.AsyncConnection, unit: Unit) -> int:
    uid = "r" + secrets.token_hex(6)
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind="sanitation", org_unit=unit.code)])
    found = await devices.by_uid(db, uid)
    assert found is not None
    return found.id


@pytest.fixture
async def fleet(db: psycopg.AsyncConnection, fresh_database: str) -> Fleet:
    """A city and a county below it, a device in each with the known day of driving (a fix flagged
    invalid by the terminal at index 5, a 33 km outlier at index 30), and an auditor in each."""
    tag = secrets.token_hex(3)
    await devices.upsert_units(
        db, [OrgUnitRecord(f"r-city-{tag}", "City"), OrgUnitRecord(f"r-county-{tag}", "County", f"r-city-{tag}")]
    )
    city, county = await users.unit_by_code(db, f"r-city-{tag}"), await users.unit_by_code(db, f"r-county-{tag}")
    assert city is not None and county is not None
    city_device, county_device = await _device(db, city), await _device(db, county)
    conn = await psycopg.AsyncConnection.connect(fresh_database, autocommit=True)
    try:
        writer = PositionWriter(conn)
        for device_id in (city_device, county_device):
            batch = day_of_driving(START)[0].batch(device_id)
            batch.valid[5] = False
            batch.lat[30] += 0.3
            assert await writer.write(batch) == 115
    finally:
        await conn.close()
    auditors = await _user(db, "auditor", city), await _user(db, "auditor", county)
    return Fleet(city, county, city_device, county_device, *auditors)


async def _get(server: Server, token: str, path: str, **query: Any) -> tuple[int, aiohttp.ClientResponse, str]:
    url = f"http://127.0.0.1:{server.ports['api']}{path}?{urlencode(query)}"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(url) as r,
    ):
        return r.status, r, await r.text()


async def _json(server: Server, token: str, path: str, **query: Any) -> tuple[int, Any]:
    status, _, text = await _get(server, token, path, **query)
    return status, json.loads(text)


async def _audit(server: Server, user: str) -> list[dict[str, Any]]:
    status, doc = await _json(server, API_TOKEN, "/api/audit", user=user)
    assert status == 200
    return list(reversed(doc["entries"]))  # oldest first


def _at(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def test_the_raw_track_lists_every_fix_and_flags_the_bad_ones(server: Server, fleet: Fleet) -> None:
    token = fleet.city_auditor[1]
    status, body = await _json(server, token, f"/api/devices/{fleet.city_device}/track", **ALL)
    assert status == 200, body
    fixes = body["fixes"]
    assert body["total"] == 115 and len(fixes["time"]) == 115
    assert body["excluded"] == {"invalid": 1, "zero": 0, "future": 0, "jump": 1}
    assert {i: r for i, r in enumerate(fixes["excluded"]) if r} == {5: "invalid", 30: "jump"}
    assert fixes["time"][0] == _at(0) and fixes["time"][-1] == _at(114 * 30)
    assert fixes["lat"][0] == LAT0 and fixes["mileage_km"][-1] == pytest.approx(1012.24)
    assert body["distance_km"] == pytest.approx(12.0, abs=1e-3)
    assert [(s["start"], s["end"]) for s in body["stops"]] == [
        (_at(0), _at(600)),
        (_at(1200), _at(1500)),
        (_at(2220), _at(3420)),
    ]


async def test_simplified_tracks_keep_the_stops(server: Server, fleet: Fleet) -> None:
    path, token = f"/api/devices/{fleet.city_device}/track", fleet.city_auditor[1]
    status, body = await _json(server, token, path, **ALL, simplify=5)
    assert status == 200, body
    # Straight legs collapse to their ends: the stops' arrivals and departures and the corner at C.
    assert body["fixes"]["time"] == [_at(s) for s in (0, 600, 1200, 1500, 1800, 2220, 3420)]
    assert body["simplified"] == {"tolerance_m": 5.0} and set(body["fixes"]["excluded"]) == {None}
    assert body["total"] == 115 and body["excluded"]["jump"] == 1
    status, body = await _json(server, token, path, **ALL, points=20)
    assert status == 200 and len(body["fixes"]["time"]) == 20 and body["simplified"] == {"points": 20}
    assert {_at(s) for s in (0, 600, 1200, 1500, 2220, 3420)} <= set(body["fixes"]["time"])


async def test_coordinates_in_the_asked_system(server: Server, fleet: Fleet) -> None:
    path, token = f"/api/devices/{fleet.city_device}/track", fleet.city_auditor[1]
    for system in ("gcj02", "bd09"):
        status, body = await _json(server, token, path, **ALL, crs=system)
        assert status == 200 and body["crs"] == system
        lat, lon = crs.convert(LAT0, LON0, "wgs84", system)
        assert (body["fixes"]["lat"][0], body["fixes"]["lon"][0]) == pytest.approx((lat, lon), abs=2e-7)
        assert (body["stops"][0]["lat"], body["stops"][0]["lon"]) == pytest.approx((lat, lon), abs=2e-7)


async def test_exports_parse_back(server: Server, fleet: Fleet) -> None:
    path, token = f"/api/devices/{fleet.city_device}/track", fleet.city_auditor[1]
    status, r, text = await _get(server, token, path, **ALL, format="gpx")
    assert status == 200 and r.content_type == "application/gpx+xml"
    assert r.headers["Content-Disposition"].startswith("attachment; filename=")
    gpx = gpxpy.parse(text)
    assert len(gpx.tracks[0].segments[0].points) == 113
    assert [w.type for w in gpx.waypoints] == ["stop"] * 3 + ["excluded: invalid", "excluded: jump"]
    status, r, text = await _get(server, token, path, **ALL, format="csv")
    assert status == 200 and r.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 115 and [r["reason"] for r in rows if r["excluded"] == "true"] == ["invalid", "jump"]
    status, r, text = await _get(server, token, path, **ALL, format="geojson")
    assert status == 200 and r.content_type == "application/geo+json"
    features = json.loads(text)["features"]
    assert len(features[0]["geometry"]["coordinates"]) == 113
    assert [f["properties"]["kind"] for f in features[1:]] == ["stop"] * 3 + ["excluded"] * 2


async def test_trips_stops_and_mileage(server: Server, fleet: Fleet) -> None:
    token = fleet.city_auditor[1]
    status, body = await _json(server, token, f"/api/devices/{fleet.city_device}/trips", **ALL)
    assert status == 200, body
    assert [(t["start"], t["end"]) for t in body["trips"]] == [(_at(600), _at(1200)), (_at(1500), _at(2220))]
    assert [t["distance_km"] for t in body["trips"]] == [6.0, 6.0]
    assert [t["odometer_km"] for t in body["trips"]] == [6.12, 6.12]
    assert [t["max_speed_kmh"] for t in body["trips"]] == [36.0, 36.0]
    assert [s["duration_s"] for s in body["stops"]] == [600, 300, 1200]
    assert (body["distance_km"], body["odometer_km"]) == (12.0, 12.24)
    status, body = await _json(server, token, f"/api/devices/{fleet.city_device}/trips", **ALL, min_stop_s=301)
    assert [s["duration_s"] for s in body["stops"]] == [600, 1200] and len(body["trips"]) == 1
    status, r, text = await _get(server, token, f"/api/devices/{fleet.city_device}/trips", **ALL, format="csv")
    assert status == 200 and r.content_type == "text/csv"
    assert [row["kind"] for row in csv.DictReader(io.StringIO(text))] == ["stop", "trip", "stop", "trip", "stop"]
    # 08:00 to 08:57 in Shenzhen: all on the first local day of the range; the second has nothing.
    status, body = await _json(server, token, f"/api/devices/{fleet.city_device}/mileage", **ALL)
    assert status == 200, body
    local = START.date()
    assert body["days"] == [
        {"date": local.isoformat(), "distance_km": 12.0, "odometer_km": 12.24, "fixes": 115, "excluded": 2},
        {"date": (local + DAY).isoformat(), "distance_km": 0.0, "odometer_km": None, "fixes": 0, "excluded": 0},
    ]
    assert body["total"] == {"distance_km": 12.0, "odometer_km": 12.24, "fixes": 115, "excluded": 2}


async def test_every_replay_and_export_is_in_the_audit_log(
    server: Server, db: psycopg.AsyncConnection, fleet: Fleet
) -> None:
    name, token = await _user(db, "dispatcher", fleet.county)
    device = fleet.county_device
    calls = [
        ("track", {}, "replay.track"),
        ("track", {"format": "gpx"}, "export.gpx"),
        ("track", {"format": "csv", "points": "50"}, "export.csv"),
        ("track", {"format": "geojson", "crs": "gcj02"}, "export.geojson"),
        ("trips", {}, "replay.trips"),
        ("trips", {"format": "csv"}, "export.csv"),
        ("mileage", {"utc_offset_h": "0"}, "replay.mileage"),
    ]
    for what, extra, _ in calls:
        status, _, _ = await _get(server, token, f"/api/devices/{device}/{what}", **ALL, **extra)
        assert status == 200
    entries = await _audit(server, name)
    assert [(e["action"], e["outcome"]) for e in entries] == [(action, "ok") for _, _, action in calls]
    for e, (what, extra, _) in zip(entries, calls, strict=True):
        assert e["target"] == {"device": device, "what": what, "format": "json", **ALL, **extra}
        assert e["role"] == "dispatcher" and e["unit"] == fleet.county.id


async def test_a_county_auditor_cannot_replay_a_city_device_and_the_attempt_is_recorded(
    server: Server, fleet: Fleet
) -> None:
    name, token = fleet.county_auditor
    for what, extra in (("track", {}), ("track", {"format": "gpx"}), ("trips", {}), ("mileage", {})):
        status, body = await _json(server, token, f"/api/devices/{fleet.city_device}/{what}", **ALL, **extra)
        assert status == 404 and body == {"error": f"no device {fleet.city_device}"}
    status, body = await _json(server, token, f"/api/devices/{fleet.county_device}/track", **ALL)
    assert status == 200 and body["total"] == 115  # its own county's device
    status, _ = await _json(server, fleet.city_auditor[1], f"/api/devices/{fleet.county_device}/track", **ALL)
    assert status == 200  # the city sees the county below it
    entries = await _audit(server, name)
    assert [(e["action"], e["outcome"], e["target"]["device"]) for e in entries] == [
        ("replay.track", "not_found", fleet.city_device),
        ("export.gpx", "not_found", fleet.city_device),
        ("replay.trips", "not_found", fleet.city_device),
        ("replay.mileage", "not_found", fleet.city_device),
        ("replay.track", "ok", fleet.county_device),
    ]
    assert entries[0]["role"] == "auditor" and entries[0]["unit"] == fleet.county.id
    status, _ = await _json(server, token, "/api/audit")
    assert status == 403  # an auditor does not read the audit log: admins do


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"from": START.isoformat()}, "to: required"),
        ({**ALL, "to": START.isoformat()}, "to: after from"),
        ({"from": START.isoformat(), "to": (START + timedelta(days=31, seconds=1)).isoformat()}, "at most 31 days"),
        ({**ALL, "from": "2026-11-20T08:00:00"}, "from: give the zone"),
        ({**ALL, "format": "kml"}, "format: one of json, geojson, gpx, csv"),
        ({**ALL, "simplify": "5", "points": "100"}, "one of the two"),
        ({**ALL, "points": "1"}, "points: a whole number from 2"),
        ({**ALL, "crs": "utm"}, "crs: one of wgs84, gcj02, bd09"),
        ({**ALL, "min_stop_s": "0"}, "min_stop_s"),
    ],
)
async def test_bad_requests_are_refused_and_recorded(
    server: Server, fleet: Fleet, query: dict[str, str], message: str
) -> None:
    name, token = fleet.city_auditor
    status, body = await _json(server, token, f"/api/devices/{fleet.city_device}/track", **query)
    assert status == 400 and message in body["error"]
    assert [e["outcome"] for e in await _audit(server, name)] == ["bad_request"]


async def test_a_device_that_does_not_exist_and_an_empty_range(server: Server, fleet: Fleet) -> None:
    status, body = await _json(server, API_TOKEN, "/api/devices/987654321/trips", **ALL)
    assert status == 404
    empty = {"from": (START - DAY).isoformat(), "to": START.isoformat()}
    status, body = await _json(server, API_TOKEN, f"/api/devices/{fleet.city_device}/track", **empty, points=10)
    assert status == 200 and body["total"] == 0 and body["fixes"]["time"] == [] and body["stops"] == []
    status, body = await _json(server, API_TOKEN, f"/api/devices/{fleet.city_device}/trips", **empty)
    assert status == 200 and body["trips"] == [] and body["odometer_km"] is None
    status, _, text = await _get(server, API_TOKEN, f"/api/devices/{fleet.city_device}/track", **empty, format="gpx")
    assert status == 200 and gpxpy.parse(text).tracks[0].segments[0].points == []


async def test_the_audit_log_cannot_be_changed_through_the_api(server: Server) -> None:
    url = f"http://127.0.0.1:{server.ports['api']}/api/audit"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            async with http.request(method, url, json={}) as r:
                assert r.status == 405
