"""HTTP and WebSocket routes of the live map: live state, counts, select, and the live feed.

Every answer is cut to the caller's units. The WebSocket sends each client the devices that
changed since what it was last sent (the live state's versions coalesce many fixes of a device into
one row), at most `max_rate` times a second; a client that cannot take a message within
`send_timeout` seconds is closed with 1013 (try again later) so it never holds up anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from aiohttp import WSMsgType, web
from psycopg_pool import AsyncConnectionPool

from access.authenticator import Authenticator
from access.errors import json_error, json_object
from access.middleware import request_token
from access.principal import Principal, principal
from access.routes import ACCESS
from alerts.routes import alert_json
from geofence import crs, shapes
from store import db, messages, users
from store.alerts import Alert
from store.devices import KINDS
from tracking.live import LiveState
from tracking.live_service import LiveService
from tracking.messages_api import message_json

log = logging.getLogger("telematics.live")


@dataclass
class _Filter:
    kinds: list[str] | None = None
    units: list[int] | None = None  # unit ids asked for (each with the units below it)
    bbox: tuple[float, float, float, float] | None = None
    crs: str = "wgs84"


@dataclass(eq=False)
class _Client:
    ws: web.WebSocketResponse
    who: Principal
    filter: _Filter | None = None
    unit_scope: set[int] | None = None  # the filter's units within the caller's, resolved
    version: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    counts_at: float = 0.0


class LiveHub:
    """The WebSocket clients of this process, woken when the live state changes."""

    def __init__(
        self, service: LiveService, pool: AsyncConnectionPool, *, max_rate: float = 10.0, send_timeout: float = 5.0
    ) -> None:
        self.service = service
        self.state: LiveState = service.state
        self.pool = pool
        self.max_rate = max_rate
        self.send_timeout = send_timeout
        self._sending: set[asyncio.Future[None]] = set()
        self.token_check_s = 30.0  # the authenticator caches a token's answer this long anyway
        self.clients: set[_Client] = set()
        self._listener: asyncio.Task[None] | None = None
        service.listeners.append(self.wake_all)

    def wake_all(self) -> None:
        for client in self.clients:
            client.wake.set()

    async def start(self, dsn: str) -> None:
        self._listener = asyncio.create_task(self._listen(dsn), name="live-messages")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        for client in list(self.clients):
            await client.ws.close(code=1001, message=b"server shutting down")

    async def _listen(self, dsn: str) -> None:
        """Delivery states from every process (NOTIFY), to the clients that may see the message."""
        while True:
            try:
                conn = await db.connect(dsn, autocommit=True)
                try:
                    await conn.execute(f"LISTEN {messages.CHANNEL_STATE}")
                    async for note in conn.notifies():
                        await self._message_changed(int(note.payload))
                finally:
                    await conn.close()
            except (psycopg.OperationalError, OSError) as e:
                log.warning("live message listener lost the database (%s)", e)
                await asyncio.sleep(2)

    async def _message_changed(self, message_id: int) -> None:
        if not self.clients:
            return
        async with self.pool.connection() as conn:
            m = await messages.get(conn, message_id)
        if m is None:
            return
        for client in list(self.clients):
            shown = message_json(m, client.who)
            if shown["deliveries"] or m.created_by == client.who.name:
                await self._send(client, {"type": "message", "message": shown})

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        client = _Client(ws, principal(request))
        self.clients.add(client)
        pump = asyncio.create_task(self._pump(client), name="live-ws")
        token = request_token(request)
        if token is not None:
            watch = asyncio.create_task(self._watch_token(client, request.app[ACCESS].authenticator, token))
            pump.add_done_callback(lambda _: watch.cancel())
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    request_doc = json.loads(msg.data)
                    if not isinstance(request_doc, dict) or request_doc.get("type") != "subscribe":
                        raise ValueError('send {"type": "subscribe", ...}')
                    wanted = _filter_of(request_doc)
                    scope = await _unit_scope(self.pool, client.who, wanted.units)
                except (ValueError, TypeError) as e:
                    await self._send(client, {"type": "error", "error": str(e)})
                    continue
                client.filter, client.unit_scope = wanted, scope
                client.version = self.state.current_version
                now_us = time.time_ns() // 1000
                slots = _visible(self.state, client.who, scope, wanted.kinds, wanted.bbox)
                devices = await rows_json(self.state, slots, now_us, wanted.crs)
                await self._send_text(client, f'{{"type": "snapshot", "time": "{_iso(now_us)}", "devices": {devices}}}')
                await self._send(client, {"type": "counts", **await counts_json(self, client.who)})
                client.counts_at = time.monotonic()
        finally:
            pump.cancel()
            self.clients.discard(client)
        return ws

    def alert(self, alert: Alert) -> None:
        """An alert raised or ended (the alert engine): to every client that may see its device."""
        doc = {"type": "alert", "alert": alert_json(alert)}
        for client in list(self.clients):
            if client.who.sees_unit(alert.org_unit_id):
                task = asyncio.ensure_future(self._send(client, doc))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _watch_token(self, client: _Client, authenticator: Authenticator, token: str) -> None:
        """An open feed ends when its token does: revoked, expired, or its user disabled."""
        while not client.ws.closed:
            await asyncio.sleep(self.token_check_s)
            if await authenticator.resolve(token) is None:
                log.info("live client %s: token no longer valid; closing", client.who.name)
                self.clients.discard(client)
                await client.ws.close(code=4401, message=b"token revoked or expired")

    async def _pump(self, client: _Client) -> None:
        """Deltas for one client, at its own pace: at once after a quiet spell, else at most `max_rate`
        a second, each one carrying everything that changed meanwhile."""
        sent_at = 0.0
        while not client.ws.closed:
            await client.wake.wait()
            client.wake.clear()
            wait = sent_at + 1 / self.max_rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            sent_at = time.monotonic()
            f = client.filter
            if f is None:
                continue
            version = self.state.current_version
            changed = self.state.changed_since(client.version)
            client.version = version
            keep = _scope_mask(self.state, client.who, client.unit_scope, changed)
            keep &= self.state.mask(kinds=f.kinds, slots=changed)
            if f.bbox is not None:  # a device that left the viewport is sent too: the page drops it
                keep &= self.state.mask(bbox=_grow(f.bbox), slots=changed)
            now_us = time.time_ns() // 1000
            if keep.any():
                rows = self.state.rows(changed[keep], now_us, f.crs)
                await self._send(client, {"type": "delta", "time": _iso(now_us), "devices": rows})
            if time.monotonic() - client.counts_at >= 1.0:
                client.counts_at = time.monotonic()
                await self._send(client, {"type": "counts", **await counts_json(self, client.who)})

    async def _send(self, client: _Client, doc: dict[str, Any]) -> None:
        await self._send_text(client, json.dumps(doc, ensure_ascii=False))

    async def _send_text(self, client: _Client, text: str) -> None:
        if client.ws.closed:
            return
        try:
            await asyncio.wait_for(client.ws.send_str(text), self.send_timeout)
        except (TimeoutError, ConnectionError):
            log.info("live client %s too slow or gone; closing it", client.who.name)
            self.clients.discard(client)
            with contextlib.suppress(Exception):
                await client.ws.close(code=1013, message=b"too slow: reconnect")


LIVE = web.AppKey("live", LiveHub)

# Rows turned into JSON between two turns of the event loop: a whole city (20,000 devices) at once
# held the loop for half a second per WebSocket snapshot, and every terminal's answer with it.
ROWS_PER_TURN = 1000


async def rows_json(state: LiveState, slots: npt.NDArray[np.intp], now_us: int, crs_name: str) -> str:
    """The LIVE rows of `slots` as a JSON array, made a slice at a time, yielding to the loop between."""
    parts = []
    for start in range(0, len(slots), ROWS_PER_TURN):
        if start:
            await asyncio.sleep(0)
        rows = state.rows(slots[start : start + ROWS_PER_TURN], now_us, crs_name)
        parts.append(json.dumps(rows, ensure_ascii=False)[1:-1])
    return "[" + ",".join(parts) + "]"


# --- scope and filters --------------------------------------------------------------------------


async def _unit_scope(pool: AsyncConnectionPool, who: Principal, units: list[int] | None) -> set[int] | None:
    """The unit ids a filter may show: the caller's, narrowed to the asked units and those below them."""
    if units is None:
        return None if who.unit_ids is None else set(who.unit_ids)
    asked: set[int] = set()
    async with pool.connection() as conn:
        for unit in units:
            asked.update(await users.unit_subtree(conn, unit))
    return asked if who.unit_ids is None else asked & set(who.unit_ids)


