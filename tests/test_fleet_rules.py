"""The city's rules over fixes and over silence, on the running server: suspected illegal dumping (by load
state and by a stop), speed zones, stopping outside depots, sweeping too fast, boundary jitter, offline
on shift. Each scenario asserts the exact alerts its device gets."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from alerts.unloading import LOAD_SHIFT
from protocols import jt808
from telematics.server import Server
from tests.terminal import Terminal
from tests.test_alerts import _alerts, _api, _drive, _ended, _truck

FULL, EMPTY = 3 << LOAD_SHIFT, 0


def _z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _at_local(hour: int) -> datetime:
    """The last time it was `hour`:00 in Beijing (UTC+8), at least ten minutes ago."""
    now = datetime.now(UTC)
    t = now.replace(minute=0, second=0, microsecond=0, hour=(hour - 8) % 24)
    return t if t < now - timedelta(minutes=10) else t - timedelta(days=1)


async def _zone(server: Server, kind: str, shape: dict[str, Any], device_id: int, **extra: Any) -> int:
    assert server.geofence is not None
    status, zone = await _api(
        server, "POST", "/api/zones", {"code": f"{kind}-{secrets.token_hex(3)}", "kind": kind, "shape": shape, **extra}
    )
    assert status == 201, zone
    status, _ = await _api(server, "PUT", f"/api/zones/{zone['id']}/assignments", {"devices": [device_id]})
    assert status == 200
    await server.geofence.reload()
    return int(zone["id"])


def _circle(lat: float, lon: float, radius_m: float = 300) -> dict[str, Any]:
    return {"circle": {"lat": lat, "lon": lon, "radius_m": radius_m}}


async def _send(t: Terminal, start: datetime, fixes: list[dict[str, Any]], step_s: int = 30) -> None:
    for i, fix in enumerate(fixes):
        serial = await t.report(start + timedelta(seconds=step_s * i), **fix)
        assert (await t.general_response())[0] == serial


async def _settled(server: Server, device_id: int) -> list[dict[str, Any]]:
    """The device's alerts once nothing more is being written for it."""
    assert server.alerts is not None
    for _ in range(100):
        if server.alerts._queue.empty():
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    return await _alerts(server, device_id, 0)


async def test_muck_truck_tips_its_load_outside_any_site_at_two_in_the_night(
    server: Server, db: psycopg.AsyncConnection
) -> None:
    t, device_id = await _truck(server, db)
    site = (22.801, 114.501)
    await _zone(server, "disposal_site", _circle(*site), device_id)
    start = _at_local(2)
    road = [(22.790, 114.490 + i / 2000) for i in range(12)]
    # Loaded on the road at 40 km/h, a five-minute stop at 02:03, empty afterwards: tipped by the road.
    fixes = [{"lat": la, "lon": lo, "speed_kmh": 40, "status": FULL} for la, lo in road[:6]]
    fixes += [{"lat": road[6][0], "lon": road[6][1], "speed_kmh": 0, "status": FULL}] * 5
    fixes += [{"lat": road[6][0], "lon": road[6][1], "speed_kmh": 0, "status": EMPTY}]
    fixes += [{"lat": la, "lon": lo, "speed_kmh": 40, "status": EMPTY} for la, lo in road[7:]]
    await _send(t, start, fixes)
    alert = await _ended(server, device_id, "dumping")
    ev = alert["evidence"]
    assert ev["how"] == "unloaded" and ev["load_before"] == "full"
    assert alert["started"] == _z(start + timedelta(seconds=30 * 10)) == ev["loaded_until"].replace("+00:00", "Z")
    assert alert["ended"] == _z(start + timedelta(seconds=30 * 11))
    assert (ev["lat"], ev["lon"]) == road[6] and alert["severity"] == 4
    # The same truck loads again and unloads inside the disposal site: allowed, nothing more.
    later = start + timedelta(minutes=30)
    await _send(t, later, [{"lat": site[0], "lon": site[1], "status": s} for s in (FULL, FULL, EMPTY, EMPTY)])
    assert [a["kind"] for a in await _settled(server, device_id)] == ["dumping"]
    await t.close()


