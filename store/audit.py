"""The audit log: who replayed, queried or exported what, and when. Written once, never changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    at: datetime
    user_name: str
    role: str
    org_unit_id: int | None
    action: str
    target: dict[str, Any]
    outcome: str
    client: str


async def record(
    conn: psycopg.AsyncConnection,
    *,
    user_id: int | None,
    user_name: str,
    role: str,
    org_unit_id: int | None,
    action: str,
    target: dict[str, Any],
    outcome: str,
    client: str,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (user_id, user_name, role, org_unit_id, action, target, outcome, client)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (user_id, user_name, role, org_unit_id, action, Jsonb(target), outcome, client),
    )


async def search(
    conn: psycopg.AsyncConnection,
    *,
    unit_ids: Sequence[int] | None,
    since: datetime | None = None,
    until: datetime | None = None,
    user: str | None = None,
    action: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Entry]:
    """Newest first. `unit_ids`: entries of callers in these units (None: all, the token's own included)."""
    where: list[str] = ["true"]
    args: list[Any] = []
    if unit_ids is not None:
        where.append("org_unit_id = ANY(%s)")
        args.append(list(unit_ids))
    for clause, value in (("at >= %s", since), ("at < %s", until), ("user_name = %s", user)):
        if value is not None:
            where.append(clause)
            args.append(value)
    if action is not None:  # "export" matches every export.*
        where.append("(action = %s OR action LIKE %s)")
        args += [action, action + ".%"]
    cur = await conn.execute(
        "SELECT id, at, user_name, role, org_unit_id, action, target, outcome, client FROM audit_log"
        f" WHERE {' AND '.join(where)} ORDER BY at DESC, id DESC LIMIT %s OFFSET %s",  # type: ignore[arg-type]
        (*args, limit, offset),
    )
    return [Entry(*row) for row in await cur.fetchall()]
