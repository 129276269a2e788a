"""Zones: the store, the HTTP API over real HTTP (scope, validation, assignments) and the GeoJSON import CLI."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from access import tokens
from geofence import crs
from store import devices, users, zones
from store.devices import DeviceRecord, OrgUnitRecord
from store.users import Unit
from telematics.cli import main
from telematics.server import Server
from tests.conftest import API_TOKEN

SQUARE = {
    "type": "Polygon",
    "coordinates": [[[114.05, 22.53], [114.06, 22.53], [114.06, 22.54], [114.05, 22.54], [114.05, 22.53]]],
}
LINE = {"type": "LineString", "coordinates": [[114.05, 22.53], [114.06, 22.54], [114.07, 22.54]]}
MULTI = {"type": "MultiPolygon", "coordinates": [SQUARE["coordinates"]]}


@dataclass
class Tree:
    """city -> east, city -> west."""

    city: Unit
    east: Unit
    west: Unit


@pytest.fixture
async def tree(db: psycopg.AsyncConnection) -> Tree:
    tag = secrets.token_hex(3)
    await devices.upsert_units(
        db,
        [
            OrgUnitRecord(f"zcity-{tag}", "City"),
            OrgUnitRecord(f"zeast-{tag}", "East", f"zcity-{tag}"),
            OrgUnitRecord(f"zwest-{tag}", "West", f"zcity-{tag}"),
        ],
    )
    found = [await users.unit_by_code(db, f"{name}-{tag}") for name in ("zcity", "zeast", "zwest")]
    assert all(found)
    return Tree(*found)  # type: ignore[arg-type]


class Api:
    """Calls with one token; every answer as (status, JSON or None)."""

    def __init__(self, http: aiohttp.ClientSession, server: Server, token: str) -> None:
        self.http, self.base, self.headers = http, f"http://127.0.0.1:{server.ports['api']}", _bearer(token)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, json=body, headers=self.headers) as r:
            return r.status, (await r.json() if r.content_type == "application/json" else None)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def system(http: aiohttp.ClientSession, server: Server) -> Api:
    return Api(http, server, API_TOKEN)


async def _user(db: psycopg.AsyncConnection, http: aiohttp.ClientSession, server: Server, role: str, unit: Unit) -> Api:
    user = await users.create_user(db, f"z{role}-{secrets.token_hex(3)}", role, unit.id)
    assert user is not None
    return Api(http, server, await tokens.issue(db, user.id, "test", None))


# --- the API ------------------------------------------------------------------------------------


async def test_crud_round_trip(system: Api, tree: Tree, db: psycopg.AsyncConnection) -> None:
    code = "grid-" + secrets.token_hex(3)
    body = {
        "code": code,
        "name": "福田 网格 1",
        "kind": "duty_grid",
        "shape": {"polygon": SQUARE},
        "properties": {"schedule": "06:00-18:00"},
        "unit": tree.east.id,
    }
    status, created = await system.call("POST", "/api/zones", body)
    assert status == 201, created
    assert {k: created[k] for k in ("code", "name", "kind", "shape", "properties", "enabled")} == {
        "code": code,
        "name": "福田 网格 1",
        "kind": "duty_grid",
        "shape": {"polygon": SQUARE},
        "properties": {"schedule": "06:00-18:00"},
        "enabled": True,
    }
    assert created["unit"] == {"id": tree.east.id, "code": tree.east.code, "name": "East", "parent_id": tree.city.id}
    assert created["created"].endswith("Z") and created["created"] == created["updated"]
    zone_id = created["id"]
    assert await system.call("GET", f"/api/zones/{zone_id}") == (200, created)
    assert (await system.call("POST", "/api/zones", body))[0] == 409  # the code is taken
    status, other = await system.call("POST", "/api/zones", {**body, "code": "other-" + secrets.token_hex(3)})
    assert status == 201
    assert (await system.call("PATCH", f"/api/zones/{other['id']}", {"code": code}))[0] == 409

    status, listed = await system.call("GET", f"/api/zones?q={code}&kind=duty_grid&unit={tree.city.id}")
    assert status == 200 and [z["id"] for z in listed["zones"]] == [zone_id] and listed["total"] == 1
    assert (await system.call("GET", f"/api/zones?q={code}&kind=depot"))[1]["zones"] == []
    assert (await system.call("GET", f"/api/zones?q={code}&unit={tree.west.id}"))[1]["zones"] == []

    circle = {"circle": {"lat": 22.54, "lon": 114.05, "radius_m": 250}}
    status, changed = await system.call(
        "PATCH", f"/api/zones/{zone_id}", {"name": "renamed", "shape": circle, "enabled": False, "unit": None}
    )
    assert status == 200, changed
    assert (changed["name"], changed["shape"], changed["enabled"], changed["unit"]) == ("renamed", circle, False, None)
    assert changed["updated"] > created["updated"] and changed["created"] == created["created"]
    assert (await system.call("GET", f"/api/zones?q={code}&enabled=true"))[1]["zones"] == []

    assert (await system.call("DELETE", f"/api/zones/{zone_id}"))[0] == 204
    assert (await system.call("GET", f"/api/zones/{zone_id}"))[0] == 404
    assert (await system.call("DELETE", f"/api/zones/{zone_id}"))[0] == 404
    assert (await system.call("GET", "/api/zones/99999999999"))[0] == 404


async def test_validation_errors(
    system: Api, tree: Tree, db: psycopg.AsyncConnection, http: aiohttp.ClientSession, server: Server
) -> None:
    unclosed = {"type": "Polygon", "coordinates": [[*SQUARE["coordinates"][0][:-1], [114.0, 22.0]]]}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"shape": {"polygon": unclosed}}, "shape: outer ring is not closed"),
        ({"shape": {"circle": {"lat": 95, "lon": 114, "radius_m": 10}}}, "shape: circle centre: latitude 95"),
        ({"shape": {"circle": {"lat": 22, "lon": 114, "radius_m": 1}, "polygon": SQUARE}}, "shape: "),
        ({"shape": {"square": 1}}, "shape: "),
        ({}, "shape: required"),
        ({"shape": {"polygon": SQUARE}, "kind": "volcano"}, "kind: kind 'volcano' is not one of"),
        ({"shape": {"polygon": SQUARE}, "kind": "speed_zone"}, "properties: a speed_zone needs"),
        (
            {"shape": {"polygon": SQUARE}, "kind": "speed_zone", "properties": {"speed_limit_kmh": 0}},
            "properties: speed_limit_kmh must be a number above 0",
        ),
        ({"shape": {"polygon": SQUARE}, "properties": []}, "properties: properties must be an object"),
        ({"shape": {"polygon": SQUARE}, "code": "has space"}, "code: "),
        ({"shape": {"polygon": SQUARE}, "unit": 2**31 + 5}, "unit: no unit"),
        ({"shape": {"polygon": SQUARE}, "enabled": "yes"}, "enabled: true or false"),
    ]
    for body, reason in cases:
        status, error = await system.call("POST", "/api/zones", body)
        assert status == 400 and error["error"].startswith(reason), (body, error)
    assert (await system.call("POST", "/api/zones?crs=mars", {"shape": {"polygon": SQUARE}}))[0] == 400

    speed = {"shape": {"polygon": SQUARE}, "kind": "speed_zone", "properties": {"speed_limit_kmh": 30}}
    status, zone = await system.call("POST", "/api/zones", speed)
    assert status == 201 and zone["properties"] == {"speed_limit_kmh": 30}
    status, plain = await system.call("POST", "/api/zones", {"shape": {"polygon": SQUARE}})
    assert status == 201 and (plain["kind"], plain["code"], plain["name"]) == ("generic", None, "")
    # Becoming a speed zone needs a limit; dropping the limit of a speed zone is refused.
    status, error = await system.call("PATCH", f"/api/zones/{plain['id']}", {"kind": "speed_zone"})
    assert status == 400 and "speed_limit_kmh" in error["error"]
    status, error = await system.call("PATCH", f"/api/zones/{zone['id']}", {"properties": {}})
    assert status == 400 and "speed_limit_kmh" in error["error"]
    assert (await system.call("PATCH", f"/api/zones/{zone['id']}", {"colour": "red"}))[0] == 400
    assert (await system.call("PATCH", f"/api/zones/{zone['id']}", {}))[0] == 400
    status, changed = await system.call(
        "PATCH", f"/api/zones/{plain['id']}", {"kind": "speed_zone", "properties": {"speed_limit_kmh": 40.5}}
    )
    assert status == 200 and changed["kind"] == "speed_zone"

    dispatcher = await _user(db, http, server, "dispatcher", tree.city)
    status, error = await dispatcher.call("POST", "/api/zones", {"shape": {"polygon": SQUARE}})
    assert status == 403 and "admin" in error["error"]
    assert (await dispatcher.call("DELETE", f"/api/zones/{zone['id']}"))[0] == 403
    assert (await dispatcher.call("GET", f"/api/zones/{zone['id']}"))[0] == 200  # a root user sees unit-less zones


async def test_scope_of_units(
    system: Api, tree: Tree, db: psycopg.AsyncConnection, http: aiohttp.ClientSession, server: Server
) -> None:
    east_admin = await _user(db, http, server, "admin", tree.east)
    west_admin = await _user(db, http, server, "admin", tree.west)
    status, zone = await east_admin.call("POST", "/api/zones", {"shape": {"polygon": SQUARE}, "unit": tree.east.id})
    assert status == 201
    path = f"/api/zones/{zone['id']}"
    assert await east_admin.call("GET", path) == (200, zone)
    assert (await west_admin.call("GET", path))[0] == 404
    assert (await west_admin.call("PATCH", path, {"name": "mine now"}))[0] == 404
    assert (await west_admin.call("GET", path + "/assignments"))[0] == 404
    assert (await west_admin.call("PUT", path + "/assignments", {"kinds": ["muck"]}))[0] == 404
    assert (await west_admin.call("DELETE", path))[0] == 404
    assert zone["id"] not in [z["id"] for z in (await west_admin.call("GET", "/api/zones"))[1]["zones"]]
    assert zone["id"] in [z["id"] for z in (await east_admin.call("GET", "/api/zones"))[1]["zones"]]
    # A unit filter outside the caller's units finds nothing rather than another unit's zones.
    assert (await west_admin.call("GET", f"/api/zones?unit={tree.east.id}"))[1]["zones"] == []

    # A district admin places zones in its own units only, and cannot move one out of them.
    for body in ({"shape": {"polygon": SQUARE}, "unit": tree.west.id}, {"shape": {"polygon": SQUARE}}):
        status, error = await east_admin.call("POST", "/api/zones", body)
        assert status == 400 and error["error"].startswith("unit: no unit"), body
    assert (await east_admin.call("PATCH", path, {"unit": tree.west.id}))[0] == 400

    # A zone without a unit: the configured token and root users see it, district users do not.
    status, unitless = await system.call("POST", "/api/zones", {"shape": {"polygon": SQUARE}})
    assert status == 201
    city_auditor = await _user(db, http, server, "auditor", tree.city)
    assert (await city_auditor.call("GET", f"/api/zones/{unitless['id']}"))[0] == 200
    assert (await east_admin.call("GET", f"/api/zones/{unitless['id']}"))[0] == 404
    assert (await city_auditor.call("GET", path))[0] == 200  # the city is above the east


async def test_assignments(
    system: Api, tree: Tree, db: psycopg.AsyncConnection, http: aiohttp.ClientSession, server: Server
) -> None:
    tag = secrets.token_hex(3)
    await devices.upsert_devices(
        db,
        [
            DeviceRecord(f"za{tag}", "muck", org_unit=tree.east.code),
            DeviceRecord(f"zb{tag}", "muck", org_unit=tree.west.code),
        ],
    )
    east_dev, west_dev = [await devices.by_uid(db, f"{x}{tag}") for x in ("za", "zb")]
    assert east_dev and west_dev
    status, zone = await system.call("POST", "/api/zones", {"shape": {"polygon": SQUARE}, "unit": tree.east.id})
    path = f"/api/zones/{zone['id']}/assignments"
    assert await system.call("GET", path) == (200, {"devices": [], "kinds": [], "units": []})

    wanted = {"devices": [east_dev.id, east_dev.id], "kinds": ["muck", "sanitation"], "units": [tree.east.id]}
    expected = {"devices": [east_dev.id], "kinds": ["muck", "sanitation"], "units": [tree.east.id]}
    assert await system.call("PUT", path, wanted) == (200, expected)
    assert await system.call("GET", path) == (200, expected)
    assert await system.call("PUT", path, {"kinds": ["inspector"]}) == (
        200,
        {"devices": [], "kinds": ["inspector"], "units": []},
    )

    east_admin = await _user(db, http, server, "admin", tree.east)
    bad = [
        ({"devices": [west_dev.id]}, "devices: no device"),  # another unit's device
        ({"devices": [2**31 - 1]}, "devices: no device"),
        ({"units": [tree.west.id]}, "units: no unit"),
        ({"kinds": ["tank"]}, "kinds: "),
        ({"devices": "all"}, "devices: "),
        ({"zones": [1]}, "only devices, kinds and units"),
    ]
    for body, reason in bad:
        status, error = await east_admin.call("PUT", path, body)
        assert status == 400 and error["error"].startswith(reason), (body, error)
    assert await system.call("GET", path) == (200, {"devices": [], "kinds": ["inspector"], "units": []})
    dispatcher = await _user(db, http, server, "dispatcher", tree.east)
    assert (await dispatcher.call("PUT", path, {"kinds": ["muck"]}))[0] == 403
    assert (await dispatcher.call("GET", path))[0] == 200

    assert (await east_admin.call("PUT", path, {"devices": [east_dev.id], "units": [tree.east.id]}))[0] == 200
    assert (await system.call("DELETE", f"/api/zones/{zone['id']}"))[0] == 204
    cur = await db.execute("SELECT count(*) FROM zone_assignments WHERE zone_id = %s", (zone["id"],))
    assert await cur.fetchone() == (0,)


async def test_api_reads_and_answers_in_a_map_datum(system: Api) -> None:
    gcj = {"circle": {"lat": 22.54, "lon": 114.05, "radius_m": 100}}
    status, zone = await system.call("POST", "/api/zones?crs=gcj02", {"shape": gcj})
    assert status == 201
    answered = zone["shape"]["circle"]  # in the datum of the request
    assert (answered["lat"], answered["lon"]) == pytest.approx((22.54, 114.05), abs=1e-7)
    stored = (await system.call("GET", f"/api/zones/{zone['id']}"))[1]["shape"]["circle"]
    assert (stored["lat"], stored["lon"]) == pytest.approx(crs.gcj02_to_wgs84(22.54, 114.05), abs=1e-9)
    assert 0.002 < abs(stored["lon"] - 114.05) < 0.01  # GCJ-02 is a few hundred metres off here
    assert stored["radius_m"] == 100

    code = "bd-" + secrets.token_hex(3)
    status, polygon = await system.call("POST", "/api/zones?crs=bd09", {"shape": {"polygon": SQUARE}, "code": code})
    assert status == 201
    ring = (await system.call("GET", f"/api/zones/{polygon['id']}"))[1]["shape"]["polygon"]["coordinates"][0]
    assert ring[0] == ring[-1] and 0.005 < abs(ring[0][0] - 114.05) < 0.02
    listed = (await system.call("GET", f"/api/zones?crs=bd09&q={code}"))[1]["zones"]
    (again,) = [z for z in listed if z["id"] == polygon["id"]]
    assert again["shape"]["polygon"]["coordinates"][0][0] == pytest.approx([114.05, 22.53], abs=1e-7)


# --- the store -----------------------------------------------------------------------------------


async def test_store_all_enabled_and_changes(db: psycopg.AsyncConnection, tree: Tree) -> None:
    cur = await db.execute("SELECT now()")
    (start,) = await cur.fetchone()  # type: ignore[misc]
    on = await zones.create(
        db, code=None, name="on", kind="depot", shape={"polygon": SQUARE}, properties={}, unit_id=tree.east.id
    )
    off = await zones.create(
        db, code=None, name="off", kind="depot", shape={"polygon": SQUARE}, properties={}, unit_id=None, enabled=False
    )
    enabled_ids = {z.id for z in await zones.all_enabled(db)}
    assert on in enabled_ids and off not in enabled_ids
    changes = await zones.changed_after(db, start - timedelta(microseconds=1))
    assert {on, off} <= {z.id for z in changes.zones} and changes.as_of >= start

    later = changes.as_of
    assert await zones.set_assignments(db, on, zones.Assignments(kinds=("muck",)))
    assert await zones.delete(db, off)
    changes = await zones.changed_after(db, later)
    assert [z.id for z in changes.zones if z.id in (on, off)] == [on] and off in changes.deleted
    assert not await zones.set_assignments(db, off, zones.Assignments())
    assert (await zones.assignments_of(db, [on, off])) == {
        on: zones.Assignments(kinds=("muck",)),
        off: zones.Assignments(),
    }


# --- the import ----------------------------------------------------------------------------------


@pytest.fixture
def cli_env(fresh_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("TELEMATICS_DSN", fresh_database)
    monkeypatch.delenv("TELEMATICS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _feature(geometry: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def _write(path: Path, features: list[Any]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False), "utf-8")
    return path


def _stored(dsn: str, code: str) -> tuple[Any, ...] | None:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT z.name, z.kind::text, z.shape, z.properties, u.code, z.enabled"
            " FROM zones z LEFT JOIN org_units u ON u.id = z.org_unit_id WHERE z.code = %s",
            (code,),
        ).fetchone()


def _unit(dsn: str) -> str:
    code = "zimp-" + secrets.token_hex(3)
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO org_units (code, name) VALUES (%s, 'Import unit')", (code,))
    return code


def test_import_zones_then_again(cli_env: Path, fresh_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    tag, unit = secrets.token_hex(3), _unit(fresh_database)
    point = {"type": "Point", "coordinates": [114.05, 22.54]}
    path = _write(
        cli_env / "zones.geojson",
        [
            _feature(SQUARE, code=f"g{tag}", name="网格 1", kind="duty_grid", unit=unit, owner="张三"),
            _feature(point, code=f"d{tag}", kind="depot", radius_m=80, enabled=False),
            _feature(SQUARE, code=f"s{tag}", kind="speed_zone", speed_limit_kmh=30),
        ],
    )
    assert main(["import", "zones", str(path)]) == 0
    assert "imported 3 zones" in capsys.readouterr().out
    assert _stored(fresh_database, f"g{tag}") == (
        "网格 1",
        "duty_grid",
        {"polygon": SQUARE},
        {"owner": "张三"},
        unit,
        True,
    )
    assert _stored(fresh_database, f"d{tag}") == (
        "",
        "depot",
        {"circle": {"lat": 22.54, "lon": 114.05, "radius_m": 80}},
        {},
        None,
        False,
    )
    assert _stored(fresh_database, f"s{tag}")[3] == {"speed_limit_kmh": 30}  # type: ignore[index]

    _write(path, [_feature(SQUARE, code=f"g{tag}", name="renamed")])  # again: updated in place by code
    assert main(["import", "zones", str(path)]) == 0
    assert _stored(fresh_database, f"g{tag}")[:2] == ("renamed", "generic")  # type: ignore[index]
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT count(*) FROM zones WHERE code = %s", (f"g{tag}",)).fetchone() == (1,)


def test_bad_zone_file_imports_nothing(cli_env: Path, fresh_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    tag = secrets.token_hex(3)
    unclosed = {"type": "Polygon", "coordinates": [SQUARE["coordinates"][0][:-1]]}
    path = _write(
        cli_env / "bad.geojson",
        [
            _feature(SQUARE, code=f"ok{tag}"),  # 1: good
            _feature(SQUARE, code=f"ok{tag}"),  # 2: repeats 1
            _feature(SQUARE, name="no code"),  # 3
            _feature(SQUARE, code=f"k{tag}", kind="volcano"),  # 4
            _feature(SQUARE, code=f"u{tag}", unit=f"nowhere-{tag}"),  # 5
            _feature(LINE, code=f"l{tag}"),  # 6: a line without a width
            _feature({"type": "Point", "coordinates": [114.0, 22.0]}, code=f"p{tag}"),  # 7: no radius
            _feature(unclosed, code=f"c{tag}"),  # 8
            _feature(SQUARE, code=f"s{tag}", kind="speed_zone"),  # 9
            {"type": "Feature", "geometry": None, "properties": {"code": f"n{tag}"}},  # 10
            "not a feature",  # 11
        ],
    )
    assert main(["import", "zones", str(path)]) == 1
    err = capsys.readouterr().err
    for expected in (
        f":#2: code 'ok{tag}' repeats feature #1",
        ":#3: code must be",
        ":#4: kind 'volcano'",
        f":#5: organisation unit 'nowhere-{tag}' does not exist",
        ":#6: a LineString needs properties.width_m",
        ":#7: a Point needs properties.radius_m",
        ":#8: outer ring",
        ":#9: a speed_zone needs properties.speed_limit_kmh",
        ":#10: geometry must be",
        ":#11: not a GeoJSON Feature",
        ": nothing imported (10 bad features)",
    ):
        assert f"{path}{expected}" in err, (expected, err)
    assert f"{path}:#1:" not in err
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT count(*) FROM zones WHERE code LIKE %s", (f"%{tag}",)).fetchone() == (0,)

    path.write_text('{"type": "Feature"}', "utf-8")
    assert main(["import", "zones", str(path)]) == 1
    assert f"{path}:expected a GeoJSON FeatureCollection" in capsys.readouterr().err
    path.write_text("{", "utf-8")
    assert main(["import", "zones", str(path)]) == 1
    assert f"{path}:not JSON" in capsys.readouterr().err
    assert main(["import", "units", str(path), "--crs", "gcj02"]) == 2


def test_import_with_crs_moves_coordinates_to_wgs84(
    cli_env: Path, fresh_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = secrets.token_hex(3)
    point = {"type": "Point", "coordinates": [114.05, 22.54]}
    path = _write(
        cli_env / "gcj.geojson", [_feature(SQUARE, code=f"q{tag}"), _feature(point, code=f"c{tag}", radius_m=50)]
    )
    assert main(["import", "zones", str(path), "--crs", "gcj02"]) == 0
    ring = _stored(fresh_database, f"q{tag}")[2]["polygon"]["coordinates"][0]  # type: ignore[index]
    assert len(ring) == 5 and ring[0] == ring[-1]
    for (lon, lat), (gcj_lon, gcj_lat) in zip(ring, SQUARE["coordinates"][0], strict=True):
        assert crs.wgs84_to_gcj02(lat, lon) == pytest.approx((gcj_lat, gcj_lon), abs=1e-8)
        assert 0.002 < abs(lon - gcj_lon) < 0.01
    circle = _stored(fresh_database, f"c{tag}")[2]["circle"]  # type: ignore[index]
    assert (circle["lat"], circle["lon"]) == pytest.approx(crs.gcj02_to_wgs84(22.54, 114.05), abs=1e-9)
    assert circle["radius_m"] == 50


def test_import_corridor(cli_env: Path, fresh_database: str) -> None:
    code = "r" + secrets.token_hex(3)
    path = _write(cli_env / "route.geojson", [_feature(LINE, code=code, kind="muck_route", width_m=40)])
    assert main(["import", "zones", str(path)]) == 0
    assert _stored(fresh_database, code)[1:4] == (  # type: ignore[index]
        "muck_route",
        {"corridor": {"line": LINE, "width_m": 40}},
        {},
    )


def test_import_multipolygon(cli_env: Path, fresh_database: str) -> None:
    code = "m" + secrets.token_hex(3)
    path = _write(cli_env / "multi.geojson", [_feature(MULTI, code=code, kind="forbidden")])
    assert main(["import", "zones", str(path), "--crs", "bd09"]) == 0
    moved = _stored(fresh_database, code)[2]["multipolygon"]  # type: ignore[index]
    assert moved["type"] == "MultiPolygon" and 0.005 < abs(moved["coordinates"][0][0][0][0] - 114.05) < 0.02


async def test_api_corridor_zone(system: Api) -> None:
    shape = {"corridor": {"line": LINE, "width_m": 25}}
    status, zone = await system.call("POST", "/api/zones", {"shape": shape, "kind": "sanitation_route"})
    assert status == 201 and zone["shape"] == shape
    status, error = await system.call("POST", "/api/zones", {"shape": {"corridor": {"line": LINE, "width_m": -1}}})
    assert status == 400 and error["error"].startswith("shape: ")
