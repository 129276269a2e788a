"""The distributed mode on one machine: the end-to-end benchmark's load through gateways, NATS JetStream and
processors, and its cost against the single-node server.

    python -m bench.distributed [--gateways 1] [--processors 1] [--single] [--duration 60] [--terminals 300]
                                [--window 16]

What it does, in order:

1. starts the embedded cluster and creates a fresh database in it; starts a private nats-server with
   JetStream on a free port (the roles are told `cluster.embedded = false`: they use this one);
2. starts the roles, each `telematics serve --role ...` as a subprocess with its own generated config:
   one API, `--processors` processors (distinct `cluster.node`), `--gateways` gateways (each its own
   free JT/T 808 port, every other listener off); registers the fleet's devices and waits until every
   partition's lease is held by the processor the rendezvous hash gives it to;
3. load: the fleet of bench/e2e.py (bench/fleet.py, one process) for `--duration` seconds, as fast as
   `--window` reports in flight per terminal allow, its terminals spread over the gateways in turn;
4. waits until the stream is empty (every report committed, then acked to JetStream, by its processor),
   checks that every report acknowledged to a terminal is in the database, measures the COPY ceiling;
5. with `--single`, first: the same load on the single-node server (`telematics serve`, role all) in
   its own scratch database, as `python -m bench.e2e --idle 0` does it, for the ratio;
6. stops everything (SIGTERM, SIGKILL after a timeout), drops the databases, removes the work
   directories, prints one JSON object (progress goes to stderr).

Stored/s counts from the fleet's first report to the last ack plus `behind_s`, the time the processors
still needed after the last ack to empty the stream: a gateway acks once JetStream has a report, so the
acks may run ahead of the database. `ratio_to_single` = distributed stored/s / single-node stored/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import numpy as np
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError

from bench import e2e
from bench import fleet as fleet_mod
from distributed import wire
from distributed.leases import LEASES, owner
from telematics.config import ClusterSettings, Settings
from telematics.nats_server import NatsServer

ROOT = e2e.ROOT
KINDS = ("gateway", "processor", "api")


def log(msg: str) -> None:
    print(f"distributed: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Role:
    kind: str  # gateway, processor or api
    name: str  # its cluster.node
    proc: Any  # asyncio.subprocess.Process
    log: Path
    ports: dict[str, int] = field(default_factory=dict)


# --- scaffolding -------------------------------------------------------------------------------


@contextlib.contextmanager
def scratch(prefix: str, keep: bool) -> Iterator[tuple[str, Path]]:
    """A fresh database and a work directory, both gone afterwards (unless `keep`), failure or not."""
    name = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
    dsn = e2e.create_database(name)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=ROOT / "var" / "tmp"))
    log(f"database {name}, work directory {work}")
    try:
        yield dsn, work
    finally:
        if not keep:
            e2e.drop_database(name)
            shutil.rmtree(work, ignore_errors=True)


def stop_nats(nats_server: NatsServer) -> None:
    pid = nats_server.pid()
    nats_server.stop()  # SIGTERM, and up to 10 s to go
    if pid is None:
        return
    # Still our child and not reaped (so the pid cannot be someone else's): it ignored SIGTERM.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def cluster_table(nats_url: str, partitions: int, node: str) -> str:
    return "\n".join(
        [
            "[cluster]",
            f'nats_url = "{nats_url}"',
            "embedded = false",  # the benchmark's nats-server, started once for every role
            f"partitions = {partitions}",
            f'node = "{node}"',
        ]
    )


async def start_roles(
    args: argparse.Namespace, load: argparse.Namespace, dsn: str, work: Path, nats_url: str, roles: list[Role]
) -> None:
    """API, processors and gateways, all started at once (migrations take an advisory lock); each is
    in `roles` as soon as it is spawned, so the caller stops it whatever happens next."""
    token = "bench-" + secrets.token_hex(8)
    wanted = [("api", "api")]
    wanted += [("processor", f"processor{i + 1}") for i in range(args.processors)]
    wanted += [("gateway", f"gateway{i + 1}") for i in range(args.gateways)]
    for kind, name in wanted:
        config = work / f"{name}.toml"
        listeners = ("jt808",) if kind == "gateway" else ()
        e2e.write_config(
            config, work / f"state-{name}", load, listeners, cluster_table(nats_url, args.partitions, name)
        )
        stderr = work / f"{name}.log"
        profile = args.profile.get(name)
        proc = await e2e.spawn_server(config, dsn, stderr, profile, token=token, role=kind)
        roles.append(Role(kind, name, proc, stderr))
    banners = await asyncio.gather(*(e2e.read_banner(r.proc, r.log, last="Role:") for r in roles))
    for role, ports in zip(roles, banners, strict=True):
        role.ports = ports


async def stop_roles(roles: Sequence[Role]) -> None:
    # Gateways first (what they hold goes to the stream), then the processors (they drain it), the API last.
    for kind in KINDS:
        await asyncio.gather(*(stop_role(r) for r in roles if r.kind == kind))


async def stop_role(role: Role) -> None:
    with contextlib.suppress(ProcessLookupError):  # gone already
        await e2e.stop_server(role.proc)


def tell_logs(roles: Sequence[Role]) -> None:
    """The end of every role's log, for a run that failed (the work directory goes with it)."""
    for role in roles:
        try:
            tail = role.log.read_text(errors="replace").splitlines()[-15:]
        except OSError:
            continue
        if tail:
            log(f"--- {role.name} (exit {role.proc.returncode}):\n" + "\n".join(tail))


