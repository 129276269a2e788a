"""The attendance plan over real HTTP and the real database: staff, patterns, overrides, holidays, leave,
the planned shifts of a day, unit scope, and the staff and shift CSV imports."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import psycopg
import pytest
from psycopg.types.json import Jsonb

from access import tokens
from attendance import admin_routes
from store import attendance, devices, users, zones
from store.devices import DeviceRecord, OrgUnitRecord
from store.users import Unit
from telematics import openapi
from telematics.cli import main
from telematics.server import Server
from tests.conftest import API_TOKEN

SQUARE = {
    "polygon": {
        "type": "Polygon",
        "coordinates": [[[114.05, 22.53], [114.06, 22.53], [114.06, 22.54], [114.05, 22.54], [114.05, 22.53]]],
    }
}
MONDAY = "2026-11-23"  # Asia/Shanghai (UTC+8), the default attendance.timezone
TUESDAY = "2026-11-24"


@dataclass
class Tree:
    """city -> east -> squad, city -> west; a duty grid of east and one of west, a phone in east."""

    city: Unit
    east: Unit
    squad: Unit
    west: Unit
    east_grid: int
    west_grid: int
    east_depot: int
    phone: int
    phone_uid: str
    tag: str


@pytest.fixture
async def tree(db: psycopg.AsyncConnection) -> Tree:
    tag = secrets.token_hex(3)
    await devices.upsert_units(
        db,
        [
            OrgUnitRecord(f"acity-{tag}", "City"),
            OrgUnitRecord(f"aeast-{tag}", "East", f"acity-{tag}"),
            OrgUnitRecord(f"asquad-{tag}", "East squad 1", f"aeast-{tag}"),
            OrgUnitRecord(f"awest-{tag}", "West", f"acity-{tag}"),
        ],
    )
    city, east, squad, west = [
        await users.unit_by_code(db, f"{n}-{tag}") for n in ("acity", "aeast", "asquad", "awest")
    ]
    assert city and east and squad and west
    grids = [
        await zones.create(
            db, code=f"{kind}-{unit.code}", name="", kind=kind, shape=SQUARE, properties={}, unit_id=unit.id
        )
        for kind, unit in (("duty_grid", east), ("duty_grid", west), ("depot", east))
    ]
    uid = "phone-" + tag
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind="inspector", org_unit=east.code)])
    phone = await devices.by_uid(db, uid)
    assert phone is not None
    east_grid, west_grid, east_depot = grids
    return Tree(city, east, squad, west, east_grid, west_grid, east_depot, phone.id, uid, tag)


class Api:
    """Calls with one token; every answer as (status, JSON or None)."""

    def __init__(self, http: aiohttp.ClientSession, server: Server, token: str) -> None:
        self.http, self.base = http, f"http://127.0.0.1:{server.ports['api']}"
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, json=body, headers=self.headers) as r:
            return r.status, (await r.json() if r.content_type == "application/json" else None)

    async def created(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, answer = await self.call("POST", path, body)
        assert status == 201, answer
        return dict(answer)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def system(http: aiohttp.ClientSession, server: Server) -> Api:
    return Api(http, server, API_TOKEN)


async def _user(db: psycopg.AsyncConnection, http: aiohttp.ClientSession, server: Server, role: str, unit: Unit) -> Api:
    user = await users.create_user(db, f"a{role}-{secrets.token_hex(3)}", role, unit.id)
    assert user is not None
    return Api(http, server, await tokens.issue(db, user.id, "test", None))


def _person(tree: Tree, code: str, unit: Unit, **more: Any) -> dict[str, Any]:
    """A new person's body: the code made unique, the name the code unless given."""
    return {"code": f"{code}-{tree.tag}", "name": code, "role": "inspector", "unit": unit.id, **more}


# --- staff -------------------------------------------------------------------------------------------


