"""Replay and audit queries on a database the size of a city's week: tracks, simplified tracks, "who was here".

Fills a database (once; kept for the next run unless --drop) with DEVICES vehicles x DAYS at one fix
per INTERVAL seconds (2,000 x 7 x 2,880 = 40.3 million rows), loaded straight into the positions
hypertable with binary COPY. Every vehicle parks overnight (22:00-06:00 Beijing time) in one of 40
depots and drives a day-long loop from it with stops. Then it starts the real server on that
database and times, over HTTP with the API token:

- one device, one day, raw (`GET /api/devices/{id}/track`): target under 50 ms;
- one device, 7 days, simplified to 5,000 points (`?points=5000`): target under 300 ms;
- who was in a 200 m circle over one night (`POST /api/query/visited`), at a depot where dozens of
  trucks park (the worst case) and at a street corner: target under 1 s.

Each figure has its ceiling from the same run: the database's own execution time of the query
that reads the same rows (EXPLAIN ANALYZE), so the ratio shows what the server adds.

    python -m bench.replay [--devices 2000] [--days 7] [--interval 30] [--repeat 15] [--drop]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psycopg

from bench import e2e
from geofence.cover import cells_of
from store import admin, db, devices, positions
from store.batch import PositionBatch
from store.devices import DeviceRecord
from store.migrate import migrate

CENTRE = (22.54, 114.06)
M_PER_DEG = 111_195.0
DEPOTS = 40
START = datetime(2026, 11, 1, tzinfo=UTC) - timedelta(hours=8)  # local midnight, Beijing time


def log(msg: str) -> None:
    print(f"replay: {msg}", file=sys.stderr, flush=True)


def depots(rng: np.random.Generator) -> np.ndarray:
    """(DEPOTS, 2) lat, lon spread over about 30 x 30 km."""
    x = rng.uniform(-15_000, 15_000, (DEPOTS, 2))
    lat = CENTRE[0] + x[:, 1] / M_PER_DEG
    lon = CENTRE[1] + x[:, 0] / (M_PER_DEG * math.cos(math.radians(CENTRE[0])))
    return np.column_stack([lat, lon])


def track(rng: np.random.Generator, depot: np.ndarray, days: int, interval_s: int) -> dict[str, np.ndarray]:
    """One vehicle's fixes: parked at its depot at night, a loop out and back by day with stops."""
    per_day = 86_400 // interval_s
    n = per_day * days
    t = np.arange(n, dtype=np.int64) * interval_s
    of_day = t % 86_400
    working = (of_day >= 6 * 3600) & (of_day < 22 * 3600)
    # Speed: a smoothed random level, stops of a few minutes now and then, nothing at night.
    level = np.convolve(rng.uniform(0, 60, n), np.ones(20) / 20, mode="same")
    stops = np.repeat(rng.random(n // 20 + 1) < 0.15, 20)[:n]
    speed = np.where(working & ~stops, level, 0.0)
    heading = np.cumsum(rng.normal(0, 0.35, n))
    step_m = speed / 3.6 * interval_s
    dx, dy = step_m * np.sin(heading), step_m * np.cos(heading)
    x, y = np.zeros(n), np.zeros(n)
    for d in range(days):  # each day a closed loop: back at the depot by 22:00
        day = slice(d * per_day, (d + 1) * per_day)
        cx, cy = np.cumsum(dx[day]), np.cumsum(dy[day])
        ramp = np.cumsum(working[day]) / max(1, int(working[day].sum()))
        x[day], y[day] = cx - ramp * cx[-1], cy - ramp * cy[-1]
    lat = depot[0] + y / M_PER_DEG
    lon = depot[1] + x / (M_PER_DEG * math.cos(math.radians(depot[0])))
    course = np.degrees(heading) % 360
    moved = np.r_[0.0, np.hypot(np.diff(x), np.diff(y))]
    return {"t": t, "lat": lat, "lon": lon, "speed": speed, "course": course, "km": np.cumsum(moved) / 1000}


def batch_of(device_id: int, tr: dict[str, np.ndarray], resolution: int) -> PositionBatch:
    n = len(tr["t"])
    fix = (int((START - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) + tr["t"]) * 1_000_000
    return PositionBatch(
        device_id=np.full(n, device_id, np.int32),
        fix_time=fix,
        receive_time=fix + 2_000_000,
        lat=tr["lat"],
        lon=tr["lon"],
        speed_kmh=tr["speed"].astype(np.float32),
        course=tr["course"].astype(np.float32),
        altitude_m=np.full(n, 20, np.float32),
        accuracy_m=np.full(n, 5, np.float32),
        satellites=np.full(n, 10, np.int16),
        valid=np.ones(n, bool),
        status=np.where(tr["speed"] > 0, 1, 0).astype(np.int64) | 0b10,
        alarm=np.zeros(n, np.int64),
        mileage_km=1000.0 + tr["km"],
        h3_cell=cells_of(tr["lat"], tr["lon"], resolution),
        protocol=["jt808"] * n,
        extras=[None] * n,
    )


async def fill(dsn: str, args: argparse.Namespace, spots: np.ndarray) -> None:
    conn = await db.connect(dsn, autocommit=True)
    try:
        await migrate(conn)
        records = [DeviceRecord(uid=f"0199{i:08d}", kind=("muck", "sanitation", "enforcement")[i % 3],
                                name=f"vehicle {i}") for i in range(args.devices)]  # fmt: skip
        await devices.upsert_devices(conn, records)
        ids = [(await devices.by_uid(conn, r.uid)).id for r in records]  # type: ignore[union-attr]
    finally:
        await conn.close()
    writers = [await db.connect(dsn, autocommit=True) for _ in range(2)]
    rng = np.random.default_rng(11)
    started = time.monotonic()
    pending: list[asyncio.Task[None]] = []
    rows = 0
    for i, device_id in enumerate(ids):
        tr = track(rng, spots[i % DEPOTS], args.days, args.interval)
        batch = batch_of(device_id, tr, 9)
        rows += len(batch)
        if len(pending) == len(writers):
            await pending.pop(0)
        pending.append(asyncio.create_task(positions.bulk_load(writers[i % len(writers)], batch)))
        if (i + 1) % 200 == 0:
            log(f"{i + 1} devices, {rows:,} rows, {rows / (time.monotonic() - started):,.0f} rows/s")
    await asyncio.gather(*pending)
    for w in writers:
        await w.execute("ANALYZE positions")
        await w.close()
    log(f"loaded {rows:,} rows in {time.monotonic() - started:.0f} s")


def _stats(ms: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(ms), 1), "max": round(max(ms), 1), "n": len(ms)}


async def ceiling_ms(dsn: str, query: str, params: tuple[Any, ...]) -> float:
    """The database's own execution time for the rows a request reads (median of three)."""
    times = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for _ in range(3):
            cur = await conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", params)  # type: ignore[arg-type]
            plan = (await cur.fetchone())[0][0]  # type: ignore[index]
            times.append(float(plan["Execution Time"]))
    return statistics.median(times)


async def measure(dsn: str, api: str, token: str, args: argparse.Namespace, spots: np.ndarray) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    headers = {"Authorization": f"Bearer {token}"}
    conn = await psycopg.AsyncConnection.connect(dsn)
    ids = [r[0] for r in await (await conn.execute("SELECT id FROM devices ORDER BY id")).fetchall()]
    await conn.close()
    day = START + timedelta(days=args.days // 2)
    night_from = day + timedelta(hours=22)
    out: dict[str, Any] = {}

    def iso(t: datetime) -> str:
        return t.isoformat().replace("+00:00", "Z")

    async with aiohttp.ClientSession(headers=headers) as http:

        async def timed(method: str, path: str, body: Any = None) -> tuple[float, Any]:
            t0 = time.perf_counter()
            async with http.request(method, api + path, json=body) as r:
                doc = await r.json()
                assert r.status == 200, (path, r.status, doc)
            return (time.perf_counter() - t0) * 1000, doc

        picks = rng.choice(ids, args.repeat, replace=False).tolist()
        raw = []
        one_day = f"from={iso(day)}&to={iso(day + timedelta(days=1))}"
        for device_id in picks:
            ms, _ = await timed("GET", f"/api/devices/{device_id}/track?{one_day}")
            raw.append(ms)
        sql = "SELECT * FROM positions WHERE device_id = %s AND fix_time >= %s AND fix_time < %s"
        out["track_1_day_raw_ms"] = _stats(raw)
        out["track_1_day_raw_ms"]["ceiling_ms"] = round(
            await ceiling_ms(dsn, sql, (picks[0], day, day + timedelta(days=1))), 1
        )
        week_from, week_to = START, START + timedelta(days=args.days)
        simplified = []
        for device_id in picks:
            ms, doc = await timed(
                "GET", f"/api/devices/{device_id}/track?from={iso(week_from)}&to={iso(week_to)}&points=5000"
            )
            simplified.append(ms)
        out["track_7_days_5000_points_ms"] = _stats(simplified)
        out["track_7_days_5000_points_ms"]["ceiling_ms"] = round(
            await ceiling_ms(dsn, sql, (picks[0], week_from, week_to)), 1
        )
        near = spots[0] + np.array([0.004, 0.0])  # 450 m from depot 0: its trucks pass by day
        asks = (
            ("night_depot", spots[0], night_from),  # dozens of trucks parked inside: the worst case
            ("night_street", spots[0] + np.array([0.02, 0.015]), night_from),
            ("day_near_depot", near, day + timedelta(hours=6)),  # 06:00-14:00 local
        )
        for name, (lat, lon), since in asks:
            body = {"circle": {"lat": float(lat), "lon": float(lon), "radius_m": 200},
                    "from": iso(since), "to": iso(since + timedelta(hours=8))}  # fmt: skip
            times, found = [], 0
            for _ in range(max(3, args.repeat // 3)):
                ms, doc = await timed("POST", "/api/query/visited", body)
                times.append(ms)
                found = len(doc["devices"])
            out[f"visited_200m_8h_{name}_ms"] = {**_stats(times), "devices": found}
    return out


async def run(args: argparse.Namespace, dsn: str, work: Path) -> dict[str, Any]:
    spots = depots(np.random.default_rng(3))
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        rows = (await (await conn.execute("SELECT count(*) FROM positions")).fetchone())[0]  # type: ignore[index]
        size = (await (await conn.execute("SELECT hypertable_size('positions')")).fetchone())[0]  # type: ignore[index]
    config = work / "telematics.toml"
    settings = argparse.Namespace(
        server_log_level="WARNING", batch_rows=1000, batch_delay_ms=10, max_pending=50_000, connects_per_ip=0
    )
    e2e.write_config(config, work / "state", settings)
    token = "bench-" + secrets.token_hex(8)
    server, ports = await e2e.start_server(config, dsn, work / "server.log", None, token)
    try:
        figures = await measure(dsn, f"http://127.0.0.1:{ports['api']}", token, args, spots)
    finally:
        await e2e.stop_server(server)
    return {"rows": rows, "positions_size_mb": round(size / 2**20), **figures}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--interval", type=int, default=30, help="seconds between fixes")
    p.add_argument("--repeat", type=int, default=15, help="devices (and requests) timed per figure")
    p.add_argument("--drop", action="store_true", help="drop the filled database afterwards")
    args = p.parse_args()
    subprocess.run([str(e2e.BIN / "telematics"), "db", "start"], cwd=e2e.ROOT, check=True, stdout=sys.stderr)
    name = f"bench_replay_{args.devices}x{args.days}x{args.interval}"
    fresh = False
    with psycopg.connect(e2e.ADMIN_DSN, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            fresh = True
    dsn = admin.create_database(e2e.ADMIN_DSN, name) if fresh else admin.with_dbname(e2e.ADMIN_DSN, name)
    log(f"database {name} ({'filling' if fresh else 'filled before'})")
    work = Path(tempfile.mkdtemp(prefix="replay-", dir=e2e.ROOT / "var" / "tmp"))
    if fresh:
        try:
            asyncio.run(fill(dsn, args, depots(np.random.default_rng(3))))
        except BaseException:  # half filled: start again next time
            admin.drop_database(e2e.ADMIN_DSN, name)
            raise
    result = asyncio.run(run(args, dsn, work))
    if args.drop:
        admin.drop_database(e2e.ADMIN_DSN, name)
    print(json.dumps({"command": "python -m bench.replay " + " ".join(sys.argv[1:]),
                      "machine": {"cores": os.cpu_count()}, "devices": args.devices, "days": args.days,
                      "interval_s": args.interval, **result}))  # fmt: skip


if __name__ == "__main__":
    main()
