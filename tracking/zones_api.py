"""HTTP routes for zones (geofences) and what they apply to, within the caller's units.

A zone of a unit outside the caller's is answered 404, as if it did not exist; a zone without a unit is
seen like a device without one. Changes need the admin role.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from aiohttp import web

from access.errors import json_error, json_object
from access.principal import Principal, principal
from access.query import iso
from geofence import crs
from store import devices, users, zones
from tracking import zone_check
from tracking.listing import unit_and_page
from tracking.live_api import LIVE

MAX_ASSIGNED = 10_000
MAX_ID = 2**31 - 1  # the id column is an integer
_CHANGEABLE = ("code", "name", "kind", "shape", "properties", "unit", "enabled")


def zone_json(z: zones.Zone, crs_name: str = "wgs84") -> dict[str, Any]:
    unit = None
    if z.unit is not None:
        unit = {"id": z.unit.id, "code": z.unit.code, "name": z.unit.name, "parent_id": z.unit.parent_id}
    return {
        "id": z.id,
        "code": z.code,
        "name": z.name,
        "kind": z.kind,
        "shape": zone_check.convert(z.shape, "wgs84", crs_name),
        "properties": z.properties,
        "unit": unit,
        "enabled": z.enabled,
        "created": iso(z.created_at),
        "updated": iso(z.updated_at),
    }


def _crs(request: web.Request) -> str:
    name = request.query.get("crs") or "wgs84"
    if name not in crs.NAMES:
        raise json_error(web.HTTPBadRequest, f"crs: one of {', '.join(crs.NAMES)}")
    return name


def _zone_id(request: web.Request) -> int:
    zone_id = int(request.match_info["id"])  # the route admits digits only
    if zone_id > MAX_ID:
        raise json_error(web.HTTPNotFound, f"no zone {zone_id}")
    return zone_id


async def _visible(request: web.Request, who: Principal, zone_id: int) -> zones.Zone:
    async with request.app[LIVE].pool.connection() as conn:
        zone = await zones.get(conn, zone_id)
    if zone is None or not who.sees_unit(zone.unit.id if zone.unit else None):
        raise json_error(web.HTTPNotFound, f"no zone {zone_id}")
    return zone


def _checked(check: Callable[..., Any], field: str, *args: Any) -> Any:
    try:
        return check(*args)
    except ValueError as e:
        raise json_error(web.HTTPBadRequest, f"{field}: {e}") from None


async def _unit(request: web.Request, who: Principal, value: Any) -> int | None:
    """A unit id from a body, which must be one of the caller's units (or null when the caller may place
    zones without a unit)."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise json_error(web.HTTPBadRequest, "unit: a unit id or null")
    if not who.sees_unit(value):
        raise json_error(web.HTTPBadRequest, f"unit: no unit {value} among yours")
    if value is not None:
        async with request.app[LIVE].pool.connection() as conn:
            if await users.unit_by_id(conn, value) is None:
                raise json_error(web.HTTPBadRequest, f"unit: no unit {value} among yours")
    return value


async def list_zones(request: web.Request) -> web.Response:
    who = principal(request)
    q = request.query
    crs_name = _crs(request)
    unit, limit, offset = unit_and_page(request)
    kind = q.get("kind") or None
    if kind is not None:
        _checked(zone_check.kind, "kind", kind)
    enabled = q.get("enabled") or None
    if enabled not in (None, "true", "false"):
        raise json_error(web.HTTPBadRequest, "enabled: true or false")
    mine = None if who.unit_ids is None else set(who.unit_ids)
    async with request.app[LIVE].pool.connection() as conn:
        if unit is None:
            unit_ids, unitless = (None if mine is None else sorted(mine)), who.sees_unit(None)
        else:
            asked = set(await users.unit_subtree(conn, unit))
            unit_ids, unitless = sorted(asked if mine is None else asked & mine), False
        found = await zones.search(
            conn,
            unit_ids=unit_ids,
            with_unitless=unitless,
            kind=kind,
            enabled=None if enabled is None else enabled == "true",
            text=q.get("q"),
        )
    page = found[offset : offset + limit]
    return web.json_response({"zones": [zone_json(z, crs_name) for z in page], "total": len(found)})


async def one_zone(request: web.Request) -> web.Response:
    zone = await _visible(request, principal(request), _zone_id(request))
    return web.json_response(zone_json(zone, _crs(request)))


async def create_zone(request: web.Request) -> web.Response:
    who = principal(request)
    who.require("admin")
    crs_name = _crs(request)
    body = await json_object(request)
    if "shape" not in body:
        raise json_error(web.HTTPBadRequest, "shape: required")
    code = body.get("code")
    if code is not None:
        _checked(zone_check.code, "code", code)
    name = _checked(zone_check.name, "name", body.get("name", ""))
    kind = _checked(zone_check.kind, "kind", body.get("kind", "generic"))
    shape = _checked(zone_check.shape, "shape", body["shape"], crs_name)
    props = _checked(zone_check.properties, "properties", kind, body.get("properties", {}))
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise json_error(web.HTTPBadRequest, "enabled: true or false")
    unit = await _unit(request, who, body.get("unit"))
    async with request.app[LIVE].pool.connection() as conn:
        try:
            zone_id = await zones.create(
                conn, code=code, name=name, kind=kind, shape=shape, properties=props, unit_id=unit, enabled=enabled
            )
        except zones.CodeTaken:
            raise json_error(web.HTTPConflict, f"a zone {code!r} exists already") from None
        zone = await zones.get(conn, zone_id)
    assert zone is not None
    return web.json_response(zone_json(zone, crs_name), status=201)


