"""HTTP routes of coverage per shift: the computed results, and the share of a window computed now
("how far is the sweeper"), both within the caller's units."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from access.errors import json_error
from access.principal import principal
from access.query import int_param, iso, time_param, unit_scope
from alerts.coverage_job import visited_by
from alerts.coverage_rule import COVERAGE, CoverageParams, parse
from alerts.routes import POOL
from geofence import shapes
from geofence.coverage import Coverage, measure, route_cells
from store import alerts, coverage, devices, zones
from store.coverage import StoredResult
from store.live_state import Columns

MAX_WINDOW = timedelta(days=7)  # of the live share: a week of one device's fixes


def result_json(r: StoredResult) -> dict[str, Any]:
    return {
        "rule": {"id": r.rule_id, "name": r.rule_name},
        "device": r.device_id,
        "uid": r.device_uid,
        "zone": r.zone_id,
        "shift_start": iso(r.shift_start),
        "shift_end": iso(r.shift_end),
        "cells_total": r.cells_total,
        "cells_visited": r.cells_visited,
        "share": r.share,
        "computed": iso(r.computed_at),
        "alert": r.alert_id,
    }


async def list_coverage(request: web.Request) -> web.Response:
    """GET /api/coverage?device=&zone=&rule=&unit=&from=&to=&limit=: results by shift start, newest first."""
    q = request.query
    unit = int_param(q.get("unit"), "unit")
    async with request.app[POOL].connection() as conn:
        units, unitless = await unit_scope(conn, principal(request), None if unit is None else [unit])
        found = await coverage.search(
            conn,
            unit_ids=units,
            with_unitless=unitless,
            device_id=int_param(q.get("device"), "device"),
            zone_id=int_param(q.get("zone"), "zone"),
            rule_id=int_param(q.get("rule"), "rule"),
            since=time_param(q.get("from"), "from"),
            until=time_param(q.get("to"), "to"),
            limit=min(1000, int_param(q.get("limit"), "limit") or 200),
        )
    return web.json_response({"coverage": [result_json(r) for r in found]})


async def live_coverage(request: web.Request) -> web.Response:
    """GET /api/coverage/live?device=&zone=&from=&to=&rule=: the share of the zone the device covered in
    [from, to) (to: now), with the params of a coverage rule (default: the rule's defaults)."""
    who = principal(request)
    q = request.query
    device_id, zone_id = int_param(q.get("device"), "device"), int_param(q.get("zone"), "zone")
    start, end = time_param(q.get("from"), "from"), time_param(q.get("to"), "to") or datetime.now(UTC)
    if device_id is None or zone_id is None or start is None:
        raise json_error(web.HTTPBadRequest, "device, zone and from are needed")
    if not timedelta(0) < end - start <= MAX_WINDOW:
        raise json_error(web.HTTPBadRequest, "from: before to, and at most 7 days before it")
    rule_id = int_param(q.get("rule"), "rule")
    async with request.app[POOL].connection() as conn:
        device = (await devices.by_ids(conn, [device_id])).get(device_id)
        zone = await zones.get(conn, zone_id)
        rule = next((r for r in await alerts.rules(conn) if r.id == rule_id), None) if rule_id is not None else None
        if device is None or not who.sees_unit(device.org_unit_id):
            raise json_error(web.HTTPNotFound, f"no device {device_id}")
        if zone is None or not who.sees_unit(zone.unit.id if zone.unit else None):
            raise json_error(web.HTTPNotFound, f"no zone {zone_id}")
        if rule_id is not None and (rule is None or rule.kind != COVERAGE):
            raise json_error(web.HTTPNotFound, f"no coverage rule {rule_id}")
        fixes = await coverage.fixes(conn, [device_id], start, end)
    try:
        p = parse(rule.params if rule is not None else {}, need_shifts=False)
        shape = shapes.from_json(zone.shape)
    except ValueError as e:  # stored before a check existed
        raise json_error(web.HTTPConflict, str(e)) from None
    covered = await asyncio.to_thread(_measure, p, shape, fixes)
    return web.json_response(
        {
            "device": device_id,
            "uid": device.uid,
            "zone": zone_id,
            "rule": rule_id,
            "from": iso(start),
            "to": iso(end),
            "resolution": p.resolution,
            "fixes": len(fixes["device_id"]),
            "cells_total": covered.total,
            "cells_visited": covered.visited,
            "share": covered.share,
        }
    )


def _measure(p: CoverageParams, shape: shapes.AnyShape, fixes: Columns) -> Coverage:
    return measure(route_cells(shape, p.resolution), visited_by(p, fixes))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/coverage", list_coverage),
        web.get("/api/coverage/live", live_coverage),
    ]