async def test_staff_crud(system: Api, tree: Tree) -> None:
    body = _person(tree, "zs", tree.east, name="张三", team="A", device=tree.phone)
    created = await system.created("/api/staff", body)
    assert {k: v for k, v in created.items() if k != "id"} == {
        "code": body["code"],
        "name": "张三",
        "role": "inspector",
        "unit": {"id": tree.east.id, "code": tree.east.code, "name": "East", "parent_id": tree.city.id},
        "team": "A",
        "device": {"id": tree.phone, "uid": tree.phone_uid},
        "enabled": True,
    }
    staff_id = created["id"]
    assert await system.call("GET", f"/api/staff/{staff_id}") == (200, created)

    status, listed = await system.call("GET", f"/api/staff?q=zs-{tree.tag}&unit={tree.city.id}&role=inspector")
    assert status == 200 and [s["id"] for s in listed["staff"]] == [staff_id] and listed["total"] == 1
    assert (await system.call("GET", f"/api/staff?unit={tree.west.id}&q={tree.tag}"))[1]["staff"] == []
    assert (await system.call("GET", f"/api/staff?unit={tree.east.id}&team=B"))[1]["staff"] == []

    status, changed = await system.call(
        "PATCH", f"/api/staff/{staff_id}", {"name": "张三丰", "role": "officer", "team": "", "device": None}
    )
    assert status == 200, changed
    assert (changed["name"], changed["role"], changed["team"], changed["device"]) == ("张三丰", "officer", None, None)
    assert (await system.call("GET", f"/api/staff?enabled=false&q={tree.tag}"))[1]["staff"] == []

    # Keys that must stay unique, and bad fields.
    assert (await system.call("POST", "/api/staff", body))[0] == 409  # the code
    other = await system.created("/api/staff", _person(tree, "ls", tree.east, device=tree.phone))
    assert (await system.call("PATCH", f"/api/staff/{staff_id}", {"device": tree.phone})) == (
        409,
        {"error": "the device is another person's phone"},
    )
    assert (await system.call("PATCH", f"/api/staff/{other['id']}", {"code": body["code"]}))[0] == 409
    status, error = await system.call("POST", "/api/staff", {**body, "code": "x" + tree.tag, "role": "driver"})
    assert status == 400 and "role" in error["error"]
    assert (await system.call("POST", "/api/staff", {**body, "colour": "red"}))[0] == 400
    assert (await system.call("POST", "/api/staff", {"code": "y" + tree.tag, "role": "officer"}))[0] == 400
    assert (await system.call("PATCH", f"/api/staff/{staff_id}", {}))[0] == 400
    assert (await system.call("GET", "/api/staff/99999999999"))[0] == 404


# --- the plan of a day ------------------------------------------------------------------------------------


