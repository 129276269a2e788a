"""The auditors' track replay page through the real server: a JT/T 808 terminal drives a known route (east, a stop of
six minutes, north with the emergency button held for three fixes, an outlier and a fix without position on the
way); an auditor picks the device on /replay, loads the range and sees the summary, the stop, the alert and the
excluded fixes greyed; plays it back at 64x, scrubs to moments and reads the time, speed and place the track has
there; exports it with the token kept out of every address. On a GCJ-02 basemap the track (converted by the server)
and the alert (converted by the page) line up. And the live map's counts of the people on duty now."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import psycopg
import pytest
from playwright.async_api import Browser, Page, Request, Route

from access import passwords
from geofence import crs
from store import devices, users
from store.devices import DeviceRecord, OrgUnitRecord
from store.positions import PositionWriter
from telematics.server import Server
from tests.conftest import API_TOKEN
from tests.replay.synthetic import Builder
from tests.terminal import Terminal, registered_terminal
from tests.web.browser import Watch, screenshot

LOCAL = ZoneInfo("Asia/Shanghai")  # the browser's zone in these tests (and attendance.timezone's default)
EAST_M, NORTH_M = 3000.0, 4500.0  # the two legs: 36 km/h east, then 54 km/h north
ALARM = range(25, 28)  # fixes with the emergency button held (of the route's 33)
RENDERED = """(layer) => window.fleetMap.queryRenderedFeatures({layers: [layer]}).map((f) => f.geometry.coordinates)"""
PROJECT = "(p) => { const q = window.fleetMap.project(p); return [q.x, q.y]; }"
NEAR = """([layer, lon, lat]) => window.fleetMap.queryRenderedFeatures({layers: [layer]})
  .some((f) => Math.abs(f.geometry.coordinates[0] - lon) < 1e-5 && Math.abs(f.geometry.coordinates[1] - lat) < 1e-5)"""


@dataclass
class Drive:
    device_id: int
    uid: str
    route: Builder  # the clean fixes, 30 s apart
    outliers: list[tuple[float, float]]  # (lat, lon) of the excluded fixes: a jump and one without position
    alert: dict[str, Any]
    auditor: tuple[str, str]  # name, password

    def at(self, i: int) -> datetime:
        return self.route.start + timedelta(seconds=self.route.seconds[i])

    @property
    def end(self) -> datetime:
        return self.at(self.route.last)


def _local(t: datetime, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return t.astimezone(LOCAL).strftime(fmt)


async def _api(server: Server, method: str, path: str, body: Any = None, token: str = API_TOKEN) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{server.ports['api']}{path}"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.request(method, url, json=body) as r,
    ):
        return r.status, await r.json() if r.content_type == "application/json" else None


async def _unit_and_user(db: psycopg.AsyncConnection, role: str) -> tuple[int, str, str]:
    """A root unit of its own and a user of it: (unit id, name, password)."""
    tag = secrets.token_hex(3)
    await devices.upsert_units(db, [OrgUnitRecord(f"replay-{tag}", "审计测试单位")])
    unit = await users.unit_by_code(db, f"replay-{tag}")
    assert unit is not None
    name, password = f"{role}-{tag}", secrets.token_urlsafe(12)
    assert await users.create_user(db, name, role, unit.id, passwords.hash_password(password)) is not None
    return unit.id, name, password


async def _send(t: Terminal, at: datetime, lat: float, lon: float, **kw: Any) -> None:
    serial = await t.report(at, lat, lon, **kw)
    assert (await t.general_response())[0] == serial


async def _drive(server: Server, db: psycopg.AsyncConnection) -> Drive:
    """The route reported fix by fix, in time order, ending about an hour ago; its SOS alert once written."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1, minutes=30)
    route = Builder(start).move(0, EAST_M, 300).stay(360).move(NORTH_M, 0, 300)
    assert route.last == 32
    unit_id, name, password = await _unit_and_user(db, "auditor")
    t, device_id = await registered_terminal(db, server.ports["jt808"], kind="other", prefix="16")
    status, device = await _api(server, "PATCH", f"/api/devices/{device_id}", {"unit": unit_id})
    assert status == 200, device
    jump = (route.lat[5] + 0.02, route.lon[5])  # 2.2 km off in 15 s
    nowhere = (route.lat[7] + 0.001, route.lon[7])  # the terminal says it has no position
    try:
        for i in range(route.last + 1):
            at = route.start + timedelta(seconds=route.seconds[i])
            await _send(t, at, route.lat[i], route.lon[i], speed_kmh=route.speed[i], alarm=int(i in ALARM))
            if i == 5:
                await _send(t, at + timedelta(seconds=15), *jump, speed_kmh=36.0)
            if i == 7:
                await _send(t, at + timedelta(seconds=15), *nowhere, speed_kmh=0.0, valid=False)
    finally:
        await t.close()
    deadline = asyncio.get_running_loop().time() + 10
    while True:  # raised at the first fix with the button held, ended at the first without
        status, doc = await _api(server, "GET", f"/api/alerts?device={device_id}")
        assert status == 200
        if (doc["alerts"] and doc["alerts"][0]["ended"]) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    (alert,) = doc["alerts"]
    assert alert["kind"] == "alarm" and alert["severity"] == 4
    return Drive(device_id, device["uid"], route, [jump, nowhere], alert, (name, password))


