"""HTTP routes for the dispatcher's messages: send a text to devices, follow its delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from access.errors import json_error, json_object
from access.principal import Principal, principal
from access.query import iso
from store import devices, messages

POOL = web.AppKey("messages_pool", AsyncConnectionPool)
MAX_TEXT = 300  # characters: one JT/T 808 0x8300 packet in GBK with room to spare
MAX_DEVICES = 10_000
DEFAULT_EXPIRY_S = 3600
MAX_EXPIRY_S = 7 * 86400


def message_json(m: messages.Message, who: Principal) -> dict[str, Any]:
    return {
        "id": m.id,
        "text": m.text,
        "created": iso(m.created_at),
        "by": m.created_by,
        "expires": iso(m.expires_at),
        "deliveries": [
            {"device": d.device_id, "uid": d.uid, "state": d.state, "updated": iso(d.updated_at), "detail": d.detail}
            for d in m.deliveries
            if who.sees_unit(d.org_unit_id)
        ],
    }


async def visible_message(pool: AsyncConnectionPool, message_id: int, who: Principal) -> dict[str, Any] | None:
    """The message as `who` may see it: only deliveries to its devices; None when it has none of them."""
    async with pool.connection() as conn:
        m = await messages.get(conn, message_id)
    if m is None:
        return None
    shown = message_json(m, who)
    if not shown["deliveries"] and m.created_by != who.name:
        return None
    return shown


async def send(request: web.Request) -> web.Response:
    who = principal(request)
    who.require("admin", "dispatcher")
    body = await json_object(request)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise json_error(web.HTTPBadRequest, "text: a non-empty string is needed")
    if len(text) > MAX_TEXT:
        raise json_error(web.HTTPBadRequest, f"text: at most {MAX_TEXT} characters")
    ids = body.get("devices")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise json_error(web.HTTPBadRequest, "devices: a non-empty list of device ids is needed")
    if len(ids) > MAX_DEVICES:
        raise json_error(web.HTTPBadRequest, f"devices: at most {MAX_DEVICES}")
    expires_s = body.get("expires_s", DEFAULT_EXPIRY_S)
    if not isinstance(expires_s, int) or isinstance(expires_s, bool) or not 1 <= expires_s <= MAX_EXPIRY_S:
        raise json_error(web.HTTPBadRequest, f"expires_s: whole seconds from 1 to {MAX_EXPIRY_S}")
    pool = request.app[POOL]
    wanted = sorted(set(ids))
    async with pool.connection() as conn:
        found = await devices.by_ids(conn, wanted)
        for device_id in wanted:
            device = found.get(device_id)
            if device is None or not who.sees_unit(device.org_unit_id):
                raise json_error(web.HTTPNotFound, f"no device {device_id}")
        expires = datetime.now(UTC) + timedelta(seconds=expires_s)
        message_id = await messages.create(conn, text.strip(), who.name, expires, wanted)
    shown = await visible_message(pool, message_id, who)
    return web.json_response(shown, status=201)


async def one(request: web.Request) -> web.Response:
    try:
        message_id = int(request.match_info["id"])
    except ValueError:
        raise json_error(web.HTTPNotFound, "no such message") from None
    shown = await visible_message(request.app[POOL], message_id, principal(request))
    if shown is None:
        raise json_error(web.HTTPNotFound, f"no message {message_id}")
    return web.json_response(shown)


async def recent(request: web.Request) -> web.Response:
    who = principal(request)
    try:
        limit = min(200, max(1, int(request.query.get("limit", "50"))))
    except ValueError:
        raise json_error(web.HTTPBadRequest, "limit: a number") from None
    pool = request.app[POOL]
    async with pool.connection() as conn:
        ids = await messages.recent(conn, limit * 4)  # some may be another unit's
    shown = []
    for message_id in ids:
        m = await visible_message(pool, message_id, who)
        if m is not None:
            shown.append(m)
            if len(shown) == limit:
                break
    return web.json_response({"messages": shown})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/messages", send),
        web.get("/api/messages", recent),
        web.get("/api/messages/{id}", one),
    ]
