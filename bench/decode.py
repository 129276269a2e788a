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
from typing import Any

from protocols import jt808
from protocols.columns import PositionColumns
from protocols.jt808_bulk import Jt808BulkDecoder
from protocols.messages import Position


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


def _track(n: int, seed: int) -> list[tuple[datetime, float, float, float, float]]:
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        (
            start + timedelta(seconds=10 * i),
            22.5 + rng.random() / 10,
            114 + rng.random() / 10,
            rng.uniform(0, 80),
            rng.uniform(0, 359),
        )
        for i in range(n)
    ]


def _stream_result(name: str, decoder: Any, hello: bytes, frames: list[bytes], separator: bytes) -> Result:
    """`hello` names the terminal (login, identification); `frames` are position reports."""
    data = hello + b"".join(frames)
    ceiling = _ceiling(data, separator, len(frames))

    def decode() -> int:
        d = decoder()
        out = d.feed(data) + (d.flush() if hasattr(d, "flush") else [])
        return sum(isinstance(m, Position) for m in out)

    count, seconds = _best(decode)
    assert count == len(frames), f"{name}: {count} positions of {len(frames)}"
    return Result(name, count, seconds, ceiling)


def bench_others(n: int) -> list[Result]:
    from protocols import gt06, h02, nmea, osmand, phone_mqtt

    track = _track(n, 2)
    results = [
        _stream_result(
            "gt06 0x22 GPS+LBS, per frame",
            lambda: gt06.Gt06Decoder(max_buffer=1 << 30),
            gt06.encode_login("864717003283581", serial=0),
            [
                gt06.encode_position(time=t, lat=la, lon=lo, speed_kmh=s, course=c, serial=i & 0xFFFF, satellites=9)
                for i, (t, la, lo, s, c) in enumerate(track)
            ],
            b"\r\n",
        ),
        _stream_result(
            "h02 V1 text, per message",
            lambda: h02.H02Decoder(max_buffer=1 << 30),
            b"",
            [h02.encode_position("4210051415", t, la, lo, speed_kmh=s, course=c) for t, la, lo, s, c in track],
            b"#",
        ),
        _stream_result(
            "nmea RMC+GGA, per fix",
            lambda: nmea.NmeaDecoder(max_buffer=1 << 30),
            nmea.encode_identification("T55-1"),
            [
                nmea.encode_position(t, la, lo, speed_kmh=s, course=c, satellites=9, altitude_m=10)
                for t, la, lo, s, c in track
            ],
            b"\n",
        ),
    ]
    # Message protocols: the ceiling is handing each message to a function that does nothing.
    fixes = [
        Position(protocol="mqtt", device="insp-1", time=t, lat=la, lon=lo, valid=True, speed_kmh=s)
        for t, la, lo, s, _ in track
    ]
    topic = phone_mqtt.topic_for("insp-1")
    for fmt in ("json", "msgpack"):
        payloads = [phone_mqtt.encode_location(p, fmt=fmt) for p in fixes]

        def decode_all(ps: list[bytes] = payloads) -> int:
            return sum(len(phone_mqtt.decode_publish(topic, p)) for p in ps)

        def pass_all(ps: list[bytes] = payloads) -> int:
            return sum(len(_noop(topic, p)) for p in ps)

        count, seconds = _best(decode_all)
        _, floor = _best(pass_all)
        results.append(Result(f"mqtt OwnTracks {fmt}, per publish", count, seconds, count / floor))
    queries = [osmand.encode_query(p) for p in fixes]
    count, seconds = _best(lambda: sum(len(osmand.decode_request("GET", "/?" + q, {}, b"")) for q in queries))
    _, floor = _best(lambda: sum(len(_noop("GET", "/?" + q)) for q in queries))
    results.append(Result("osmand query string, per request", count, seconds, count / floor))
    return results


def _noop(*args: Any) -> list[Any]:
    return [args]


def run(reports: int) -> list[Result]:
    return bench_jt808(reports) + bench_others(max(reports // 10, 1000))


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
