"""Decode throughput per protocol, on one core, with a ceiling measured in the same run.

Each protocol's own encoder builds a large buffer of back-to-back position reports; the decoder
then turns it into normalized messages (or columns). The ceiling is the cheapest possible pass over
the same bytes: splitting them into frames with `bytes.split`, which every decoder must at least do.

    python -m bench.decode [--reports 200000]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from protocols import jt808
from protocols.columns import PositionColumns
from protocols.jt808_bulk import Jt808BulkDecoder


@dataclass
class Result:
    name: str
    reports: int
    seconds: float
    ceiling_per_s: float

    @property
    def per_s(self) -> float:
        return self.reports / self.seconds

    @property
    def ratio(self) -> float:
        return self.per_s / self.ceiling_per_s


def _best(fn: Callable[[], int], repeat: int = 3) -> tuple[int, float]:
    best = float("inf")
    count = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - t0)
    return count, best


def _ceiling(data: bytes, separator: bytes, frames: int) -> float:
    _, seconds = _best(lambda: len(data.split(separator)))
    return frames / seconds


def jt808_frames(n: int, seed: int = 808) -> list[bytes]:
    """Location reports as a city fleet sends them: 50 terminals, mileage and satellites items."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        body = jt808.encode_location_body(
            time=start + timedelta(seconds=10 * i),
            lat=22.5 + rng.random() / 10,
            lon=114.0 + rng.random() / 10,
            speed_kmh=round(rng.uniform(0, 80), 1),
            course=rng.uniform(0, 359),
            status=0b11,
            mileage_km=round(1000 + i / 10, 1),
            satellites=rng.randint(5, 14),
        )
        out.append(jt808.encode_frame(jt808.MSG_LOCATION, f"1390000{i % 50:04d}", i & 0xFFFF, body))
    return out


def bench_jt808(n: int) -> list[Result]:
    frames = jt808_frames(n)
    data = b"".join(frames)
    ceiling = _ceiling(data, b"\x7e\x7e", n)

    def bulk() -> int:
        out = Jt808BulkDecoder().feed(data)
        return sum(len(c) for c in out if isinstance(c, PositionColumns))

    results = []
    count, seconds = _best(bulk)
    assert count == n, f"bulk decoder gave {count} of {n}"
    results.append(Result("jt808 0x0200, bulk to columns", n, seconds, ceiling))
    small = max(n // 10, 1000)
    small_data = b"".join(frames[:small])
    count, seconds = _best(lambda: len(jt808.Jt808Decoder(max_buffer=len(small_data) + 1).feed(small_data)))
    assert count == small
    results.append(Result("jt808 0x0200, per frame to objects", small, seconds, ceiling))
    return results


def run(reports: int) -> list[Result]:
    return bench_jt808(reports)


def print_table(results: list[Result]) -> None:
    print(f"{'decoder':44} {'reports/s':>12} {'ceiling/s':>12} {'ratio':>7}")
    for r in results:
        print(f"{r.name:44} {r.per_s:12,.0f} {r.ceiling_per_s:12,.0f} {r.ratio:7.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reports", type=int, default=200_000)
    args = p.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the figure claims
    print_table(run(args.reports))


if __name__ == "__main__":
    main()
