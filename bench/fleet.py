"""A simulated city fleet (trio; a separate process from the server).

Terminals of several protocols (JT/T 808 with 2013 or 2019 headers, GT06, H02) connect, identify
themselves (JT/T 808 registration and authentication, GT06 login, H02 nothing), then drive around
the city and report their position, counting the platform's acknowledgements. They reconnect
after a lost connection, as real terminals do, and resend the reports whose acks they did not get.

The demo (`telematics demo`) runs 60 JT/T 808 terminals reporting every 5 s:

    python -m bench.fleet --port 5015 --count 50 --interval 5

For throughput runs (`python -m bench.e2e`), a terminal may keep `--window` reports in flight
(pipelining) and the fleet can be paced to a total `--rate`; every report's send time and ack
time give the ack latency, and `--result` writes the figures as JSON. `--storm-at` drops every
connection at once (all terminals reconnect together); `--backfill-at` makes every JT/T 808
terminal upload old fixes in 0x0704 batches.

Each report of a terminal carries its own fix second (the database keeps one row per device and
fix time): in paced demo mode that is the clock, in throughput mode a per-terminal clock that
starts `--backdate` seconds ago and advances a second per report.

Adding a kind of terminal (an MQTT phone, say) means a `Terminal` subclass registered in
`KINDS`: `connect` returns something with `send_all` / `receive_some` (an MQTT session would wrap
the broker connection and return PUBACKs as acks keyed by packet id), `handshake`, `report` and
`acks`. MQTT phones are not in the fleet yet: their ingest is being written separately.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import operator
import random
import struct
import sys
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import trio

from protocols import gt06, h02, jt808

CENTRE = (22.543, 114.058)  # Shenzhen, Futian: the demo city's centre
BEIJING_S = 8 * 3600  # JT/T 808 times are Beijing time


def demo_uids(count: int) -> list[str]:
    """Terminal phone numbers of the demo fleet (the demo registers the same ones as devices)."""
    return [f"1380000{i:04d}" for i in range(count)]


# --- the fleet plan: which terminals, with which ids --------------------------------------------

# kind -> (device protocol, id pattern). Ids differ between kinds: a uid is unique across protocols.
KIND_IDS = {
    "jt808": ("jt808", "139{:08d}"),
    "jt808-2019": ("jt808", "2019{:08d}"),
    "gt06": ("gt06", "86471700{:07d}"),
    "h02": ("h02", "42{:08d}"),
}


def parse_mix(text: str) -> dict[str, float]:
    """`jt808=70,gt06=10,...` (weights) -> normalized shares; an unknown kind is an error."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in KIND_IDS:
            raise ValueError(f"unknown terminal kind {name!r} (known: {', '.join(KIND_IDS)})")
        out[name] = float(weight or 1)
    total = sum(out.values())
    if total <= 0:
        raise ValueError("the mix has no terminals")
    return {k: v / total for k, v in out.items() if v > 0}


def fleet_plan(count: int, mix: dict[str, float]) -> list[tuple[str, str]]:
    """(kind, uid) of each terminal, in a fixed order: the harness registers the same list."""
    kinds = list(mix)
    counts = [int(count * mix[k]) for k in kinds]
    counts[0] += count - sum(counts)  # rounding leftovers go to the first kind
    plan = []
    for kind, n in zip(kinds, counts, strict=True):
        pattern = KIND_IDS[kind][1]
        plan.extend((kind, pattern.format(i)) for i in range(n))
    return plan


# --- movement -------------------------------------------------------------------------------


class Vehicle:
    def __init__(self, uid: str, rng: random.Random) -> None:
        self.uid = uid
        self.rng = rng
        self.lat = CENTRE[0] + rng.uniform(-0.08, 0.08)
        self.lon = CENTRE[1] + rng.uniform(-0.12, 0.12)
        self.course = rng.uniform(0, 360)
        self.speed = rng.uniform(0, 50)
        self.mileage = rng.uniform(1000, 90000)

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


# --- terminals: one class per protocol ------------------------------------------------------

Key = int | None  # what an ack names: a serial (JT/T 808, GT06) or nothing (H02: acks come in order)


class Refused(Exception):
    """The platform refused the terminal (unknown device, bad auth code)."""


