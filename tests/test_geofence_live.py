"""Geofencing on the running server: a zone made through the API, a terminal driving in and out."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

import aiohttp
import psycopg

from store import devices
from store.devices import DeviceRecord
from telematics.server import Server
from tests.conftest import API_TOKEN
from tests.terminal import Terminal

CENTRE = (22.6001, 114.1001)  # away from the other tests' positions


async def _counts(server: Server) -> dict[str, int]:
    return {k: v for k, v in server.counters.values.items() if k.startswith("geofence.")}


async def test_enter_and_exit_with_hysteresis_and_a_late_backfill(server: Server, db: psycopg.AsyncConnection) -> None:
    assert server.geofence is not None
    code = "gf-" + secrets.token_hex(3)
    zone = {"circle": {"lat": CENTRE[0], "lon": CENTRE[1], "radius_m": 150}}
    url = f"http://127.0.0.1:{server.ports['api']}/api/zones"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_TOKEN}"}) as http,
        http.post(url, json={"code": code, "name": "禁区", "kind": "forbidden", "shape": zone}) as r,
    ):
        assert r.status == 201, await r.text()
    await server.geofence.reload()  # what the service does by itself within refresh_s

    uid = "18" + str(secrets.randbelow(10**9)).rjust(9, "0")
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind="muck", name="gf")])
    t = await Terminal(uid).connect(server.ports["jt808"])
    _, auth = await t.register()
    assert await t.authenticate(auth) == 0
    before = await _counts(server)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    inside, outside = CENTRE, (CENTRE[0] + 0.01, CENTRE[1])  # ~1.1 km north
    # Outside, one stray fix inside (jitter: no transition), then 4 inside (enter), 4 outside (exit).
    track = [outside, outside, inside, outside, inside, inside, inside, inside, outside, outside, outside, outside]
    for i, (lat, lon) in enumerate(track):
        serial = await t.report(base + timedelta(seconds=10 * i), lat, lon)
        assert (await t.general_response())[0] == serial
    await asyncio.sleep(0.3)
    after = await _counts(server)
    assert after.get("geofence.enter", 0) - before.get("geofence.enter", 0) == 1
    assert after.get("geofence.exit", 0) - before.get("geofence.exit", 0) == 1
    # Yesterday's fixes inside the zone arrive now: counted as late, not as a live entry.
    old = base - timedelta(days=1)
    for i in range(4):
        await t.report(old + timedelta(seconds=10 * i), *inside)
        await t.general_response()
    await asyncio.sleep(0.3)
    late = await _counts(server)
    assert late.get("geofence.enter", 0) == after.get("geofence.enter", 0)
    assert late.get("geofence.enter_late", 0) - after.get("geofence.enter_late", 0) == 1
    await t.close()
