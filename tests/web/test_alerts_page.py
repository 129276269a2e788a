"""Alerts on the dispatcher's live map through the real server: a terminal presses its emergency button and the
alert shows in the list and on the map at once (no reload), in the critical style; its end shows too; the
dispatcher flies to it, acknowledges it with a comment and closes it from the page, and the API agrees. An alert of
a device outside the dispatcher's units never shows."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import psycopg
from aiohttp import web
from playwright.async_api import Page

from access import passwords
from geofence import crs
from store import devices, users
from store.devices import OrgUnitRecord
from telematics.config import WebSettings
from telematics.server import Server
from tests.conftest import API_TOKEN
from tests.terminal import Terminal, registered_terminal
from tests.web.browser import Watch, screenshot, serve
from web import routes as web_routes

BASE = (22.5485, 114.1312)  # lat, lon: Luohu, Shenzhen
CRITICAL_RED = "rgb(214, 40, 40)"  # SEVERITY[4] of alerts.js, the left border of a critical item
RENDERED = """(layer) => Object.fromEntries(window.fleetMap.queryRenderedFeatures({layers: [layer]})
  .map((f) => [f.properties.id, f.geometry.coordinates]))"""


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _api(server: Server, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{server.ports['api']}{path}"
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http, http.request(method, url, json=body) as r:
        return r.status, await r.json()


async def _dispatcher(db: psycopg.AsyncConnection) -> tuple[int, str, str]:
    """A district below a city of its own and a dispatcher of the district: (unit id, name, password)."""
    tag = secrets.token_hex(3)
    city, district = f"alerts-{tag}", f"alerts-{tag}-d"
    units = [OrgUnitRecord(city, "测试城管局"), OrgUnitRecord(district, "罗湖区中队", parent=city)]
    await devices.upsert_units(db, units)
    unit = await users.unit_by_code(db, district)
    assert unit is not None
    name, password = f"dispatcher-{tag}", secrets.token_urlsafe(12)
    assert await users.create_user(db, name, "dispatcher", unit.id, passwords.hash_password(password)) is not None
    return unit.id, name, password


async def _report(t: Terminal, at: datetime, alarm: int) -> None:
    serial = await t.report(at, BASE[0], BASE[1], speed_kmh=0.0, alarm=alarm)
    assert (await t.general_response())[0] == serial


async def _one_alert(server: Server, device_id: int) -> dict[str, Any]:
    """The device's alert, once the engine has written it."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        status, doc = await _api(server, "GET", f"/api/alerts?device={device_id}")
        assert status == 200
        if doc["alerts"] or asyncio.get_running_loop().time() > deadline:
            (alert,) = doc["alerts"]
            return dict(alert)
        await asyncio.sleep(0.05)


