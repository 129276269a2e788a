"""JSON in and out of the API: every error is `{"error": "..."}`; a body must be a JSON object."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web


def json_error(
    status: type[web.HTTPException], message: str, headers: Mapping[str, str] | None = None
) -> web.HTTPException:
    return status(text=json.dumps({"error": message}), content_type="application/json", headers=headers)


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's body, which must be a JSON object (400 otherwise)."""
    try:
        body = await request.json()
    except ValueError:
        raise json_error(web.HTTPBadRequest, "the body must be JSON") from None
    if not isinstance(body, dict):
        raise json_error(web.HTTPBadRequest, "the body must be a JSON object")
    return body