class Terminal:
    """The terminal side of one protocol: frames to send, acks to recognize."""

    kind: ClassVar[str]
    protocol: ClassVar[str]
    ordered_acks: ClassVar[bool] = False  # True: acks carry no key and come in the order of the reports

    def __init__(self, uid: str, vehicle: Vehicle) -> None:
        self.uid = uid
        self.vehicle = vehicle
        self.serial = 0
        self.buf = bytearray()

    def next_serial(self) -> int:
        self.serial = (self.serial + 1) & 0xFFFF
        return self.serial

    async def connect(self, ports: dict[str, int], host: str) -> trio.SocketStream:
        return await trio.open_tcp_stream(host, ports[self.protocol])

    async def handshake(self, stream: trio.SocketStream) -> None:
        """Identify to the platform; Refused when it will not have us."""

    def report(self, fix_s: int) -> tuple[Key, bytes]:
        raise NotImplementedError

    def backfill(self, fixes: list[int]) -> tuple[Key, bytes] | None:
        """One frame of old fixes, if the protocol has such a thing."""
        return None

    def acks(self, data: bytes) -> list[tuple[Key, bool]]:
        """Feed received bytes; the acks (key, ok) of report frames they complete."""
        raise NotImplementedError

    async def _read_until(self, stream: trio.SocketStream, parse: Any) -> Any:
        """Read until `parse(self.buf)` returns something (handshake replies)."""
        with trio.fail_after(15):
            while True:
                found = parse(self.buf)
                if found is not None:
                    return found
                data = await stream.receive_some(65536)
                if not data:
                    raise trio.BrokenResourceError("connection closed by the platform")
                self.buf += data


_BASIC = struct.Struct(">IIIIhHH6s")
_HEAD_2013 = struct.Struct(">HHH")  # msg id, attrs, [phone], serial: the phone bytes are constant
_TAIL = struct.Struct(">HHB")  # 0x8001 body: reply serial, reply id, result


@functools.lru_cache(maxsize=1 << 17)
def _bcd_time(fix_s: int) -> bytes:
    t = time.gmtime(fix_s + BEIJING_S)
    return bytes.fromhex(
        f"{t.tm_year % 100:02d}{t.tm_mon:02d}{t.tm_mday:02d}{t.tm_hour:02d}{t.tm_min:02d}{t.tm_sec:02d}"
    )


def _xor(data: bytes) -> int:
    return functools.reduce(operator.xor, data, 0)


class Jt808Terminal(Terminal):
    kind = "jt808"
    protocol = "jt808"
    version = 2013

    def __init__(self, uid: str, vehicle: Vehicle) -> None:
        super().__init__(uid, vehicle)
        self.auth_code = ""
        phone = jt808.phone_field(uid, self.version)
        # The fast path builds frames from a constant head: 27 us a report with the library encoders
        # would cost the load generator more than a core at 30,000 reports/s. `self_check` proves both equal.
        self._phone = phone if self.version == 2013 else b"\x01" + phone  # 2019: protocol version byte first
        self._attrs_flag = 0x4000 if self.version == 2019 else 0

    def _frame(self, msg_id: int, serial: int, body: bytes) -> bytes:
        head = struct.pack(">HH", msg_id, len(body) | self._attrs_flag) + self._phone + serial.to_bytes(2)
        content = head + body
        raw = content + bytes((_xor(content),))
        return b"\x7e" + raw.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02") + b"\x7e"

    def location_body(self, fix_s: int) -> bytes:
        v = self.vehicle
        lat, lon = v.lat, v.lon
        status = (0b1 if v.speed > 0 else 0) | 0b10 | (0b100 if lat < 0 else 0) | (0b1000 if lon < 0 else 0)
        return (
            _BASIC.pack(
                0,
                status,
                round(abs(lat) * 1e6),
                round(abs(lon) * 1e6),
                0,
                round(round(v.speed, 1) * 10),
                round(v.course) % 360,
                _bcd_time(fix_s),
            )
            + b"\x01\x04"
            + round(round(v.mileage, 1) * 10).to_bytes(4)
            + b"\x31\x01"
            + bytes((9,))
        )

    def report(self, fix_s: int) -> tuple[Key, bytes]:
        serial = self.next_serial()
        return serial, self._frame(jt808.MSG_LOCATION, serial, self.location_body(fix_s))

    def backfill(self, fixes: list[int]) -> tuple[Key, bytes]:
        items = []
        for fix_s in fixes:
            body = self.location_body(fix_s)
            items.append(len(body).to_bytes(2) + body)
            self.vehicle.step(1)
        serial = self.next_serial()
        return serial, self._frame(jt808.MSG_BATCH_LOCATION, serial, struct.pack(">HB", len(fixes), 1) + b"".join(items))

    async def handshake(self, stream: trio.SocketStream) -> None:
        if not self.auth_code:
            body = jt808.encode_registration_body(plate=f"粤B{self.uid[-5:]}", version=self.version)
            await stream.send_all(self._frame(jt808.MSG_REGISTRATION, self.next_serial(), body))
            _, result, self.auth_code = jt808.parse_registration_response(await self._read_until(stream, _take_7e))
            if result != 0:
                raise Refused(f"{self.uid}: registration refused (result {result})")
        body = jt808.encode_authentication_body(self.auth_code, version=self.version, imei=self.uid[-15:])
        await stream.send_all(self._frame(jt808.MSG_AUTHENTICATION, self.next_serial(), body))
        if jt808.parse_general_response(await self._read_until(stream, _take_7e))[2] != 0:
            self.auth_code = ""  # the platform forgot us: register on the next connection
            raise trio.BrokenResourceError("authentication refused")

    def acks(self, data: bytes) -> list[tuple[Key, bool]]:
        self.buf += data
        out = []
        while (frame := _take_7e(self.buf)) is not None:
            raw = frame[1:-1].replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")
            if len(raw) < 10 or _xor(raw) != 0 or raw[0:2] != b"\x80\x01":
                continue  # not a general response (or broken): nothing of ours to settle
            reply_serial, reply_id, result = _TAIL.unpack_from(raw, len(raw) - 6)
            if reply_id in (jt808.MSG_LOCATION, jt808.MSG_BATCH_LOCATION):
                out.append((reply_serial, result == 0))
        return out


