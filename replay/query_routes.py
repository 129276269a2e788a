"""HTTP routes of the spatial queries over history: who was inside a shape, and where alerts happen.

Both are cut to the caller's units, and every call is written to the audit log (query.visited,
query.hotspots), a refused one too, with its outcome. The CPU work (the shape's cover, the exact test
of the fixes, the H3 cells of the alerts) runs in a thread, so terminals are served meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from access import audit
from access.errors import json_error, json_object
from access.principal import principal
from access.query import iso, required_time, unit_scope
from geofence import crs, shapes
from replay import hotspots
from replay.visited import DEFAULT_MAX_GAP_S, Area, Visit, visits
from store import devices
from store import hotspots as alert_store
from store import visits as visit_store
from store.devices import KINDS

POOL = web.AppKey("query_pool", AsyncConnectionPool)
RESOLUTION = web.AppKey("query_h3_resolution", int)  # database.h3_resolution: the cells the fixes are stored with

ROLES = ("admin", "dispatcher", "auditor")
MAX_VISITED_WINDOW = timedelta(days=7)
MAX_HOTSPOTS_WINDOW = timedelta(days=92)
MAX_GAP_S = 86_400.0
# Fixes read for one query at most (about 100 bytes each while they are read and turned into arrays): a
# shape and window that hold more are refused with a 400 that asks for less, rather than taking the memory.
MAX_FIXES = 2_000_000
_OUTCOMES = {400: "bad_request", 403: "forbidden", 404: "not_found"}


@contextlib.asynccontextmanager
async def _audited(request: web.Request, action: str) -> AsyncIterator[dict[str, Any]]:
    """The target to fill in as the request is read; recorded with the outcome, a refusal before it goes out."""
    target: dict[str, Any] = {}
    try:
        yield target
    except web.HTTPException as e:
        await audit.record(request, action, target, _OUTCOMES.get(e.status, str(e.status)))
        raise
    await audit.record(request, action, target)


def _iso_us(us: int) -> str:
    return iso(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us))


def _window(since: Any, until: Any, most: timedelta) -> tuple[datetime, datetime]:
    start, end = required_time(since, "from"), required_time(until, "to")
    if end <= start:
        raise json_error(web.HTTPBadRequest, "to must be after from")
    if end - start > most:
        raise json_error(web.HTTPBadRequest, f"the window from {since} to {until} is longer than {most.days} days")
    return start, end


def _crs(request: web.Request) -> str:
    name = request.query.get("crs") or "wgs84"
    if name not in crs.NAMES:
        raise json_error(web.HTTPBadRequest, f"crs: one of {', '.join(crs.NAMES)}")
    return name


def _ids(value: Any, what: str) -> list[int] | None:
    """None, a list of ids, or (from a query string) ids separated by commas."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return [int(v) for v in value.split(",")]
        except ValueError:
            raise json_error(web.HTTPBadRequest, f"{what}: ids separated by commas") from None
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise json_error(web.HTTPBadRequest, f"{what}: a list of ids")
    return value


# --- who was here ---------------------------------------------------------------------------------------


async def visited(request: web.Request) -> web.Response:
    """POST /api/query/visited?crs=: each device that was inside the shape in [from, to), with its visits."""
    who = principal(request)
    pool = request.app[POOL]
    async with _audited(request, "query.visited") as target:
        who.require(*ROLES)
        body = await json_object(request)
        name = _crs(request)
        shape_doc = {k: v for k, v in body.items() if k in shapes.SHAPE_KINDS}
        target.update({"shape": shape_doc, "crs": name, "from": body.get("from"), "to": body.get("to")})
        try:
            shape = shapes.from_json(shape_doc, name)
        except ValueError as e:
            raise json_error(web.HTTPBadRequest, f"shape: {e}") from None
        since, until = _window(body.get("from"), body.get("to"), MAX_VISITED_WINDOW)
        max_gap_s = body.get("max_gap_s", DEFAULT_MAX_GAP_S)
        if isinstance(max_gap_s, bool) or not isinstance(max_gap_s, int | float) or not 0 < max_gap_s <= MAX_GAP_S:
            raise json_error(web.HTTPBadRequest, f"max_gap_s: seconds, above 0 and at most {MAX_GAP_S:.0f}")
        kinds = body.get("kinds")
        if kinds is not None and (not isinstance(kinds, list) or not all(k in KINDS for k in kinds)):
            raise json_error(web.HTTPBadRequest, f"kinds: a list of {', '.join(KINDS)}")
        asked = _ids(body.get("units"), "units")
        try:
            area = await asyncio.to_thread(Area.of, shape, request.app[RESOLUTION])
        except ValueError as e:
            raise json_error(web.HTTPBadRequest, str(e)) from None
        async with pool.connection() as conn:
            units, unitless = await unit_scope(conn, who, asked)
            fixes = await visit_store.in_cells(
                conn,
                area.cells.tolist(),
                since,
                until,
                unit_ids=units,
                with_unitless=unitless,
                kinds=kinds,
                limit=MAX_FIXES + 1,
            )
        if len(fixes) > MAX_FIXES:
            raise json_error(
                web.HTTPBadRequest, f"more than {MAX_FIXES:,} fixes in the shape and window: ask for a smaller one"
            )
        inside, found = await asyncio.to_thread(_visits_of, area, fixes, float(max_gap_s))
        async with pool.connection() as conn:
            info = await devices.by_ids(conn, sorted({v.device_id for v in found}))
        # Where each visit began and ended (two places a visit), in the asked system.
        ends = inside[np.array([row for v in found for row in (v.first, v.last)], dtype=np.intp)]
        lat, lon = crs.convert(fixes.lat[ends], fixes.lon[ends], "wgs84", name)
        places = [{"lat": round(a, 7), "lon": round(b, 7)} for a, b in zip(lat.tolist(), lon.tolist(), strict=True)]
        answer = {
            "from": iso(since),
            "to": iso(until),
            "max_gap_s": max_gap_s,
            "devices": _devices_json(found, info, places),
        }
    return web.json_response(answer)


