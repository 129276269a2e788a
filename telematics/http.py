"""The HTTP application: authentication in front of every API route, feature routes mounted here."""

from __future__ import annotations

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from access import routes as access_routes
from access.authenticator import Authenticator
from access.middleware import authenticate


def make_app(token: str, pool: AsyncConnectionPool, routes: list[web.RouteDef]) -> web.Application:
    """`token` is the configured API token (a built-in admin that sees every unit); users' tokens
    are looked up in the database through `pool`."""
    if not token:
        raise ValueError("the API needs a token")
    authenticator = Authenticator(pool, token)
    app = web.Application(middlewares=[authenticate(authenticator)])
    app[access_routes.ACCESS] = access_routes.Access(pool, authenticator)
    app.add_routes(access_routes.routes() + routes)
    return app
