"""Numbered SQL migrations, applied in order, each in its own transaction, recorded in a table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Serialises concurrent `migrate` runs (two servers starting at once).
_LOCK_KEY = 0x7E1E_808


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files("store").joinpath("migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers: {versions}")
    return found


async def migrate(conn: psycopg.AsyncConnection) -> list[Migration]:
    """Apply what is missing; return the migrations applied now (empty when up to date)."""
    applied_now: list[Migration] = []
    # Autocommit, so that each `transaction()` below is a real transaction, not a savepoint.
    await conn.set_autocommit(True)
    await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        cur = await conn.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in await cur.fetchall()}
        for mig in available():
            if mig.version in done:
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)  # type: ignore[arg-type]
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (mig.version, mig.name)
                )
            applied_now.append(mig)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