async def test_plan_and_the_shifts_of_a_day(
    system: Api, tree: Tree, db: psycopg.AsyncConnection, http: aiohttp.ClientSession, server: Server
) -> None:
    admin = await _user(db, http, server, "admin", tree.east)
    zhang = await admin.created("/api/staff", _person(tree, "zhang", tree.east, team="A", device=tree.phone))
    li = await admin.created("/api/staff", _person(tree, "li", tree.east, team="A"))
    wang = await admin.created("/api/staff", _person(tree, "wang", tree.squad, role="officer"))

    team = await admin.created(
        "/api/shift-patterns",
        {
            "unit": tree.east.id,
            "team": "A",
            "weekdays": [1, 2, 3, 4, 5],
            "start": "08:00",
            "end": "17:00",
            "zone": tree.east_grid,
            "grace_min": 10,
            "valid_from": "2026-01-01",
        },
    )
    assert {k: team[k] for k in ("person", "unit", "team", "weekdays", "start", "end", "zone", "grace_min")} == {
        "person": None,
        "unit": tree.east.id,
        "team": "A",
        "weekdays": [1, 2, 3, 4, 5],
        "start": "08:00",
        "end": "17:00",
        "zone": tree.east_grid,
        "grace_min": 10,
    }
    assert (team["checkin_window_min"], team["absent_after_min"], team["valid_until"]) == (30, 60, None)
    night = await admin.created(
        "/api/shift-patterns",
        {
            "person": wang["id"],
            "code": f"night-{tree.tag}",
            "weekdays": "1-7",
            "start": "22:00",
            "end": "06:00",
            "zone": tree.east_grid,
            "valid_from": "2026-11-01",
        },
    )
    assert night["weekdays"] == [1, 2, 3, 4, 5, 6, 7]
    assert await admin.call("GET", f"/api/shift-patterns/{night['id']}") == (200, night)
    status, listed = await admin.call("GET", f"/api/shift-patterns?person={wang['id']}")
    assert status == 200 and [p["id"] for p in listed["patterns"]] == [night["id"]]

    sick = await admin.created(
        "/api/leave", {"person": li["id"], "from": MONDAY, "to": TUESDAY, "kind": "sick", "note": "flu"}
    )
    assert {k: sick[k] for k in ("person", "from", "to", "kind", "note")} == {
        "person": li["id"],
        "from": MONDAY,
        "to": TUESDAY,
        "kind": "sick",
        "note": "flu",
    }
    holiday = await admin.created("/api/holidays", {"day": MONDAY, "unit": tree.squad.id, "name": "调休"})
    evening = await admin.created(
        "/api/shift-overrides",
        {
            "person": zhang["id"],
            "day": MONDAY,
            "kind": "extra",
            "start": "19:00",
            "end": "21:00",
            "zone": tree.east_grid,
        },
    )
    cancel = await admin.created("/api/shift-overrides", {"person": zhang["id"], "day": TUESDAY, "kind": "cancel"})
    assert (cancel["kind"], cancel["start"], cancel["zone"]) == ("cancel", None, None)

    status, day = await admin.call("GET", f"/api/shifts?date={MONDAY}")
    assert status == 200 and (day["date"], day["timezone"]) == (MONDAY, "Asia/Shanghai")
    assert [(s["person_code"], s["status"], s["start"], s["end"]) for s in day["shifts"]] == [
        (li["code"], "leave", "2026-11-23T00:00:00Z", "2026-11-23T09:00:00Z"),
        (zhang["code"], "planned", "2026-11-23T00:00:00Z", "2026-11-23T09:00:00Z"),
        (zhang["code"], "planned", "2026-11-23T11:00:00Z", "2026-11-23T13:00:00Z"),  # the extra shift
        (wang["code"], "holiday", "2026-11-23T14:00:00Z", "2026-11-23T22:00:00Z"),  # 22:00-06:00 local
    ]
    first = day["shifts"][1]
    assert first == {
        "person_id": zhang["id"],
        "person_code": zhang["code"],
        "person_name": "zhang",
        "org_unit_id": tree.east.id,
        "device_id": tree.phone,
        "day": MONDAY,
        "start": "2026-11-23T00:00:00Z",
        "end": "2026-11-23T09:00:00Z",
        "zone_id": tree.east_grid,
        "grace_min": 10,
        "checkin_window_min": 30,
        "absent_after_min": 60,
        "status": "planned",
        "leave_kind": None,
    }
    assert day["shifts"][0]["leave_kind"] == "sick"
    status, tuesday = await admin.call("GET", f"/api/shifts?date={TUESDAY}&unit={tree.east.id}")
    assert [(s["person_code"], s["status"]) for s in tuesday["shifts"]] == [
        (li["code"], "leave"),
        (zhang["code"], "cancelled"),
        (wang["code"], "planned"),
    ]
    status, squad_only = await admin.call("GET", f"/api/shifts?date={TUESDAY}&unit={tree.squad.id}")
    assert [s["person_code"] for s in squad_only["shifts"]] == [wang["code"]]

    # Lists with date filters.
    status, found = await admin.call("GET", f"/api/shift-overrides?from={MONDAY}&to={MONDAY}")
    assert [o["id"] for o in found["overrides"]] == [evening["id"]]
    status, found = await admin.call("GET", f"/api/shift-overrides?person={zhang['id']}")
    assert [o["id"] for o in found["overrides"]] == [evening["id"], cancel["id"]]
    assert (await admin.call("GET", "/api/leave?from=2026-11-24&to=2026-12-01"))[1]["leave"] == [sick]
    assert (await admin.call("GET", "/api/leave?from=2026-11-25"))[1]["leave"] == []
    assert (await admin.call("GET", f"/api/holidays?from={MONDAY}&to={MONDAY}"))[1]["holidays"] == [holiday]
    assert (await admin.call("GET", "/api/holidays?from=2026-11-24"))[1]["holidays"] == []
    assert (await admin.call("GET", "/api/leave?from=2026-11-24&to=2026-11-01"))[0] == 400

    # Changes: a pattern moves to Saturdays; deleting the leave, holiday and cancel restores the plan.
    status, moved = await admin.call("PATCH", f"/api/shift-patterns/{team['id']}", {"weekdays": [6], "end": "12:00"})
    assert status == 200 and (moved["weekdays"], moved["end"], moved["start"]) == ([6], "12:00", "08:00")
    for path in (f"/api/leave/{sick['id']}", f"/api/holidays/{holiday['id']}", f"/api/shift-overrides/{cancel['id']}"):
        assert (await admin.call("DELETE", path))[0] == 204
        assert (await admin.call("DELETE", path))[0] == 404
    status, day = await admin.call("GET", f"/api/shifts?date={MONDAY}")
    assert [(s["person_code"], s["status"]) for s in day["shifts"]] == [
        (zhang["code"], "planned"),
        (wang["code"], "planned"),
    ]
    assert (await admin.call("DELETE", f"/api/shift-patterns/{night['id']}"))[0] == 204
    assert (await admin.call("GET", f"/api/shift-patterns/{night['id']}"))[0] == 404
    status, refused = await system.call("DELETE", f"/api/zones/{tree.east_grid}")  # the team's shifts use it
    assert status == 409 and "in use" in refused["error"]