async def change_zone(request: web.Request) -> web.Response:
    who = principal(request)
    who.require("admin")
    crs_name = _crs(request)
    zone_id = _zone_id(request)
    body = await json_object(request)
    unknown = sorted(set(body) - set(_CHANGEABLE))
    if unknown or not body:
        wrong = f" (not {', '.join(unknown)})" if unknown else ""
        raise json_error(web.HTTPBadRequest, f"change some of {', '.join(_CHANGEABLE)}{wrong}")
    zone = await _visible(request, who, zone_id)
    changes: dict[str, Any] = {}
    if "code" in body:
        changes["code"] = None if body["code"] is None else _checked(zone_check.code, "code", body["code"])
    if "name" in body:
        changes["name"] = _checked(zone_check.name, "name", body["name"])
    if "kind" in body:
        changes["kind"] = _checked(zone_check.kind, "kind", body["kind"])
    if "shape" in body:
        changes["shape"] = _checked(zone_check.shape, "shape", body["shape"], crs_name)
    if "kind" in body or "properties" in body:  # a new kind may need properties the old one did not
        kind = changes.get("kind", zone.kind)
        changes["properties"] = _checked(
            zone_check.properties, "properties", kind, body.get("properties", zone.properties)
        )
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise json_error(web.HTTPBadRequest, "enabled: true or false")
        changes["enabled"] = body["enabled"]
    if "unit" in body:
        changes["unit"] = await _unit(request, who, body["unit"])
    async with request.app[LIVE].pool.connection() as conn:
        try:
            if not await zones.update(conn, zone_id, changes):
                raise json_error(web.HTTPNotFound, f"no zone {zone_id}")
        except zones.CodeTaken:
            raise json_error(web.HTTPConflict, f"a zone {changes['code']!r} exists already") from None
        changed = await zones.get(conn, zone_id)
    assert changed is not None
    return web.json_response(zone_json(changed, crs_name))


async def delete_zone(request: web.Request) -> web.Response:
    who = principal(request)
    who.require("admin")
    zone_id = _zone_id(request)
    await _visible(request, who, zone_id)
    try:
        async with request.app[LIVE].pool.connection() as conn:
            if not await zones.delete(conn, zone_id):
                raise json_error(web.HTTPNotFound, f"no zone {zone_id}")
    except psycopg.errors.ForeignKeyViolation:  # a duty grid that shifts are planned on
        raise json_error(
            web.HTTPConflict, f"zone {zone_id} is in use (shifts are planned on it); change them first"
        ) from None
    return web.Response(status=204)


def assignments_json(a: zones.Assignments) -> dict[str, Any]:
    return {"devices": list(a.devices), "kinds": list(a.kinds), "units": list(a.units)}


async def get_assignments(request: web.Request) -> web.Response:
    zone_id = _zone_id(request)
    await _visible(request, principal(request), zone_id)
    async with request.app[LIVE].pool.connection() as conn:
        assigned = await zones.assignments(conn, zone_id)
    return web.json_response(assignments_json(assigned))


def _ids(body: dict[str, Any], key: str) -> list[int]:
    value = body.get(key, [])
    if (
        not isinstance(value, list)
        or len(value) > MAX_ASSIGNED
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in value)
    ):
        raise json_error(web.HTTPBadRequest, f"{key}: a list of at most {MAX_ASSIGNED} ids")
    return sorted(set(value))


async def put_assignments(request: web.Request) -> web.Response:
    """Replace what the zone applies to: {"devices": [ids], "kinds": [device kinds], "units": [ids]},
    each of them the caller's."""
    who = principal(request)
    who.require("admin")
    zone_id = _zone_id(request)
    body = await json_object(request)
    unknown = sorted(set(body) - {"devices", "kinds", "units"})
    if unknown:
        raise json_error(web.HTTPBadRequest, f"only devices, kinds and units (not {', '.join(unknown)})")
    device_ids, unit_ids = _ids(body, "devices"), _ids(body, "units")
    kinds = body.get("kinds", [])
    if not isinstance(kinds, list) or any(k not in devices.KINDS for k in kinds):
        raise json_error(web.HTTPBadRequest, f"kinds: a list of {', '.join(devices.KINDS)}")
    await _visible(request, who, zone_id)
    async with request.app[LIVE].pool.connection() as conn:
        found = await devices.by_ids(conn, device_ids)
        for device_id in device_ids:
            device = found.get(device_id)
            if device is None or not who.sees_unit(device.org_unit_id):
                raise json_error(web.HTTPBadRequest, f"devices: no device {device_id} among yours")
        known = {u.id for u in await users.units_in(conn, unit_ids)}
        for unit_id in unit_ids:
            if unit_id not in known or not who.sees_unit(unit_id):
                raise json_error(web.HTTPBadRequest, f"units: no unit {unit_id} among yours")
        assigned = zones.Assignments(tuple(device_ids), tuple(sorted(set(kinds))), tuple(unit_ids))
        if not await zones.set_assignments(conn, zone_id, assigned):
            raise json_error(web.HTTPNotFound, f"no zone {zone_id}")
        assigned = await zones.assignments(conn, zone_id)
    return web.json_response(assignments_json(assigned))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/zones", list_zones),
        web.post("/api/zones", create_zone),
        web.get(r"/api/zones/{id:\d+}", one_zone),
        web.patch(r"/api/zones/{id:\d+}", change_zone),
        web.delete(r"/api/zones/{id:\d+}", delete_zone),
        web.get(r"/api/zones/{id:\d+}/assignments", get_assignments),
        web.put(r"/api/zones/{id:\d+}/assignments", put_assignments),
    ]