class Jt808Terminal2019(Jt808Terminal):
    kind = "jt808-2019"
    version = 2019


def _take_7e(buf: bytearray) -> bytes | None:
    """The first complete 0x7e-flagged frame in `buf` (removed from it), or None."""
    start = buf.find(0x7E)
    if start < 0:
        buf.clear()
        return None
    end = buf.find(0x7E, start + 1)
    if end < 0:
        del buf[:start]
        return None
    if end == start + 1:  # two flags back to back: the second opens the next frame
        del buf[: start + 1]
        return _take_7e(buf)
    frame = bytes(buf[start : end + 1])
    del buf[: end + 1]
    return frame


class Gt06Terminal(Terminal):
    kind = "gt06"
    protocol = "gt06"

    def report(self, fix_s: int) -> tuple[Key, bytes]:
        v = self.vehicle
        serial = self.next_serial()
        frame = gt06.encode_position(
            time=datetime.fromtimestamp(fix_s, UTC),
            lat=v.lat,
            lon=v.lon,
            serial=serial,
            speed_kmh=v.speed,
            course=v.course,
            satellites=9,
            mcc=460,
            lac=9520,
            cell_id=3671,
            acc=v.speed > 0,
            mileage_km=v.mileage,
        )
        return serial, frame

    async def handshake(self, stream: trio.SocketStream) -> None:
        await stream.send_all(gt06.encode_login(self.uid, serial=self.next_serial()))
        proto, _ = await self._read_until(stream, _take_gt06)
        if proto != gt06.MSG_LOGIN:
            raise trio.BrokenResourceError(f"expected the login ack, got 0x{proto:02x}")

    def acks(self, data: bytes) -> list[tuple[Key, bool]]:
        self.buf += data
        out: list[tuple[Key, bool]] = []
        while (found := _take_gt06(self.buf)) is not None:
            proto, serial = found
            if proto == gt06.MSG_GPS_LBS_2:
                out.append((serial, True))  # GT06 has no negative ack: a refused report gets no answer
        return out


def _take_gt06(buf: bytearray) -> tuple[int, int] | None:
    """(protocol number, serial) of the first complete 78 78 frame in `buf` (removed), or None."""
    start = buf.find(b"\x78\x78")
    if start < 0 or len(buf) < start + 3:
        return None
    length = buf[start + 2]
    end = start + length + 5
    if len(buf) < end:
        return None
    proto = buf[start + 3]
    serial = int.from_bytes(buf[start + length - 1 : start + length + 1])
    del buf[:end]
    return proto, serial


