"""End to end: the real server, a simulated fleet in its own process, the database, one JSON result.

    python -m bench.e2e [--terminals 300] [--rate 20000] [--window 16] [--duration 60] [--idle 10000]

What it does, in order:

1. starts the embedded cluster (`telematics db start`) and creates a fresh database in it;
2. starts the REAL server, `telematics --config <generated toml> serve`, as a subprocess with
   TELEMATICS_DSN pointing at that database (it migrates it), and registers the fleet's devices;
3. idle connections: opens `--idle` silent TCP connections to the JT/T 808 port (bench/idle.py)
   and divides the server's RSS increase by their number;
4. load: runs the fleet (bench/fleet.py, trio, its own process) for `--duration` seconds, paced to
   `--rate` reports/s in total, or as fast as a window of `--window` unacknowledged reports per
   terminal allows when `--rate 0`;
5. checks that every acknowledged report is in the database, counts the rows, reads the server's
   peak RSS (VmHWM);
6. the ceiling, in the same run: PositionWriter on as many connections as the server writes with
   (ingest.writers) writes rows of the same kind into the same table, in batches of the server's
   batch size: COPY rows/s without the server;
7. stops the server, drops the database, prints one JSON object (progress goes to stderr).

The headline is `ratio` = reports stored per second / COPY rows per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import h3.api.basic_int as h3
import numpy as np

from bench import fleet as fleet_mod
from bench import geofence as geofence_bench
from geofence.shapes import Circle, Corridor, Polygon
from store import admin, alerts, db, devices, positions, zones
from store.batch import PositionBatch, PositionRow
from store.devices import DeviceRecord
from store.positions import PositionWriter
from telematics.config import Settings

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
ADMIN_DSN = "postgresql://telematics@127.0.0.1:55432/telematics"
CLK_TCK = os.sysconf("SC_CLK_TCK")
USED_LISTENERS = ("jt808", "gt06", "h02")
IDLE_PER_PROCESS = 15_000  # each holder process stays under its descriptor limit


def log(msg: str) -> None:
    print(f"e2e: {msg}", file=sys.stderr, flush=True)


# --- /proc ------------------------------------------------------------------------------------


def proc_status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def postgres_cpu_s() -> float:
    """CPU of the embedded cluster's processes (all of them: other users of the cluster count too)."""
    pidfile = ROOT / "var" / "pg" / "data" / "postmaster.pid"
    try:
        master = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return math.nan
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == master or int(stat[1]) == master:
            total += (int(stat[11]) + int(stat[12])) / CLK_TCK
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the database -------------------------------------------------------------------------------
# Benchmark scaffolding: a scratch database created and dropped here, and the read-back that
# checks every acknowledged report. Nothing of the server's own path goes through this SQL.


def create_database(name: str) -> str:
    return admin.create_database(ADMIN_DSN, name)


def drop_database(name: str) -> None:
    admin.drop_database(ADMIN_DSN, name)


async def stored_keys(dsn: str, index: dict[str, int]) -> np.ndarray:
    """Every stored fix as terminal index << 32 | fix second (the fleet's acked-fix keys)."""
    conn = await db.connect(dsn)
    try:
        rows = await positions.fix_seconds_by_uid(conn)
    finally:
        await conn.close()
    return np.array([(index[uid] << 32) | t for uid, t in rows], dtype=np.int64)


async def register(dsn: str, plan: list[tuple[str, str]], device_kinds: Sequence[str] = ("other",)) -> list[int]:
    """Devices for the fleet's terminals, of the device kinds in turn; their ids (in plan order)."""
    records = [
        DeviceRecord(uid=uid, kind=device_kinds[i % len(device_kinds)], name=f"bench {uid}",
                     protocol=fleet_mod.KIND_IDS[kind][0])
        for i, (kind, uid) in enumerate(plan)
    ]  # fmt: skip
    conn = await db.connect(dsn)
    try:
        async with conn.transaction():
            await devices.upsert_devices(conn, records)
        ids = []
        for _, uid in plan:
            device = await devices.by_uid(conn, uid)
            assert device is not None
            ids.append(device.id)
    finally:
        await conn.close()
    return ids


