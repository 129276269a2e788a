"""Migrations on a fresh database, then again; the database checks that guard a user's own DSN."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import psycopg
import pytest

from store import admin, db
from store.cluster import Cluster
from store.migrate import available, migrate
from tests.conftest import ROOT

SCHEMA = """
SELECT table_name, column_name, data_type, is_nullable
FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2
"""
INDEXES = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"


@pytest.fixture
async def empty_db(admin_dsn: str) -> AsyncIterator[str]:
    name = f"telematics_mig_{secrets.token_hex(4)}"
    yield admin.create_database(admin_dsn, name)
    admin.drop_database(admin_dsn, name)


async def _snapshot(conn: psycopg.AsyncConnection) -> tuple[list[tuple], list[tuple], list[tuple]]:
    cols = await (await conn.execute(SCHEMA)).fetchall()
    idx = await (await conn.execute(INDEXES)).fetchall()
    done = await (await conn.execute("SELECT version, name, applied_at FROM schema_migrations ORDER BY 1")).fetchall()
    return cols, idx, done


async def test_fresh_then_again(empty_db: str) -> None:
    conn = await db.connect(empty_db, autocommit=True)
    try:
        applied = await migrate(conn)
        assert [m.version for m in applied] == [m.version for m in available()]
        assert applied, "there is at least the initial migration"
        before = await _snapshot(conn)

        again = await migrate(conn)
        assert again == []
        assert await _snapshot(conn) == before  # no change, not even the applied_at times

        cur = await conn.execute("SELECT hypertable_name, num_dimensions FROM timescaledb_information.hypertables")
        assert sorted(await cur.fetchall()) == [("alerts", 1), ("audit_log", 1), ("positions", 1)]
        cur = await conn.execute(
            "SELECT column_name, time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_name = 'positions'"
        )
        ((column, interval),) = await cur.fetchall()
        assert column == "fix_time" and interval.days == 1
        assert await db.check_timescaledb(conn)
    finally:
        await conn.close()


async def test_failed_migration_leaves_nothing_half_done(empty_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration that fails is rolled back whole and not recorded; the next run applies it."""
    import store.migrate as m

    good = available()
    broken = m.Migration(999, "broken", "CREATE TABLE half_done (x int); SELECT no_such_function();")
    monkeypatch.setattr(m, "available", lambda: [*good, broken])
    conn = await db.connect(empty_db, autocommit=True)
    try:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            await migrate(conn)
        cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY 1")
        assert [r[0] for r in await cur.fetchall()] == [mig.version for mig in good]
        cur = await conn.execute("SELECT to_regclass('half_done')")
        assert (await cur.fetchone()) == (None,)
    finally:
        await conn.close()


def test_migration_files_are_numbered_in_order() -> None:
    versions = [m.version for m in available()]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


async def test_database_without_timescaledb_preloaded_gets_clear_error() -> None:
    """A user's own PostgreSQL without TimescaleDB loaded: the error says what to do."""
    # Under var/, not the system temp directory: the cluster's owner (postgres, when run as root) must reach it.
    cluster = Cluster(ROOT / "var" / "tmp" / f"pg-{secrets.token_hex(3)}", port=55499)
    cluster.init()
    auto = cluster.data / "postgresql.auto.conf"
    auto.write_text(auto.read_text().replace("shared_preload_libraries = 'timescaledb'", ""))
    cluster.start()
    try:
        conn = await db.connect(cluster.dsn, autocommit=True)
        try:
            with pytest.raises(db.DatabaseError, match="shared_preload_libraries"):
                await db.check_timescaledb(conn)
        finally:
            await conn.close()
    finally:
        cluster.destroy()


async def test_unreachable_database_gets_clear_error() -> None:
    with pytest.raises(db.DatabaseError, match="cannot connect to the database"):
        await db.connect("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