async def test_a_truck_without_load_sensor_stopping_ten_minutes_outside_a_site(
    server: Server, db: psycopg.AsyncConnection
) -> None:
    t, device_id = await _truck(server, db)
    site = (22.811, 114.511)
    await _zone(server, "construction_site", _circle(*site), device_id)
    start = _at_local(2)
    # Twelve minutes standing inside the construction site: loading there is its job.
    await _send(t, start, [{"lat": site[0], "lon": site[1]}] * 25)
    # Then eleven minutes standing by a road two kilometres away, and off again.
    stop = (22.83, 114.511)
    later = start + timedelta(minutes=20)
    await _send(t, later, [{"lat": stop[0], "lon": stop[1]}] * 23 + [{"lat": 22.84, "lon": 114.52, "speed_kmh": 30}])
    alert = await _ended(server, device_id, "dumping")
    assert alert["evidence"]["how"] == "stopped" and (alert["evidence"]["lat"], alert["evidence"]["lon"]) == stop
    assert alert["started"] == _z(later) and alert["ended"] == _z(later + timedelta(seconds=30 * 23))
    assert alert["evidence"]["raised_at_fix"] == (later + timedelta(minutes=10)).isoformat()
    await t.close()


async def test_speed_zone_lowers_the_limit_inside_it(server: Server, db: psycopg.AsyncConnection) -> None:
    t, device_id = await _truck(server, db)  # muck: the standing limit is 60 km/h
    school = (22.821, 114.521)
    await _zone(server, "speed_zone", _circle(*school, 500), device_id, properties={"speed_limit_kmh": 30})
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    # 45 km/h for a minute outside the zone (under 60): nothing; then 45 km/h inside it for 40 s.
    await _send(t, start, [{"lat": 22.80, "lon": 114.50 + i / 1000, "speed_kmh": 45} for i in range(6)], 10)
    inside = start + timedelta(minutes=2)
    await _send(t, inside, [{"lat": school[0], "lon": school[1], "speed_kmh": s} for s in (45, 45, 45, 45, 45, 20)], 10)
    alert = await _ended(server, device_id, "overspeed")
    assert alert["evidence"]["limit_kmh"] == 30 and alert["evidence"]["max_kmh"] == 45
    assert alert["started"] == _z(inside) and alert["ended"] == _z(inside + timedelta(seconds=50))
    await t.close()


async def test_stopped_half_an_hour_outside_the_depot_but_not_in_it(
    server: Server, db: psycopg.AsyncConnection
) -> None:
    t, device_id = await _truck(server, db, kind="sanitation")
    depot = (22.841, 114.541)
    await _zone(server, "depot", _circle(*depot), device_id)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    await _send(t, start, [{"lat": depot[0], "lon": depot[1]}] * 40, 60)  # 40 minutes parked in the depot
    street = (22.86, 114.56)
    later = start + timedelta(minutes=60)
    await _send(t, later, [{"lat": street[0], "lon": street[1]}] * 32 + [{**_ll(street), "speed_kmh": 20}], 60)
    alert = await _ended(server, device_id, "stopped")
    assert alert["started"] == _z(later) and alert["ended"] == _z(later + timedelta(minutes=32))
    assert alert["evidence"]["raised_at_fix"] == (later + timedelta(minutes=30)).isoformat()
    await t.close()


def _ll(p: tuple[float, float]) -> dict[str, float]:
    return {"lat": p[0], "lon": p[1]}