# --- NATS ---------------------------------------------------------------------------------------


async def owners(js: JetStreamContext, partitions: int) -> dict[int, str]:
    """Partition -> the node holding its lease."""
    try:
        kv = await js.key_value(LEASES)
    except BucketNotFoundError:
        return {}
    out = {}
    for p in range(partitions):
        try:
            entry = await kv.get(f"p{p}")  # distributed/leases.py's key for a partition
        except KeyNotFoundError:
            continue
        if entry.value:
            out[p] = entry.value.decode()
    return out


async def wait_owned(js: JetStreamContext, nodes: list[str], partitions: int, within: float) -> None:
    """Until each partition is held by its rendezvous winner among `nodes`: the first processor up takes
    every partition, and gives the others' shares back only on its next rounds."""
    wanted = {p: owner(p, nodes) for p in range(partitions)}
    deadline = time.monotonic() + within
    while (held := await owners(js, partitions)) != wanted:
        if time.monotonic() > deadline:
            raise RuntimeError(f"partitions not held as wanted within {within:.0f} s: {held} (wanted {wanted})")
        await asyncio.sleep(0.2)


async def messages_published(js: JetStreamContext) -> int:
    """Messages the gateways have put in the stream so far (its last sequence number: acked ones are gone)."""
    info = await js.stream_info(wire.STREAM)
    return int(info.state.last_seq)


async def stream_messages(js: JetStreamContext) -> int:
    """Messages in the work-queue stream: published by a gateway, not yet committed and acked by a processor."""
    info = await js.stream_info(wire.STREAM)
    return int(info.state.messages)


async def wait_drained(js: JetStreamContext, within: float) -> tuple[float, int]:
    """(seconds until the stream was empty, messages left if it was not within `within`)."""
    t0 = time.monotonic()
    while True:
        left = await stream_messages(js)
        waited = time.monotonic() - t0
        if not left or waited > within:
            return waited, left
        await asyncio.sleep(0.05)


async def sample_backlog(js: JetStreamContext, peak: list[int]) -> None:
    """The stream's largest backlog during the load (in messages: one per partition per gateway batch)."""
    while True:
        with contextlib.suppress(Exception):  # a slow answer under load is no reason to stop the run
            peak[0] = max(peak[0], await stream_messages(js))
        await asyncio.sleep(1)


# --- the run ------------------------------------------------------------------------------------


