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
starts `--backdate` seconds ago and advances `--fix-step` seconds (default 1) per report.

Adding a kind of terminal (an MQTT phone, say) means a `Terminal` subclass registered in
`KINDS`: `connect` returns something with `send_all` / `receive_some` (an MQTT session would wrap
the broker connection and return PUBACKs as acks keyed by packet id), `handshake`, `report` and
`acks`. MQTT phones are not in the fleet yet: their ingest is being written separately.
"""

from __future__ import annotations

import argparse
import functools
import heapq
import json
import math
import os
import random
import socket
import struct
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable
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
    "jt808": ("jt808", "138{:08d}"),  # the first 10,000 are `demo_uids`
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
    plan: list[tuple[str, str]] = []
    for kind, n in zip(kinds, counts, strict=True):
        pattern = KIND_IDS[kind][1]
        plan.extend((kind, pattern.format(i)) for i in range(n))
    return plan


# --- movement -------------------------------------------------------------------------------


_RAD = math.pi / 180


class Vehicle:
    def __init__(self, uid: str, rng: random.Random) -> None:
        self.uid = uid
        self.rng = rng
        self.lat = CENTRE[0] + rng.uniform(-0.08, 0.08)
        self.lon = CENTRE[1] + rng.uniform(-0.12, 0.12)
        self.course = rng.uniform(0, 360)
        self.speed = rng.uniform(0, 50)
        self.mileage = rng.uniform(1000, 90000)
        self.steps_left = 0  # until the next turn
        self._dlat = self._dlon = self._dkm = 0.0  # per second, on the current course

    def step(self, seconds: float) -> None:
        # A vehicle holds its course and speed for a few seconds, then turns and speeds up or slows
        # down (uniformly): plausible paths, and the trigonometry only on a turn, which counts at
        # tens of thousands of reports a second from one process.
        self.steps_left -= 1
        if self.steps_left <= 0:
            r = self.rng.random
            self.steps_left = 5
            self.course = (self.course + (r() - 0.5) * 120) % 360
            self.speed = min(70.0, max(0.0, self.speed + (r() - 0.5) * 30))
            # Stay in the city.
            if abs(self.lat - CENTRE[0]) > 0.12 or abs(self.lon - CENTRE[1]) > 0.18:
                self.course = (math.degrees(math.atan2(CENTRE[1] - self.lon, CENTRE[0] - self.lat))) % 360
            heading = self.course * _RAD
            km_per_s = self.speed / 3600
            self._dlat = km_per_s / 111.0 * math.cos(heading)
            self._dlon = km_per_s / (111.0 * math.cos(self.lat * _RAD)) * math.sin(heading)
            self._dkm = km_per_s
        self.mileage += self._dkm * seconds
        self.lat += self._dlat * seconds
        self.lon += self._dlon * seconds


# --- terminals: one class per protocol ------------------------------------------------------

Key = int | None  # what an ack names: a serial (JT/T 808, GT06) or nothing (H02: acks come in order)


class Refused(Exception):
    """The platform refused the terminal (unknown device, bad auth code)."""


class Terminal:
    """The terminal side of one protocol: frames to send, acks to recognize."""

    kind: ClassVar[str]
    protocol: ClassVar[str]
    ordered_acks: ClassVar[bool] = False  # True: acks carry no key and come in the order of the reports
    max_window: ClassVar[int] = 1 << 16  # reports the protocol lets a terminal have unacknowledged

    def __init__(self, uid: str, vehicle: Vehicle) -> None:
        self.uid = uid
        self.vehicle = vehicle
        self.serial = 0
        self.buf = bytearray()
        self.index = 0  # position in the fleet plan (names the terminal in the acked-fix keys)
        self.port = 0  # set: this terminal's own port instead of its protocol's (several gateways)
        self.fix_clock = 0  # second of the last live fix
        self.backfill_clock = 0  # second of the last backfilled fix
        self.storm_seen = False  # dropped by the storm, not yet back
        self.conn: Conn | None = None
        self.live = False  # identified to the platform: reports may go
        self.scope: trio.CancelScope | None = None
        self.inflight: dict[Key, InFlight] | deque[InFlight] = deque() if self.ordered_acks else {}
        self.resend: list[InFlight] = []  # in flight when the connection was lost
        self.owed: deque[float] = deque()  # paced: scheduled times of reports waiting for window room
        self.backfill_owed = 0  # 0x0704 frames still to send

    def next_serial(self) -> int:
        self.serial = (self.serial + 1) & 0xFFFF
        return self.serial

    async def connect(self, ports: dict[str, int], host: str) -> Conn:
        return await Conn.open(host, self.port or ports[self.protocol])

    async def handshake(self, stream: Conn) -> None:
        """Identify to the platform; Refused when it will not have us."""

    def report(self, fix_s: int) -> tuple[Key, bytes]:
        raise NotImplementedError

    def backfill(self, fixes: list[int]) -> tuple[Key, bytes] | None:
        """One frame of old fixes, if the protocol has such a thing."""
        return None

    def acks(self, data: bytes) -> list[tuple[Key, bool]]:
        """Feed received bytes; the acks (key, ok) of report frames they complete."""
        raise NotImplementedError

    async def _read_until(self, stream: Conn, parse: Any) -> Any:
        """Read until `parse(self.buf)` returns something (handshake replies)."""
        with trio.fail_after(15):
            while True:
                found = parse(self.buf)
                if found is not None:
                    return found
                data = await stream.receive_some()
                if not data:
                    raise trio.BrokenResourceError("connection closed by the platform")
                self.buf += data


_BASIC = struct.Struct(">IIIIhHH6s")
_LOCATION = struct.Struct(">IIIIhHH6sBBIBBB")  # the basic block, mileage (0x01) and satellites (0x31)
_HEAD_2013 = struct.Struct(">HHH")  # msg id, attrs, [phone], serial: the phone bytes are constant
_TAIL = struct.Struct(">HHB")  # 0x8001 body: reply serial, reply id, result


@functools.lru_cache(maxsize=1 << 17)
def _bcd_time(fix_s: int) -> bytes:
    t = time.gmtime(fix_s + BEIJING_S)
    return bytes.fromhex(
        f"{t.tm_year % 100:02d}{t.tm_mon:02d}{t.tm_mday:02d}{t.tm_hour:02d}{t.tm_min:02d}{t.tm_sec:02d}"
    )


_xor = jt808.check_code


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
        # A 0x8001 without escapes: id, attributes, phone, serial | acked serial, acked id, result | check code.
        self._answer = struct.Struct(f">H{2 + len(self._phone) + 2}xHHBx")

    def _frame(self, msg_id: int, serial: int, body: bytes) -> bytes:
        head = struct.pack(">HH", msg_id, len(body) | self._attrs_flag) + self._phone + serial.to_bytes(2)
        content = head + body
        raw = content + bytes((_xor(content),))
        return b"\x7e" + raw.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02") + b"\x7e"

    def location_body(self, fix_s: int) -> bytes:
        v = self.vehicle
        lat, lon = v.lat, v.lon
        status = (0b1 if v.speed > 0 else 0) | 0b10 | (0b100 if lat < 0 else 0) | (0b1000 if lon < 0 else 0)
        return _LOCATION.pack(
            0,
            status,
            int(abs(lat) * 1e6 + 0.5),
            int(abs(lon) * 1e6 + 0.5),
            0,
            int(v.speed * 10 + 0.5),
            int(v.course + 0.5) % 360,
            _bcd_time(fix_s),
            0x01,
            4,
            int(v.mileage * 10 + 0.5),
            0x31,
            1,
            9,
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
        return serial, self._frame(
            jt808.MSG_BATCH_LOCATION, serial, struct.pack(">HB", len(fixes), 1) + b"".join(items)
        )

    async def handshake(self, stream: Conn) -> None:
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
        # Answers come whole and back to back (7e..7e7e..7e): split on the flags, keep a cut tail.
        # The check code is verified on a sample only: the platform's encoder is tested elsewhere,
        # and doing it for every answer costs the load generator more than the platform spends.
        buf = self.buf
        buf += data
        if buf[-1] != 0x7E or buf.count(0x7E) & 1:
            return self._acks_slow()
        parts = bytes(buf).split(b"\x7e")
        buf.clear()
        out = []
        answer = self._answer
        for raw in parts[1::2]:
            if len(raw) == answer.size:  # (an escape would make it longer)
                msg_id, reply_serial, reply_id, result = answer.unpack(raw)
                if reply_serial < 256 and _xor(raw) != 0:  # one answer in 256
                    raise AssertionError(f"answer with a wrong check code: {raw.hex()}")
            else:
                raw = raw.replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")
                if len(raw) < 10 or _xor(raw) != 0:
                    continue
                msg_id = int.from_bytes(raw[:2])
                reply_serial, reply_id, result = _TAIL.unpack_from(raw, len(raw) - 6)
            if msg_id == jt808.MSG_GENERAL_RESPONSE and reply_id in (jt808.MSG_LOCATION, jt808.MSG_BATCH_LOCATION):
                out.append((reply_serial, result == 0))
        return out

    def _acks_slow(self) -> list[tuple[Key, bool]]:
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

    async def handshake(self, stream: Conn) -> None:
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
    # One report at a time: with no serial in the reply, pipelined reports that reach the server in
    # one read are answered once for the lot (ingest/terminal.py groups positions with equal
    # msg_id/serial as one frame, and H02 positions all have 0/0), and the acks no longer add up.
    max_window = 1

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


KINDS: dict[str, type[Terminal]] = {t.kind: t for t in (Jt808Terminal, Jt808Terminal2019, Gt06Terminal, H02Terminal)}


def self_check() -> None:
    """The fast JT/T 808 frames are byte for byte what the library encoders make."""
    for cls in (Jt808Terminal, Jt808Terminal2019):
        t = cls("13800000007" if cls.kind == "jt808" else "201900000007", Vehicle("x", random.Random(1)))
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
    window_full: int = 0  # reports that waited for room in their terminal's window (paced mode)
    backfill_sent: int = 0
    backfill_acked: int = 0
    started: float = 0.0
    sending_s: float = 0.0
    last_ack: float = 0.0
    ready: int = 0  # terminals through their first handshake
    outstanding: int = 0  # reports made and not yet settled (owed, in flight, or to resend)
    latencies: array = field(default_factory=lambda: array("d"))  # seconds, one per acked frame
    lag: array = field(default_factory=lambda: array("d"))  # paced: actual send minus scheduled time
    acked_keys: array = field(default_factory=lambda: array("q"))  # terminal index << 32 | fix second
    storm_at: float = 0.0
    storm_recovered_s: float | None = None
    connected_since_storm: int = 0
    refused_terminals: int = 0


@dataclass(slots=True)
class InFlight:
    sent_at: float  # the scheduled send time when paced (no coordinated omission), else the actual one
    fixes: list[int]
    backfill: bool = False


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
    fix_step: int = 1  # throughput mode: seconds of driving between a terminal's reports
    jt808_ports: tuple[int, ...] = ()  # JT/T 808 terminals spread over these in turn (several gateways)


_LOST = (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError, jt808.ProtocolError)


class Conn:
    """A non-blocking socket driven by trio's low-level waits.

    A report costs one `send` system call from whichever task makes it (the ticker, the ack
    handler), not a task switch: with thousands of terminals, trio streams and a task per sender
    made the load generator, not the server, the bottleneck at a few thousand reports/s."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.out = bytearray()  # what the kernel would not take yet
        self.broken = False

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            try:
                sock.connect((host, port))
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err)) from None
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def write(self, data: bytes) -> None:
        if self.broken:
            return
        if self.out:
            self.out += data
            return
        try:
            n = self.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self.broken = True  # the receiving side sees the end of the connection and reconnects
            return
        if n < len(data):
            self.out += data[n:]

    async def flush(self) -> None:
        while self.out and not self.broken:
            await trio.lowlevel.wait_writable(self.sock)
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                continue
            del self.out[:n]

    async def send_all(self, data: bytes) -> None:
        self.write(data)
        await self.flush()
        if self.broken:
            raise trio.BrokenResourceError("connection lost while sending")

    async def receive_some(self) -> bytes:
        while True:
            try:
                return self.sock.recv(65536)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)

    def close(self) -> None:
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()