@pytest.fixture
async def local_page(browser: Browser, watch: Watch) -> AsyncIterator[Page]:
    """A page whose browser lives in Shanghai time, so "local" in the page is checked against a known zone."""
    context = await browser.new_context(
        viewport={"width": 1400, "height": 860}, locale="zh-CN", timezone_id=LOCAL.key, accept_downloads=True
    )
    await watch.attach(context)
    page = await context.new_page()
    page.set_default_timeout(15000)
    watch.page(page)
    yield page
    await context.close()


async def _login(page: Page, name: str, password: str) -> None:
    await page.get_by_test_id("login-name").fill(name)
    await page.get_by_test_id("login-password").fill(password)
    await page.get_by_test_id("login-submit").click()
    await page.get_by_test_id("login").wait_for(state="hidden")


async def _open(page: Page, server: Server, drive: Drive) -> None:
    await page.goto(f"http://127.0.0.1:{server.ports['api']}/replay")
    await _login(page, *drive.auditor)


async def _pick_and_load(page: Page, drive: Drive) -> None:
    """The device found by the end of its number, the range from ten minutes before the route to ten after."""
    await page.get_by_test_id("replay-device-search").fill(drive.uid[-6:])
    await page.get_by_test_id(f"replay-device-item-{drive.device_id}").click()
    assert await page.get_by_test_id("replay-device").get_attribute("data-id") == str(drive.device_id)
    start, end = drive.route.start - timedelta(minutes=10), drive.end + timedelta(minutes=10)
    await page.get_by_test_id("replay-from").fill(_local(start, "%Y-%m-%dT%H:%M"))
    await page.get_by_test_id("replay-to").fill(_local(end, "%Y-%m-%dT%H:%M"))
    await page.get_by_test_id("replay-load").click()
    await page.locator("[data-testid=map][data-loaded=true]").wait_for(state="attached")


async def _vehicle_at(page: Page, lat: float, lon: float) -> None:
    await page.wait_for_function(NEAR, arg=["replay-vehicle", lon, lat])


async def _shown(page: Page) -> tuple[str, str, int]:
    """The time and speed shown, and the track time (ms) they are of."""
    clock = page.get_by_test_id("replay-time")
    return (
        await clock.inner_text(),
        await page.get_by_test_id("replay-speed-now").inner_text(),
        int(await clock.get_attribute("data-time") or 0),
    )


