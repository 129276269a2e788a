"""The server's cost per JT/T 808 report, stage by stage, without a profiler's overhead.

Each stage of the server's path is timed on its own, in this process, on the same frames the fleet
sends (2,000 terminals, 8 reports per read as in `bench.e2e --rate 0`). What the stages do not
cover of the server's CPU per report measured by `bench.e2e` (`cpu.server_us_per_report`) is the
event loop: reads, callbacks, transports.

    python -m bench.stages [--reports 40000]

The COPY stage is in `bench.e2e` (`ceiling_copy_rows_per_s`): it needs the database.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bench.fleet import Jt808Terminal, Vehicle
from ingest.batcher import Batcher, BatchWriter
from ingest.counters import Counters
from ingest.fixes import to_row
from ingest.reports import ReportSink
from protocols import jt808
from protocols.messages import Position
from store import copy_binary
from store.batch import PositionBatch
from store.devices import Device


def _us(fn: Callable[[], object], n: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def run(reports: int) -> tuple[dict[str, float], float]:
    terminals = [Jt808Terminal(f"139{i:08d}", Vehicle("x", random.Random(i))) for i in range(2000)]
    start = int(time.time()) - reports - 3600  # every fix in the past, one second each
    reads = []  # 8 frames per read, as the pipelined fleet delivers them
    for i in range(reports // 8):
        t = terminals[i % len(terminals)]
        reads.append((t, b"".join(t.report(start + i * 8 + k)[1] for k in range(8))))
    decoders = {t.uid: jt808.Jt808Decoder() for t in terminals}
    positions: list[Position] = []

    def decode() -> None:
        positions.clear()
        for t, data in reads:
            positions.extend(decoders[t.uid].feed(data))  # type: ignore[arg-type]

    out = {"decode (Jt808Decoder.feed)": _us(decode, reports)}
    now = datetime.now(UTC)
    out["to_row + h3"] = _us(
        lambda: [to_row(p, 1, now, h3_resolution=9, max_future=timedelta(minutes=10)) for p in positions], reports
    )
    device = Device(1, "13900000000", "other", "", None, None, "jt808", "x", True)

    async def submit_all() -> float:
        batcher = Batcher(_no_writer, Counters(), max_rows=2000, max_pending=10**9)
        sink = ReportSink(batcher, Counters())

        def go() -> None:
            for i in range(0, len(positions), 8):
                for p in positions[i : i + 8]:
                    sink.submit(device, [p], _ignore, peer="bench")

        t0 = time.perf_counter()
        go()
        return (time.perf_counter() - t0) / len(positions) * 1e6

    out["ReportSink.submit + Batcher.submit (without to_row)"] = asyncio.run(submit_all()) - out["to_row + h3"]
    rows = [to_row(p, 1, now, h3_resolution=9, max_future=timedelta(minutes=10)) for p in positions]
    batches = [rows[i : i + 2000] for i in range(0, len(rows), 2000)]
    out["PositionBatch.from_rows"] = _us(lambda: [PositionBatch.from_rows(b) for b in batches], len(rows))
    built = [PositionBatch.from_rows(b) for b in batches]
    copy_input = _us(lambda: [copy_binary.encode(b) for b in built], len(rows))
    out["ack encode (jt808.ack_for)"] = _us(lambda: [jt808.ack_for(p, serial=7) for p in positions], reports)
    server = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(server.getsockname())
    a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # uvloop sets it on TCP transports
    b, _ = server.accept()
    ack = jt808.ack_for(positions[0], serial=7) or b""

    def send_acks() -> None:
        for i in range(20000):
            a.send(ack)
            if i % 64 == 63:
                b.recv(1 << 20)  # (the reader's share of the cost is the terminal's, not the server's)

    out["ack send (one send() a report)"] = _us(send_acks, 20000)
    return out, copy_input


async def _no_writer() -> BatchWriter:
    raise RuntimeError("not used: nothing is written here")


def _ignore(ok: bool) -> None:
    pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reports", type=int, default=40_000)
    args = p.parse_args()
    results, copy_input = run(args.reports)
    for name, us in results.items():
        print(f"{name:52} {us:8.2f} us/report")
    print(f"{'sum (COPY not included: see bench.e2e)':52} {sum(results.values()):8.2f} us/report")
    print(f"{'(binary COPY payload: part of COPY)':52} {copy_input:8.2f} us/report")


if __name__ == "__main__":
    main()