class H02Terminal(Terminal):
    kind = "h02"
    protocol = "h02"
    ordered_acks = True  # the V4 reply names the report type, not the report

    def report(self, fix_s: int) -> tuple[Key, bytes]:
        v = self.vehicle
        frame = h02.encode_position(
            self.uid, datetime.fromtimestamp(fix_s, UTC), v.lat, v.lon, speed_kmh=v.speed, course=v.course
        )
        return None, frame

    def acks(self, data: bytes) -> list[tuple[Key, bool]]:
        self.buf += data
        out: list[tuple[Key, bool]] = []
        while (end := self.buf.find(b"#")) >= 0:
            reply = bytes(self.buf[: end + 1])
            del self.buf[: end + 1]
            if b",V4,V1," in reply:
                out.append((None, True))
        return out


KINDS: dict[str, type[Terminal]] = {
    t.kind: t for t in (Jt808Terminal, Jt808Terminal2019, Gt06Terminal, H02Terminal)
}


def self_check() -> None:
    """The fast JT/T 808 frames are byte for byte what the library encoders make."""
    for cls in (Jt808Terminal, Jt808Terminal2019):
        t = cls(cls.kind == "jt808" and "13900000007" or "201900000007", Vehicle("x", random.Random(1)))
        fix_s = int(time.time())
        serial, frame = t.report(fix_s)
        v = t.vehicle
        body = jt808.encode_location_body(
            time=datetime.fromtimestamp(fix_s, UTC),
            lat=v.lat,
            lon=v.lon,
            speed_kmh=round(v.speed, 1),
            course=v.course,
            status=0b1 if v.speed > 0 else 0,
            mileage_km=round(v.mileage, 1),
            satellites=9,
        )
        expected = jt808.encode_frame(jt808.MSG_LOCATION, t.uid, serial or 0, body, version=t.version)
        assert frame == expected, f"{cls.kind}: fast frame {frame.hex()} != {expected.hex()}"
        decoded = jt808.Jt808Decoder().feed(frame)
        assert decoded and decoded[0].device == t.uid, decoded


# --- statistics -----------------------------------------------------------------------------


@dataclass
class Stats:
    sent: int = 0  # reports sent (a resent report counts again)
    acked: int = 0  # reports acknowledged (each once)
    refused: int = 0
    reconnects: int = 0
    frames: int = 0
    writes: int = 0
    window_full: int = 0  # times a terminal wanted to send and its window was full
    backfill_sent: int = 0
    backfill_acked: int = 0
    started: float = field(default_factory=time.perf_counter)
    latencies: array = field(default_factory=lambda: array("d"))  # seconds, one per acked frame
    lag: array = field(default_factory=lambda: array("d"))  # paced: actual send minus scheduled time
    acked_keys: array = field(default_factory=lambda: array("q"))  # terminal index << 32 | fix second
    storm_at: float = 0.0
    storm_recovered_s: float | None = None
    connected_since_storm: int = 0
    refused_terminals: int = 0


@dataclass
class InFlight:
    sent_at: float  # the scheduled send time when paced (no coordinated omission), else the actual one
    fixes: list[int]
    backfill: bool = False


class Storm:
    """Drops every connection at once when fired; terminals reconnect together."""

    def __init__(self) -> None:
        self.event = trio.Event()

    def fire(self) -> None:
        event, self.event = self.event, trio.Event()
        event.set()


@dataclass
class Config:
    host: str
    ports: dict[str, int]
    interval: float  # seconds between a terminal's reports; 0: as fast as the window allows
    window: int
    duration: float
    drain: float
    backdate: float
    record: bool
    backfill_frames: int
    backfill_size: int