async def run(
    args: argparse.Namespace, load: argparse.Namespace, dsn: str, work: Path, nats_server: NatsServer
) -> dict[str, Any]:
    roles: list[Role] = []
    nc: NatsClient = await nats.connect(nats_server.url, name="bench")
    js = nc.jetstream()
    failed = True
    try:
        await start_roles(args, load, dsn, work, nats_server.url, roles)
        gateways = [r for r in roles if r.kind == "gateway"]
        log(
            "up: " + ", ".join(f"{r.name} {r.proc.pid} {r.ports}" for r in roles) + f"; nats-server {nats_server.pid()}"
        )
        plan = fleet_mod.fleet_plan(load.terminals, fleet_mod.parse_mix(load.mix))
        device_ids = await e2e.register(dsn, plan)
        nodes = [r.name for r in roles if r.kind == "processor"]
        await wait_owned(js, nodes, args.partitions, within=60)
        log(f"registered {len(plan)} devices; {args.partitions} partitions held by {', '.join(nodes)}")

        nats_pid = nats_server.pid()
        assert nats_pid is not None
        result_path = work / "fleet.json"
        peak = [0]
        sampler = asyncio.create_task(sample_backlog(js, peak))
        cpu0 = {r.name: e2e.proc_cpu_s(r.proc.pid) for r in roles}
        nats0, pg0, busy0 = e2e.proc_cpu_s(nats_pid), e2e.postgres_cpu_s(), e2e.machine_busy()
        published0 = await messages_published(js)
        try:
            await e2e.load_phase(load, {"jt808": gateways[0].ports["jt808"]}, result_path,
                                 [g.ports["jt808"] for g in gateways])  # fmt: skip
            behind_s, left = await wait_drained(js, within=max(60.0, load.duration))
        finally:
            sampler.cancel()
        for r in roles:
            if r.proc.returncode is not None:
                raise RuntimeError(f"{r.name} exited during the load (exit {r.proc.returncode}); see {r.log}")
        cpu1 = {r.name: e2e.proc_cpu_s(r.proc.pid) for r in roles}
        nats1, pg1, busy1 = e2e.proc_cpu_s(nats_pid), e2e.postgres_cpu_s(), e2e.machine_busy()
        published = await messages_published(js) - published0
        if left:
            log(f"the stream still held {left} messages {behind_s:.0f} s after the last ack")

        fleet = json.loads(result_path.read_text())
        acked = np.unique(np.fromfile(result_path.with_suffix(".acked"), dtype=np.int64))
        rows = await e2e.stored_keys(dsn, {uid: i for i, (_, uid) in enumerate(plan)})
        stored = np.unique(rows)
        log(f"load done: {len(stored)} rows stored, {len(acked)} acked; the processors were {behind_s:.2f} s behind")
        ceiling = None
        if load.ceiling_rows:
            writers = load.writers or Settings().ingest.writers
            ceiling = await e2e.measure_ceiling(dsn, device_ids, load.ceiling_rows, load.batch_rows, writers)
        failed = False
    finally:
        await stop_roles(roles)
        await nc.close()
        if failed:
            tell_logs(roles)

    active = fleet["active_s"] or load.duration
    stored_per_s = len(stored) / (active + behind_s)
    by_kind = {kind: sum(cpu1[r.name] - cpu0[r.name] for r in roles if r.kind == kind) for kind in KINDS}
    servers_s = sum(by_kind.values()) + (nats1 - nats0)
    busy_s = (busy1[0] - busy0[0]) / e2e.CLK_TCK
    acked_not_stored = len(np.setdiff1d(acked, stored, assume_unique=True))
    stored_not_acked = len(np.setdiff1d(stored, acked, assume_unique=True))
    out: dict[str, Any] = {
        "stored": len(stored),
        "stored_per_s": round(stored_per_s, 1),
        "acked": len(acked),
        "acked_per_s": round(len(acked) / active, 1),
        "acked_not_stored": acked_not_stored,
        "stored_not_acked": stored_not_acked,
        "stored_twice": len(rows) - len(stored),  # the primary key (device_id, fix_time) should make this 0
        "acked_equals_stored": acked_not_stored == 0 and stored_not_acked == 0 and len(rows) == len(stored),
        "ack_latency_ms": fleet["ack_latency_ms"],
        "behind_s": round(behind_s, 2),
        "left_in_stream": left,
        "stream_backlog_peak_msgs": peak[0],
        # One message per partition per gateway batch: what JetStream and the processors pay per message.
        "messages": published,
        "rows_per_message": round(len(acked) / max(published, 1), 1),
        "cpu": {
            "gateways_s": round(by_kind["gateway"], 2),
            "processors_s": round(by_kind["processor"], 2),
            "api_s": round(by_kind["api"], 2),
            "nats_server_s": round(nats1 - nats0, 2),
            "postgres_s": round(pg1 - pg0, 2),
            "fleet_s": fleet["cpu_s"],
            # Gateways, processors, API and nats-server together: what the single node's server_s compares with.
            "servers_us_per_report": round(servers_s / max(len(stored), 1) * 1e6, 1),
            "machine_busy": round((busy1[0] - busy0[0]) / (busy1[1] - busy0[1]), 3),
            "others_s": round(busy_s - servers_s - fleet["cpu_s"] - (pg1 - pg0), 2),
            "per_process_s": {r.name: round(cpu1[r.name] - cpu0[r.name], 2) for r in roles},
        },
        "fleet": fleet,
    }
    if ceiling is not None:
        out["ceiling_copy_rows_per_s"] = ceiling["rows_per_s"]
        out["ratio_to_ceiling"] = round(stored_per_s / ceiling["rows_per_s"], 3)
    return out