async def test_emergency_button_shows_live_and_is_acknowledged_and_closed_from_the_page(
    server: Server, db: psycopg.AsyncConnection, page: Page, watch: Watch
) -> None:
    unit_id, name, password = await _dispatcher(db)
    port = server.ports["jt808"]
    t, device_id = await registered_terminal(db, port, kind="enforcement", prefix="15")
    status, device = await _api(server, "PATCH", f"/api/devices/{device_id}", {"unit": unit_id})
    assert status == 200, device
    outsider, outsider_id = await registered_terminal(db, port, kind="enforcement", prefix="15")  # no unit
    start = _now() - timedelta(seconds=60)  # fix times apart: a report of the same device and time is stored once
    try:
        await _report(t, start, alarm=0)
        await _report(outsider, start, alarm=0)
        await page.goto(f"http://127.0.0.1:{server.ports['api']}/")
        await page.get_by_test_id("login-name").fill(name)
        await page.get_by_test_id("login-password").fill(password)
        await page.get_by_test_id("login-submit").click()
        await page.locator("[data-testid=ws-status][data-state=open]").wait_for()
        await page.locator("[data-testid=alert-list][data-loaded=true]").wait_for()
        await page.wait_for_function(f"() => {device_id} in ({RENDERED})('fleet-devices')")
        assert await page.locator("li.alert").count() == 0
        assert await page.get_by_test_id("alert-badge").get_attribute("data-count") == "0"
        loads = len(watch.statuses("/api/alerts"))
        assert loads >= 2  # the open ones at login: raised, acknowledged

        # Both press the emergency button; only the dispatcher's own device shows.
        await _report(outsider, start + timedelta(seconds=10), alarm=1)
        assert (await _one_alert(server, outsider_id))["severity"] == 4  # raised (and pushed to whom may see it)
        await _report(t, start + timedelta(seconds=10), alarm=1)
        alert = await _one_alert(server, device_id)
        item = page.get_by_test_id(f"alert-{alert['id']}")
        await item.wait_for()
        assert len(watch.statuses("/api/alerts")) == loads  # from the live socket, not from asking again
        assert await page.locator("li.alert").count() == 1
        assert await item.get_attribute("data-state") == "raised"
        assert await item.get_attribute("data-severity") == "4"
        assert "critical" in (await item.get_attribute("class") or "").split()
        assert await item.evaluate("(li) => getComputedStyle(li).borderLeftColor") == CRITICAL_RED
        assert await page.get_by_test_id(f"alert-kind-{alert['id']}").inner_text() == "报警"
        assert await page.get_by_test_id(f"alert-device-{alert['id']}").inner_text() == f"test {alert['uid'][-4:]}"
        assert await page.get_by_test_id("alert-badge").get_attribute("data-count") == "1"
        # On the map: a disc where the device is, and a pulsing ring over it.
        await page.get_by_test_id(f"alert-pulse-{alert['id']}").wait_for()
        await page.wait_for_function(f"() => {alert['id']} in ({RENDERED})('alerts')")
        lon, lat = (await page.evaluate(RENDERED, "alerts"))[str(alert["id"])]
        assert abs(lon - BASE[1]) < 1e-5 and abs(lat - BASE[0]) < 1e-5
        await screenshot(page, "alert-raised")

        # A click on the item flies to it and rings the device.
        await page.evaluate("() => window.fleetMap.jumpTo({center: [114.0, 22.6], zoom: 12})")
        await page.get_by_test_id(f"alert-locate-{alert['id']}").click()
        await page.wait_for_function(
            f"""() => {{ const m = window.fleetMap, c = m.getCenter();
                return !m.isMoving() && m.getZoom() >= 15.9 && Math.abs(c.lng - {BASE[1]}) < 1e-4
                    && Math.abs(c.lat - {BASE[0]}) < 1e-4; }}"""
        )
        await page.wait_for_function(f"() => {alert['id']} in ({RENDERED})('alerts-focus')")
        assert "focused" in (await item.get_attribute("class") or "").split()

        # The dispatcher starts a comment; meanwhile the button is let go: the end shows on the same item, live,
        # and what is being typed stays where it is.
        comment = "已联系执法队员，正在核实"
        await page.get_by_test_id(f"alert-ack-{alert['id']}").click()
        await page.get_by_test_id(f"alert-comment-{alert['id']}").press_sequentially(comment[:4])
        await _report(t, start + timedelta(seconds=20), alarm=0)
        await page.get_by_test_id(f"alert-ended-{alert['id']}").wait_for()
        assert await item.get_attribute("data-ended") == "true"
        await page.keyboard.type(comment[4:])  # still in the comment box
        assert await page.get_by_test_id(f"alert-comment-{alert['id']}").input_value() == comment

        # Acknowledged with the comment: the item says so, the badge goes down, the ring stops; the API agrees.
        await page.get_by_test_id(f"alert-ack-submit-{alert['id']}").click()
        await page.locator(f"[data-testid=alert-{alert['id']}][data-state=acknowledged]").wait_for()
        assert name in await page.get_by_test_id(f"alert-acknowledged-{alert['id']}").inner_text()
        assert await page.get_by_test_id("alert-badge").get_attribute("data-count") == "0"
        await page.get_by_test_id(f"alert-pulse-{alert['id']}").wait_for(state="detached")
        status, acked = await _api(server, "GET", f"/api/alerts/{alert['id']}")
        assert status == 200 and acked["state"] == "acknowledged"
        assert acked["ack"]["by"] == name and acked["ack"]["comment"] == comment
        await screenshot(page, "alert-acknowledged")

        # Closed: it leaves the list and the map.
        await page.get_by_test_id(f"alert-ack-{alert['id']}").click()
        await page.get_by_test_id(f"alert-ack-submit-{alert['id']}").click()
        await item.wait_for(state="detached")
        await page.wait_for_function(f"() => !({alert['id']} in ({RENDERED})('alerts'))")
        status, closed = await _api(server, "GET", f"/api/alerts/{alert['id']}")
        assert status == 200 and closed["state"] == "closed" and closed["closed"] is not None
        assert await page.locator("li.alert").count() == 0
    finally:
        await t.close()
        await outsider.close()
    watch.check()


async def test_wgs84_coordinates_move_onto_a_gcj02_basemap(page: Page, watch: Watch) -> None:
    """Alert evidence and stored positions come in WGS-84; on a GCJ-02 basemap the page shifts them as the server
    does (geofence.crs), and leaves points outside China as they are."""
    app = web.Application()
    app.add_routes(web_routes.routes(WebSettings()))
    points = [(22.5431, 114.0579), (39.9087, 116.3975), (48.8566, 2.3522)]  # Shenzhen, Beijing, Paris
    async with serve(app) as base:
        await page.goto(base + "/map-config.json")  # any page of the origin: the module is imported from it
        moved = await page.evaluate(
            """async (points) => {
                const { fromWgs84 } = await import("/static/js/crs.js");
                return points.map(([lat, lon]) => [fromWgs84([lon, lat], "gcj02"), fromWgs84([lon, lat], "wgs84")]);
            }""",
            points,
        )
    for (lat, lon), (gcj, same) in zip(points, moved, strict=True):
        want_lat, want_lon = crs.wgs84_to_gcj02(lat, lon)
        assert abs(gcj[0] - want_lon) < 1e-9 and abs(gcj[1] - want_lat) < 1e-9, (lat, lon, gcj)
        assert same == [lon, lat]
    assert moved[0][0] != [points[0][1], points[0][0]]  # Shenzhen is moved (by about 500 m)
    watch.check()
