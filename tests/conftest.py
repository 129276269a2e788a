"""Fixtures against the real things: the embedded TimescaleDB cluster and real sockets.

Each test session gets a database of its own in the embedded cluster (or, with
TELEMATICS_TEST_DSN, in the server that DSN names), migrated from scratch and dropped at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import uvloop
from hypothesis import settings

from store import admin
from store.cluster import Cluster
from telematics.config import TCP_PROTOCOLS, Settings
from telematics.server import Server

# Property tests check what a decoder says, not how fast: a per-example time limit only makes them
# fail at random on a machine that is busy with something else (CI shares two cores).
settings.register_profile("project", deadline=None)
settings.load_profile("project")

ROOT = Path(__file__).resolve().parents[1]
API_TOKEN = "test-token-" + secrets.token_hex(4)


def _admin_dsn() -> str:
    external = os.environ.get("TELEMATICS_TEST_DSN")
    if external:
        return external
    cluster = Cluster(ROOT / "var" / "pg", port=int(os.environ.get("TELEMATICS_TEST_PG_PORT", "55432")))
    cluster.start()
    return cluster.dsn


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    """The server runs on uvloop in production; the tests run it there too."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def admin_dsn() -> str:
    return _admin_dsn()


@pytest.fixture(scope="session")
def fresh_database(admin_dsn: str) -> Iterator[str]:
    """An empty database (not migrated) that lives for the session; its DSN."""
    name = f"telematics_test_{os.getpid()}_{secrets.token_hex(3)}"
    yield admin.create_database(admin_dsn, name)
    admin.drop_database(admin_dsn, name)


def test_settings(dsn: str, tmp: Path) -> Settings:
    s = Settings()
    s.state_dir = str(tmp)
    s.database.dsn = dsn
    s.api.host = "127.0.0.1"
    s.api.port = 0
    s.api.token = API_TOKEN
    for name in (*TCP_PROTOCOLS, "osmand"):
        listener = getattr(s, name)
        listener.host, listener.port = "127.0.0.1", 0
    s.ingest.batch_max_delay_ms = 5
    # Every test connects from 127.0.0.1: the per-address connect limit (tested on a server of its own in
    # test_ratelimit.py) must not refuse a test's terminal because earlier tests connected many times.
    s.ingest.connects_per_ip_per_s = 1000.0
    s.ingest.connects_burst = 10_000
    s.mqtt.enabled = False  # the MQTT tests run their own broker and subscriber
    s.web.boundaries = "深圳市"  # the map's district outlines; test fleets drive in Futian
    return s


test_settings.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
async def server(fresh_database: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """A running server (JT/T 808 listener and API on ephemeral ports) on the session database."""
    srv = Server(test_settings(fresh_database, tmp_path_factory.mktemp("state")))
    await srv.start()
    yield srv
    await srv.close()


@pytest.fixture
async def db(server: Server, fresh_database: str) -> AsyncIterator[psycopg.AsyncConnection]:
    """A separate autocommit connection to look at what the server stored."""
    conn = await psycopg.AsyncConnection.connect(fresh_database, autocommit=True)
    yield conn
    await conn.close()
