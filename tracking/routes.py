"""HTTP routes of tracking: devices and their latest positions."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from access.principal import principal
from store import devices, positions
from store.positions import StoredPosition
from tracking import devices_api, live_api, messages_api, zones_api

POOL = web.AppKey("pool", AsyncConnectionPool)


def position_json(device_uid: str, p: StoredPosition) -> dict[str, Any]:
    return {
        "device": device_uid,
        "time": p.fix_time.isoformat().replace("+00:00", "Z"),
        "received": p.receive_time.isoformat().replace("+00:00", "Z"),
        "lat": p.lat,
        "lon": p.lon,
        "valid": p.valid,
        "speed_kmh": p.speed_kmh,
        "course": p.course,
        "altitude_m": p.altitude_m,
        "accuracy_m": p.accuracy_m,
        "satellites": p.satellites,
        "status": p.status,
        "alarm": p.alarm,
        "mileage_km": p.mileage_km,
        "h3_cell": format(p.h3_cell, "x"),
        "protocol": p.protocol,
        "extras": p.extras or {},
    }


async def latest_position(request: web.Request) -> web.Response:
    uid = request.match_info["uid"]
    async with request.app[POOL].connection() as conn:
        device = await devices.by_uid(conn, uid)
        if device is None or not principal(request).sees_unit(device.org_unit_id):  # outside the scope: unknown
            return web.json_response({"error": f"no device {uid!r}"}, status=404)
        latest = await positions.latest(conn, device.id)
    if latest is None:
        return web.json_response({"error": f"device {uid!r} has no position yet"}, status=404)
    return web.json_response(position_json(uid, latest))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/devices/{uid}/latest", latest_position),
        *messages_api.routes(),
        *live_api.routes(),
        *devices_api.routes(),
        *zones_api.routes(),
    ]
