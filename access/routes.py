"""HTTP routes of access: login and logout, who am I, the caller's units, creating users."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from access import passwords, tokens
from access.accounts import AccountError, check_name, check_role
from access.authenticator import Authenticator
from access.errors import json_error, json_object
from access.limiter import FailureLimiter
from access.middleware import LOGIN_PATH, request_token
from access.principal import principal
from access.query import iso
from store import users
from store.users import Unit

T = TypeVar("T")

LOGIN_TTL = timedelta(hours=12)


@dataclass
class Access:
    pool: AsyncConnectionPool
    authenticator: Authenticator
    login_ttl: timedelta = LOGIN_TTL
    # 10 failed logins a minute per client address (per /64 for IPv6, which a client gets whole).
    limiter: FailureLimiter = field(default_factory=FailureLimiter)
    # scrypt takes ~60 ms of CPU and 16 MiB: a burst of logins must not take every core or thread.
    hashing: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))

    async def run_hashing(self, fn: Callable[..., T], *args: Any) -> T:
        async with self.hashing:
            return await asyncio.to_thread(fn, *args)


ACCESS = web.AppKey("access", Access)


def unit_json(u: Unit) -> dict[str, Any]:
    return {"id": u.id, "code": u.code, "name": u.name, "parent_id": u.parent_id}


def user_json(name: str, role: str, unit: Unit | None) -> dict[str, Any]:
    return {"name": name, "role": role, "unit": unit_json(unit) if unit is not None else None}


def _client(request: web.Request) -> str:
    try:
        address = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return request.remote or ""
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


async def login(request: web.Request) -> web.Response:
    access = request.app[ACCESS]
    body = await json_object(request)
    name, password = body.get("name"), body.get("password")
    if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
        raise json_error(web.HTTPBadRequest, "name and password (non-empty strings) are required")
    client = _client(request)
    wait = access.limiter.retry_after(client, time.monotonic())
    if wait > 0:
        raise json_error(
            web.HTTPTooManyRequests, "too many failed logins; try again later", {"Retry-After": str(math.ceil(wait))}
        )
    # Counted before the check, so guesses sent all at once are counted too; taken back on success.
    access.limiter.fail(client, time.monotonic())
    async with access.pool.connection() as conn:
        user = await users.by_name(conn, name)
    # An unknown name is checked against no hash, which takes as long: the answer tells nothing.
    ok = await access.run_hashing(passwords.verify_password, password, user.password_hash if user else None)
    if not ok or user is None or not user.enabled:
        raise json_error(web.HTTPUnauthorized, "wrong name or password")
    access.limiter.forgive(client)
    expires = datetime.now(UTC) + access.login_ttl
    async with access.pool.connection() as conn:
        token = await tokens.issue(conn, user.id, "login", expires)
    return web.json_response(
        {"token": token, "expires": iso(expires), "user": user_json(user.name, user.role, user.unit)}
    )


async def logout(request: web.Request) -> web.Response:
    """Revokes the token of this call."""
    access = request.app[ACCESS]
    if principal(request).user_id is None:
        raise json_error(web.HTTPBadRequest, "the configured API token cannot be revoked (change api.token)")
    token = request_token(request)
    assert token is not None  # the middleware let the call in with it
    async with access.pool.connection() as conn:
        await users.revoke_token(conn, tokens.token_hash(token))
    access.authenticator.forget(token)
    return web.Response(status=204)


async def me(request: web.Request) -> web.Response:
    p = principal(request)
    return web.json_response(user_json(p.name, p.role, p.unit))


async def units(request: web.Request) -> web.Response:
    p = principal(request)
    async with request.app[ACCESS].pool.connection() as conn:
        found = await (users.all_units(conn) if p.unit_ids is None else users.units_in(conn, p.unit_ids))
    return web.json_response({"units": [unit_json(u) for u in found]})


async def create_user(request: web.Request) -> web.Response:
    """Admin only: `{name, role, unit (id or code), password?}`; without a password the user signs in
    with tokens only (`telematics user token NAME`)."""
    p = principal(request)
    p.require("admin")
    access = request.app[ACCESS]
    body = await json_object(request)
    name, role, ref, password = body.get("name"), body.get("role"), body.get("unit"), body.get("password")
    if not isinstance(name, str) or not isinstance(role, str):
        raise json_error(web.HTTPBadRequest, "name and role (strings) are required")
    if password is not None and not isinstance(password, str):
        raise json_error(web.HTTPBadRequest, "password must be a string")
    if isinstance(ref, bool) or not isinstance(ref, int | str):
        raise json_error(web.HTTPBadRequest, "unit (a unit id or code) is required")
    try:
        check_name(name)
        check_role(role)
        if password is not None:
            passwords.check_new(password)
    except (AccountError, passwords.PasswordError) as e:
        raise json_error(web.HTTPBadRequest, str(e)) from None
    password_hash = None if password is None else await access.run_hashing(passwords.hash_password, password)
    async with access.pool.connection() as conn:
        unit = await (users.unit_by_id(conn, ref) if isinstance(ref, int) else users.unit_by_code(conn, ref))
        if unit is None or not p.sees_unit(unit.id):  # outside the caller's scope: as if it did not exist
            raise json_error(web.HTTPBadRequest, f"no unit {ref!r}")
        user = await users.create_user(conn, name, role, unit.id, password_hash)
    if user is None:
        raise json_error(web.HTTPConflict, f"a user named {name!r} exists already")
    return web.json_response(user_json(user.name, user.role, user.unit), status=201)


def routes() -> list[web.RouteDef]:
    return [
        web.post(LOGIN_PATH, login),
        web.post("/api/logout", logout),
        web.get("/api/me", me),
        web.get("/api/units", units),
        web.post("/api/users", create_user),
    ]
