"""Authentication in front of `/api/*` (except `POST /api/login`) and `/metrics`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from access.authenticator import Authenticator
from access.principal import PRINCIPAL

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LOGIN_PATH = "/api/login"


def needs_token(request: web.Request) -> bool:
    if request.method == "POST" and request.path == LOGIN_PATH:
        return False
    # The matched route as well as the raw path: a path spelled oddly must not slip past.
    resource = request.match_info.route.resource
    paths = (request.path, resource.canonical if resource is not None else "")
    return any(p.startswith("/api/") or p == "/metrics" for p in paths)


def request_token(request: web.Request) -> str | None:
    """`Authorization: Bearer TOKEN`; on WebSocket paths (`.../ws`) also `?token=TOKEN`, since
    browsers cannot set headers on a WebSocket."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if request.path.endswith("/ws"):
        return request.query.get("token") or None
    return None


def _unauthorized(message: str, challenge: str) -> web.Response:
    return web.json_response({"error": message}, status=401, headers={"WWW-Authenticate": challenge})


def authenticate(authenticator: Authenticator) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if needs_token(request):
            token = request_token(request)
            if token is None:
                return _unauthorized("this call needs a bearer token", 'Bearer realm="telematics"')
            found = await authenticator.resolve(token)
            if found is None:
                return _unauthorized(
                    "the token is wrong, revoked or expired",
                    'Bearer realm="telematics", error="invalid_token"',
                )
            request[PRINCIPAL] = found
        return await handler(request)

    return middleware