def _scope_mask(
    state: LiveState, who: Principal, scope: set[int] | None, slots: npt.NDArray[np.intp] | None = None
) -> npt.NDArray[np.bool_]:
    keep = state.mask(unit_ids=scope, slots=slots)
    if scope is not None and who.sees_unit(None):  # devices without a unit: see access.principal
        no_unit = state.column("unit_id")[slice(None) if slots is None else slots]
        if slots is None:
            no_unit = no_unit[: len(keep)]
        keep |= (no_unit == -1) & state.mask(slots=slots)
    return keep


def _visible(
    state: LiveState,
    who: Principal,
    scope: set[int] | None,
    kinds: list[str] | None,
    bbox: tuple[float, float, float, float] | None,
) -> npt.NDArray[np.intp]:
    keep = _scope_mask(state, who, scope) & state.mask(kinds=kinds, bbox=bbox)
    return np.flatnonzero(keep)


def _filter_of(doc: dict[str, Any]) -> _Filter:
    kinds = doc.get("kinds")
    if kinds is not None and (not isinstance(kinds, list) or not all(k in KINDS for k in kinds)):
        raise ValueError(f"kinds: a list of {', '.join(KINDS)}")
    units = doc.get("units")
    if units is not None and (
        not isinstance(units, list) or not all(isinstance(u, int) and not isinstance(u, bool) for u in units)
    ):
        raise ValueError("units: a list of unit ids")
    bbox = doc.get("bbox")
    if bbox is not None:
        bbox = _bbox_of(bbox)
    name = doc.get("crs") or "wgs84"
    if name not in crs.NAMES:
        raise ValueError(f"crs: one of {', '.join(crs.NAMES)}")
    if bbox is not None and name != "wgs84":  # the map's viewport is in its own system; the state is WGS-84
        lat0, lon0 = crs.convert(bbox[1], bbox[0], name, "wgs84")
        lat1, lon1 = crs.convert(bbox[3], bbox[2], name, "wgs84")
        bbox = (float(lon0), float(lat0), float(lon1), float(lat1))
    return _Filter(kinds, units, bbox, name)


