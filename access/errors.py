"""JSON error answers: every error of the API is `{"error": "..."}`."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web


def json_error(
    status: type[web.HTTPException], message: str, headers: Mapping[str, str] | None = None
) -> web.HTTPException:
    return status(text=json.dumps({"error": message}), content_type="application/json", headers=headers)
