"""HTTP routes of replay: a device's track, its trips and stops, and its mileage over a time range.

Every call leaves a trace in the audit log (access.audit) before it is answered: the answered ones
with outcome ok, and the refused ones too, with forbidden, not_found (a device of another unit is
answered as if it did not exist, and recorded) or bad_request. The target is what was asked: the
device and the query parameters as the caller sent them.

A request reads the range with one query (store.tracks); cleaning, stops, simplification and the
answer's text are computed in a worker thread, so a long track does not hold up the event loop that
also acknowledges the terminals' reports.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import numpy as np
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from access import audit
from access.errors import json_error
from access.principal import principal
from geofence import crs as crs_
from replay import clean, export, simplify, trips
from replay.export import TrackView
from replay.geo import steps_m
from store import devices, tracks
from store.batch import to_micros
from store.tracks import Track

POOL = web.AppKey("replay_pool", AsyncConnectionPool)

ROLES = ("admin", "dispatcher", "auditor")
MAX_RANGE = timedelta(days=31)
MAX_POINTS = 200_000
MAX_TOLERANCE_M = 100_000.0

_COMMON_PARAMS = ("from", "to", "format")
TRACK_PARAMS = (*_COMMON_PARAMS, "crs", "simplify", "points", "min_stop_s", "stop_radius_m")
TRIPS_PARAMS = (*_COMMON_PARAMS, "crs", "min_stop_s", "stop_radius_m")
MILEAGE_PARAMS = (*_COMMON_PARAMS, "utc_offset_h")

TRACK_ACTIONS = {"json": "replay.track", "geojson": "export.geojson", "gpx": "export.gpx", "csv": "export.csv"}
TRIPS_ACTIONS = {"json": "replay.trips", "csv": "export.csv"}
_CONTENT_TYPES = {"geojson": "application/geo+json", "gpx": "application/gpx+xml", "csv": "text/csv"}

T = TypeVar("T")


class _BadRequest(ValueError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class _Range:
    start: datetime
    end: datetime

    @property
    def us(self) -> tuple[int, int]:
        return to_micros(self.start), to_micros(self.end)


# --- the common steps: who, which device, which parameters, and the trace of it ---------------------------


async def _admitted(
    request: web.Request, action: str, what: str, params: tuple[str, ...], parse: Callable[[], T]
) -> tuple[devices.Listed, T, dict[str, Any]]:
    """The device of the path and the parsed parameters, after the checks; each refusal is recorded
    before it is raised. Also the audit target (the route's own parameters as sent), for the record
    of the answer."""
    who = principal(request)
    device_id = int(request.match_info["id"])
    q = request.query
    target: dict[str, Any] = {"device": device_id, "what": what, "format": "json"}
    target.update((name, q[name]) for name in params if name in q)
    if who.role not in ROLES:
        await audit.record(request, action, target, "forbidden")
        who.require(*ROLES)
    async with request.app[POOL].connection() as conn:
        found = await devices.search(conn, unit_ids=None, with_unitless=True, device_id=device_id)
    if not found or not who.sees_unit(found[0].unit_id):
        await audit.record(request, action, target, "not_found")
        raise json_error(web.HTTPNotFound, f"no device {device_id}")
    try:
        parsed = parse()
    except _BadRequest as e:
        await audit.record(request, action, target, "bad_request")
        raise json_error(web.HTTPBadRequest, str(e)) from None
    return found[0], parsed, target


def _range(q: Any) -> _Range:
    start, end = _time(q.get("from"), "from"), _time(q.get("to"), "to")
    if end <= start:
        raise _BadRequest("to: after from")
    if end - start > MAX_RANGE:
        raise _BadRequest(f"from, to: at most {MAX_RANGE.days} days apart")
    return _Range(start, end)


def _time(value: str | None, what: str) -> datetime:
    if not value:
        raise _BadRequest(f"{what}: required, an ISO 8601 time with its zone")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise _BadRequest(f"{what}: an ISO 8601 time with its zone, such as 2026-11-20T08:00:00+08:00") from None
    if t.tzinfo is None:
        raise _BadRequest(f"{what}: give the zone (Z or an offset such as +08:00)")
    return t


def _number(q: Any, name: str, default: float | None, low: float, high: float, *, whole: bool = False) -> float | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        kind = "a whole number" if whole else "a number"
        raise _BadRequest(f"{name}: {kind} from {low:g} to {high:g}")
    return value


def _choice(q: Any, name: str, choices: Any, default: str) -> str:
    value = q.get(name) or default
    if value not in choices:
        raise _BadRequest(f"{name}: one of {', '.join(choices)}")
    return str(value)


def _stop_params(q: Any) -> tuple[float, float]:
    min_stop_s = _number(q, "min_stop_s", trips.MIN_STOP_S, 1, 86_400, whole=True)
    radius = _number(q, "stop_radius_m", trips.STOP_RADIUS_M, 1, 10_000)
    assert min_stop_s is not None and radius is not None
    return min_stop_s, radius


async def _read(request: web.Request, device_id: int, asked: _Range) -> Track:
    async with request.app[POOL].connection() as conn:
        return await tracks.read(conn, device_id, asked.start, asked.end)


def _answer(text: str, fmt: str, device_id: int, what: str, start_us: int) -> web.Response:
    if fmt == "json":
        return web.Response(text=text, content_type="application/json")
    stamp = export.iso(start_us).replace("-", "").replace(":", "")
    extension = "geojson" if fmt == "geojson" else fmt
    return web.Response(
        text=text,
        content_type=_CONTENT_TYPES[fmt],
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="device-{device_id}-{what}-{stamp}.{extension}"'},
    )


def _now_us() -> int:
    return time.time_ns() // 1000


# --- coordinates in the asked system --------------------------------------------------------------


def _track_in(track: Track, system: str) -> Track:
    if system == "wgs84":
        return track
    lat, lon = crs_.convert(track.lat, track.lon, "wgs84", system)
    return dataclasses.replace(track, lat=lat, lon=lon)


def _stops_in(found: list[trips.Stop], system: str) -> list[trips.Stop]:
    if system == "wgs84" or not found:
        return found
    lat, lon = crs_.convert(np.array([s.lat for s in found]), np.array([s.lon for s in found]), "wgs84", system)
    return [dataclasses.replace(s, lat=a, lon=o) for s, a, o in zip(found, lat.tolist(), lon.tolist(), strict=True)]


def _trips_in(found: list[trips.Trip], system: str) -> list[trips.Trip]:
    if system == "wgs84" or not found:
        return found
    start = crs_.convert(
        np.array([t.start_lat for t in found]), np.array([t.start_lon for t in found]), "wgs84", system
    )
    end = crs_.convert(np.array([t.end_lat for t in found]), np.array([t.end_lon for t in found]), "wgs84", system)
    return [
        dataclasses.replace(t, start_lat=sa, start_lon=so, end_lat=ea, end_lon=eo)
        for t, sa, so, ea, eo in zip(
            found, start[0].tolist(), start[1].tolist(), end[0].tolist(), end[1].tolist(), strict=True
        )
    ]


# --- GET /api/devices/{id}/track -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _TrackAsk:
    range: _Range
    fmt: str
    crs: str
    tolerance_m: float | None
    points: int | None
    min_stop_s: float
    stop_radius_m: float


def _track_ask(q: Any) -> _TrackAsk:
    asked = _range(q)
    fmt = _choice(q, "format", TRACK_ACTIONS, "json")
    system = _choice(q, "crs", crs_.NAMES, "wgs84")
    tolerance = _number(q, "simplify", None, 0, MAX_TOLERANCE_M)
    points = _number(q, "points", None, 2, MAX_POINTS, whole=True)
    if tolerance is not None and points is not None:
        raise _BadRequest("simplify, points: one of the two")
    return _TrackAsk(asked, fmt, system, tolerance, None if points is None else int(points), *_stop_params(q))


def track_view(
    device_id: int, uid: str, track: Track, ask: _TrackAsk, now_us: int, *, start_us: int, end_us: int
) -> TrackView:
    """Clean the fixes, find the stops, simplify if asked, and move to the asked coordinates."""
    codes = clean.reasons(track, now_us)
    good = track.take(codes == clean.CLEAN)
    found = trips.stops(good, min_stop_s=ask.min_stop_s, stop_radius_m=ask.stop_radius_m)
    shown, shown_codes = track, codes
    simplified: dict[str, float] | None = None
    if ask.tolerance_m is not None or ask.points is not None:
        keep = simplify.turns(good.lat, good.lon)
        keep[np.array([s.first for s in found] + [s.last for s in found], dtype=np.intp)] = True
        kept = simplify.simplify(good.lat, good.lon, tolerance_m=ask.tolerance_m, points=ask.points, keep=keep)
        shown, shown_codes = good.take(kept), np.zeros(len(kept), dtype=np.uint8)
        simplified = {"points": ask.points} if ask.points is not None else {"tolerance_m": ask.tolerance_m or 0.0}
    return TrackView(
        device_id=device_id,
        uid=uid,
        start_us=start_us,
        end_us=end_us,
        crs=ask.crs,
        fixes=_track_in(shown, ask.crs),
        reasons=shown_codes,
        stops=_stops_in(found, ask.crs),
        total=len(track),
        excluded=clean.counts(codes),
        distance_km=float(steps_m(good.lat, good.lon).sum()) / 1000,
        simplified=simplified,
    )


_RENDER_TRACK: dict[str, Callable[[TrackView], str]] = {
    "json": lambda v: json.dumps(export.track_json(v)),
    "geojson": lambda v: json.dumps(export.track_geojson(v)),
    "gpx": export.track_gpx,
    "csv": export.track_csv,
}


async def get_track(request: web.Request) -> web.Response:
    fmt = request.query.get("format") or "json"
    action = TRACK_ACTIONS.get(fmt, "replay.track")
    device, ask, target = await _admitted(request, action, "track", TRACK_PARAMS, lambda: _track_ask(request.query))
    track = await _read(request, device.id, ask.range)
    start_us, end_us = ask.range.us

    def render() -> str:
        view = track_view(device.id, device.uid, track, ask, _now_us(), start_us=start_us, end_us=end_us)
        return _RENDER_TRACK[ask.fmt](view)

    text = await asyncio.to_thread(render)
    await audit.record(request, action, target)
    return _answer(text, ask.fmt, device.id, "track", start_us)


# --- GET /api/devices/{id}/trips -------------------------------------------------------------------


def _trips_ask(q: Any) -> tuple[_Range, str, str, float, float]:
    asked = _range(q)
    fmt = _choice(q, "format", TRIPS_ACTIONS, "json")
    system = _choice(q, "crs", crs_.NAMES, "wgs84")
    return (asked, fmt, system, *_stop_params(q))


async def get_trips(request: web.Request) -> web.Response:
    fmt = request.query.get("format") or "json"
    action = TRIPS_ACTIONS.get(fmt, "replay.trips")
    device, (asked, fmt, system, min_stop_s, radius), target = await _admitted(
        request, action, "trips", TRIPS_PARAMS, lambda: _trips_ask(request.query)
    )
    track = await _read(request, device.id, asked)
    start_us, end_us = asked.us

    def render() -> str:
        codes = clean.reasons(track, _now_us())
        good = track.take(codes == clean.CLEAN)
        found = trips.stops(good, min_stop_s=min_stop_s, stop_radius_m=radius)
        journeys = _trips_in(trips.trips(good, found), system)
        found = _stops_in(found, system)
        if fmt == "csv":
            return export.trips_csv(journeys, found)
        odometer = [t.odometer_km for t in journeys if t.odometer_km is not None]
        return json.dumps(
            {
                "device": {"id": device.id, "uid": device.uid},
                "from": export.iso(start_us),
                "to": export.iso(end_us),
                "crs": system,
                "min_stop_s": min_stop_s,
                "stop_radius_m": radius,
                "total": len(track),
                "excluded": clean.counts(codes),
                "distance_km": round(sum(t.distance_km for t in journeys), 3),
                "odometer_km": round(sum(odometer), 3) if odometer else None,
                "trips": [export.trip_json(t) for t in journeys],
                "stops": [export.stop_json(s) for s in found],
            }
        )

    text = await asyncio.to_thread(render)
    await audit.record(request, action, target)
    return _answer(text, fmt, device.id, "trips", start_us)


# --- GET /api/devices/{id}/mileage -----------------------------------------------------------------


def _mileage_ask(q: Any) -> tuple[_Range, float]:
    asked = _range(q)
    _choice(q, "format", ("json",), "json")
    offset = _number(q, "utc_offset_h", trips.UTC_OFFSET_H, -12, 14)
    assert offset is not None
    return asked, offset


async def get_mileage(request: web.Request) -> web.Response:
    action = "replay.mileage"
    device, (asked, offset), target = await _admitted(
        request, action, "mileage", MILEAGE_PARAMS, lambda: _mileage_ask(request.query)
    )
    track = await _read(request, device.id, asked)
    start_us, end_us = asked.us

    def render() -> str:
        codes = clean.reasons(track, _now_us())
        days = trips.daily(track, codes != clean.CLEAN, start_us=start_us, end_us=end_us, utc_offset_h=offset)
        odometer = [d.odometer_km for d in days if d.odometer_km is not None]
        total = {
            "distance_km": round(sum(d.distance_km for d in days), 3),
            "odometer_km": round(sum(odometer), 3) if odometer else None,
            "fixes": len(track),
            "excluded": int((codes != clean.CLEAN).sum()),
        }
        return json.dumps(
            {
                "device": {"id": device.id, "uid": device.uid},
                "from": export.iso(start_us),
                "to": export.iso(end_us),
                "utc_offset_h": offset,
                "days": [export.day_json(d) for d in days],
                "total": total,
            }
        )

    text = await asyncio.to_thread(render)
    await audit.record(request, action, target)
    return _answer(text, "json", device.id, "mileage", start_us)


def routes() -> list[web.RouteDef]:
    return [
        web.get(r"/api/devices/{id:\d+}/track", get_track),
        web.get(r"/api/devices/{id:\d+}/trips", get_trips),
        web.get(r"/api/devices/{id:\d+}/mileage", get_mileage),
    ]
