"""Phones over MQTT into storage: reports/s committed through a real Mosquitto, end to end.

One publisher process (raw MQTT 3.1.1 over a socket, QoS 1, a window of unacknowledged
PUBLISHes; OwnTracks JSON, or the same map in msgpack, from `--devices` phones, each fix second
used once per phone) feeds a private Mosquitto; this process runs `MqttIngest` (uvloop, as the
server does) with the server's batcher defaults into a throw-away database in the embedded
cluster. Stored reports are counted from the batcher's commits, sampled once a second; after the
publisher stops the run waits until every published report is stored and acknowledged, and
checks the row count in the database.

    .venv/bin/python -m bench.mqtt_ingest [--seconds 20] [--devices 500] [--rate 6000]
                                          [--window 2000] [--format json|msgpack]

`--rate 0` publishes as fast as the window allows; Mosquitto then queues what the subscriber has
not taken (100,000 messages in the embedded broker's configuration) and drops the rest, which
the run reports as `not_delivered`. The figures printed: stored reports/s over the
measured window (after a 2 s warm-up), the publisher's rate, and the CPU used by each process
(ingest, publisher, Mosquitto, PostgreSQL) so that the limit can be named.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# The publisher (a separate process): plain sockets, so it costs little CPU per message


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _connect_packet(client_id: str) -> bytes:
    body = _utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0) + _utf8(client_id)  # 3.1.1, clean, no keepalive
    return b"\x10" + _remaining_length(len(body)) + body


def _publish_packet(topic: bytes, mid: int, payload: bytes) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + struct.pack("!H", mid) + payload
    return b"\x32" + _remaining_length(len(body)) + body  # PUBLISH, QoS 1


def publish(
    host: str, port: int, devices: int, seconds: float, rate: float, window: int, prefix: str, fmt: str
) -> None:
    import msgpack

    encode = (lambda doc: msgpack.packb(doc)) if fmt == "msgpack" else (lambda doc: json.dumps(doc).encode())
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(_connect_packet(f"bench-pub-{os.getpid()}"))
    connack = sock.recv(4)
    if connack[:1] != b"\x20" or connack[3:4] != b"\x00":
        raise SystemExit(f"CONNACK refused: {connack!r}")
    topics = [f"city/{prefix}{i:05d}/location".encode() for i in range(devices)]
    start_tst = int((datetime.now(UTC) - timedelta(hours=12)).timestamp())
    sent = acked = 0
    pending = b""
    t0 = time.monotonic()
    deadline = t0 + seconds
    chunk = 200
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        allowed = window - (sent - acked)
        if rate > 0:
            allowed = min(allowed, int((now - t0) * rate) - sent)
        if allowed >= chunk or (allowed > 0 and rate > 0):
            packets = []
            for _ in range(min(allowed, chunk)):
                device = sent % devices
                doc = {
                    "_type": "location",
                    "lat": 31.2 + (sent % 997) / 10000,
                    "lon": 121.4 + (sent % 991) / 10000,
                    "tst": start_tst + sent // devices,
                    "acc": 8,
                    "vel": 24,
                    "cog": 90,
                    "batt": 80,
                    "tid": "bp",
                    "conn": "m",
                }
                packets.append(_publish_packet(topics[device], sent % 65535 + 1, encode(doc)))
                sent += 1
            sock.sendall(b"".join(packets))
        # PUBACKs are 4 bytes each (40 02 mid mid); nothing else comes on this connection.
        readable, _, _ = select.select([sock], [], [], 0 if allowed >= chunk else 0.005)
        if readable:
            pending += sock.recv(65536)
        acked += len(pending) // 4
        pending = pending[len(pending) - len(pending) % 4 :]
    sock.settimeout(30)
    while acked < sent:
        pending += sock.recv(65536)
        acked += len(pending) // 4
        pending = pending[len(pending) - len(pending) % 4 :]
    elapsed = time.monotonic() - t0
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    usage = os.times()
    print(json.dumps({"published": sent, "seconds": elapsed, "cpu_s": usage.user + usage.system}), flush=True)


# --------------------------------------------------------------------------------------------
# The subscriber side: broker, database, MqttIngest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


_PG_SHARED = (b"walwriter", b"checkpointer", b"background writer", b"autovacuum launcher")


def _postgres_cpu(database: str) -> float:
    """CPU of this run's PostgreSQL backends and of the cluster's shared writers (other databases'
    backends, such as a test run's, are left out)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            if cmd.startswith(b"postgres") and (database.encode() in cmd or any(s in cmd for s in _PG_SHARED)):
                total += _cpu_seconds(int(proc.name))
        except OSError:
            continue
    return total


def _subscriptions(subscribers: int) -> list[str]:
    from protocols import phone_mqtt

    if subscribers == 1:
        return list(phone_mqtt.SUBSCRIPTIONS)
    # MQTT v5 shared subscriptions: the broker hands each message to one member of the group.
    return [f"$share/bench/{topic}" for topic in phone_mqtt.SUBSCRIPTIONS]


def _helpers_cpu(helpers: list[asyncio.subprocess.Process]) -> float:
    return sum(_cpu_seconds(h.pid) for h in helpers if h.returncode is None)


async def subscriber(args: argparse.Namespace) -> None:
    """One more subscriber process (`--subscriber K`), until SIGTERM: what the server's worker K runs."""
    from psycopg_pool import AsyncConnectionPool

    from ingest.batcher import Batcher
    from ingest.counters import Counters
    from ingest.mqtt_ingest import MqttIngest
    from ingest.reports import ReportSink
    from store import db
    from store.positions import PositionWriter
    from tracking.registry import Registry

    counters = Counters()
    pool = AsyncConnectionPool(args.dsn, min_size=1, max_size=4, open=False)
    await pool.open(wait=True)

    async def connect_writer() -> PositionWriter:
        return PositionWriter(await db.connect(args.dsn, autocommit=True))

    batcher = Batcher(
        connect_writer, counters, max_rows=1000, max_delay=args.batch_delay_ms / 1000, writers=args.writers
    )
    batcher.start()
    ingest = MqttIngest(
        ReportSink(batcher, counters),
        Registry(pool),
        counters,
        host="127.0.0.1",
        port=args.port,
        client_id=f"bench-ingest-{args.subscriber}",
        subscriptions=_subscriptions(args.subscribers),
        receive_maximum=args.receive_maximum,
    )
    await ingest.start()
    print("subscribed", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await ingest.close()
    await batcher.close()
    await pool.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg
    import uvloop  # noqa: F401  (the loop is set by main)
    from psycopg_pool import AsyncConnectionPool

    from ingest.batcher import Batcher
    from ingest.counters import Counters
    from ingest.mqtt_ingest import MqttIngest
    from ingest.reports import ReportSink
    from store import db, devices
    from store.cluster import Cluster
    from store.devices import DeviceRecord
    from store.migrate import migrate
    from store.positions import PositionWriter
    from telematics.broker import Broker
    from tracking.registry import Registry

    cluster = Cluster(ROOT / "var" / "pg", port=args.pg_port)
    await asyncio.to_thread(cluster.start)
    name = f"telematics_bench_mqtt_{secrets.token_hex(3)}"
    admin = await psycopg.AsyncConnection.connect(cluster.dsn, autocommit=True)
    await admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    info = psycopg.conninfo.conninfo_to_dict(cluster.dsn)
    info["dbname"] = name
    dsn = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})
    broker_dir = Path(tempfile.mkdtemp(prefix="bench-mosquitto-", dir=ROOT / "var"))
    broker = Broker(directory=broker_dir, port=_free_port())
    publisher: asyncio.subprocess.Process | None = None
    try:
        conn = await db.connect(dsn, autocommit=True)
        await migrate(conn)
        prefix = "bench-phone-"
        await devices.upsert_devices(
            conn, [DeviceRecord(uid=f"{prefix}{i:05d}", kind="inspector", protocol="mqtt") for i in range(args.devices)]
        )

        async def stored_now() -> int:
            cur = await conn.execute("SELECT count(*) FROM positions")
            row = await cur.fetchone()
            return int(row[0]) if row else 0

        await asyncio.to_thread(broker.start)
        broker_pid = broker.pid()
        assert broker_pid is not None

        counters = Counters()
        pool = AsyncConnectionPool(dsn, min_size=1, max_size=10, open=False)
        await pool.open(wait=True)

        async def connect_writer() -> PositionWriter:
            return PositionWriter(await db.connect(dsn, autocommit=True))

        batcher = Batcher(
            connect_writer,
            counters,
            max_rows=1000,
            max_delay=args.batch_delay_ms / 1000,
            max_pending=50000,
            writers=args.writers,
        )
        batcher.start()
        registry = Registry(pool)
        ingest = MqttIngest(
            ReportSink(batcher, counters),
            registry,
            counters,
            host=broker.host,
            port=broker.port,
            client_id="bench-ingest-0",
            subscriptions=_subscriptions(args.subscribers),
            receive_maximum=args.receive_maximum,
        )
        await ingest.start()
        helpers = []
        for k in range(1, args.subscribers):  # more subscriber processes on the same shared subscriptions
            helper = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "bench.mqtt_ingest", "--subscriber", str(k), "--subscribers", str(args.subscribers)),
                *("--port", str(broker.port), "--dsn", dsn, "--writers", str(args.writers)),
                *("--batch-delay-ms", str(args.batch_delay_ms), "--receive-maximum", str(args.receive_maximum)),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
            )
            assert helper.stdout is not None
            if (await helper.stdout.readline()).strip() != b"subscribed":
                raise RuntimeError("a subscriber process did not start")
            helpers.append(helper)
        for i in range(args.devices):  # warm the registry cache, as a running server has it
            await registry.lookup(f"{prefix}{i:05d}", "mqtt")

        cpu0 = (time.process_time(), _cpu_seconds(broker_pid), _postgres_cpu(name), _helpers_cpu(helpers))
        publisher = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.mqtt_ingest",
            "--publish",
            *("--port", str(broker.port), "--devices", str(args.devices), "--seconds", str(args.seconds)),
            *("--rate", str(args.rate), "--window", str(args.window), "--prefix", prefix, "--format", args.format),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        t_start = time.monotonic()
        samples: list[tuple[float, int]] = []
        while publisher.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(publisher.wait(), 1.0)
            samples.append((time.monotonic() - t_start, await stored_now()))
            print(f"{samples[-1][0]:5.1f}s stored {samples[-1][1]:>8}", file=sys.stderr)
        assert publisher.stdout is not None
        pub = json.loads(await publisher.stdout.read())
        stored_when_published = await stored_now()
        # Drain: everything published should end up stored; stop when nothing is committed for 5 s
        # (what is missing then was dropped by the broker: its queue for a lagging session is bounded).
        last, still = stored_when_published, time.monotonic()
        while last < pub["published"] and time.monotonic() - still < 5.0:
            await asyncio.sleep(0.2)
            now_stored = await stored_now()
            if now_stored != last:
                last, still = now_stored, time.monotonic()
        t_drained = time.monotonic() - t_start
        cpu1 = (time.process_time(), _cpu_seconds(broker_pid), _postgres_cpu(name), _helpers_cpu(helpers))
        for helper in helpers:
            helper.send_signal(signal.SIGTERM)
            await helper.wait()
        await ingest.close()
        await batcher.close()
        await pool.close()
        cur = await conn.execute("SELECT count(*) FROM positions")
        row = await cur.fetchone()
        stored = int(row[0]) if row else 0
        await conn.close()

        warm = [s for s in samples if s[0] >= 2.0]
        measured = (warm[-1][1] - warm[0][1]) / (warm[-1][0] - warm[0][0]) if len(warm) >= 2 else 0.0
        return {
            "stored_per_s": round(measured),
            "published_per_s": round(pub["published"] / pub["seconds"]),
            "published": pub["published"],
            "stored_rows": stored,
            "backlog_when_publisher_stopped": pub["published"] - stored_when_published,
            "not_delivered": pub["published"] - stored,
            "drained_after_s": round(t_drained, 1),
            "subscribers": args.subscribers,
            "cpu_s": {
                "ingest": round(cpu1[0] - cpu0[0] + cpu1[3] - cpu0[3], 1),
                "publisher": round(pub["cpu_s"], 1),
                "mosquitto": round(cpu1[1] - cpu0[1], 1),
                "postgres": round(cpu1[2] - cpu0[2], 1),
            },
            "load_average": os.getloadavg(),
            "cores": os.cpu_count(),
            "devices": args.devices,
            "format": args.format,
            "batch_delay_ms": args.batch_delay_ms,
            "writers": args.writers,
            "receive_maximum": args.receive_maximum,
            "window": args.window,
            "counters": {k: v for k, v in counters.snapshot().items() if k.startswith(("mqtt.", "store.", "ingest."))},
        }
    finally:
        if publisher is not None and publisher.returncode is None:
            publisher.kill()
        pid = broker.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            await asyncio.to_thread(os.waitpid, pid, 0)  # our child: reap it, or Broker.stop waits for the zombie
        shutil.rmtree(broker_dir, ignore_errors=True)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        await admin.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--devices", type=int, default=500)
    p.add_argument("--rate", type=float, default=6000.0, help="reports/s to publish; 0: as fast as the window allows")
    p.add_argument("--window", type=int, default=2000, help="the publisher's unacknowledged PUBLISHes")
    p.add_argument("--receive-maximum", type=int, default=2000, help="MqttIngest receive_maximum")
    p.add_argument("--batch-delay-ms", type=float, default=20.0, help="ingest.batch_max_delay_ms")
    p.add_argument("--writers", type=int, default=2, help="ingest.writers")
    p.add_argument("--format", choices=("json", "msgpack"), default="json", help="payload encoding")
    p.add_argument("--pg-port", type=int, default=55432)
    p.add_argument("--subscribers", type=int, default=1, help="subscriber processes on shared subscriptions")
    p.add_argument("--publish", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--subscriber", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--dsn", default="", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--prefix", default="bench-phone-", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.publish:
        publish("127.0.0.1", args.port, args.devices, args.seconds, args.rate, args.window, args.prefix, args.format)
        return
    import uvloop

    if args.subscriber:
        uvloop.run(subscriber(args))
        return
    result = uvloop.run(run(args))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
