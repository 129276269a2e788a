"""Recording every replay, query and export (人过留痕), and reading the record (admins only).

Routes that show history call `record(request, action, target, outcome)`; an attempt that is
refused is recorded as well, before the refusal, so a look at another unit's device leaves a trace.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from access.errors import json_error
from access.principal import principal
from access.query import iso, time_param
from store import audit

log = logging.getLogger("telematics.audit")

POOL = web.AppKey("audit_pool", AsyncConnectionPool)


async def record(request: web.Request, action: str, target: dict[str, Any], outcome: str = "ok") -> None:
    who = principal(request)
    async with request.app[POOL].connection() as conn:
        await audit.record(
            conn,
            user_id=who.user_id,
            user_name=who.name,
            role=who.role,
            org_unit_id=who.unit.id if who.unit is not None else None,
            action=action,
            target=target,
            outcome=outcome,
            client=request.remote or "",
        )


def _count(value: str | None, what: str, default: int, most: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) > most:
        raise json_error(web.HTTPBadRequest, f"{what}: a whole number up to {most}")
    return int(value)


async def list_audit(request: web.Request) -> web.Response:
    """GET /api/audit: the record, newest first; an admin reads the entries of callers in its units."""
    who = principal(request)
    who.require("admin")
    q = request.query
    async with request.app[POOL].connection() as conn:
        found = await audit.search(
            conn,
            unit_ids=None if who.unit_ids is None else sorted(who.unit_ids),
            since=time_param(q.get("since"), "since"),
            until=time_param(q.get("until"), "until"),
            user=q.get("user") or None,
            action=q.get("action") or None,
            limit=_count(q.get("limit"), "limit", 100, 1000),
            offset=_count(q.get("offset"), "offset", 0, 10**9),
        )
    return web.json_response({"entries": [entry_json(e) for e in found]})


def entry_json(e: audit.Entry) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": iso(e.at),
        "user": e.user_name,
        "role": e.role,
        "unit": e.org_unit_id,
        "action": e.action,
        "target": e.target,
        "outcome": e.outcome,
        "client": e.client,
    }


def routes() -> list[web.RouteDef]:
    return [web.get("/api/audit", list_audit)]