async def test_store_planned_and_overlapping(system: Api, tree: Tree, db: psycopg.AsyncConnection) -> None:
    """The two calls the attendance evaluator and reports read the plan with."""
    night = await system.created("/api/staff", _person(tree, "night", tree.squad))
    day = await system.created("/api/staff", _person(tree, "day", tree.east))
    away = await system.created("/api/staff", _person(tree, "away", tree.west))
    common = {"valid_from": "2026-11-01", "zone": tree.east_grid}
    await system.created(
        "/api/shift-patterns", {**common, "person": night["id"], "weekdays": "1-7", "start": "22:00", "end": "06:00"}
    )
    for person in (day, away):
        await system.created(
            "/api/shift-patterns",
            {**common, "person": person["id"], "weekdays": "1-5", "start": "08:00", "end": "17:00"},
        )
    await system.created("/api/leave", {"person": away["id"], "from": MONDAY, "to": MONDAY, "kind": "annual"})
    mine = {night["id"], day["id"], away["id"]}
    tz = ZoneInfo("Asia/Shanghai")

    # 05:00 to 09:00 local on Monday: Sunday's night shift is still on, Monday's day shift has begun;
    # the one on leave is left out.
    window = (datetime(2026, 11, 22, 21, tzinfo=UTC), datetime(2026, 11, 23, 1, tzinfo=UTC))
    found = [s for s in await attendance.planned_overlapping(db, *window, tz) if s.person_id in mine]
    assert [(s.person_id, s.day.isoformat(), s.start, s.end, s.status) for s in found] == [
        (night["id"], "2026-11-22", datetime(2026, 11, 22, 14, tzinfo=UTC), window[1] - timedelta(hours=3), "planned"),
        (day["id"], MONDAY, window[1] - timedelta(hours=1), datetime(2026, 11, 23, 9, tzinfo=UTC), "planned"),
    ]
    # Half-open: a window that ends as a shift starts does not take it.
    found = await attendance.planned_overlapping(db, window[0], window[1] - timedelta(hours=1), tz)
    assert [s.person_id for s in found if s.person_id in mine] == [night["id"]]

    monday = date(2026, 11, 23)
    everyone = [s for s in await attendance.planned(db, monday, tz, None) if s.person_id in mine]
    assert [(s.person_id, s.status, s.leave_kind) for s in everyone] == [
        (away["id"], "leave", "annual"),
        (day["id"], "planned", None),
        (night["id"], "planned", None),
    ]
    east = await attendance.planned(db, monday, tz, [tree.east.id, tree.squad.id])
    assert {s.person_id for s in east} == {day["id"], night["id"]}


