"""`workers = 2`: two processes share the ports; a dead worker is replaced; nothing acked is lost."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from store import devices
from store.devices import DeviceRecord
from tests.conftest import ROOT
from tests.server_process import children, free_port
from tests.terminal import Terminal


def _workers_of(parent: int) -> list[int]:
    """The parent's worker processes (multiprocessing's spawn, not its resource tracker)."""
    found = []
    for pid in children(parent):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue  # gone meanwhile
    return found


def _wait_for(check: object, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def served(fresh_database: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    config = tmp_path / "telematics.toml"
    lines = [f'state_dir = "{tmp_path}"', "workers = 2", "[api]", 'host = "127.0.0.1"', f"port = {free_port()}"]
    for name in ("jt808", "gt06", "h02", "nmea", "osmand"):
        lines += [f"[{name}]", 'host = "127.0.0.1"', f"port = {port if name == 'jt808' else free_port()}"]
    lines += ["[mqtt]", "enabled = false"]
    config.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "TELEMATICS_DSN": fresh_database, "TELEMATICS_API_TOKEN": "t"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "telematics.cli", "--config", str(config), "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: len(_workers_of(proc.pid)) == 2 and _accepts(port))
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                for pid in _workers_of(proc.pid):
                    os.kill(pid, signal.SIGKILL)


async def _report_from(uids: list[str], port: int) -> None:
    async def one(uid: str) -> None:
        t = await Terminal(uid).connect(port)
        try:
            _, code = await t.register()
            assert await t.authenticate(code) == 0
            base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
            for i in range(5):
                serial = await t.report(base + timedelta(seconds=i), 22.5, 114.0)
                assert (await t.general_response())[0::2] == (serial, 0)
        finally:
            await t.close()

    await asyncio.gather(*(one(u) for u in uids))


async def _stored(db: psycopg.AsyncConnection, uids: list[str]) -> int:
    cur = await db.execute(
        "SELECT count(*) FROM positions p JOIN devices d ON d.id = p.device_id WHERE d.uid = ANY(%s)", (uids,)
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def test_two_workers_share_the_port_and_survive_a_death(
    served: tuple[subprocess.Popen[bytes], int], db: psycopg.AsyncConnection
) -> None:
    proc, port = served
    uids = [f"1391{secrets.randbelow(10**7):07d}" for _ in range(20)]
    await devices.upsert_devices(db, [DeviceRecord(uid=u) for u in uids])
    await _report_from(uids[:10], port)
    assert await _stored(db, uids) == 50

    victim = _workers_of(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    await asyncio.to_thread(_wait_for, lambda: len(_workers_of(proc.pid)) == 2 and victim not in _workers_of(proc.pid))
    await _report_from(uids[10:], port)
    assert await _stored(db, uids) == 100

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0
    assert _workers_of(proc.pid) == []