async def test_auditor_replays_a_day_with_its_stop_and_alert(
    server: Server, db: psycopg.AsyncConnection, local_page: Page, watch: Watch, tmp_path: Path
) -> None:
    page = local_page
    drive = await _drive(server, db)
    route = drive.route
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))

    await _open(page, server, drive)
    await page.wait_for_function(  # the name comes with /api/me, after the login form has closed
        "(name) => document.querySelector('[data-testid=user-name]').textContent.includes(name)", arg=drive.auditor[0]
    )
    assert await page.get_by_test_id("nav-live").get_attribute("href") == "/"
    # The range asked by default: yesterday, midnight to midnight, local time.
    today = datetime.now(LOCAL).date()
    assert await page.get_by_test_id("replay-from").input_value() == f"{today - timedelta(days=1)}T00:00"
    assert await page.get_by_test_id("replay-to").input_value() == f"{today}T00:00"
    assert await page.get_by_test_id("replay-points").input_value() == "5000"
    await _pick_and_load(page, drive)

    # The summary: 7.5 km in two trips around one stop, one alert, two fixes excluded.
    async def value(testid: str) -> float:
        return float(await page.get_by_test_id(testid).get_attribute("data-value") or "nan")

    assert await value("summary-distance") == pytest.approx((EAST_M + NORTH_M) / 1000, rel=0.01)
    assert await value("summary-trips") == 2
    assert await value("summary-stops") == 1
    assert await value("summary-alerts") == 1
    assert await value("summary-excluded") == 2
    assert await value("summary-max-speed") == pytest.approx(54.0, abs=0.1)
    excluded_text = await page.get_by_test_id("summary-excluded").inner_text()
    assert "跳点 1" in excluded_text and "无效定位 1" in excluded_text

    # On the map: the stop where it stood, the alert where the button was pressed (severity colour), the two
    # excluded fixes as grey dots, none of them part of the line.
    first = ALARM[0]
    await page.wait_for_function(NEAR, arg=["replay-stops", route.lon[10], route.lat[10]])
    await page.wait_for_function(NEAR, arg=["replay-alerts", route.lon[first], route.lat[first]])
    for lat, lon in drive.outliers:
        await page.wait_for_function(NEAR, arg=["replay-excluded", lon, lat])
    assert len(await page.evaluate(RENDERED, "replay-alerts")) == 1
    assert len(await page.evaluate(RENDERED, "replay-stops")) == 1
    line = [p for f in await page.evaluate(RENDERED, "replay-line") for p in f]
    for lat, lon in drive.outliers:
        assert all(math.dist(p, (lon, lat)) > 1e-4 for p in line)
    assert await page.get_by_test_id(f"event-alert-{drive.alert['id']}").is_visible()
    assert await page.get_by_test_id(f"tick-alert-{drive.alert['id']}").is_visible()
    assert await page.get_by_test_id("tick-stop-0").is_visible()

    # The stop's duration on hover.
    box = await page.locator("#map canvas").bounding_box()
    assert box is not None
    x, y = await page.evaluate(PROJECT, [route.lon[10], route.lat[10]])
    await page.mouse.move(box["x"] + x, box["y"] + y)
    tip = page.get_by_test_id("replay-tip-stop")
    await tip.wait_for()
    assert "停留 6分00秒" in await tip.inner_text()
    await page.mouse.move(box["x"] + 5, box["y"] + 5)
    await tip.wait_for(state="detached")

    # At the start: the first fix, standing.
    assert await _shown(page) == (_local(route.start), "0.0 km/h", int(route.start.timestamp() * 1000))
    await _vehicle_at(page, route.lat[0], route.lon[0])

    # Played at 64x the clock runs and the vehicle moves east; paused, both hold still.
    await page.get_by_test_id("replay-rate").select_option("64")
    await page.get_by_test_id("replay-play").click()
    assert await page.get_by_test_id("replay-play").get_attribute("data-state") == "playing"
    t0 = int(route.start.timestamp() * 1000)
    await page.wait_for_function(
        f"() => Number(document.querySelector('[data-testid=replay-time]').dataset.time) >= {t0 + 45_000}"
    )
    await page.get_by_test_id("replay-play").click()
    assert await page.get_by_test_id("replay-play").get_attribute("data-state") == "paused"
    _, _, paused_at = await _shown(page)
    assert t0 + 45_000 <= paused_at < t0 + 300_000  # still on the first leg
    await page.wait_for_timeout(300)
    assert (await _shown(page))[2] == paused_at
    moved = (paused_at - t0) / 300_000 * EAST_M  # metres east by then, at 36 km/h
    (vehicle,) = await page.evaluate(RENDERED, "replay-vehicle")
    assert vehicle[0] > route.lon[0] + 0.5 * moved / 111_000  # well east of the start
    assert vehicle[1] == pytest.approx(route.lat[0], abs=1e-5)

    # Scrubbed to a fix of the northern leg: its time, speed and place.
    async def scrub(at: datetime) -> None:
        await page.get_by_test_id("replay-timeline").fill(str(int((at - route.start).total_seconds())))

    await scrub(drive.at(27))
    assert await _shown(page) == (_local(drive.at(27)), "54.0 km/h", int(drive.at(27).timestamp() * 1000))
    await _vehicle_at(page, route.lat[27], route.lon[27])
    # Half-way from the end of the stop to the next fix: half-way there, at half the speed.
    half = drive.at(22) + timedelta(seconds=15)
    await scrub(half)
    assert (await _shown(page))[:2] == (_local(half), "27.0 km/h")
    await _vehicle_at(page, (route.lat[22] + route.lat[23]) / 2, (route.lon[22] + route.lon[23]) / 2)
    # A click on the alert's tick goes to its start.
    await page.get_by_test_id(f"tick-alert-{drive.alert['id']}").click()
    assert (await _shown(page))[0] == _local(drive.at(first))
    await _vehicle_at(page, route.lat[first], route.lon[first])

    await page.screenshot(path=str(tmp_path / "replay.png"))
    await screenshot(page, "replay")

    # Exports: the files come down with the token in a header, never in an address.
    token = await page.evaluate("sessionStorage.getItem('telematics.token')")
    assert token
    for testid, suffix, marker in (
        ("export-gpx", ".gpx", "<gpx"),
        ("export-csv", ".csv", "excluded"),
        ("export-geojson", ".geojson", "FeatureCollection"),
        ("export-trips-csv", ".csv", "max_speed_kmh"),
    ):
        async with page.expect_download() as info:
            await page.get_by_test_id(testid).click()
        download = await info.value
        assert download.suggested_filename.startswith(f"device-{drive.device_id}-")
        assert download.suggested_filename.endswith(suffix)
        assert marker in await asyncio.to_thread(Path(await download.path()).read_text)
    assert not [u for u in urls if token in u]

    # The server recorded every call of the page.
    status, doc = await _api(server, "GET", f"/api/audit?user={drive.auditor[0]}")
    assert status == 200
    actions = {e["action"] for e in doc["entries"]}
    assert {"replay.track", "replay.trips", "export.gpx", "export.csv", "export.geojson"} <= actions
    watch.check()