# --- the ceiling ----------------------------------------------------------------------------------


def ceiling_rows(device_ids: list[int], n: int, seed: int = 42) -> list[PositionRow]:
    """Rows like the server's JT/T 808 rows (same columns filled, no extras), at times the load did not use."""
    rng = random.Random(seed)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    received = datetime.now(UTC)
    rows = []
    for i in range(n):
        lat = fleet_mod.CENTRE[0] + rng.uniform(-0.1, 0.1)
        lon = fleet_mod.CENTRE[1] + rng.uniform(-0.15, 0.15)
        rows.append(
            PositionRow(
                device_id=device_ids[i % len(device_ids)],
                fix_time=start + timedelta(seconds=i // len(device_ids)),
                receive_time=received,
                lat=round(lat, 6),
                lon=round(lon, 6),
                valid=True,
                h3_cell=h3.latlng_to_cell(lat, lon, 9),
                protocol="jt808",
                speed_kmh=round(rng.uniform(0, 70), 1),
                course=float(rng.randrange(360)),
                altitude_m=0.0,
                satellites=9,
                status=3,
                alarm=0,
                mileage_km=round(rng.uniform(1000, 90000), 1),
            )
        )
    return rows


def zone_json(shape: Any) -> dict[str, Any]:
    """A bench.geofence shape in the stored (`from_json`) form."""
    if isinstance(shape, Polygon):
        return {"polygon": {"type": "Polygon", "coordinates": [ring.tolist() for ring in shape.rings]}}
    if isinstance(shape, Circle):
        return {"circle": {"lat": shape.lat, "lon": shape.lon, "radius_m": shape.radius_m}}
    if isinstance(shape, Corridor):
        return {
            "corridor": {"line": {"type": "LineString", "coordinates": shape.line.tolist()}, "width_m": shape.width_m}
        }
    raise TypeError(shape)


# A city's mix of zone kinds (shares): every rule over zones and fixes has work. Speed zones lower the
# limit; routes and duty grids are assigned to a vehicle each, as a city assigns them.
ZONE_MIX = (
    ("generic", 0.35), ("speed_zone", 0.15), ("depot", 0.10), ("construction_site", 0.10), ("disposal_site", 0.05),
    ("duty_grid", 0.10), ("sanitation_route", 0.06), ("muck_route", 0.06), ("forbidden", 0.03),
)  # fmt: skip
ASSIGNED = ("duty_grid", "sanitation_route", "muck_route")


async def add_zones(dsn: str, count: int, device_ids: Sequence[int], seed: int = 7) -> None:
    """`count` zones of every shape, 100 m to 3 km, over the fleet's city, of the kinds of ZONE_MIX; the others
    unassigned (they apply to every device)."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice([k for k, _ in ZONE_MIX], size=count, p=[w for _, w in ZONE_MIX])
    conn = await db.connect(dsn, autocommit=True)
    try:
        async with conn.transaction():
            for i, kind in enumerate(kinds.tolist()):
                shape = zone_json(geofence_bench.random_zone(rng))
                properties = {"speed_limit_kmh": 30} if kind == "speed_zone" else {}
                zone_id = await zones.create(
                    conn, code=f"z{i}", name=f"zone {i}", kind=kind, shape=shape, properties=properties, unit_id=None
                )
                if kind in ASSIGNED and device_ids:
                    await zones.set_assignments(
                        conn, zone_id, zones.Assignments(devices=(device_ids[i % len(device_ids)],))
                    )
    finally:
        await conn.close()


async def count_alerts(dsn: str) -> dict[str, int]:
    """Alerts raised during the run, by kind."""
    conn = await db.connect(dsn, autocommit=True)
    try:
        return await alerts.count_by_kind(conn)
    finally:
        await conn.close()


async def measure_ceiling(dsn: str, device_ids: list[int], n: int, batch_rows: int, writers: int = 1) -> dict[str, Any]:
    """`PositionWriter` alone on `writers` connections at once (as the server's batcher writes), each
    taking every `writers`-th batch of the server's size."""
    rows = ceiling_rows(device_ids, n + batch_rows * writers)
    batches = [PositionBatch.from_rows(rows[i : i + batch_rows]) for i in range(0, len(rows), batch_rows)]
    pool = [PositionWriter(await db.connect(dsn, autocommit=True)) for _ in range(writers)]
    try:
        for k, writer in enumerate(pool):
            await writer.write(batches[k])  # creates the staging table, as the server's first batch does
        rest = batches[writers:]

        async def share(k: int) -> int:
            return sum([await pool[k].write(batch) for batch in rest[k::writers]])

        t0, cpu0 = time.perf_counter(), time.process_time()
        written = sum(await asyncio.gather(*(share(k) for k in range(writers))))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        for writer in pool:
            await writer.close()
    return {
        "rows": written,
        "writers": writers,
        "seconds": round(seconds, 2),
        "rows_per_s": round(written / seconds, 1),
        "client_cpu_us_per_row": round(cpu / written * 1e6, 2),  # the Python side of COPY, as in the server
    }


# --- the server ----------------------------------------------------------------------------------


def write_config(
    path: Path, state: Path, args: argparse.Namespace, listeners: Sequence[str] = USED_LISTENERS, extra: str = ""
) -> None:
    """Every listener on 127.0.0.1 and a free port; those the fleet does not use (not in `listeners`) are off.
    `extra`: more TOML tables (bench/distributed.py's [cluster])."""
    defaults = Settings()
    lines = [f'state_dir = "{state}"', f'log_level = "{args.server_log_level}"']
    if hasattr(defaults, "workers"):
        lines.append("workers = 1")  # one process: its RSS and CPU are the figures
    for f in fields(defaults):
        section = getattr(defaults, f.name)
        if not (hasattr(section, "port") and hasattr(section, "host")) or f.name == "mqtt":
            continue
        lines.append(f"[{f.name}]")
        if f.name not in ("api", *listeners) and hasattr(section, "enabled"):
            lines.append("enabled = false")
        else:
            lines += ['host = "127.0.0.1"', "port = 0"]
    lines += [
        "[mqtt]",
        "enabled = false",  # phones over MQTT have their own benchmark (bench/mqtt_ingest.py)
        "[ingest]",
        f"batch_max_rows = {args.batch_rows}",
        f"batch_max_delay_ms = {args.batch_delay_ms}",
        f"max_pending_rows = {args.max_pending}",
    ]
    if getattr(args, "writers", 0):
        lines.append(f"writers = {args.writers}")
    if hasattr(defaults.ingest, "connects_per_ip_per_s") and args.connects_per_ip:
        # The whole fleet connects from one address here; real terminals come from thousands.
        lines += [f"connects_per_ip_per_s = {float(args.connects_per_ip)}", f"connects_burst = {args.connects_per_ip}"]
    if extra:
        lines.append(extra)
    path.write_text("\n".join(lines) + "\n")


async def start_server(
    config: Path, dsn: str, stderr_path: Path, profile: Path | None, token: str = ""
) -> tuple[Any, dict[str, int]]:
    """The server as a subprocess; its ports by name (the API's as "api")."""
    proc = await spawn_server(config, dsn, stderr_path, profile, token)
    return proc, await read_banner(proc, stderr_path)


async def spawn_server(
    config: Path, dsn: str, stderr_path: Path, profile: Path | None = None, token: str = "", role: str = "all"
) -> Any:
    """`telematics serve` (`--role role` unless "all") as a subprocess, its banner still to read."""
    env = dict(os.environ, TELEMATICS_DSN=dsn, TELEMATICS_API_TOKEN=token or "bench-" + secrets.token_hex(8))
    if profile is None:
        argv = [str(BIN / "telematics"), "--config", str(config), "serve"]
    else:
        argv = [sys.executable, "-m", "bench.profile_server", str(profile), "--config", str(config), "serve"]
    if role != "all":
        argv += ["--role", role]
    return await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr_path.open("wb"),
    )


async def read_banner(proc: Any, stderr_path: Path, last: str = "Terminals:") -> dict[str, int]:
    """The server's ports by name from its banner, read up to the line starting with `last` (a role
    other than all ends its banner with "Role:")."""
    assert proc.stdout is not None
    ports: dict[str, int] = {}
    async with asyncio.timeout(120):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError(f"the server exited before listening; see {stderr_path}")
            if line.startswith("API:"):
                ports["api"] = int(line.split()[1].split(":")[2].split("/")[0])
            if line.startswith("Terminals:"):
                # "Terminals:  jt808 tcp 41023, gt06 tcp 39811, h02 tcp 40127"
                for part in line.split(":", 1)[1].split(","):
                    name, _, port = part.split()
                    ports[name] = int(port)
            if line.startswith(last):
                break
    return ports


async def stop_server(proc: Any) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(60):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


# --- phases -------------------------------------------------------------------------------------


async def wait_fds(pid: int, ok: Any, within: float) -> int:
    deadline = time.monotonic() + within
    while True:
        n = open_fds(pid)
        if ok(n) or time.monotonic() > deadline:
            return n
        await asyncio.sleep(0.2)


async def idle_phase(pid: int, port: int, count: int) -> dict[str, Any]:
    await asyncio.sleep(1)
    fds0, rss0 = open_fds(pid), proc_status_kb(pid, "VmRSS")
    holders = []
    t0 = time.perf_counter()
    for k in range(math.ceil(count / IDLE_PER_PROCESS)):
        n = min(IDLE_PER_PROCESS, count - k * IDLE_PER_PROCESS)
        holders.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "bench.idle", "--port", str(port), "--count", str(n), "--source", f"127.0.0.{2 + k}"),
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        )
    for h in holders:
        assert h.stdout is not None
        line = (await h.stdout.readline()).decode().strip()
        if not line.startswith("ready"):
            raise RuntimeError(f"idle connection holder failed: {line!r}")
    fds1 = await wait_fds(pid, lambda n: n >= fds0 + count, 60)
    connect_s = time.perf_counter() - t0
    await asyncio.sleep(2)
    rss1 = proc_status_kb(pid, "VmRSS")
    accepted = fds1 - fds0
    for h in holders:
        assert h.stdin is not None
        h.stdin.close()
        await h.wait()
    await wait_fds(pid, lambda n: n <= fds0 + 10, 60)
    return {
        "connections": count,
        "accepted": accepted,
        "connect_s": round(connect_s, 2),
        "server_rss_before_kb": rss0,
        "server_rss_with_idle_kb": rss1,
        "bytes_per_connection": round((rss1 - rss0) * 1024 / max(accepted, 1)),
    }


