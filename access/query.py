"""What API routes read from a request the same way everywhere: times and numbers in the query string,
the units a caller's question covers, and how times are written back (UTC, "Z")."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, overload

from aiohttp import web
from psycopg import AsyncConnection

from access.errors import json_error
from access.principal import Principal
from store import users


@overload
def iso(t: datetime) -> str: ...
@overload
def iso(t: None) -> None: ...
def iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def time_param(value: Any, what: str) -> datetime | None:
    """An ISO 8601 time (a time without a zone is UTC); None when not given."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise json_error(web.HTTPBadRequest, f"{what}: an ISO 8601 time")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise json_error(web.HTTPBadRequest, f"{what}: an ISO 8601 time, not {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def required_time(value: Any, what: str) -> datetime:
    t = time_param(value, what)
    if t is None:
        raise json_error(web.HTTPBadRequest, f"{what}: an ISO 8601 time is required")
    return t


def int_param(value: str | None, what: str) -> int | None:
    """A whole number; None when not given."""
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise json_error(web.HTTPBadRequest, f"{what}: a number") from None


def caller_scope(who: Principal) -> tuple[list[int] | None, bool]:
    """The units the caller sees (None: all) and whether it sees what has no unit."""
    return (None if who.unit_ids is None else sorted(who.unit_ids)), who.sees_unit(None)


async def unit_scope(
    conn: AsyncConnection, who: Principal, asked: Iterable[int] | None
) -> tuple[list[int] | None, bool]:
    """The units a question covers (None: all) and whether it covers what has no unit: the caller's units,
    or the asked units and those below them among the caller's."""
    if asked is None:
        return caller_scope(who)
    units: set[int] = set()
    for unit in asked:
        units.update(await users.unit_subtree(conn, unit))
    return sorted(units if who.unit_ids is None else units & who.unit_ids), False
