"""A simulated city fleet of JT/T 808 terminals (trio; a separate process from the server).

Each terminal registers, authenticates, then drives around its district and reports its
position at an interval, counting the platform's acknowledgements. It reconnects after a lost
connection, as real terminals do, and resends the report whose ack it did not get.

    python -m bench.fleet --port 5015 --count 50 --interval 5
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

import trio

from protocols import jt808

CENTRE = (22.543, 114.058)  # Shenzhen, Futian: the demo city's centre


def demo_uids(count: int) -> list[str]:
    """Terminal phone numbers of the demo fleet (the demo registers the same ones as devices)."""
    return [f"1380000{i:04d}" for i in range(count)]


@dataclass
class Stats:
    sent: int = 0
    acked: int = 0
    refused: int = 0
    reconnects: int = 0
    started: float = field(default_factory=trio.current_time)


class FrameReader:
    """Splits the platform's byte stream into 0x7e-flagged frames."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buf = bytearray()

    async def frame(self) -> bytes:
        while True:
            start = self._buf.find(0x7E)
            if start >= 0:
                end = self._buf.find(0x7E, start + 1)
                if end > start:
                    frame = bytes(self._buf[start : end + 1])
                    del self._buf[: end + 1]
                    return frame
            data = await self._stream.receive_some(65536)
            if not data:
                raise trio.BrokenResourceError("connection closed by the platform")
            self._buf += data


class Vehicle:
    def __init__(self, uid: str, rng: random.Random) -> None:
        self.uid = uid
        self.rng = rng
        self.lat = CENTRE[0] + rng.uniform(-0.08, 0.08)
        self.lon = CENTRE[1] + rng.uniform(-0.12, 0.12)
        self.course = rng.uniform(0, 360)
        self.speed = rng.uniform(0, 50)
        self.mileage = rng.uniform(1000, 90000)
        self.serial = 0
        self.auth_code = ""

    def step(self, seconds: float) -> None:
        self.course = (self.course + self.rng.gauss(0, 20)) % 360
        self.speed = min(70.0, max(0.0, self.speed + self.rng.gauss(0, 5)))
        km = self.speed * seconds / 3600
        self.mileage += km
        self.lat += km / 111.0 * math.cos(math.radians(self.course))
        self.lon += km / (111.0 * math.cos(math.radians(self.lat))) * math.sin(math.radians(self.course))
        # Stay in the city.
        if abs(self.lat - CENTRE[0]) > 0.12 or abs(self.lon - CENTRE[1]) > 0.18:
            self.course = (self.course + 180) % 360

    def frame(self, msg_id: int, body: bytes) -> tuple[int, bytes]:
        self.serial = (self.serial + 1) & 0xFFFF
        return self.serial, jt808.encode_frame(msg_id, self.uid, self.serial, body)

    def report(self) -> tuple[int, bytes]:
        body = jt808.encode_location_body(
            time=datetime.now(UTC).replace(microsecond=0),
            lat=self.lat,
            lon=self.lon,
            speed_kmh=round(self.speed, 1),
            course=self.course,
            status=0b1 if self.speed > 0 else 0,  # ACC on while moving
            mileage_km=round(self.mileage, 1),
            satellites=self.rng.randint(6, 14),
        )
        return self.frame(jt808.MSG_LOCATION, body)


async def run_vehicle(v: Vehicle, host: str, port: int, interval: float, stats: Stats, deadline: float) -> None:
    backoff = 1.0
    pending: tuple[int, bytes] | None = None
    while trio.current_time() < deadline:
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 30)
            stats.reconnects += 1
            continue
        backoff = 1.0
        reader = FrameReader(stream)
        try:
            async with stream:
                if not v.auth_code:
                    _, frame = v.frame(jt808.MSG_REGISTRATION, jt808.encode_registration_body(plate=f"粤B{v.uid[-5:]}"))
                    await stream.send_all(frame)
                    _, result, v.auth_code = jt808.parse_registration_response(await reader.frame())
                    if result != 0:
                        print(f"{v.uid}: registration refused (result {result})", flush=True)
                        return
                _, frame = v.frame(jt808.MSG_AUTHENTICATION, jt808.encode_authentication_body(v.auth_code))
                await stream.send_all(frame)
                if jt808.parse_general_response(await reader.frame())[2] != 0:
                    v.auth_code = ""  # the platform forgot us: register again
                    continue
                while trio.current_time() < deadline:
                    if pending is None:
                        pending = v.report()
                    await stream.send_all(pending[1])
                    stats.sent += 1
                    reply_serial, _, result = jt808.parse_general_response(await reader.frame())
                    if reply_serial == pending[0]:
                        if result == 0:
                            stats.acked += 1
                        else:
                            stats.refused += 1
                        pending = None
                    await trio.sleep(interval * v.rng.uniform(0.8, 1.2))
                    v.step(interval)
        except (trio.BrokenResourceError, trio.ClosedResourceError, jt808.ProtocolError, OSError):
            stats.reconnects += 1
            await trio.sleep(backoff)


async def report_progress(stats: Stats, every: float) -> None:
    while True:
        await trio.sleep(every)
        elapsed = trio.current_time() - stats.started
        print(
            f"fleet: {stats.sent} sent, {stats.acked} acked, {stats.refused} refused, "
            f"{stats.reconnects} reconnects, {stats.acked / elapsed:.1f} acks/s",
            flush=True,
        )


async def main_async(args: argparse.Namespace) -> Stats:
    stats = Stats()
    rng = random.Random(args.seed)
    deadline = trio.current_time() + args.duration if args.duration else math.inf
    async with trio.open_nursery() as nursery:
        if args.progress:
            nursery.start_soon(report_progress, stats, args.progress)
        async with trio.open_nursery() as vehicles:
            for uid in demo_uids(args.count):
                v = Vehicle(uid, random.Random(rng.random()))
                vehicles.start_soon(run_vehicle, v, args.host, args.port, args.interval, stats, deadline)
                await trio.sleep(args.ramp / max(args.count, 1))
        nursery.cancel_scope.cancel()
    return stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5015)
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--interval", type=float, default=5.0, help="seconds between a vehicle's reports")
    p.add_argument("--duration", type=float, default=0, help="seconds to run (0: until stopped)")
    p.add_argument("--ramp", type=float, default=5.0, help="seconds over which the vehicles connect")
    p.add_argument("--progress", type=float, default=30.0, help="seconds between progress lines (0: none)")
    p.add_argument("--seed", type=int, default=808)
    args = p.parse_args()
    try:
        stats = trio.run(main_async, args)
    except KeyboardInterrupt:
        return
    print(f"fleet: done: {stats.sent} sent, {stats.acked} acked, {stats.refused} refused", flush=True)


if __name__ == "__main__":
    main()