class Fleet:
    def __init__(self, cfg: Config, plan: list[tuple[str, str]], seed: int) -> None:
        self.cfg = cfg
        self.stats = Stats()
        self.go = trio.Event()  # terminals identify themselves first; the measured run starts together
        self.all_ready = trio.Event()
        self.settled = trio.Event()  # sending is over and every report is acked or refused
        rng = random.Random(seed)
        start = int(time.time())
        self.paced_demo = cfg.interval >= 1 and cfg.window == 1
        self.terminals: list[Terminal] = []
        for i, (kind, uid) in enumerate(plan):
            t = KINDS[kind](uid, Vehicle(uid, random.Random(rng.random())))
            t.index = i
            if cfg.jt808_ports and t.protocol == "jt808":
                t.port = cfg.jt808_ports[i % len(cfg.jt808_ports)]
            # Fix clocks: a row per device and second, so each report needs a second of its own.
            t.fix_clock = start if self.paced_demo else start - int(cfg.backdate)
            t.backfill_clock = start - 3 * 86400
            self.terminals.append(t)
        self.deadline = math.inf
        self.send_deadline = math.inf

    # --- making and sending reports ---------------------------------------------------------

    def next_fix(self, t: Terminal) -> int:
        if self.paced_demo:
            t.fix_clock = max(t.fix_clock + 1, int(time.time()))
        else:
            t.fix_clock += self.cfg.fix_step
        return t.fix_clock

    def pump(self, t: Terminal) -> None:
        """Send what the terminal owes, as far as its window allows (synchronous: no await)."""
        conn = t.conn
        if conn is None or not t.live:
            return
        cfg, stats = self.cfg, self.stats
        room = min(cfg.window, t.max_window) - len(t.inflight)
        if room <= 0:
            return
        now = trio.current_time()
        frames: list[bytes] = []
        while room > 0 and t.resend:
            # New serials, same fixes: the platform stores each fix once whatever happens.
            item = t.resend.pop()
            got = t.backfill(item.fixes) if item.backfill else t.report(item.fixes[0])
            assert got is not None  # only a terminal that makes backfill frames has backfill items
            self._track(t, got[0], item)
            frames.append(got[1])
            room -= 1
        while room > 0 and t.backfill_owed:
            t.backfill_owed -= 1
            fixes = list(range(t.backfill_clock + 1, t.backfill_clock + 1 + cfg.backfill_size))
            got = t.backfill(fixes)
            if got is None:
                t.backfill_owed = 0
                break
            t.backfill_clock += cfg.backfill_size
            self._track(t, got[0], InFlight(now, fixes, backfill=True))
            frames.append(got[1])
            stats.backfill_sent += len(fixes)
            stats.outstanding += len(fixes)
            room -= 1
        while room > 0 and t.owed:
            due = t.owed.popleft()
            if cfg.record:
                stats.lag.append(now - due)
            frames.append(self._new_report(t, due))
            room -= 1
        if cfg.interval == 0 and now < self.send_deadline and self.go.is_set():
            for _ in range(room):
                stats.outstanding += 1
                frames.append(self._new_report(t, now))
        if frames:
            stats.sent += len(frames)
            stats.frames += len(frames)
            stats.writes += 1
            conn.write(b"".join(frames) if len(frames) > 1 else frames[0])

    def _new_report(self, t: Terminal, due: float) -> bytes:
        fix = self.next_fix(t)
        key, frame = t.report(fix)
        t.vehicle.step(self.cfg.interval or self.cfg.fix_step)
        self._track(t, key, InFlight(due, [fix]))
        return frame

    @staticmethod
    def _track(t: Terminal, key: Key, item: InFlight) -> None:
        if isinstance(t.inflight, deque):
            t.inflight.append(item)
        else:
            t.inflight[key] = item

    def on_data(self, t: Terminal, data: bytes) -> None:
        stats, record = self.stats, self.cfg.record
        shift = t.index << 32
        now = trio.current_time()
        inflight = t.inflight
        for key, ok in t.acks(data):
            if isinstance(inflight, deque):
                item = inflight.popleft() if inflight else None
            else:
                item = inflight.pop(key, None)
            if item is None:
                continue  # an ack for a report of an earlier connection, already settled
            stats.outstanding -= len(item.fixes)
            if not ok:
                stats.refused += len(item.fixes)
                continue
            if item.backfill:
                stats.backfill_acked += len(item.fixes)
            stats.acked += len(item.fixes)
            stats.last_ack = now
            if record:
                stats.latencies.append(now - item.sent_at)
                stats.acked_keys.extend(shift | f for f in item.fixes)
        self.pump(t)
        if stats.outstanding == 0 and now >= self.send_deadline:
            self.settled.set()

    async def ticker(self) -> None:
        """Paced mode: every terminal's reports fall due at its interval; one task for the fleet."""
        cfg, stats = self.cfg, self.stats
        heap = [(trio.current_time() + random.random() * cfg.interval, t.index) for t in self.terminals]
        heapq.heapify(heap)
        tick = min(0.005, cfg.interval / 4)
        while True:
            now = trio.current_time()
            if now >= self.send_deadline:
                if stats.outstanding == 0:
                    self.settled.set()
                return
            while heap and heap[0][0] <= now:
                due, i = heapq.heappop(heap)
                t = self.terminals[i]
                t.owed.append(due)
                stats.outstanding += 1
                if len(t.inflight) >= min(cfg.window, t.max_window) or t.conn is None:
                    stats.window_full += 1
                self.pump(t)
                heapq.heappush(heap, (due + cfg.interval * random.uniform(0.9, 1.1), i))
            await trio.sleep(tick)

    # --- connections ------------------------------------------------------------------------

    async def run_terminal(self, t: Terminal) -> None:
        cfg, stats = self.cfg, self.stats
        backoff = 0.5
        while True:
            refused = lost = False
            try:
                conn = await t.connect(cfg.ports, cfg.host)
                try:
                    t.buf.clear()
                    with trio.CancelScope() as scope:
                        t.scope = scope
                        await t.handshake(conn)
                        backoff = 0.5
                        if not self.go.is_set():
                            stats.ready += 1
                            self._check_ready()
                            await self.go.wait()
                        if t.storm_seen:
                            t.storm_seen = False
                            stats.connected_since_storm += 1
                            if stats.connected_since_storm == len(self.terminals) - stats.refused_terminals:
                                stats.storm_recovered_s = trio.current_time() - stats.storm_at
                        # What was in flight on the lost connection goes again, keeping its fix (and send) time.
                        t.resend.extend(t.inflight.values() if isinstance(t.inflight, dict) else t.inflight)
                        t.inflight.clear()
                        t.conn, t.live = conn, True
                        self.pump(t)
                        while True:
                            await conn.flush()
                            data = await conn.receive_some()
                            if not data:
                                raise trio.BrokenResourceError("connection closed by the platform")
                            self.on_data(t, data)
                finally:
                    t.conn, t.live = None, False
                    conn.close()
            except* Refused as group:
                # Not a device of the platform: this terminal stops (the harness registers every one).
                print(f"fleet: {group.exceptions[0]}", file=sys.stderr, flush=True)
                stats.refused_terminals += 1
                self._check_ready()
                refused = True
            except* _LOST:
                lost = True
            if refused:
                return
            stats.reconnects += 1
            if lost:
                await trio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 10)

    def _check_ready(self) -> None:
        if self.stats.ready + self.stats.refused_terminals >= len(self.terminals):
            self.all_ready.set()

    def storm(self) -> None:
        """Every connection drops at once; every terminal reconnects at once."""
        self.stats.storm_at = trio.current_time()
        self.stats.connected_since_storm = 0
        for t in self.terminals:
            if t.scope is not None and t.live:
                t.storm_seen = True
                t.scope.cancel()

    def backfill(self) -> None:
        for t in self.terminals:
            t.backfill_owed += self.cfg.backfill_frames
            self.pump(t)