async def test_validation(system: Api, tree: Tree) -> None:
    person = await system.created("/api/staff", _person(tree, "zhao", tree.east))
    pattern = {"person": person["id"], "weekdays": [1], "start": "08:00", "end": "17:00", "zone": tree.east_grid}
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/api/shift-patterns", {**pattern, "zone": tree.east_depot}, "not a duty_grid"),
        ("/api/shift-patterns", {**pattern, "zone": 99999999}, "no zone"),
        ("/api/shift-patterns", {**pattern, "weekdays": [0, 8]}, "weekdays"),
        ("/api/shift-patterns", {**pattern, "weekdays": "5-1"}, "weekdays"),
        ("/api/shift-patterns", {**pattern, "start": "8am"}, "start"),
        ("/api/shift-patterns", {**pattern, "grace_min": -1}, "grace_min"),
        ("/api/shift-patterns", {**pattern, "valid_from": "2026-12-01", "valid_until": "2026-11-01"}, "before"),
        ("/api/shift-patterns", {**pattern, "unit": tree.east.id, "team": "A"}, "not both"),
        ("/api/shift-patterns", {k: v for k, v in pattern.items() if k != "person"}, "not both"),
        ("/api/shift-patterns", {**pattern, "person": 99999999}, "no person"),
        ("/api/shift-overrides", {"person": person["id"], "day": MONDAY, "kind": "extra", "start": "08:00"}, "needs"),
        ("/api/shift-overrides", {"person": person["id"], "day": MONDAY, "kind": "cancel", "end": "09:00"}, "no start"),
        ("/api/shift-overrides", {"person": person["id"], "day": MONDAY, "kind": "replace"}, "some of"),
        ("/api/shift-overrides", {"person": person["id"], "day": "23.11.2026", "kind": "cancel"}, "day"),
        ("/api/leave", {"person": person["id"], "from": TUESDAY, "to": MONDAY, "kind": "sick"}, "before"),
        ("/api/leave", {"person": person["id"], "from": MONDAY, "to": MONDAY, "kind": "two words"}, "kind"),
        ("/api/holidays", {"day": "2026-02-30"}, "day"),
    ]
    for path, body, reason in cases:
        status, answer = await system.call("POST", path, body)
        assert status == 400 and reason in answer["error"], (body, answer)

    created = await system.created("/api/shift-patterns", pattern)
    assert created["valid_from"]  # today, local
    status, answer = await system.call("PATCH", f"/api/shift-patterns/{created['id']}", {"valid_until": "2000-01-01"})
    assert status == 400 and "before" in answer["error"]
    assert (await system.call("PATCH", f"/api/shift-patterns/{created['id']}", {"person": 1}))[0] == 400
    replace = {"person": person["id"], "day": MONDAY, "kind": "replace", "zone": tree.east_grid}
    await system.created("/api/shift-overrides", replace)
    assert (await system.call("POST", "/api/shift-overrides", {**replace, "kind": "cancel", "zone": None}))[0] == 409
    await system.created("/api/holidays", {"day": "2031-01-01", "name": "元旦"})
    assert (await system.call("POST", "/api/holidays", {"day": "2031-01-01"}))[0] == 409
    assert (await system.call("GET", "/api/shifts"))[0] == 400
    assert (await system.call("GET", "/api/shifts?date=tomorrow"))[0] == 400