class Fleet:
    def __init__(self, cfg: Config, plan: list[tuple[str, str]], seed: int) -> None:
        self.cfg = cfg
        self.stats = Stats()
        self.storm = Storm()
        self.backfill_now = trio.Event()
        rng = random.Random(seed)
        start = int(time.time())
        paced_demo = cfg.interval >= 1 and cfg.window == 1
        self.terminals = []
        for i, (kind, uid) in enumerate(plan):
            t = KINDS[kind](uid, Vehicle(uid, random.Random(rng.random())))
            t.index = i  # type: ignore[attr-defined]
            # Fix clocks: a row per device and second, so each report needs a second of its own.
            t.fix_clock = start if paced_demo else start - int(cfg.backdate)  # type: ignore[attr-defined]
            t.backfill_clock = start - 3 * 86400  # type: ignore[attr-defined]
            self.terminals.append(t)
        self.deadline = math.inf
        self.send_deadline = math.inf

    def next_fix(self, t: Terminal) -> int:
        clock: int = t.fix_clock  # type: ignore[attr-defined]
        now = int(time.time())
        fix = max(clock + 1, now) if self.cfg.interval >= 1 and self.cfg.window == 1 else clock + 1
        t.fix_clock = fix  # type: ignore[attr-defined]
        return fix

    async def run_terminal(self, t: Terminal) -> None:
        cfg, stats = self.cfg, self.stats
        inflight: dict[Key, InFlight] | deque[InFlight] = deque() if t.ordered_acks else {}
        resend: list[InFlight] = []
        backoff = 0.5
        next_due = time.perf_counter() + (random.random() * cfg.interval if cfg.interval else 0)
        while time.perf_counter() < self.send_deadline or resend or inflight:
            if time.perf_counter() > self.deadline:
                return
            storm = self.storm.event
            try:
                stream = await t.connect(cfg.ports, cfg.host)
            except OSError:
                stats.reconnects += 1
                await trio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 10)
                continue
            try:
                async with stream:
                    t.buf.clear()
                    try:
                        await t.handshake(stream)
                    except Refused as e:
                        print(f"fleet: {e}", file=sys.stderr, flush=True)
                        stats.refused_terminals += 1
                        return
                    backoff = 0.5
                    if stats.storm_at and storm is not self.storm.event:
                        pass
                    if stats.storm_at and not storm.is_set() and getattr(t, "storm_seen", False):
                        t.storm_seen = False  # type: ignore[attr-defined]
                        stats.connected_since_storm += 1
                        if stats.connected_since_storm == len(self.terminals) - stats.refused_terminals:
                            stats.storm_recovered_s = time.perf_counter() - stats.storm_at
                    # What was in flight on the lost connection goes again, keeping its fix (and send) time.
                    resend.extend(inflight.values() if isinstance(inflight, dict) else inflight)
                    inflight.clear()
                    async with trio.open_nursery() as nursery:
                        room = _Room()
                        nursery.start_soon(self._receive, t, stream, inflight, room)
                        nursery.start_soon(self._watch_storm, t, storm, nursery.cancel_scope)
                        next_due = await self._send_loop(t, stream, inflight, resend, room, next_due)
                        nursery.cancel_scope.cancel()
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError, jt808.ProtocolError):
                stats.reconnects += 1
                await trio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 10)

    async def _watch_storm(self, t: Terminal, storm: trio.Event, scope: trio.CancelScope) -> None:
        await storm.wait()
        t.storm_seen = True  # type: ignore[attr-defined]
        self.stats.reconnects += 1
        scope.cancel()

    async def _send_loop(
        self,
        t: Terminal,
        stream: trio.SocketStream,
        inflight: dict[Key, InFlight] | deque[InFlight],
        resend: list[InFlight],
        room: _Room,
        next_due: float,
    ) -> float:
        cfg, stats = self.cfg, self.stats
        paced = cfg.interval > 0
        backfill_done = False
        while True:
            now = time.perf_counter()
            if now >= self.send_deadline and not resend:
                # Sending is over: wait for the acks still due, then leave.
                while inflight and time.perf_counter() < self.deadline:
                    await room.wait()
                return next_due
            if len(inflight) >= cfg.window:
                stats.window_full += 1
                await room.wait()
                continue
            frames: list[bytes] = []
            if resend:
                # New serials, same fixes: the platform stores each fix once whatever happens.
                while resend and len(inflight) < cfg.window:
                    item = resend.pop()
                    key, frame = t.backfill(item.fixes) if item.backfill else t.report(item.fixes[0])  # type: ignore[misc]
                    self._track(t, inflight, key, item)
                    frames.append(frame)
            elif self.backfill_now.is_set() and not backfill_done and cfg.backfill_frames:
                backfill_done = True
                for _ in range(cfg.backfill_frames):
                    clock: int = t.backfill_clock  # type: ignore[attr-defined]
                    fixes = list(range(clock + 1, clock + 1 + cfg.backfill_size))
                    got = t.backfill(fixes)
                    if got is None:
                        break
                    t.backfill_clock = clock + cfg.backfill_size  # type: ignore[attr-defined]
                    self._track(t, inflight, got[0], InFlight(now, fixes, backfill=True))
                    frames.append(got[1])
                    stats.backfill_sent += len(fixes)
            else:
                if paced:
                    if next_due > now:
                        await trio.sleep(next_due - now)
                        continue
                    due, next_due = next_due, next_due + cfg.interval * random.uniform(0.9, 1.1)
                    if cfg.record:
                        stats.lag.append(now - due)
                    n = 1
                else:
                    due, n = now, cfg.window - len(inflight)
                for _ in range(n):
                    fix = self.next_fix(t)
                    key, frame = t.report(fix)
                    t.vehicle.step(cfg.interval or 1.0)
                    self._track(t, inflight, key, InFlight(due, [fix]))
                    frames.append(frame)
            if not frames:
                await room.wait()
                continue
            stats.sent += len(frames)
            stats.frames += len(frames)
            stats.writes += 1
            await stream.send_all(b"".join(frames) if len(frames) > 1 else frames[0])

    @staticmethod
    def _track(t: Terminal, inflight: dict[Key, InFlight] | deque[InFlight], key: Key, item: InFlight) -> None:
        if isinstance(inflight, deque):
            inflight.append(item)
        else:
            inflight[key] = item

    async def _receive(
        self, t: Terminal, stream: trio.SocketStream, inflight: dict[Key, InFlight] | deque[InFlight], room: _Room
    ) -> None:
        stats, record = self.stats, self.cfg.record
        shift = t.index << 32  # type: ignore[attr-defined]
        while True:
            data = await stream.receive_some(65536)
            if not data:
                raise trio.BrokenResourceError("connection closed by the platform")
            now = time.perf_counter()
            for key, ok in t.acks(data):
                if isinstance(inflight, deque):
                    item = inflight.popleft() if inflight else None
                else:
                    item = inflight.pop(key, None)
                if item is None:
                    continue  # an ack for a report of an earlier connection, already settled
                if not ok:
                    stats.refused += len(item.fixes)
                    continue
                if item.backfill:
                    stats.backfill_acked += len(item.fixes)
                stats.acked += len(item.fixes)
                if record:
                    stats.latencies.append(now - item.sent_at)
                    stats.acked_keys.extend(shift | f for f in item.fixes)
            room.set()