async def load_phase(
    args: argparse.Namespace, ports: dict[str, int], result_path: Path, jt808_ports: Sequence[int] = ()
) -> None:
    """The fleet, to the end of its drain. `jt808_ports`: its JT/T 808 terminals spread over these in turn."""
    profile = ("-m", "cProfile", "-o", args.profile_fleet) if args.profile_fleet else ()
    argv = [
        sys.executable,
        *profile,
        *("-m", "bench.fleet", "--port", str(ports["jt808"])),
        *("--gt06-port", str(ports.get("gt06", 0)), "--h02-port", str(ports.get("h02", 0))),
        *("--count", str(args.terminals), "--mix", args.mix, "--window", str(args.window)),
        *("--duration", str(args.duration), "--drain", str(args.drain), "--ramp", str(args.ramp)),
        *("--progress", str(args.progress), "--result", str(result_path)),
        *("--storm-at", str(args.storm_at), "--backfill-at", str(args.backfill_at)),
        *("--backfill-frames", str(args.backfill_frames), "--fix-step", str(args.fix_step)),
    ]
    argv += ["--rate", str(args.rate)] if args.rate else ["--interval", "0"]
    if jt808_ports:
        argv += ["--jt808-ports", ",".join(map(str, jt808_ports))]
    proc = await asyncio.create_subprocess_exec(*argv, cwd=ROOT)
    if await proc.wait() != 0:
        raise RuntimeError(f"the fleet failed (exit {proc.returncode})")