async def report_progress(stats: Stats, every: float) -> None:
    last, last_t = 0, trio.current_time()
    while True:
        await trio.sleep(every)
        now = trio.current_time()
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
        backdate=args.backdate if args.backdate is not None else 6 * 3600 * args.fix_step,
        record=bool(args.result),
        backfill_frames=args.backfill_frames,
        backfill_size=args.backfill_size,
        fix_step=args.fix_step,
        jt808_ports=tuple(int(p) for p in args.jt808_ports.split(",") if p),
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
            # The clock of the run starts once every terminal has identified itself (or a minute later).
            with trio.move_on_after(60):
                await fleet.all_ready.wait()
            print(f"fleet: {stats.ready} terminals ready; go", file=sys.stderr, flush=True)
            stats.started = trio.current_time()
            if args.duration:
                fleet.send_deadline = stats.started + args.duration
                fleet.deadline = fleet.send_deadline + args.drain
            fleet.go.set()
            for t in fleet.terminals:
                fleet.pump(t)
            if cfg.interval:
                terminals.start_soon(fleet.ticker)
            if args.storm_at:
                terminals.start_soon(_later, args.storm_at, fleet.storm, "reconnect storm")
            if args.backfill_at:
                terminals.start_soon(_later, args.backfill_at, fleet.backfill, "backfill burst")
            if args.duration:
                await trio.sleep_until(fleet.send_deadline)
                stats.sending_s = trio.current_time() - stats.started
                if stats.outstanding == 0:
                    fleet.settled.set()
                with trio.move_on_at(fleet.deadline):
                    await fleet.settled.wait()
                terminals.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
    return fleet