class _Room:
    """Wakes a terminal's sender when acks free its window."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


async def report_progress(stats: Stats, every: float) -> None:
    last, last_t = 0, time.perf_counter()
    while True:
        await trio.sleep(every)
        now = time.perf_counter()
        print(
            f"fleet: {stats.sent} sent, {stats.acked} acked, {stats.refused} refused, "
            f"{stats.reconnects} reconnects, {(stats.acked - last) / (now - last_t):.1f} acks/s",
            file=sys.stderr,
            flush=True,
        )
        last, last_t = stats.acked, now


async def main_async(args: argparse.Namespace) -> Fleet:
    plan = fleet_plan(args.count, parse_mix(args.mix))
    ports = {"jt808": args.port, "gt06": args.gt06_port, "h02": args.h02_port}
    interval = args.interval
    if args.rate:
        interval = len(plan) / args.rate
    cfg = Config(
        host=args.host,
        ports=ports,
        interval=interval,
        window=max(1, args.window),
        duration=args.duration,
        drain=args.drain,
        backdate=args.backdate,
        record=bool(args.result),
        backfill_frames=args.backfill_frames,
        backfill_size=args.backfill_size,
    )
    fleet = Fleet(cfg, plan, args.seed)
    stats = fleet.stats
    async with trio.open_nursery() as nursery:
        if args.progress:
            nursery.start_soon(report_progress, stats, args.progress)
        async with trio.open_nursery() as terminals:
            for t in fleet.terminals:
                terminals.start_soon(fleet.run_terminal, t)
                await trio.sleep(args.ramp / max(len(plan), 1))
            # The clock of the run starts once every terminal is under way.
            stats.started = time.perf_counter()
            if args.duration:
                fleet.send_deadline = stats.started + args.duration
                fleet.deadline = fleet.send_deadline + args.drain
            if args.storm_at:
                terminals.start_soon(_later, args.storm_at, fleet, "storm")
            if args.backfill_at:
                terminals.start_soon(_later, args.backfill_at, fleet, "backfill")
        nursery.cancel_scope.cancel()
    stats.sending_s = min(time.perf_counter(), fleet.send_deadline) - stats.started  # type: ignore[attr-defined]
    return fleet


async def _later(delay: float, fleet: Fleet, what: str) -> None:
    await trio.sleep(delay)
    if what == "storm":
        print(f"fleet: reconnect storm: dropping {len(fleet.terminals)} connections", file=sys.stderr, flush=True)
        fleet.stats.storm_at = time.perf_counter()
        fleet.storm.fire()
    else:
        print("fleet: backfill burst", file=sys.stderr, flush=True)
        fleet.backfill_now.set()


def _ms(values: array, q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return round(float(np.percentile(np.frombuffer(values, dtype=np.float64), q)) * 1000, 2)


def result_of(fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    s = fleet.stats
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    sending = getattr(s, "sending_s", 0.0)
    return {
        "terminals": len(fleet.terminals),
        "mix": {k: round(v, 3) for k, v in parse_mix(args.mix).items()},
        "interval_s": fleet.cfg.interval,
        "window": fleet.cfg.window,
        "sending_s": round(sending, 2),
        "sent": s.sent,
        "acked": s.acked,
        "refused": s.refused,
        "refused_terminals": s.refused_terminals,
        "acked_per_s": round(s.acked / sending, 1) if sending else None,
        "reconnects": s.reconnects,
        "frames_per_write": round(s.frames / s.writes, 2) if s.writes else None,
        "window_full": s.window_full,
        "ack_latency_ms": {"p50": _ms(s.latencies, 50), "p99": _ms(s.latencies, 99), "max": _ms(s.latencies, 100)},
        "send_lag_ms": {"p50": _ms(s.lag, 50), "p99": _ms(s.lag, 99)},
        "backfill": {"sent": s.backfill_sent, "acked": s.backfill_acked},
        "storm_recovered_s": round(s.storm_recovered_s, 2) if s.storm_recovered_s is not None else None,
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5015, help="the JT/T 808 port")
    p.add_argument("--gt06-port", type=int, default=5023)
    p.add_argument("--h02-port", type=int, default=5013)
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--mix", default="", help="terminal kinds and weights, e.g. jt808=70,jt808-2019=10,gt06=10,h02=10")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between a terminal's reports (0: no pause)")
    p.add_argument("--rate", type=float, default=0, help="total reports/s of the fleet (sets --interval)")
    p.add_argument("--window", type=int, default=1, help="reports a terminal may have unacknowledged")
    p.add_argument("--duration", type=float, default=0, help="seconds of sending (0: until stopped)")
    p.add_argument("--drain", type=float, default=15, help="seconds to wait for outstanding acks after sending")
    p.add_argument("--ramp", type=float, default=5.0, help="seconds over which the terminals connect")
    p.add_argument("--backdate", type=float, default=6 * 3600, help="throughput mode: fix clocks start this long ago")
    p.add_argument("--storm-at", type=float, default=0, help="seconds into the run: drop every connection at once")
    p.add_argument("--backfill-at", type=float, default=0, help="seconds into the run: JT/T 808 terminals backfill")
    p.add_argument("--backfill-frames", type=int, default=4, help="0x0704 frames each JT/T 808 terminal sends")
    p.add_argument("--backfill-size", type=int, default=25, help="old fixes per 0x0704 frame (25 fit in one frame)")
    p.add_argument("--progress", type=float, default=30.0, help="seconds between progress lines (0: none)")
    p.add_argument("--seed", type=int, default=808)
    p.add_argument("--result", type=Path, help="write the figures here as JSON (and acked fixes next to it)")
    args = p.parse_args()
    if not args.mix:
        args.mix = "jt808=1"
    if not args.count:
        p.error("--count must be positive")
    self_check()
    _raise_nofile()
    try:
        fleet = trio.run(main_async, args)
    except KeyboardInterrupt:
        return
    s = fleet.stats
    print(f"fleet: done: {s.sent} sent, {s.acked} acked, {s.refused} refused", file=sys.stderr, flush=True)
    if args.result:
        args.result.write_text(json.dumps(result_of(fleet, args), indent=2))
        args.result.with_suffix(".acked").write_bytes(s.acked_keys.tobytes())


def _raise_nofile() -> None:
    """Thousands of connections need as many descriptors: the soft limit goes up to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    main()