def _visits_of(area: Area, fixes: visit_store.CellFixes, max_gap_s: float) -> tuple[np.ndarray, list[Visit]]:
    """The rows of the inside fixes, and their visits (whose rows index the inside fixes)."""
    inside = np.flatnonzero(area.inside(fixes.lat, fixes.lon, fixes.h3_cell))
    return inside, visits(fixes.device_id[inside], fixes.fix_time[inside], max_gap_s)


def _devices_json(
    found: list[Visit], info: dict[int, devices.Device], places: list[dict[str, float]]
) -> list[dict[str, Any]]:
    """The devices by their first entry. `found` is by device and time; `places` holds where each visit
    began and ended, two a visit in the order of `found`."""
    shown = (
        (
            v,
            {
                "entered": _iso_us(v.entered_us),
                "left": _iso_us(v.left_us),
                "fixes": v.fixes,
                "first_fix": places[2 * k],
                "last_fix": places[2 * k + 1],
            },
        )
        for k, v in enumerate(found)
    )
    out = []
    for device_id, group in itertools.groupby(shown, key=lambda pair: pair[0].device_id):
        runs = list(group)
        d = info.get(device_id)
        first, last = runs[0][0], runs[-1][0]
        doc = {
            "id": device_id,
            "uid": d.uid if d else None,
            "name": d.name if d else None,
            "kind": d.kind if d else None,
            "plate": d.plate if d else None,
            "unit": d.org_unit_id if d else None,
            "first": _iso_us(first.entered_us),
            "last": _iso_us(last.left_us),
            "visits": [shown_visit for _, shown_visit in runs],
        }
        out.append((first.entered_us, device_id, doc))
    out.sort(key=lambda entry: entry[:2])
    return [doc for _, _, doc in out]


# --- hotspots -------------------------------------------------------------------------------------------


def _texts(value: str | None) -> list[str] | None:
    found = [v for v in (value or "").split(",") if v]
    return found or None


async def alert_hotspots(request: web.Request) -> web.Response:
    """GET /api/alerts/hotspots?from=&to=&kind=&rule=&unit=&resolution=&crs=: a GeoJSON FeatureCollection."""
    who = principal(request)
    pool = request.app[POOL]
    q = request.query
    async with _audited(request, "query.hotspots") as target:
        target.update({k: q.get(k) for k in ("from", "to", "kind", "rule", "unit", "resolution") if q.get(k)})
        who.require(*ROLES)
        name = _crs(request)
        since, until = _window(q.get("from"), q.get("to"), MAX_HOTSPOTS_WINDOW)
        raw = q.get("resolution") or str(hotspots.DEFAULT_RESOLUTION)
        if not raw.isdigit() or int(raw) not in hotspots.RESOLUTIONS:
            first, last = hotspots.RESOLUTIONS.start, hotspots.RESOLUTIONS.stop - 1
            raise json_error(web.HTTPBadRequest, f"resolution: {first} to {last}")
        resolution = int(raw)
        kinds, rules = _texts(q.get("kind")), _ids(q.get("rule"), "rule")
        asked = _ids(q.get("unit"), "unit")
        async with pool.connection() as conn:
            units, unitless = await unit_scope(conn, who, asked)
            places = await alert_store.alert_places(
                conn, since, until, unit_ids=units, with_unitless=unitless, kinds=kinds, rule_ids=rules
            )
        answer = await asyncio.to_thread(_hotspots_json, places, resolution, name, since, until)
    return web.json_response(answer)


def _hotspots_json(
    places: alert_store.AlertPlaces, resolution: int, name: str, since: datetime, until: datetime
) -> dict[str, Any]:
    found = hotspots.aggregate(places.kind, places.lat, places.lon, places.count, resolution)
    about = {"from": iso(since), "to": iso(until), "resolution": resolution, "crs": name}
    return hotspots.feature_collection(found, name, about)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/query/visited", visited),
        web.get("/api/alerts/hotspots", alert_hotspots),
    ]
