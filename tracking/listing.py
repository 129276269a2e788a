"""The query parameters every list of the API shares: a unit (with the units below it) and a page."""

from __future__ import annotations

from aiohttp import web

from access.errors import json_error

MAX_LIMIT = 1000


def unit_and_page(request: web.Request) -> tuple[int | None, int, int]:
    """`unit`, `limit` (1 to MAX_LIMIT, default 200) and `offset` (default 0); 400 when not numbers."""
    q = request.query
    try:
        unit = int(q["unit"]) if q.get("unit") else None
        limit = min(MAX_LIMIT, max(1, int(q.get("limit", "200"))))
        offset = max(0, int(q.get("offset", "0")))
    except ValueError:
        raise json_error(web.HTTPBadRequest, "unit, limit and offset are numbers") from None
    return unit, limit, offset