async def test_unit_scope_and_roles(
    system: Api, tree: Tree, db: psycopg.AsyncConnection, http: aiohttp.ClientSession, server: Server
) -> None:
    east_person = await system.created("/api/staff", _person(tree, "east", tree.east))
    west_person = await system.created("/api/staff", _person(tree, "west", tree.west))
    weekly = {"weekdays": [1], "start": "08:00", "end": "17:00", "valid_from": "2026-01-01"}
    east_pattern = await system.created(
        "/api/shift-patterns", {**weekly, "person": east_person["id"], "zone": tree.east_grid}
    )
    await system.created("/api/shift-patterns", {**weekly, "person": west_person["id"], "zone": tree.west_grid})
    east_leave = await system.created(
        "/api/leave", {"person": east_person["id"], "from": MONDAY, "to": MONDAY, "kind": "annual"}
    )
    everyone = await system.created("/api/holidays", {"day": "2032-05-01", "name": "劳动节"})
    city_holiday = await system.created("/api/holidays", {"day": "2032-05-02", "unit": tree.city.id})
    west_holiday = await system.created("/api/holidays", {"day": "2032-05-03", "unit": tree.west.id})

    west = await _user(db, http, server, "admin", tree.west)
    for path in (f"/api/staff/{east_person['id']}", f"/api/shift-patterns/{east_pattern['id']}"):
        status, answer = await west.call("GET", path)
        assert status == 404, answer
    assert (await west.call("PATCH", f"/api/staff/{east_person['id']}", {"name": "x"}))[0] == 404
    assert (await west.call("PATCH", f"/api/shift-patterns/{east_pattern['id']}", {"start": "09:00"}))[0] == 404
    assert (await west.call("DELETE", f"/api/shift-patterns/{east_pattern['id']}"))[0] == 404
    assert (await west.call("DELETE", f"/api/leave/{east_leave['id']}"))[0] == 404
    assert [s["id"] for s in (await west.call("GET", f"/api/staff?q={tree.tag}"))[1]["staff"]] == [west_person["id"]]
    assert (await west.call("GET", "/api/leave"))[1]["leave"] == []
    status, day = await west.call("GET", f"/api/shifts?date={MONDAY}")
    assert [s["person_id"] for s in day["shifts"]] == [west_person["id"]]
    # Someone else's person, grid or unit cannot be used.
    status, answer = await west.call(
        "POST", "/api/shift-patterns", {**weekly, "person": east_person["id"], "zone": tree.west_grid}
    )
    assert status == 400 and "no person" in answer["error"]
    status, answer = await west.call(
        "POST", "/api/shift-patterns", {**weekly, "person": west_person["id"], "zone": tree.east_grid}
    )
    assert status == 400 and "no zone" in answer["error"]
    assert (await west.call("POST", "/api/staff", _person(tree, "w2", tree.east)))[0] == 400
    assert (await west.call("POST", "/api/staff", {**_person(tree, "w3", tree.west), "unit": None}))[0] == 400
    assert (await west.call("POST", "/api/holidays", {"day": "2032-06-01"}))[0] == 400  # every unit: not a west admin's
    # Holidays that apply to west: every unit's, the city's (above west) and west's own; only west's own is theirs.
    status, listed = await west.call("GET", "/api/holidays?from=2032-01-01&to=2032-12-31")
    assert [h["id"] for h in listed["holidays"]] == [everyone["id"], city_holiday["id"], west_holiday["id"]]
    assert (await west.call("DELETE", f"/api/holidays/{everyone['id']}"))[0] == 403
    assert (await west.call("DELETE", f"/api/holidays/{city_holiday['id']}"))[0] == 403
    east = await _user(db, http, server, "admin", tree.east)
    assert (await east.call("DELETE", f"/api/holidays/{west_holiday['id']}"))[0] == 404  # not east's at all
    assert (await west.call("DELETE", f"/api/holidays/{west_holiday['id']}"))[0] == 204

    # Dispatchers and auditors read; only admins write.
    for role in ("auditor", "dispatcher"):
        reader = await _user(db, http, server, role, tree.east)
        assert (await reader.call("GET", f"/api/staff/{east_person['id']}"))[0] == 200
        assert (await reader.call("GET", f"/api/shifts?date={MONDAY}"))[0] == 200
        assert (await reader.call("POST", "/api/staff", _person(tree, role, tree.east)))[0] == 403
        assert (await reader.call("DELETE", f"/api/leave/{east_leave['id']}"))[0] == 403


def test_every_route_is_described() -> None:
    paths = {r.path.replace(r"{id:\d+}", "{id}") for r in admin_routes.routes()}  # type: ignore[attr-defined]
    assert len(paths) == 11 and paths <= set(openapi.PATHS)