def _bbox_of(value: Any) -> tuple[float, float, float, float]:
    if isinstance(value, str):
        value = value.split(",")
    try:
        min_lon, min_lat, max_lon, max_lat = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError("bbox: min_lon,min_lat,max_lon,max_lat") from None
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise ValueError("bbox: min_lon,min_lat,max_lon,max_lat within the world, min before max")
    return min_lon, min_lat, max_lon, max_lat


def _grow(bbox: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The viewport and a margin of half its size around it, so markers leaving it are updated."""
    w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
    return (max(-180, bbox[0] - w / 2), max(-90, bbox[1] - h / 2), min(180, bbox[2] + w / 2), min(90, bbox[3] + h / 2))


def _iso(us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us / 1e6)) + f".{us % 1_000_000 // 1000:03d}Z"


def _query_filter(request: web.Request) -> _Filter:
    q = request.query
    doc: dict[str, Any] = {"crs": q.get("crs")}
    if q.get("kind"):
        doc["kinds"] = q["kind"].split(",")
    if q.get("unit"):
        try:
            doc["units"] = [int(u) for u in q["unit"].split(",")]
        except ValueError:
            raise json_error(web.HTTPBadRequest, "unit: unit ids") from None
    if q.get("bbox"):
        doc["bbox"] = q["bbox"]
    try:
        return _filter_of(doc)
    except ValueError as e:
        raise json_error(web.HTTPBadRequest, str(e)) from None


# --- routes ---------------------------------------------------------------------------------------


async def live(request: web.Request) -> web.Response:
    hub = request.app[LIVE]
    who = principal(request)
    f = _query_filter(request)
    scope = await _unit_scope(hub.pool, who, f.units)
    now_us = time.time_ns() // 1000
    slots = _visible(hub.state, who, scope, f.kinds, f.bbox)
    devices = await rows_json(hub.state, slots, now_us, f.crs)
    return web.Response(text=f'{{"time": "{_iso(now_us)}", "devices": {devices}}}', content_type="application/json")


async def counts_json(hub: LiveHub, who: Principal) -> dict[str, Any]:
    now_us = time.time_ns() // 1000
    scope = None if who.unit_ids is None else set(who.unit_ids)
    raw = hub.state.counts(now_us, unit_ids=scope)
    async with hub.pool.connection() as conn:
        units = [u for u in await users.all_units(conn) if who.sees_unit(u.id)]
    zero = {"online": 0, "offline": 0, "never": 0}
    own = {u.id: dict(raw["by_unit"].get(u.id, zero)) for u in units}
    total_of = {u.id: dict(own[u.id]) for u in units}
    parent = {u.id: u.parent_id for u in units}
    for u in units:  # roll each unit's own counts up to every ancestor the caller sees
        up = parent[u.id]
        seen_path: set[int] = set()
        while up is not None and up in total_of and up not in seen_path:
            seen_path.add(up)
            for k in zero:
                total_of[up][k] += own[u.id][k]
            up = parent[up]
    by_unit = [
        {
            "unit": {"id": u.id, "code": u.code, "name": u.name, "parent_id": u.parent_id},
            "own": own[u.id],
            "all": total_of[u.id],
        }
        for u in units
    ]
    return {"time": _iso(now_us), "total": raw["total"], "by_kind": raw["by_kind"], "by_unit": by_unit}


async def live_counts(request: web.Request) -> web.Response:
    return web.json_response(await counts_json(request.app[LIVE], principal(request)))


async def select(request: web.Request) -> web.Response:
    hub = request.app[LIVE]
    who = principal(request)
    body = await json_object(request)
    name = request.query.get("crs") or "wgs84"
    try:
        shape = shapes.from_json({k: v for k, v in body.items() if k in shapes.SHAPE_KINDS}, name)
        f = _filter_of({"kinds": body.get("kinds"), "units": body.get("units"), "crs": name})
    except ValueError as e:
        raise json_error(web.HTTPBadRequest, str(e)) from None
    scope = await _unit_scope(hub.pool, who, f.units)
    base = _scope_mask(hub.state, who, scope) & hub.state.mask(kinds=f.kinds)
    slots = hub.state.select(shape, base)
    now_us = time.time_ns() // 1000
    return web.json_response({"devices": hub.state.rows(slots, now_us, name)})


async def live_ws(request: web.Request) -> web.WebSocketResponse:
    return await request.app[LIVE].serve(request)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/live", live),
        web.get("/api/live/counts", live_counts),
        web.get("/api/live/ws", live_ws),
        web.post("/api/select", select),
    ]