async def test_sweeper_on_its_route_too_fast_to_sweep(server: Server, db: psycopg.AsyncConnection) -> None:
    t, device_id = await _truck(server, db, kind="sanitation")
    line = {"type": "LineString", "coordinates": [[114.60, 22.90], [114.62, 22.90]]}
    await _zone(server, "sanitation_route", {"corridor": {"line": line, "width_m": 40}}, device_id)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    # Sweeping at 8 km/h, then 35 km/h along the route for 90 s, then 8 again; 35 km/h off the route is no matter.
    speeds = [8] * 4 + [35] * 10 + [8] * 3
    await _send(t, start, [{"lat": 22.90, "lon": 114.60 + i / 1000, "speed_kmh": s} for i, s in enumerate(speeds)], 10)
    await _send(t, start + timedelta(minutes=5), [{"lat": 22.95, "lon": 114.61, "speed_kmh": 35}] * 10, 10)
    alert = await _ended(server, device_id, "working_speed")
    assert alert["evidence"]["working_max_kmh"] == 15 and alert["evidence"]["max_kmh"] == 35
    assert alert["started"] == _z(start + timedelta(seconds=40))
    assert alert["ended"] == _z(start + timedelta(seconds=140))
    await t.close()


async def test_jitter_on_a_forbidden_zone_boundary_raises_one_alert_not_a_flurry(
    server: Server, db: psycopg.AsyncConnection
) -> None:
    t, device_id = await _truck(server, db, kind="enforcement")
    centre = (22.871, 114.571)
    await _zone(server, "forbidden", _circle(*centre, 200), device_id)
    edge_in, edge_out = (centre[0] + 0.0017, centre[1]), (centre[0] + 0.0019, centre[1])  # 189 m and 211 m out
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=15)
    jitter = [edge_in if i % 2 else edge_out for i in range(20)]  # across the boundary every 10 s
    await _drive(t, start, [edge_out] * 3 + jitter + [edge_out] * 3)
    assert [a for a in await _settled(server, device_id) if a["kind"] == "forbidden_zone"] == []
    # Then it really drives in and stays, with jitter: one alert, from the first fix of the run inside that
    # confirmed it (the fix outside at 20 s started the count again).
    inside_from = start + timedelta(minutes=5)
    await _drive(t, inside_from, [edge_in, centre, edge_out, centre, centre, edge_in, centre])
    (alert,) = [a for a in await _alerts(server, device_id, 1) if a["kind"] == "forbidden_zone"]
    assert alert["started"] == _z(inside_from + timedelta(seconds=30)) and alert["ended"] is None
    assert len(await _settled(server, device_id)) == 1
    await t.close()


async def test_offline_on_shift_raised_by_silence_and_ended_by_the_next_contact(
    server: Server, db: psycopg.AsyncConnection
) -> None:
    assert server.offline is not None and server.live is not None
    t, device_id = await _truck(server, db, kind="enforcement")
    now = datetime.now(UTC).replace(microsecond=0)
    await _send(t, now - timedelta(minutes=1), [{"lat": 22.88, "lon": 114.58}])
    slot = server.live.state.slot(device_id)
    assert slot is not None
    seen_us = int(server.live.state.column("last_seen_us")[slot])
    # Forty minutes of silence: at 23:00 Beijing time (off shift) nothing, at 10:00 (on shift) an alert.
    day_us = 86_400_000_000

    def at_local(hour: int) -> int:
        base = seen_us + 40 * 60_000_000
        of_day = (base + 8 * 3_600_000_000) % day_us
        return base + (hour * 3_600_000_000 - of_day) % day_us

    await server.offline.check(at_local(23))
    assert [a for a in await _settled(server, device_id) if a["kind"] == "offline"] == []
    await server.offline.check(at_local(10))
    (alert,) = [a for a in await _alerts(server, device_id, 1) if a["kind"] == "offline"]
    assert alert["ended"] is None and alert["evidence"]["lat"] == 22.88
    assert alert["evidence"]["last_seen"] == datetime.fromtimestamp(seen_us / 1e6, UTC).isoformat()
    await server.offline.check(at_local(10) + 60_000_000)  # still silent: no second alert
    serial = await t.send(jt808.MSG_HEARTBEAT)  # heard from again: a heartbeat is contact enough
    assert (await t.general_response())[0] == serial
    await server.offline.check()
    alert = await _ended(server, device_id, "offline")
    assert alert["ended"] is not None and alert["ended"] > alert["started"]
    await t.close()