async def test_on_a_gcj02_basemap_track_and_alert_line_up(
    server: Server, db: psycopg.AsyncConnection, local_page: Page, watch: Watch
) -> None:
    """The track comes converted by the server (crs=gcj02); the alert's evidence is WGS-84 and the page moves it."""
    page = local_page
    drive = await _drive(server, db)

    async def gcj02_config(route: Route, request: Request) -> None:
        response = await route.fetch()
        config = await response.json()
        await route.fulfill(response=response, json={**config, "crs": "gcj02"})

    await page.route("**/map-config.json", gcj02_config)
    await _open(page, server, drive)
    await _pick_and_load(page, drive)
    tracks = [r for r in watch.responses if r[0] == f"/api/devices/{drive.device_id}/track"]
    assert tracks and all(status == 200 for _, status, _ in tracks)
    first = ALARM[0]
    lat, lon = crs.wgs84_to_gcj02(drive.route.lat[first], drive.route.lon[first])
    assert abs(lon - drive.route.lon[first]) > 1e-3  # moved by some 500 m
    await page.wait_for_function(NEAR, arg=["replay-alerts", lon, lat])
    await page.get_by_test_id(f"event-alert-{drive.alert['id']}").click()
    await _vehicle_at(page, lat, lon)  # the track's own fix, converted by the server, under the alert
    watch.check()


