"""The HTTP application: authentication in front of every API route, feature routes mounted here."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer_auth(token: str) -> Middleware:
    expected = token.encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/") or request.path == "/metrics":
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
                return web.json_response(
                    {"error": "missing or wrong bearer token"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="telematics"'},
                )
        return await handler(request)

    return middleware


def make_app(token: str, routes: list[web.RouteDef]) -> web.Application:
    if not token:
        raise ValueError("the API needs a token")
    app = web.Application(middlewares=[bearer_auth(token)])
    app.add_routes(routes)
    return app