# --- the CSV imports ---------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(fresh_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("TELEMATICS_DSN", fresh_database)
    monkeypatch.delenv("TELEMATICS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./telematics.toml from elsewhere
    return tmp_path


def _setup(dsn: str, tag: str) -> None:
    """A unit, two phones, a duty grid and a depot, all with codes of this tag."""
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO org_units (code, name) VALUES (%s, 'Import unit')", (f"u-{tag}",))
        for uid in (f"p1-{tag}", f"p2-{tag}"):
            conn.execute("INSERT INTO devices (uid, kind) VALUES (%s, 'inspector')", (uid,))
        for code, kind in ((f"g-{tag}", "duty_grid"), (f"d-{tag}", "depot")):
            conn.execute(
                "INSERT INTO zones (code, kind, shape) VALUES (%s, %s::zone_kind, %s)", (code, kind, Jsonb(SQUARE))
            )


def _rows(dsn: str, sql: str, tag: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, (f"%{tag}",)).fetchall()  # type: ignore[arg-type]


STAFF_SQL = (
    "SELECT s.code, s.name, s.role::text, u.code, s.team, d.uid, s.enabled FROM staff s"
    " LEFT JOIN org_units u ON u.id = s.org_unit_id LEFT JOIN devices d ON d.id = s.device_id"
    " WHERE s.code LIKE %s ORDER BY s.code"
)
PATTERN_SQL = (
    "SELECT p.code, s.code, u.code, p.team, p.weekdays, p.start_local::text, p.end_local::text, z.code, p.grace_min,"
    " p.checkin_window_min, p.absent_after_min, p.valid_from::text, p.valid_until::text FROM shift_patterns p"
    " LEFT JOIN staff s ON s.id = p.staff_id LEFT JOIN org_units u ON u.id = p.org_unit_id"
    " JOIN zones z ON z.id = p.zone_id WHERE p.code LIKE %s ORDER BY p.code"
)


def test_import_staff_and_shifts(cli_env: Path, fresh_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    tag = secrets.token_hex(3)
    _setup(fresh_database, tag)
    staff = cli_env / "staff.csv"
    staff.write_text(
        "code,name,role,unit,team,device,enabled\n"
        f"a-{tag},张三,inspector,u-{tag},一组,p1-{tag},\n"
        f"b-{tag},李四,officer,u-{tag},一组,p2-{tag},true\n"
        f"c-{tag},王五,officer,,,,no\n",
        encoding="utf-8",
    )
    assert main(["import", "staff", str(staff)]) == 0
    assert "imported 3 staff" in capsys.readouterr().out
    assert _rows(fresh_database, STAFF_SQL, tag) == [
        (f"a-{tag}", "张三", "inspector", f"u-{tag}", "一组", f"p1-{tag}", True),
        (f"b-{tag}", "李四", "officer", f"u-{tag}", "一组", f"p2-{tag}", True),
        (f"c-{tag}", "王五", "officer", None, None, None, False),
    ]
    # Again, with the two phones swapped and a new name: updated in place by code.
    staff.write_text(
        f"code,name,role,unit,team,device\na-{tag},张三丰,inspector,u-{tag},一组,p2-{tag}\n"
        f"b-{tag},李四,officer,u-{tag},一组,p1-{tag}\n",
        encoding="utf-8",
    )
    assert main(["import", "staff", str(staff)]) == 0
    assert [r[:2] + r[5:6] for r in _rows(fresh_database, STAFF_SQL, tag)] == [
        (f"a-{tag}", "张三丰", f"p2-{tag}"),
        (f"b-{tag}", "李四", f"p1-{tag}"),
        (f"c-{tag}", "王五", None),
    ]

    shifts = cli_env / "shifts.csv"
    shifts.write_text(
        "code,person,unit,team,weekdays,start,end,grid,grace_min,checkin_window_min,absent_after_min,"
        "valid_from,valid_until\n"
        f"day-{tag},,u-{tag},一组,1-5,08:00,17:00,g-{tag},,,,2026-01-01,\n"
        f'night-{tag},c-{tag},,,"1,3,5",22:00,06:00,g-{tag},10,20,45,2026-01-01,2026-12-31\n',
        encoding="utf-8",
    )
    assert main(["import", "shifts", str(shifts)]) == 0
    assert "imported 2 shifts" in capsys.readouterr().out
    grid = f"g-{tag}"
    expected = [
        (
            f"day-{tag}",
            None,
            f"u-{tag}",
            "一组",
            [1, 2, 3, 4, 5],
            "08:00:00",
            "17:00:00",
            grid,
            5,
            30,
            60,
            "2026-01-01",
            None,
        ),
        (
            f"night-{tag}",
            f"c-{tag}",
            None,
            None,
            [1, 3, 5],
            "22:00:00",
            "06:00:00",
            grid,
            10,
            20,
            45,
            "2026-01-01",
            "2026-12-31",
        ),
    ]
    assert _rows(fresh_database, PATTERN_SQL, tag) == expected
    # Again, leaving valid_from out: kept, not moved to today.
    shifts.write_text(f"code,unit,team,weekdays,start,end,grid\nday-{tag},u-{tag},一组,6,09:00,12:00,g-{tag}\n")
    assert main(["import", "shifts", str(shifts)]) == 0
    day = _rows(fresh_database, PATTERN_SQL, tag)[0]
    assert (day[4], day[5], day[11]) == ([6], "09:00:00", "2026-01-01")
    assert len(_rows(fresh_database, PATTERN_SQL, tag)) == 2


def test_bad_lines_are_reported_and_nothing_is_imported(
    cli_env: Path, fresh_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = secrets.token_hex(3)
    _setup(fresh_database, tag)
    staff = cli_env / "staff.csv"
    staff.write_text(
        "code,name,role,unit,device\n"
        f"a-{tag},张三,inspector,u-{tag},p1-{tag}\n"  # line 2: good
        f"b-{tag},李四,driver,u-{tag},\n"  # line 3
        f"c-{tag},王五,officer,nowhere-{tag},\n"  # line 4
        f"d-{tag},赵六,officer,,p1-{tag}\n"  # line 5: the phone of line 2
        f"e-{tag},,officer,,\n"  # line 6
        f"a-{tag},again,officer,,\n",  # line 7
        encoding="utf-8",
    )
    assert main(["import", "staff", str(staff)]) == 1
    err = capsys.readouterr().err
    assert f"{staff}:3: role must be one of inspector, officer" in err
    assert f"{staff}:4: unit 'nowhere-{tag}' does not exist" in err
    assert f"{staff}:5: device 'p1-{tag}' is the phone of line 2 already" in err
    assert f"{staff}:6: name is empty" in err
    assert f"{staff}:7: code 'a-{tag}' repeats line 2" in err
    assert "nothing imported (5 bad rows)" in err
    assert _rows(fresh_database, STAFF_SQL, tag) == []

    staff.write_text(f"code,name,role,device\na-{tag},张三,inspector,p1-{tag}\n", encoding="utf-8")
    assert main(["import", "staff", str(staff)]) == 0
    staff.write_text(f"code,name,role,device\nb-{tag},李四,officer,p1-{tag}\n", encoding="utf-8")
    assert main(["import", "staff", str(staff)]) == 1
    assert f"{staff}:2: device 'p1-{tag}' is the phone of 'a-{tag}', who is not in this file" in capsys.readouterr().err

    shifts = cli_env / "shifts.csv"
    shifts.write_text(
        "code,person,unit,team,weekdays,start,end,grid,grace_min,valid_from,valid_until\n"
        f"ok-{tag},a-{tag},,,1-5,08:00,17:00,g-{tag},,,\n"  # line 2: good
        f"s3-{tag},a-{tag},u-{tag},一组,1-5,08:00,17:00,g-{tag},,,\n"  # line 3: both
        f"s4-{tag},nobody-{tag},,,1-5,08:00,17:00,g-{tag},,,\n"  # line 4
        f"s5-{tag},a-{tag},,,8,08:00,17:00,g-{tag},,,\n"  # line 5
        f"s6-{tag},a-{tag},,,1,25:00,17:00,g-{tag},,,\n"  # line 6
        f"s7-{tag},a-{tag},,,1,08:00,17:00,d-{tag},,,\n"  # line 7: a depot
        f"s8-{tag},a-{tag},,,1,08:00,17:00,g-{tag},-5,,\n"  # line 8
        f"s9-{tag},a-{tag},,,1,08:00,17:00,g-{tag},,2026-05-01,2026-04-01\n"  # line 9
        f"s10-{tag},,u-{tag},,1,08:00,17:00,g-{tag},,,\n",  # line 10: a unit without a team
        encoding="utf-8",
    )
    assert main(["import", "shifts", str(shifts)]) == 1
    err = capsys.readouterr().err
    assert f"{shifts}:3: give a person, or a unit and a team (not both)" in err
    assert f"{shifts}:4: person 'nobody-{tag}' does not exist" in err
    assert f"{shifts}:5: weekdays must be" in err
    assert f"{shifts}:6: start must be a local time" in err
    assert f"{shifts}:7: grid 'd-{tag}' is a depot zone, not a duty_grid" in err
    assert f"{shifts}:8: grace_min must be whole minutes" in err
    assert f"{shifts}:9: valid_until 2026-04-01 is before valid_from 2026-05-01" in err
    assert f"{shifts}:10: a team's pattern needs both unit and team" in err
    assert "nothing imported (8 bad rows)" in err
    assert ":2:" not in err
    assert _rows(fresh_database, PATTERN_SQL, tag) == []
