"""HTTP routes for the device list: search by kind, unit, online state and text, within the caller's units."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from access.errors import json_error, json_object
from access.principal import principal
from access.query import unit_scope
from store import devices
from tracking.listing import unit_and_page
from tracking.live import STATUS_NAMES
from tracking.live_api import LIVE


def device_json(d: devices.Listed) -> dict[str, Any]:
    unit = None
    if d.unit_id is not None:
        unit = {"id": d.unit_id, "code": d.unit_code, "name": d.unit_name, "parent_id": d.unit_parent_id}
    return {
        "id": d.id,
        "uid": d.uid,
        "kind": d.kind,
        "name": d.name,
        "plate": d.plate,
        "unit": unit,
        "protocol": d.protocol,
        "enabled": d.enabled,
    }


async def list_devices(request: web.Request) -> web.Response:
    who = principal(request)
    q = request.query
    unit, limit, offset = unit_and_page(request)
    kind = q.get("kind") or None
    if kind is not None and kind not in devices.KINDS:
        raise json_error(web.HTTPBadRequest, f"kind: one of {', '.join(devices.KINDS)}")
    online = q.get("online")
    if online not in (None, "", "true", "false"):
        raise json_error(web.HTTPBadRequest, "online: true or false")
    hub = request.app[LIVE]
    async with hub.pool.connection() as conn:
        unit_ids, unitless = await unit_scope(conn, who, None if unit is None else [unit])
        found = await devices.search(conn, unit_ids=unit_ids, with_unitless=unitless, kind=kind, text=q.get("q"))
    if online:
        found = [
            d
            for d, ok in zip(found, _online(hub.state, [d.id for d in found]), strict=True)
            if ok == (online == "true")
        ]
    return web.json_response({"devices": [device_json(d) for d in found[offset : offset + limit]], "total": len(found)})


async def one_device(request: web.Request) -> web.Response:
    who = principal(request)
    try:
        device_id = int(request.match_info["id"])
    except ValueError:
        raise json_error(web.HTTPNotFound, "no such device") from None
    async with request.app[LIVE].pool.connection() as conn:
        found = await devices.search(conn, unit_ids=None, with_unitless=True, device_id=device_id)
    if not found or not who.sees_unit(found[0].unit_id):
        raise json_error(web.HTTPNotFound, f"no device {device_id}")
    return web.json_response(device_json(found[0]))


async def create_device(request: web.Request) -> web.Response:
    who = principal(request)
    who.require("admin")
    body = await json_object(request)
    uid = body.get("uid")
    if not isinstance(uid, str) or not uid.strip() or len(uid) > 64:
        raise json_error(web.HTTPBadRequest, "uid: the terminal's own id, 1 to 64 characters")
    fields = _fields(body, ("kind", "name", "plate", "unit"))
    protocol = body.get("protocol")
    if protocol is not None and protocol not in devices.PROTOCOLS:
        raise json_error(web.HTTPBadRequest, f"protocol: one of {', '.join(devices.PROTOCOLS)}")
    unit = fields.get("unit")
    if not who.sees_unit(unit if isinstance(unit, int) else None):
        raise json_error(web.HTTPBadRequest, f"unit: no unit {unit} among yours")
    hub = request.app[LIVE]
    async with hub.pool.connection() as conn:
        device_id = await devices.create(
            conn,
            uid.strip(),
            str(fields.get("kind", "other")),
            str(fields.get("name", "")),
            fields.get("plate"),  # type: ignore[arg-type]
            unit,  # type: ignore[arg-type]
            protocol,
        )
        if device_id is None:
            raise json_error(web.HTTPConflict, f"a device {uid.strip()!r} exists already")
        found = await devices.search(conn, unit_ids=None, with_unitless=True, device_id=device_id)
        created = await devices.by_ids(conn, [device_id])
    hub.service.know(created[device_id])
    return web.json_response(device_json(found[0]), status=201)


async def change_device(request: web.Request) -> web.Response:
    who = principal(request)
    who.require("admin")
    try:
        device_id = int(request.match_info["id"])
    except ValueError:
        raise json_error(web.HTTPNotFound, "no such device") from None
    changes = _fields(await json_object(request), ("kind", "name", "plate", "unit", "enabled"))
    if not changes:
        raise json_error(web.HTTPBadRequest, "nothing to change: name, plate, kind, unit or enabled")
    if "unit" in changes and not who.sees_unit(changes["unit"]):  # type: ignore[arg-type]
        raise json_error(web.HTTPBadRequest, f"unit: no unit {changes['unit']} among yours")
    hub = request.app[LIVE]
    async with hub.pool.connection() as conn:
        found = await devices.search(conn, unit_ids=None, with_unitless=True, device_id=device_id)
        if not found or not who.sees_unit(found[0].unit_id):
            raise json_error(web.HTTPNotFound, f"no device {device_id}")
        await devices.update(conn, device_id, changes)
        found = await devices.search(conn, unit_ids=None, with_unitless=True, device_id=device_id)
        changed = await devices.by_ids(conn, [device_id])
    hub.service.know(changed[device_id])
    return web.json_response(device_json(found[0]))


def _fields(body: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key in allowed:
        if key not in body:
            continue
        value = body[key]
        if key == "kind" and value not in devices.KINDS:
            raise json_error(web.HTTPBadRequest, f"kind: one of {', '.join(devices.KINDS)}")
        if key == "name" and (not isinstance(value, str) or len(value) > 100):
            raise json_error(web.HTTPBadRequest, "name: text of at most 100 characters")
        if key == "plate" and value is not None and (not isinstance(value, str) or len(value) > 20):
            raise json_error(web.HTTPBadRequest, "plate: text of at most 20 characters, or null")
        if key == "unit" and value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise json_error(web.HTTPBadRequest, "unit: a unit id or null")
        if key == "enabled" and not isinstance(value, bool):
            raise json_error(web.HTTPBadRequest, "enabled: true or false")
        out[key] = value
    return out


def _online(state: Any, ids: list[int]) -> list[bool]:
    status = state.status(time.time_ns() // 1000)
    out = []
    for device_id in ids:
        slot = state.slot(device_id)
        out.append(slot is not None and STATUS_NAMES[int(status[slot])] == "online")
    return out


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/devices", list_devices),
        web.post("/api/devices", create_device),
        web.get(r"/api/devices/{id:\d+}", one_device),
        web.patch(r"/api/devices/{id:\d+}", change_device),
    ]
