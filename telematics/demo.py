"""`telematics demo` (what `make run` starts): the embedded database and broker, the server, and a
simulated city fleet reporting to it, until Ctrl-C. With `cluster.demo = true` the server is the
distributed mode's parts instead: an embedded nats-server, one gateway, `cluster.demo_processors`
processors and an API, each its own process (`telematics serve --role ...`)."""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
from pathlib import Path

import psycopg

from access.passwords import hash_password
from bench.fleet import demo_uids
from store import devices, users
from store.devices import DeviceRecord, OrgUnitRecord
from telematics.broker import Broker
from telematics.config import Settings
from telematics.nats_server import NatsServer
from telematics.server import Server, dsn_for, prepare_database

FLEET_SIZE = 60
DISPATCHER = "dispatcher"
KINDS = (("muck", "渣土车"), ("sanitation", "环卫车"), ("enforcement", "执法车"))
UNITS = (
    OrgUnitRecord("demo-city", "示范市城市管理和综合执法局"),
    OrgUnitRecord("demo-futian", "福田区城管局", "demo-city"),
    OrgUnitRecord("demo-nanshan", "南山区城管局", "demo-city"),
)


def demo_devices() -> list[DeviceRecord]:
    out = []
    for i, uid in enumerate(demo_uids(FLEET_SIZE)):
        kind, label = KINDS[i % len(KINDS)]
        out.append(
            DeviceRecord(
                uid=uid,
                kind=kind,
                name=f"{label} {i + 1:03d}",
                plate=f"粤B{uid[-5:]}",
                org_unit=UNITS[1 + i % 2].code,
                protocol="jt808",
            )
        )
    return out


async def demo_dispatcher(conn: psycopg.AsyncConnection, saved: Path) -> str:
    """A dispatcher of the demo city for the map page; its password is made once and kept (mode 0600)."""
    known = _read(saved)
    user = await users.by_name(conn, DISPATCHER)
    if known and user is not None:
        return known
    password = secrets.token_urlsafe(9)
    if user is None:
        unit = await users.unit_by_code(conn, UNITS[0].code)
        assert unit is not None
        await users.create_user(conn, DISPATCHER, "dispatcher", unit.id, hash_password(password))
    else:
        await users.set_password(conn, user.id, hash_password(password))
    _write(saved, password)
    return password


def _read(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def _write(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")


async def _populate(conn: psycopg.AsyncConnection, settings: Settings) -> str:
    """The demo's units, vehicles and dispatcher; the dispatcher's password."""
    await devices.upsert_units(conn, UNITS)
    await devices.upsert_devices(conn, demo_devices())
    return await demo_dispatcher(conn, settings.state_path / "demo-password")


async def _fleet(port: int) -> asyncio.subprocess.Process:
    """The simulated fleet (bench/fleet.py, its own process) reporting to a JT/T 808 port."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.fleet", "--port", str(port), "--count", str(FLEET_SIZE), "--interval", "5"
    )


async def _until_stopped(fleet: asyncio.subprocess.Process) -> None:
    """Until Ctrl-C (SIGINT) or SIGTERM; then the fleet stops."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        fleet.terminate()
        await fleet.wait()


async def run_demo(settings: Settings, broker: Broker) -> int:
    if not settings.web.boundaries:
        settings.web.boundaries = "深圳市"  # the simulated fleet drives around Futian
    server = Server(settings)  # starts the embedded database and broker when they are the ones in use
    await server.start()
    assert server.pool is not None
    async with server.pool.connection() as conn:
        password = await _populate(conn, settings)
    fleet = await _fleet(server.ports["jt808"])
    api = f"http://127.0.0.1:{server.ports['api']}"
    token = settings.api_token()
    print(
        f"\nThe server is running with a simulated fleet of {FLEET_SIZE} JT/T 808 terminals.\n"
        f"  Live map:  {api}/   (user {DISPATCHER}, password {password})\n"
        f"  API:       {api}/api/\n"
        f"  Token:     {token}\n"
        f"  Try:       curl -H 'Authorization: Bearer {token}' {api}/api/devices/{demo_uids(1)[0]}/latest\n"
        f"  Terminals: {server.terminal_ports()}\n"
        f"  MQTT:      {f'mqtt://{broker.host}:{broker.port}' if settings.mqtt.embedded else 'external'}\n"
        "Ctrl-C stops the server and the fleet; the database and the broker keep running\n"
        "(`telematics db stop`, `telematics broker stop`).\n",
        flush=True,
    )
    try:
        await _until_stopped(fleet)
    finally:
        await server.close()
    return 0


async def run_distributed_demo(settings: Settings, config_path: str | None) -> int:
    c = settings.cluster
    if c.embedded:
        await asyncio.to_thread(NatsServer.for_url(settings.state_path / "nats", c.nats_url).start)
    await prepare_database(settings)
    async with await psycopg.AsyncConnection.connect(dsn_for(settings), autocommit=True) as conn:
        password = await _populate(conn, settings)
    logs = settings.state_path / "demo-logs"
    logs.mkdir(parents=True, exist_ok=True)
    roles = ["api", *["processor"] * c.demo_processors, "gateway"]
    parts: list[asyncio.subprocess.Process] = []
    try:
        for i, role in enumerate(roles):
            parts.append(await _start_part(role, config_path, logs / f"{i}-{role}.log"))
        fleet = await _fleet(settings.jt808.port)
        api = f"http://127.0.0.1:{settings.api.port}"
        print(
            f"\nThe distributed mode is running: nats-server on {c.nats_url}, 1 gateway (JT/T 808 port"
            f" {settings.jt808.port}), {c.demo_processors} processors and an API, with a simulated fleet of"
            f" {FLEET_SIZE} terminals.\n"
            f"  Live map:  {api}/   (user {DISPATCHER}, password {password})\n"
            f"  Logs:      {logs}/\n"
            "Ctrl-C stops them all; the database and nats-server keep running (`telematics nats stop`).\n",
            flush=True,
        )
        await _until_stopped(fleet)
    finally:
        for part in reversed(parts):  # the gateway first: nothing new comes in while the others drain
            if part.returncode is None:
                part.terminate()
            await part.wait()
    return 0


async def _start_part(
    role: str, config_path: str | None, log: Path, within: float = 60.0
) -> asyncio.subprocess.Process:
    """`telematics serve --role ROLE` with this demo's settings; returns once it printed its banner."""
    argv = [sys.executable, "-m", "telematics.cli", *(["--config", config_path] if config_path else []), "serve"]
    with log.open("wb") as out:
        part = await asyncio.create_subprocess_exec(*argv, "--role", role, stdout=out, stderr=asyncio.subprocess.STDOUT)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while b"Role:" not in await asyncio.to_thread(log.read_bytes):
        if part.returncode is not None or loop.time() > deadline:
            raise RuntimeError(f"the {role} did not start; see {log}")
        await asyncio.sleep(0.1)
    return part
