"""How fast a report reaches the dispatcher's map: server receipt -> WebSocket delta, under load.

Starts the real server on a scratch database with `--devices` devices in the live state, runs the
fleet simulator (its own process) with `--terminals` JT/T 808 terminals reporting every
`--interval` seconds, and keeps `--clients` WebSocket clients subscribed to the whole city. From two
seconds after its snapshot (20,000 rows take a client a while to parse), for every device row
with a new report in every delta a client receives, the latency is the client's clock minus the
row's `last_seen` (when the server received the report; the row was committed in between, so this
bounds commit -> client from above). Prints one JSON line: p50/p99/max latency, deltas and rows a
second per client, and the server's CPU.

    python -m bench.live_ws --devices 20000 --terminals 2000 --interval 5 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench import e2e
from bench import fleet as fleet_mod
from store import db, devices
from store.devices import DeviceRecord


async def add_quiet_devices(dsn: str, count: int) -> None:
    """Devices that exist (and count as never seen) but have no terminal in this run."""
    if count <= 0:
        return
    conn = await db.connect(dsn, autocommit=True)
    try:
        records = [
            DeviceRecord(uid=f"19{i:09d}", kind="sanitation", name=f"quiet {i}", protocol="jt808") for i in range(count)
        ]
        await devices.upsert_devices(conn, records)
    finally:
        await conn.close()


async def client(
    url: str, until: float, latencies: list[float], server_side: list[float], counts: dict[str, int]
) -> None:
    last_seen: dict[int, str] = {}
    measure_from = until
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_str(json.dumps({"type": "subscribe"}))
        while time.time() < until:
            try:
                msg = await ws.receive(timeout=max(0.1, until - time.time()))
            except TimeoutError:
                break
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.time()
            doc = json.loads(msg.data)
            if doc["type"] == "snapshot":  # all devices at once: parsing it takes the client a while
                measure_from = time.time() + 2
            if doc["type"] != "delta" or now < measure_from:
                continue
            counts["deltas"] += 1
            for row in doc["devices"]:
                seen = row.get("last_seen")
                counts["rows"] += 1
                # A row is sent again when only its status changes (online -> offline): time new reports only.
                if seen and last_seen.get(row["id"]) != seen:
                    last_seen[row["id"]] = seen
                    received = datetime.fromisoformat(seen.replace("Z", "+00:00")).timestamp()
                    latencies.append(now - received)
                    sent = datetime.fromisoformat(doc["time"].replace("Z", "+00:00")).timestamp()
                    server_side.append(sent - received)


async def run(args: argparse.Namespace, dsn: str, work: Path) -> dict[str, Any]:
    config = work / "telematics.toml"
    e2e_args = argparse.Namespace(
        server_log_level="WARNING", batch_rows=1000, batch_delay_ms=10, max_pending=50_000, connects_per_ip=1_000_000
    )
    e2e.write_config(config, work / "state", e2e_args)
    token = "bench-" + secrets.token_hex(8)
    server, ports = await e2e.start_server(config, dsn, work / "server.log", None, token)
    try:
        plan = fleet_mod.fleet_plan(args.terminals, {"jt808": 1.0})
        await e2e.register(dsn, plan)
        await add_quiet_devices(dsn, args.devices - args.terminals)
        await asyncio.sleep(11)  # the live state picks up devices added behind its back within 10 s
        fleet = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "bench.fleet", "--port", str(ports["jt808"]), "--count", str(args.terminals)),
            *("--interval", str(args.interval), "--duration", str(args.seconds + 10), "--progress", "0"),
            cwd=e2e.ROOT,
            stdout=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(5 + args.interval)  # every terminal connected and reporting
        url = f"ws://127.0.0.1:{ports['api']}/api/live/ws?token={token}"
        latencies: list[float] = []
        server_side: list[float] = []
        counts = {"deltas": 0, "rows": 0}
        cpu0 = e2e.proc_cpu_s(server.pid)
        until = time.time() + args.seconds
        await asyncio.gather(*(client(url, until, latencies, server_side, counts) for _ in range(args.clients)))
        cpu = e2e.proc_cpu_s(server.pid) - cpu0
        fleet.terminate()
        await fleet.wait()
    finally:
        await e2e.stop_server(server)
    ms = np.array(latencies) * 1000
    sent_ms = np.array(server_side) * 1000
    return {
        "devices": args.devices,
        "terminals": args.terminals,
        "interval_s": args.interval,
        "clients": args.clients,
        "seconds": args.seconds,
        "receipt_to_client_ms": {
            "p50": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "p90": round(float(np.percentile(ms, 90)), 1) if len(ms) else None,
            "p99": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
            "max": round(float(ms.max()), 1) if len(ms) else None,
        },
        # Receipt -> the delta leaving the server (its `time`): the rest is the socket and the client.
        "receipt_to_sent_ms": {
            "p50": round(float(np.percentile(sent_ms, 50)), 1) if len(sent_ms) else None,
            "p99": round(float(np.percentile(sent_ms, 99)), 1) if len(sent_ms) else None,
        },
        "deltas_per_s_per_client": round(counts["deltas"] / args.seconds / args.clients, 1),
        "rows_per_s_per_client": round(counts["rows"] / args.seconds / args.clients, 1),
        "server_cpu_share": round(cpu / args.seconds, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=20_000)
    p.add_argument("--terminals", type=int, default=2_000)
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--seconds", type=float, default=30)
    args = p.parse_args()
    e2e.raise_nofile()
    subprocess.run([str(e2e.BIN / "telematics"), "db", "start"], cwd=e2e.ROOT, check=True, stdout=sys.stderr)
    name = f"bench_ws_{os.getpid()}_{secrets.token_hex(3)}"
    dsn = e2e.create_database(name)
    work = Path(tempfile.mkdtemp(prefix="live-ws-", dir=e2e.ROOT / "var" / "tmp"))
    try:
        result = asyncio.run(run(args, dsn, work))
    finally:
        e2e.drop_database(name)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"command": "python -m bench.live_ws " + " ".join(sys.argv[1:]), **result}))


if __name__ == "__main__":
    main()