async def _later(delay: float, action: Callable[[], None], what: str) -> None:
    await trio.sleep(delay)
    print(f"fleet: {what}", file=sys.stderr, flush=True)
    action()


def _ms(values: array, q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return round(float(np.percentile(np.frombuffer(values, dtype=np.float64), q)) * 1000, 2)


def result_of(fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    s = fleet.stats
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    sending = s.sending_s
    return {
        "terminals": len(fleet.terminals),
        "mix": {k: round(v, 3) for k, v in parse_mix(args.mix).items()},
        "interval_s": fleet.cfg.interval,
        "window": fleet.cfg.window,
        "sending_s": round(sending, 2),
        "outstanding_at_end": s.outstanding,
        "active_s": round(s.last_ack - s.started, 2) if s.last_ack else None,  # first send to last ack
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
    p.add_argument(
        "--jt808-ports",
        default="",
        help="comma-separated JT/T 808 ports, the terminals spread over them in turn (several gateways); "
        "default: --port alone",
    )
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
    p.add_argument(
        "--backdate", type=float, help="throughput mode: fix clocks start this long ago (default: 6 h per --fix-step)"
    )
    p.add_argument(
        "--fix-step",
        type=int,
        default=1,
        help="throughput mode: seconds of driving between a terminal's reports (real terminals: 10-30)",
    )
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