def single_node(load: argparse.Namespace, keep: bool) -> dict[str, Any]:
    """bench/e2e.py's run, the same load on `telematics serve` (role all); the figures to compare."""
    with scratch("single-", keep) as (dsn, work):
        r = asyncio.run(e2e.run(load, dsn, work))
    return {
        "stored": r["stored"],
        "stored_per_s": r["stored_per_s"],
        "acked": r["acked"],
        "acked_not_stored": r["acked_not_stored"],
        "stored_not_acked": r["stored_not_acked"],
        "ack_latency_ms": r["ack_latency_ms"],
        "cpu": r["cpu"],
        "ceiling_copy_rows_per_s": r["ceiling_copy_rows_per_s"],
        "fleet_active_s": r["fleet"]["active_s"],
    }


def distributed(args: argparse.Namespace, load: argparse.Namespace) -> dict[str, Any]:
    with scratch("distributed-", args.keep) as (dsn, work):
        nats_server = NatsServer(work / "nats", port=free_port())
        nats_server.start()
        try:
            return asyncio.run(run(args, load, dsn, work, nats_server))
        finally:
            stop_nats(nats_server)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gateways", type=int, default=1)
    p.add_argument("--processors", type=int, default=1)
    p.add_argument("--partitions", type=int, default=ClusterSettings().partitions)
    p.add_argument("--single", action="store_true", help="also run the single-node server with the same load")
    p.add_argument("--terminals", type=int, default=300)
    p.add_argument("--window", type=int, default=16, help="unacknowledged reports a terminal may have")
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--drain", type=float, default=30, help="seconds the fleet waits for the last acks")
    p.add_argument("--ceiling-rows", type=int, default=200_000, help="rows for the COPY ceiling (0: skip it)")
    p.add_argument("--progress", type=float, default=10)
    p.add_argument("--server-log-level", default="WARNING")
    p.add_argument("--keep", action="store_true", help="keep the databases and the work directories")
    p.add_argument(
        "--profile",
        action="append",
        type=lambda v: tuple(v.split("=", 1)),
        default=[],
        metavar="PART=FILE",
        help="run a part under cProfile, e.g. gateway1=gw.prof or processor1=p.prof (repeatable)",
    )
    args = p.parse_args()
    args.profile = {name: Path(file).resolve() for name, file in args.profile}
    if min(args.gateways, args.processors) < 1:
        p.error("--gateways and --processors must be at least 1")
    # The load, and everything else as the end-to-end benchmark has it (batches, writers, the fleet's ramp).
    load = e2e.parser().parse_args(
        [
            *("--terminals", str(args.terminals), "--window", str(args.window), "--idle", "0"),
            *("--duration", str(args.duration), "--drain", str(args.drain), "--progress", str(args.progress)),
            *("--ceiling-rows", str(args.ceiling_rows), "--server-log-level", args.server_log_level),
        ]
    )
    e2e.raise_nofile()
    subprocess.run([str(e2e.BIN / "telematics"), "db", "start"], cwd=ROOT, check=True, stdout=sys.stderr)
    single = None
    if args.single:
        log("single node first (telematics serve, role all)")
        single = single_node(load, args.keep)
        log(f"single node: {single['stored_per_s']} stored/s")
    log(f"{args.gateways} gateway(s), {args.processors} processor(s), {args.partitions} partitions")
    result: dict[str, Any] = {
        "command": "python -m bench.distributed " + " ".join(sys.argv[1:]),
        "machine": {"cores": os.cpu_count(), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[1]},
        "gateways": args.gateways,
        "processors": args.processors,
        "partitions": args.partitions,
        "terminals": args.terminals,
        "window": args.window,
        "duration_s": args.duration,
        "batch_rows": load.batch_rows,
        **distributed(args, load),
    }
    if single is not None:
        result["single"] = single
        result["ratio_to_single"] = round(result["stored_per_s"] / single["stored_per_s"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
