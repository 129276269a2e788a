"""Connections to TimescaleDB, with errors that tell the user what to do."""

from __future__ import annotations

import sys
from typing import Any

import psycopg

INSTALL_HINT = (
    "TimescaleDB is not available in the database at this DSN. Install the TimescaleDB extension for its "
    "PostgreSQL (the project builds it from Debian's source package: `bash setup/timescaledb.sh`), add "
    "`shared_preload_libraries = 'timescaledb'` to postgresql.conf, restart PostgreSQL, and run "
    "`telematics db migrate` again. Or leave the DSN unset to use the embedded database."
)


class DatabaseError(RuntimeError):
    pass


# A database that vanishes without closing the connection (a network partition) must not stall
# ingest for the kernel's default two hours: TCP keepalives and a user timeout notice it in about a
# minute, the write fails, and the batcher reconnects and retries.
TCP_SETTINGS = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
TCP_SETTINGS_LINUX = {"tcp_user_timeout": 60_000}


async def connect(dsn: str, *, autocommit: bool = False) -> psycopg.AsyncConnection:
    try:
        return await psycopg.AsyncConnection.connect(dsn, autocommit=autocommit, **connection_settings(dsn))
    except psycopg.OperationalError as e:
        raise DatabaseError(f"cannot connect to the database ({redact(dsn)}): {e}".strip()) from e


async def check_timescaledb(conn: psycopg.AsyncConnection) -> str:
    """The installed TimescaleDB version; DatabaseError with install advice when it cannot work here."""
    cur = await conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'")
    row = await cur.fetchone()
    if row is None:
        raise DatabaseError(INSTALL_HINT)
    cur = await conn.execute("SELECT current_setting('shared_preload_libraries')")
    preload = (await cur.fetchone() or ("",))[0]
    if "timescaledb" not in preload:
        raise DatabaseError(
            "TimescaleDB is installed but not preloaded: add `shared_preload_libraries = 'timescaledb'` to "
            "postgresql.conf and restart PostgreSQL."
        )
    return str(row[0])


async def versions(conn: psycopg.AsyncConnection) -> tuple[str, str | None]:
    """(PostgreSQL server version, TimescaleDB version in this database or None)."""
    cur = await conn.execute("SELECT current_setting('server_version')")
    pg = (await cur.fetchone() or ("?",))[0]
    cur = await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    row = await cur.fetchone()
    return str(pg), (str(row[0]) if row else None)


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


def connection_settings(dsn: str) -> dict[str, Any]:
    """Libpq settings added to every connection the server opens; a DSN's own values win."""
    try:
        given = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        given = {}
    wanted = {**TCP_SETTINGS, **(TCP_SETTINGS_LINUX if sys.platform == "linux" else {})}
    return {k: v for k, v in wanted.items() if k not in given}
