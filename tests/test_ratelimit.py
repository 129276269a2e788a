"""A peer that opens connections faster than the limit is refused; the others are not."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ingest.ratelimit import ConnectLimiter
from telematics.server import Server
from tests.conftest import test_settings


def test_token_bucket() -> None:
    limiter = ConnectLimiter(rate_per_s=2, burst=3)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", 0.0)  # another address has its own bucket
    assert not limiter.allow("a", 0.2)  # 0.4 of a token refilled: not yet
    assert limiter.allow("a", 0.6)  # 1.2 tokens refilled since the last refusal
    assert not limiter.allow("a", 0.6)


def test_bounded_memory() -> None:
    limiter = ConnectLimiter(rate_per_s=1, burst=5, max_addresses=100)
    for i in range(1000):
        limiter.allow(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(limiter._buckets) <= 101


async def test_flooding_peer_is_refused(fresh_database: str, tmp_path: Path) -> None:
    settings = test_settings(fresh_database, tmp_path)
    settings.ingest.connects_per_ip_per_s = 0.5
    settings.ingest.connects_burst = 3
    server = Server(settings)
    await server.start()
    try:
        port = server.ports["gt06"]
        streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        closed = []
        for reader, _ in streams:
            try:
                closed.append(await asyncio.wait_for(reader.read(), 0.5) == b"")
            except TimeoutError:
                closed.append(False)  # still open
            except ConnectionError:
                closed.append(True)  # reset: refused as well
        assert closed == [False, False, False, True, True]
        assert server.counters.values["gt06.connects_refused"] == 2
        (gt06,) = [listener for listener in server.listeners if listener.name == "gt06"]
        assert len(gt06.connections) == 3
        for _, writer in streams:
            writer.close()
    finally:
        await server.close()
