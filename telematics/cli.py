"""The `telematics` command."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from access import passwords, tokens
from access.accounts import AccountError, check_name
from attendance import csv_import as attendance_import
from geofence import crs
from store import db, devices, users, zones
from store.cluster import ClusterError
from telematics import config
from telematics import decode as decode_cli
from telematics.broker import Broker, BrokerError
from telematics.nats_server import NatsServer, NatsServerError
from telematics.server import ROLES, Server, cluster_for, dsn_for, prepare_database
from telematics.workers import run_workers
from tracking.device_import import CsvImportError, parse_devices, parse_units
from tracking.zone_import import ZoneImportError, parse_zones

log = logging.getLogger("telematics")


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency; this keeps odd platforms working
        return asyncio.run(coro)


# --- serve ---------------------------------------------------------------------------------


async def _serve(settings: config.Settings, banner: bool = True, role: str = "all") -> int:
    server = Server(settings, role=role)
    await server.start()
    if banner:
        _print_banner(settings, server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: writing what is pending")
    await server.close()
    return 0


def _print_banner(settings: config.Settings, server: Server) -> None:
    host = "127.0.0.1" if settings.api.host in ("0.0.0.0", "::") else settings.api.host
    token_src = "api.token" if settings.api.token else str(settings.state_path / "api-token")
    if "api" in server.ports:
        print(f"API:        http://{host}:{server.ports['api']}/api/  (bearer token from {token_src})", flush=True)
    if server.terminal_ports():
        print(f"Terminals:  {server.terminal_ports()}", flush=True)
    if "metrics" in server.ports:
        print(f"Metrics:    http://{host}:{server.ports['metrics']}/metrics", flush=True)
    if server.role != "all":
        print(f"Role:       {server.role} ({server.node}) on {settings.cluster.nats_url}", flush=True)
    print(f"Database:   {db.redact(dsn_for(settings))}", flush=True)


# --- db ----------------------------------------------------------------------------------------


def _db(settings: config.Settings, action: str) -> int:
    cluster = cluster_for(settings)
    if action in ("start", "stop") and not settings.uses_embedded_db:
        print("database.dsn is set: the embedded database is not in use", file=sys.stderr)
        return 2
    if action == "start":
        started = cluster.start()
        print(f"{'started' if started else 'already running'}: {cluster.dsn}")
        return 0
    if action == "stop":
        print("stopped" if cluster.stop() else "not running")
        return 0
    if action == "migrate":
        return _run(_migrate(settings))
    return _run(_status(settings))


async def _migrate(settings: config.Settings) -> int:
    await prepare_database(settings)
    print("migrations: up to date")
    return 0


async def _status(settings: config.Settings) -> int:
    if settings.uses_embedded_db:
        cluster = cluster_for(settings)
        print(f"embedded cluster: {cluster.directory} ({'running' if cluster.running() else 'stopped'})")
        if not cluster.running():
            return 1
    conn = await db.connect(dsn_for(settings))
    try:
        pg, ts = await db.versions(conn)
    finally:
        await conn.close()
    print(f"dsn: {db.redact(dsn_for(settings))}")
    print(f"PostgreSQL {pg}")
    print(f"TimescaleDB {ts}" if ts else "TimescaleDB: not installed in this database (run `telematics db migrate`)")
    return 0


# --- nats --------------------------------------------------------------------------------------


def nats_for(settings: config.Settings) -> NatsServer:
    return NatsServer.for_url(settings.state_path / "nats", settings.cluster.nats_url)


def _nats(settings: config.Settings, action: str) -> int:
    server = nats_for(settings)
    return _embedded(server, server.url, action)


# --- broker ----------------------------------------------------------------------------------


def broker_for(settings: config.Settings) -> Broker:
    return Broker(settings.state_path / "mosquitto", port=settings.mqtt.port, host=settings.mqtt.host)


def _broker(settings: config.Settings, action: str) -> int:
    broker = broker_for(settings)
    return _embedded(broker, f"mqtt://{broker.host}:{broker.port}", action)


def _embedded(server: Broker | NatsServer, url: str, action: str) -> int:
    """start, stop or status of a private server; status exits 1 when it is not running."""
    if action == "start":
        print(f"{'started' if server.start() else 'already running'}: {url}")
    elif action == "stop":
        print("stopped" if server.stop() else "not running")
    else:
        running = server.running()
        print(f"{url} {'running' if running else 'stopped'}")
        return 0 if running else 1
    return 0


# --- import ----------------------------------------------------------------------------------


async def _import(settings: config.Settings, what: str, path: Path, crs_name: str) -> int:
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        print(f"{path}: cannot read: {e}", file=sys.stderr)
        return 2
    dsn = await prepare_database(settings)
    conn = await db.connect(dsn)
    try:
        known = set(await devices.unit_codes(conn))
        try:
            if what == "zones":
                n = await zones.upsert_by_code(conn, parse_zones(text, known, crs_name))
            elif what in attendance_import.KINDS:
                n = await attendance_import.load(conn, what, text, known, settings.attendance.zone())
            elif what == "devices":
                records = parse_devices(text, known)
                async with conn.transaction():
                    n = await devices.upsert_devices(conn, records)
            else:
                units = parse_units(text, known)
                async with conn.transaction():
                    n = await devices.upsert_units(conn, units)
        except CsvImportError as e:
            for err in e.errors:
                print(f"{path}:{err.line}: {err.reason}", file=sys.stderr)
            print(f"{path}: nothing imported ({len(e.errors)} bad rows)", file=sys.stderr)
            return 1
        except ZoneImportError as e:
            for bad in e.errors:
                print(f"{path}:{bad}", file=sys.stderr)
            print(f"{path}: nothing imported ({len(e.errors)} bad features)", file=sys.stderr)
            return 1
        await conn.commit()
    finally:
        await conn.close()
    print(f"{path}: imported {n} {what}")
    return 0


# --- user ------------------------------------------------------------------------------------


def _read_password() -> str:
    """A password from standard input: typed without echo at a terminal, else the first line."""
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\r\n")


def _user(settings: config.Settings, args: argparse.Namespace) -> int:
    password_hash = None
    if args.action == "password" or (args.action == "add" and args.password_stdin):
        try:
            password_hash = passwords.hash_password(_read_password())
        except passwords.PasswordError as e:
            print(f"user {args.action}: {e}", file=sys.stderr)
            return 2
    if args.action == "add":
        try:
            check_name(args.name)
        except AccountError as e:
            print(f"user add: {e}", file=sys.stderr)
            return 2
    return _run(_user_db(settings, args, password_hash))


async def _user_db(settings: config.Settings, args: argparse.Namespace, password_hash: str | None) -> int:
    dsn = await prepare_database(settings)
    conn = await db.connect(dsn, autocommit=True)
    try:
        if args.action == "add":
            unit = await users.unit_by_code(conn, args.unit)
            if unit is None:
                print(
                    f"user add: no unit {args.unit!r}; create units first (telematics import units FILE.csv)",
                    file=sys.stderr,
                )
                return 1
            async with conn.transaction():
                user = await users.create_user(conn, args.name, args.role, unit.id, password_hash)
                if user is None:
                    print(f"user add: a user named {args.name!r} exists already", file=sys.stderr)
                    return 1
                token = await tokens.issue(conn, user.id, "cli", None)
            print(f"user {user.name!r} ({user.role}, unit {unit.code}) created; its token:", file=sys.stderr)
            print(token)
            return 0
        user = await users.by_name(conn, args.name)
        if user is None:
            print(f"user {args.action}: no user named {args.name!r}", file=sys.stderr)
            return 1
        if args.action == "token":
            print(await tokens.issue(conn, user.id, "cli", None))
        elif args.action == "password":
            await users.set_password(conn, user.id, password_hash)
            print(f"password of {user.name!r} set", file=sys.stderr)
        else:
            n = await users.revoke_tokens(conn, user.id)
            print(f"revoked {n} tokens of {user.name!r}", file=sys.stderr)
        return 0
    finally:
        await conn.close()


# --- demo -------------------------------------------------------------------------------------


async def _demo(settings: config.Settings, config_path: str | None) -> int:
    from telematics.demo import run_demo, run_distributed_demo

    if settings.cluster.demo:
        return await run_distributed_demo(settings, config_path)
    return await run_demo(settings, broker_for(settings))


def _decode(args: argparse.Namespace) -> int:
    if not args.messages and args.raw is None:
        print("decode: give messages as arguments or --raw FILE", file=sys.stderr)
        return 2
    if args.protocol == "mqtt" and not args.topic:
        print("decode: mqtt needs --topic (the device id is in the topic)", file=sys.stderr)
        return 2
    try:
        chunks = decode_cli.parse_inputs(args.protocol, args.messages, args.raw)
    except ValueError as e:
        print(f"decode: {e}", file=sys.stderr)
        return 2
    return decode_cli.run(args.protocol, chunks, topic=args.topic)


# --- entry point ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="telematics", description="City fleet telematics server")
    p.add_argument("--config", help="TOML settings file (default: $TELEMATICS_CONFIG or ./telematics.toml)")
    sub = p.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("serve", help="run the server (all listeners and the API)")
    srv.add_argument(
        "--role",
        choices=ROLES,
        default="all",
        help="all (default): one node; gateway, processor, api: parts of the distributed mode over NATS JetStream",
    )
    sub.add_parser("demo", help="embedded database and broker, the server, and a simulated city fleet")
    sub.add_parser("config", help="print the settings in force as JSON")
    dbp = sub.add_parser("db", help="the embedded database and migrations")
    dbp.add_argument("action", choices=["start", "stop", "status", "migrate"])
    br = sub.add_parser("broker", help="the embedded MQTT broker")
    br.add_argument("action", choices=["start", "stop", "status"])
    nt = sub.add_parser("nats", help="the embedded NATS server with JetStream (distributed mode)")
    nt.add_argument("action", choices=["start", "stop", "status"])
    dec = sub.add_parser(
        "decode",
        help="decode captured terminal messages and print what the server understands (JSON lines)",
    )
    dec.add_argument("--protocol", required=True, choices=decode_cli.PROTOCOLS)
    dec.add_argument("--raw", type=argparse.FileType("rb"), help="a captured byte stream; - for standard input")
    dec.add_argument("--topic", default="", help="MQTT topic the payloads were published on (mqtt)")
    dec.add_argument("messages", nargs="*", help="messages as hex (text protocols also as text)")
    imp = sub.add_parser(
        "import",
        help="import organisation units, devices, staff or shift patterns from CSV, zones from GeoJSON (all or none)",
    )
    imp.add_argument("what", choices=["devices", "units", "zones", *attendance_import.KINDS])
    imp.add_argument("file", type=Path)
    imp.add_argument(
        "--crs", choices=crs.NAMES, default="wgs84", help="coordinate system of a zones file (default wgs84)"
    )
    usr = sub.add_parser("user", help="API users and their tokens")
    usr_sub = usr.add_subparsers(dest="action", required=True)
    add = usr_sub.add_parser("add", help="create a user and print a token for it (label cli, no expiry)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=users.ROLES)
    add.add_argument("--unit", required=True, help="code of an existing organisation unit: the user sees it and below")
    add.add_argument("--password-stdin", action="store_true", help="read a password for `POST /api/login` from stdin")
    tok = usr_sub.add_parser("token", help="print a new token (no expiry) for a user")
    tok.add_argument("name")
    pwd = usr_sub.add_parser("password", help="set a user's password, read from stdin")
    pwd.add_argument("name")
    rev = usr_sub.add_parser("revoke", help="revoke every token of a user (logins and CLI tokens)")
    rev.add_argument("name")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "decode":
        # Needs no settings, database or network: a user can run it anywhere.
        return _decode(args)
    try:
        settings = config.load(args.config)
    except config.ConfigError as e:
        print(f"configuration: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        if args.command == "serve":
            if args.role != "all":
                if settings.workers > 1:
                    print("serve: --role runs one process; run more of them instead of workers", file=sys.stderr)
                    return 2
                return _run(_serve(settings, role=args.role))
            if settings.workers > 1:
                _run(_migrate(settings))
                return run_workers(settings)
            return _run(_serve(settings))
        if args.command == "demo":
            return _run(_demo(settings, args.config))
        if args.command == "config":
            print(json.dumps(settings.as_dict(), indent=2))
            return 0
        if args.command == "db":
            return _db(settings, args.action)
        if args.command == "broker":
            return _broker(settings, args.action)
        if args.command == "nats":
            return _nats(settings, args.action)
        if args.command == "import":
            if args.crs != "wgs84" and args.what != "zones":
                print("import: --crs applies to zones only", file=sys.stderr)
                return 2
            return _run(_import(settings, args.what, args.file, args.crs))
        if args.command == "user":
            return _user(settings, args)
    except (db.DatabaseError, ClusterError, BrokerError, NatsServerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