async def test_a_long_track_is_simplified_to_the_budget_and_comes_raw_on_request(
    server: Server, db: psycopg.AsyncConnection, local_page: Page, watch: Watch
) -> None:
    """1,121 fixes (one of them an outlier) over the 1,000-point budget: the line is simplified and says so, the
    outlier is counted but not listed; asked raw, every fix comes and the outlier shows greyed."""
    page = local_page
    unit_id, name, password = await _unit_and_user(db, "auditor")
    uid = "replay-" + secrets.token_hex(4)
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind="muck", name="渣土车")])
    device = await devices.by_uid(db, uid)
    assert device is not None
    assert (await _api(server, "PATCH", f"/api/devices/{device.id}", {"unit": unit_id}))[0] == 200
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    route = Builder(start, every_s=5).move(0, 8000, 2000).stay(600).move(8000, 0, 2000).move(0, -4000, 1000)
    batch = route.batch(device.id)
    batch.lat[50] += 0.02  # 2.2 km off in 5 s
    assert await PositionWriter(db).write(batch) == 1121
    drive = Drive(device.id, uid, route, [(float(batch.lat[50]), route.lon[50])], {}, (name, password))

    await _open(page, server, drive)
    await page.get_by_test_id("replay-points").select_option("1000")
    await _pick_and_load(page, drive)
    note = await page.get_by_test_id("summary-note").inner_text()
    shown = int(note.split("简化显示 ")[1].split(" /")[0])
    assert "/ 1121 点" in note and 1000 <= shown < 1100, note
    assert "剔除点只在原始轨迹中列出" in note
    assert await page.get_by_test_id("summary-excluded").get_attribute("data-value") == "1"
    assert await page.get_by_test_id("summary-stops").get_attribute("data-value") == "1"
    assert await page.evaluate(RENDERED, "replay-excluded") == []

    await page.get_by_test_id("replay-points").select_option("raw")
    await page.get_by_test_id("replay-load").click()
    await page.wait_for_function(NEAR, arg=["replay-excluded", route.lon[50], float(batch.lat[50])])
    assert await page.get_by_test_id("summary-note").inner_text() == ""
    status, doc = await _api(server, "GET", f"/api/audit?user={name}&action=replay.track")
    assert status == 200
    assert [e["target"].get("points") for e in reversed(doc["entries"])] == ["1000", None]
    watch.check()


async def test_live_map_shows_the_people_on_duty(
    server: Server, db: psycopg.AsyncConnection, page: Page, watch: Watch
) -> None:
    unit_id, name, password = await _unit_and_user(db, "dispatcher")
    tag = secrets.token_hex(3)
    where = {"lat": 22.5431, "lon": 114.0579}
    status, grid = await _api(
        server,
        "POST",
        "/api/zones",
        {"shape": {"circle": {**where, "radius_m": 300}}, "kind": "duty_grid", "code": f"grid-{tag}", "unit": unit_id},
    )
    assert status == 201, grid
    phone, phone_id = await registered_terminal(db, server.ports["jt808"], kind="inspector", prefix="17")
    try:
        assert (await _api(server, "PATCH", f"/api/devices/{phone_id}", {"unit": unit_id}))[0] == 200
        await _send(phone, datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5), where["lat"], where["lon"])
        people = []
        for code, device in ((f"zhang-{tag}", phone_id), (f"li-{tag}", None)):
            body = {"code": code, "name": code, "role": "inspector", "unit": unit_id}
            if device is not None:
                body["device"] = device
            status, person = await _api(server, "POST", "/api/staff", body)
            assert status == 201, person
            people.append(person)

        base = f"http://127.0.0.1:{server.ports['api']}"
        await page.goto(base + "/")
        await _login(page, name, password)
        duty = page.locator("[data-testid=duty-panel][data-loaded=true]")
        await duty.wait_for(state="attached")
        assert await duty.is_hidden()  # staff, but no shift going on

        # Both on a shift from an hour ago to two hours from now (across midnight if need be).
        now = datetime.now(LOCAL)
        for person in people:
            shift = {
                "person": person["id"],
                "weekdays": "1-7",
                "start": (now - timedelta(hours=1)).strftime("%H:%M"),
                "end": (now + timedelta(hours=2)).strftime("%H:%M"),
                "zone": grid["id"],
                "valid_from": (now.date() - timedelta(days=1)).isoformat(),
            }
            status, pattern = await _api(server, "POST", "/api/shift-patterns", shift)
            assert status == 201, pattern
        await page.reload()  # the session stays; the counts are asked again at once
        await duty.wait_for()
        counts = [await page.get_by_test_id(f"duty-{k}").inner_text() for k in ("on-duty", "online", "offline")]
        assert counts == ["2", "1", "1"]  # the phone reported a moment ago; the other person has none
        assert await page.get_by_test_id("nav-replay").get_attribute("href") == "/replay"
        await screenshot(page, "live-on-duty")

        await page.get_by_test_id("nav-replay").click()  # the other page, same session: no login asked
        await page.wait_for_url(base + "/replay")
        await page.locator("[data-testid=map][data-ready=true]").wait_for(state="attached")
        await page.get_by_test_id("user-name").filter(has_text=name).wait_for()
        assert await page.get_by_test_id("login").is_hidden()
    finally:
        await phone.close()
    watch.check()
