"""API users, their bearer tokens (kept only as SHA-256 hashes) and the unit tree that scopes them."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

ROLES = ("admin", "dispatcher", "auditor")  # the user_role enum


@dataclass(frozen=True, slots=True)
class Unit:
    id: int
    code: str
    name: str
    parent_id: int | None


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: str
    unit: Unit
    password_hash: str | None  # None: signs in with tokens only
    enabled: bool


@dataclass(frozen=True, slots=True)
class TokenOwner:
    """The enabled user behind an unexpired token, and the units it may see."""

    user_id: int
    name: str
    role: str
    unit: Unit
    unit_ids: list[int]  # the user's unit and every unit below it
    expires_at: datetime | None


_UNIT_COLS = "o.id, o.code, o.name, o.parent_id"
_USER_SELECT = (
    f"SELECT u.id, u.name, u.role::text, {_UNIT_COLS}, u.password_hash, u.enabled "
    "FROM users u JOIN org_units o ON o.id = u.org_unit_id"
)


def _user(row: tuple[Any, ...]) -> User:
    return User(row[0], row[1], row[2], Unit(*row[3:7]), row[7], row[8])


async def create_user(
    conn: psycopg.AsyncConnection, name: str, role: str, unit_id: int, password_hash: str | None = None
) -> User | None:
    """The new user; None when the name is taken."""
    cur = await conn.execute(
        """INSERT INTO users (name, role, org_unit_id, password_hash) VALUES (%s, %s::user_role, %s, %s)
           ON CONFLICT (name) DO NOTHING RETURNING id""",
        (name, role, unit_id, password_hash),
    )
    row = await cur.fetchone()
    return await by_id(conn, row[0]) if row else None


async def by_name(conn: psycopg.AsyncConnection, name: str) -> User | None:
    cur = await conn.execute(f"{_USER_SELECT} WHERE u.name = %s", (name,))  # type: ignore[arg-type]
    row = await cur.fetchone()
    return _user(row) if row else None


async def by_id(conn: psycopg.AsyncConnection, user_id: int) -> User | None:
    cur = await conn.execute(f"{_USER_SELECT} WHERE u.id = %s", (user_id,))  # type: ignore[arg-type]
    row = await cur.fetchone()
    return _user(row) if row else None


async def set_password(conn: psycopg.AsyncConnection, user_id: int, password_hash: str | None) -> None:
    await conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id))


async def create_token(
    conn: psycopg.AsyncConnection, user_id: int, token_hash: bytes, label: str, expires_at: datetime | None
) -> int:
    """Store a token by its hash (the token itself is never stored); the token row's id."""
    cur = await conn.execute(
        "INSERT INTO api_tokens (user_id, token_hash, label, expires_at) VALUES (%s, %s, %s, %s) RETURNING id",
        (user_id, token_hash, label, expires_at),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def token_owner(
    conn: psycopg.AsyncConnection, token_hash: bytes, touch_after: timedelta = timedelta(minutes=1)
) -> TokenOwner | None:
    """Who a token belongs to, in one round trip: None for an unknown or expired token or a disabled
    user. Also sets the token's last_used_at, at most once per `touch_after` (so a busy token does
    not write on every lookup, whichever process looks it up)."""
    cur = await conn.execute(
        """WITH owner AS (
                SELECT t.id AS token_id, t.expires_at, u.id AS user_id, u.name AS user_name, u.role::text AS role,
                       o.id AS unit_id, o.code, o.name AS unit_name, o.parent_id
                FROM api_tokens t JOIN users u ON u.id = t.user_id JOIN org_units o ON o.id = u.org_unit_id
                WHERE t.token_hash = %(hash)s AND u.enabled AND (t.expires_at IS NULL OR t.expires_at > now())
            ), touched AS (
                UPDATE api_tokens SET last_used_at = now()
                WHERE id = (SELECT token_id FROM owner)
                  AND (last_used_at IS NULL OR last_used_at < now() - %(touch)s::interval)
            )
            SELECT user_id, user_name, role, unit_id, code, unit_name, parent_id,
                   ARRAY(SELECT org_unit_subtree(unit_id)), expires_at
            FROM owner""",
        {"hash": token_hash, "touch": touch_after},
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return TokenOwner(row[0], row[1], row[2], Unit(*row[3:7]), list(row[7]), row[8])


async def revoke_token(conn: psycopg.AsyncConnection, token_hash: bytes) -> bool:
    cur = await conn.execute("DELETE FROM api_tokens WHERE token_hash = %s", (token_hash,))
    return cur.rowcount > 0


async def revoke_tokens(conn: psycopg.AsyncConnection, user_id: int) -> int:
    """Every token of a user; how many there were."""
    cur = await conn.execute("DELETE FROM api_tokens WHERE user_id = %s", (user_id,))
    return cur.rowcount


async def unit_subtree(conn: psycopg.AsyncConnection, unit_id: int) -> list[int]:
    """The unit and every unit below it (empty for an unknown unit)."""
    cur = await conn.execute("SELECT org_unit_subtree(%s) ORDER BY 1", (unit_id,))
    return [int(r[0]) for r in await cur.fetchall()]


_UNIT_SELECT = f"SELECT {_UNIT_COLS} FROM org_units o"


async def units_in(conn: psycopg.AsyncConnection, ids: Collection[int]) -> list[Unit]:
    cur = await conn.execute(f"{_UNIT_SELECT} WHERE o.id = ANY(%s) ORDER BY o.id", (list(ids),))  # type: ignore[arg-type]
    return [Unit(*r) for r in await cur.fetchall()]


async def all_units(conn: psycopg.AsyncConnection) -> list[Unit]:
    cur = await conn.execute(f"{_UNIT_SELECT} ORDER BY o.id")  # type: ignore[arg-type]
    return [Unit(*r) for r in await cur.fetchall()]


async def unit_by_code(conn: psycopg.AsyncConnection, code: str) -> Unit | None:
    cur = await conn.execute(f"{_UNIT_SELECT} WHERE o.code = %s", (code,))  # type: ignore[arg-type]
    row = await cur.fetchone()
    return Unit(*row) if row else None


async def unit_by_id(conn: psycopg.AsyncConnection, unit_id: int) -> Unit | None:
    cur = await conn.execute(f"{_UNIT_SELECT} WHERE o.id = %s", (unit_id,))  # type: ignore[arg-type]
    row = await cur.fetchone()
    return Unit(*row) if row else None