async def run(args: argparse.Namespace, dsn: str, work: Path) -> dict[str, Any]:
    config = work / "telematics.toml"
    write_config(config, work / "state", args)
    profile = Path(args.profile) if args.profile else None
    server, ports = await start_server(config, dsn, work / "server.log", profile)
    pid = server.pid
    log(f"server {pid} listening: {ports}")
    out: dict[str, Any] = {}
    try:
        plan = fleet_mod.fleet_plan(args.terminals, fleet_mod.parse_mix(args.mix))
        device_ids = await register(dsn, plan, args.device_kinds.split(","))
        log(f"registered {len(plan)} devices")
        if args.zones:
            await add_zones(dsn, args.zones, device_ids)
            await stop_server(server)  # the server loads its zones at start: start it again with them
            server, ports = await start_server(config, dsn, work / "server.log", profile)
            pid = server.pid
            log(f"{args.zones} zones; server {pid} listening again: {ports}")
        if args.idle:
            log(f"idle phase: {args.idle} connections")
            out["idle"] = await idle_phase(pid, ports["jt808"], args.idle)
            log(f"idle: {out['idle']}")
        result_path = work / "fleet.json"
        cpu0, pg0, busy0 = proc_cpu_s(pid), postgres_cpu_s(), machine_busy()
        await load_phase(args, ports, result_path)
        cpu1, pg1, busy1 = proc_cpu_s(pid), postgres_cpu_s(), machine_busy()
        fleet = json.loads(result_path.read_text())
        acked = np.unique(np.fromfile(result_path.with_suffix(".acked"), dtype=np.int64))
        stored = await stored_keys(dsn, {uid: i for i, (_, uid) in enumerate(plan)})
        peak_rss = proc_status_kb(pid, "VmHWM")
        raised = await count_alerts(dsn)  # (the engine writes behind ingest: a few may still be on their way)
        log(f"load done: {len(stored)} rows stored, {len(acked)} acked; ceiling next")
        writers = args.writers or Settings().ingest.writers
        ceiling = await measure_ceiling(dsn, device_ids, args.ceiling_rows, args.batch_rows, writers)
        active = fleet["active_s"] or args.duration
        stored_per_s = len(stored) / active
        out.update(
            {
                "stored": len(stored),
                "stored_per_s": round(stored_per_s, 1),
                "acked": len(acked),
                "acked_not_stored": len(np.setdiff1d(acked, stored, assume_unique=True)),
                "stored_not_acked": len(np.setdiff1d(stored, acked)),
                "ack_latency_ms": fleet["ack_latency_ms"],
                "server_peak_rss_kb": peak_rss,
                "ceiling_copy_rows_per_s": ceiling["rows_per_s"],
                "ratio": round(stored_per_s / ceiling["rows_per_s"], 3),
                "cpu": {
                    "server_s": round(cpu1 - cpu0, 2),
                    "server_us_per_report": round((cpu1 - cpu0) / max(len(stored), 1) * 1e6, 1),
                    "fleet_s": fleet["cpu_s"],
                    "postgres_s": round(pg1 - pg0, 2),
                    "machine_busy": round((busy1[0] - busy0[0]) / (busy1[1] - busy0[1]), 3),
                    # Whatever else ran on the machine meanwhile (other users of the cluster included above).
                    "others_s": round(
                        (busy1[0] - busy0[0]) / CLK_TCK - (cpu1 - cpu0) - fleet["cpu_s"] - (pg1 - pg0), 2
                    ),
                },
                "alerts": raised,
                "ceiling": ceiling,
                "fleet": fleet,
            }
        )
    finally:
        await stop_server(server)
    return out


def parser() -> argparse.ArgumentParser:
    """The options (bench/distributed.py runs the single-node comparison with them too)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--terminals", type=int, default=300)
    p.add_argument("--mix", default="jt808=1", help="terminal kinds and weights: jt808, jt808-2019, gt06, h02")
    p.add_argument("--rate", type=float, default=0, help="reports/s in total (0: as fast as the window allows)")
    p.add_argument("--window", type=int, default=16, help="unacknowledged reports a terminal may have")
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--drain", type=float, default=30, help="seconds to wait for the last acks")
    p.add_argument("--ramp", type=float, default=5)
    p.add_argument("--idle", type=int, default=10_000, help="idle connections for the RSS figure (0: skip)")
    p.add_argument("--storm-at", type=float, default=0, help="seconds into the load: every terminal reconnects")
    p.add_argument("--backfill-at", type=float, default=0, help="seconds into the load: 0x0704 backfill burst")
    p.add_argument("--backfill-frames", type=int, default=4)
    p.add_argument("--ceiling-rows", type=int, default=200_000)
    p.add_argument("--batch-rows", type=int, default=1000, help="server's ingest.batch_max_rows (and the ceiling's)")
    p.add_argument("--batch-delay-ms", type=int, default=10)
    p.add_argument("--max-pending", type=int, default=50_000)
    p.add_argument("--writers", type=int, default=0, help="server's ingest.writers (0: its default)")
    p.add_argument("--zones", type=int, default=0, help="zones for geofencing to evaluate every fix against")
    p.add_argument(
        "--fix-step",
        type=int,
        default=1,
        help="seconds of driving between a terminal's reports (10: as real terminals, for the rules' alert rates)",
    )
    p.add_argument(
        "--device-kinds",
        default="other",
        help="device kinds in turn (the standing alert rules apply to muck,sanitation,enforcement; not to other)",
    )
    p.add_argument(
        "--connects-per-ip",
        type=int,
        default=1_000_000,
        help="server's ingest.connects_per_ip_per_s and connects_burst (0: the server's defaults)",
    )
    p.add_argument("--progress", type=float, default=10)
    p.add_argument("--server-log-level", default="WARNING")
    p.add_argument("--profile", help="run the server under cProfile and write the profile here")
    p.add_argument("--profile-fleet", type=lambda f: str(Path(f).resolve()), help="profile the fleet into this file")
    p.add_argument("--keep", action="store_true", help="keep the database and the work directory")
    return p


def main() -> None:
    args = parser().parse_args()
    if args.profile:
        args.profile = os.path.abspath(args.profile)  # the server runs in the repository root
    raise_nofile()
    subprocess.run([str(BIN / "telematics"), "db", "start"], cwd=ROOT, check=True, stdout=sys.stderr)
    name = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
    dsn = create_database(name)
    work = Path(tempfile.mkdtemp(prefix="e2e-", dir=ROOT / "var" / "tmp"))
    log(f"database {name}, work directory {work}")
    try:
        result = asyncio.run(run(args, dsn, work))
    finally:
        if not args.keep:
            drop_database(name)
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "command": "python -m bench.e2e " + " ".join(sys.argv[1:]),
        "machine": {"cores": os.cpu_count(), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[1]},
        "terminals": args.terminals,
        "mix": args.mix,
        "rate_target": args.rate,
        "window": args.window,
        "duration_s": args.duration,
        "batch_rows": args.batch_rows,
        "zones": args.zones,
        "device_kinds": args.device_kinds,
        "fix_step_s": args.fix_step,
        **result,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
