"""H02 (Sinotrack and clones): text `*HQ,...#` and binary `$` reports, platform replies and commands.

Sans-I/O: `H02Decoder.feed(bytes)` returns normalized messages; `ack_for`, `encode_command` and
`encode_position` return bytes ready to send.

Framing. One connection may mix text and binary frames, and neither carries a length:
- A text frame is `*`, a two-letter maker (`HQ`, `TH`, `hq`), `,` ... `#`. CR/LF between frames is
  skipped (an SMS reply may hold line breaks inside the frame). A text frame that meets another `*` or a
  control byte (binary data) before its `#` is reported as cut and decoding resumes at that point (or
  at the `$` before a control byte, where a binary frame most likely began); one without `#` within
  1024 bytes is reported as too long.
- A binary frame is `$` and a fixed part of 28 bytes (31 when the id is the 8-byte, 15-digit form):
  BCD id, time, date, latitude, a battery byte, longitude + flags nibble, speed and course, status DWORD.
  Terminals append vendor bytes of a model-specific length (totals of 32, 42, 45, 46 and 48 bytes are
  captured), so instead of one fixed length per connection (Traccar's way, which loses every frame of
  another length) a `$` starts a binary frame only when its fixed part validates: BCD digits everywhere
  they belong, a real time of day and calendar date, latitude <= 90 and longitude <= 180 with minutes
  < 60, course <= 360. Random bytes pass this with negligible probability. The position is emitted as
  soon as the fixed part is in; up to 64 vendor bytes after it are skipped silently until the next
  frame start, more are reported as garbage. When both id forms validate, or a `$$` pair (a vendor byte
  0x24 right before the next frame) validates at both offsets, the reading whose id is the one this
  connection already used wins, else the short id at the first offset. A binary report without a real
  date (000000, sent by some models before their first fix) does not validate and counts as garbage.
Bytes outside any frame are reported once per run as a `FrameError` just before the next frame (or when
the run reaches `max_buffer` bytes), so the output does not depend on how the stream was split.

Content. Time and date are UTC; speed is knots (converted to km/h); the status word is kept raw in
`Position.status` and read active-low (FACTS.md): bit 0 clear vibration, bit 1 or 18 clear sos, bit 2
clear overspeed, bit 19 clear power_cut; bit 10 set is the `acc` flag. H02 has no separate alarm word,
so `Position.alarm` stays 0. A frame with an empty id takes the id this connection already used.
Types: V1 and V2/V5/V6/V8/VI1/V19 (and any other V-type with the V1 layout) -> Position, or Heartbeat
with `extras["reason"]` when it carries no usable fix; V4 -> CommandReply (+ Position when the reply
carries a fix); SMS -> CommandReply; HTBT/V0, LINK, NBR, V3, VP1 cells -> Heartbeat with extras;
VP1 with a fix -> Position; anything else (XT, BS, BASE, ...) -> Unsupported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from protocols.messages import (
    CommandReply,
    Decoded,
    FrameError,
    Heartbeat,
    Message,
    Position,
    ProtocolError,
    Unsupported,
)

PROTOCOL = "h02"
KNOT_KMH = 1.852
MAX_TEXT = 1024  # longest text frame accepted (an SMS reply is the longest seen, ~200 bytes)
MAX_TAIL = 64  # vendor bytes skipped silently after a binary frame's fixed part
ERROR_HEAD = 64  # bytes of a bad frame or garbage run kept in FrameError.raw

Clock = Callable[[], datetime]

_START = re.compile(rb"[*$]")
_MAKER = re.compile(rb"\*[A-Za-z]{2},")
# Where a text frame ends (`#`) or is cut (a new `*`, or a control byte other than TAB/CR/LF).
_TEXT_STOP = re.compile(rb"[#*\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CRLF = b"\r\n"

_DIGITS = re.compile(r"[0-9]+")
_TOD = re.compile(r"([0-9]{2})([0-9]{2})([0-9]{2})(?:\.[0-9]+)?")
_DATE = re.compile(r"([0-9]{2})([0-9]{2})([0-9]{2})")
_HEX8 = re.compile(r"[0-9A-Fa-f]{8}")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?")
_SMALL_INT = re.compile(r"[0-9]{1,3}")
_INT = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"[0-9]+\.[0-9]+")
# Coordinates: `-dd-mm.mmmm`, `[d]ddmm.mmmm` (degree digits may be short or absent) and `dddmmmmmm`.
_COORD_NEG = re.compile(r"-([0-9]+)-([0-9]+\.[0-9]+)")
_COORD_DOT = re.compile(r"([0-9]*?)([0-9]{1,2}\.[0-9]+)")
_COORD_NODOT = re.compile(r"([0-9]+)([0-9]{2})([0-9]{4})")

# The bytes whose two nibbles are both decimal digits (deleted by translate() to test a run for BCD).
_BCD_BYTES = bytes(b for b in range(256) if b >> 4 <= 9 and b & 0x0F <= 9)


# ---------------------------------------------------------------------------------------------
# Status word


def status_alarms(status: int) -> frozenset[str]:
    """Named alarms of the active-low status word (FACTS.md)."""
    names: list[str] = []
    if not status & 0x1:
        names.append("vibration")
    if not status & 0x2 or not status & (1 << 18):
        names.append("sos")
    if not status & 0x4:
        names.append("overspeed")
    if not status & (1 << 19):
        names.append("power_cut")
    return frozenset(names)


def status_flags(status: int) -> frozenset[str]:
    return frozenset(("acc",)) if status & (1 << 10) else frozenset()


def _status_extras(status: int) -> dict[str, Any]:
    return {"status": status, "alarms": sorted(status_alarms(status)), "flags": sorted(status_flags(status))}


# ---------------------------------------------------------------------------------------------
# Binary frames


def _is_bcd(data: bytes | bytearray) -> bool:
    return not data.translate(None, _BCD_BYTES)


def _bcd(data: bytes | bytearray) -> int:
    return int(data.hex())


def _check_time(f: bytes) -> bool:
    return _is_bcd(f) and _bcd(f[0:1]) < 24 and _bcd(f[1:2]) < 60 and _bcd(f[2:3]) < 60


def _check_date(f: bytes) -> bool:
    return _is_bcd(f) and _valid_date(_bcd(f[0:1]), _bcd(f[1:2]), _bcd(f[2:3]))


def _check_lat(f: bytes) -> bool:
    # dd mm.mmmm
    return _is_bcd(f) and _bcd(f[0:1]) <= 90 and _bcd(f[1:2]) < 60


def _check_lon(f: bytes) -> bool:
    # ddd mm.mmmm + flags nibble: 9 digits, the last nibble is free
    if not _is_bcd(f[:4]) or f[4] >> 4 > 9:
        return False
    digits = f[:4].hex()
    return int(digits[:3]) <= 180 and int(digits[3:5]) < 60


def _check_speed_course(f: bytes) -> bool:
    return _is_bcd(f) and int(f.hex()[3:]) <= 360


def _valid_date(day: int, month: int, yy: int) -> bool:
    try:
        date(2000 + yy, month, day)
    except ValueError:
        return False
    return True


_Check = Callable[[bytes], bool]


class _Layout:
    """Offsets of the fixed binary part for one id length (5 BCD bytes, or 8 for a 15-digit IMEI)."""

    def __init__(self, id_len: int) -> None:
        self.id_len = id_len
        o = 1 + id_len
        self.time, self.date, self.lat, self.battery, self.lon, self.sc, self.status = (
            o,
            o + 3,
            o + 6,
            o + 10,
            o + 11,
            o + 16,
            o + 19,
        )
        self.size = o + 23
        self.checks: tuple[tuple[int, int, _Check, bool], ...] = (
            # (offset, length, check, is BCD so partial bytes can be checked early)
            (1, id_len, _is_bcd, True),
            (self.time, 3, _check_time, True),
            (self.date, 3, _check_date, True),
            (self.lat, 4, _check_lat, True),
            (self.lon, 5, _check_lon, False),
            (self.sc, 3, _check_speed_course, True),
        )

    def state(self, buf: bytearray, start: int) -> int:
        """1: the fixed part at `start` is valid; 0: need more bytes to tell; -1: not a binary frame."""
        avail = len(buf) - start
        for offset, length, check, bcd in self.checks:
            if avail < offset + length:
                partial = bytes(buf[start + offset : start + avail]) if offset < avail else b""
                return -1 if bcd and not _is_bcd(partial) else 0
            if not check(bytes(buf[start + offset : start + offset + length])):
                return -1
        return 1 if avail >= self.size else 0

    def device(self, buf: bytes | bytearray, start: int = 0) -> str:
        """The id of the frame starting at `start`."""
        digits = buf[start + 1 : start + 1 + self.id_len].hex()
        return digits[:15] if self.id_len == 8 else digits


SHORT = _Layout(5)
LONG = _Layout(8)


def decode_binary(frame: bytes, layout: _Layout = SHORT) -> Position:
    """The position in a binary frame whose fixed part (`layout.size` bytes) has been validated."""
    lay = layout
    hh, mi, ss = (_bcd(frame[lay.time + i : lay.time + i + 1]) for i in range(3))
    dd, mo, yy = (_bcd(frame[lay.date + i : lay.date + i + 1]) for i in range(3))
    lat_digits = frame[lay.lat : lay.lat + 4].hex()
    lon_digits = frame[lay.lon : lay.lon + 5].hex()
    flags = frame[lay.lon + 4] & 0x0F
    lat = int(lat_digits[:2]) + int(lat_digits[2:]) / 600000
    lon = int(lon_digits[:3]) + int(lon_digits[3:9]) / 600000
    sc = frame[lay.sc : lay.sc + 3].hex()
    status = int.from_bytes(frame[lay.status : lay.status + 4], "big")
    return Position(
        protocol=PROTOCOL,
        device=lay.device(frame),
        time=datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=UTC),
        lat=lat if flags & 0x4 else -lat,
        lon=lon if flags & 0x8 else -lon,
        valid=bool(flags & 0x2),
        speed_kmh=int(sc[:3]) * KNOT_KMH,
        course=float(int(sc[3:])),
        status=status,
        alarms=status_alarms(status),
        flags=status_flags(status),
        extras={"type": "binary", "battery_raw": frame[lay.battery]},
    )


# ---------------------------------------------------------------------------------------------
# Text frames


def _coordinate(text: str, hemisphere: str, letters: str, limit: int) -> float | None:
    text = text.strip()
    if len(hemisphere) != 1 or hemisphere not in letters:
        return None
    if m := _COORD_NEG.fullmatch(text):
        degrees, minutes = int(m[1]), float(m[2])
    elif m := _COORD_DOT.fullmatch(text):
        degrees, minutes = int(m[1] or 0), float(m[2])
    elif m := _COORD_NODOT.fullmatch(text):
        degrees, minutes = int(m[1]), int(m[2]) + int(m[3]) / 10000
    else:
        return None
    value = degrees + minutes / 60
    if minutes >= 60 or value > limit:
        return None
    return -value if hemisphere == letters[1] else value


def _number(text: str) -> float | None:
    text = text.strip()
    return float(text) if _NUMBER.fullmatch(text) else None


def _nearest_day(tod: time, now: datetime) -> datetime:
    """A time of day without a date: put it on the day (around `now`) that makes it nearest."""
    candidates = (datetime.combine(now.date() + timedelta(days=d), tod, UTC) for d in (-1, 0, 1))
    return min(candidates, key=lambda t: abs(t - now))


def _fix_time(tod_text: str, date_text: str, now: Clock) -> tuple[datetime | None, str]:
    """(time, how it was obtained) or (None, reason)."""
    tod: time | None = None
    if tod_text:
        m = _TOD.fullmatch(tod_text)
        if m is None or int(m[1]) > 23 or int(m[2]) > 59 or int(m[3]) > 59:
            return None, "bad time of day"
        tod = time(int(m[1]), int(m[2]), int(m[3]))
    if not date_text:
        # Traccar takes the receive time here (capture 48); so do we, keeping the device's time of day.
        received = now()
        return (_nearest_day(tod, received) if tod else received), "received"
    d = _DATE.fullmatch(date_text)
    if d is None or not _valid_date(int(d[1]), int(d[2]), int(d[3])):
        return None, "bad date"
    day = date(2000 + int(d[3]), int(d[2]), int(d[1]))
    return datetime.combine(day, tod or time(0), UTC), "device" if tod else "date only"


def _validity(text: str) -> bool | None:
    if text == "A":
        return True
    if text in ("V", "B", ""):
        return False
    # V2/VI1 put a coding-scheme number here and report fixes (Traccar reads them as valid).
    return True if _DIGITS.fullmatch(text) else None


def _trailing(fields: list[str], j: int, extras: dict[str, Any]) -> int | None:
    """Status word after the date (directly, or after 3 SIM fields as V19 sends); the rest into extras."""
    status: int | None = None
    if j < len(fields) and _HEX8.fullmatch(fields[j]):
        status, j = int(fields[j], 16), j + 1
    elif j + 3 < len(fields) and _HEX8.fullmatch(fields[j + 3]):
        extras["sim"] = [s.strip() for s in fields[j : j + 3]]
        status, j = int(fields[j + 3], 16), j + 4
    rest = [s.strip() for s in fields[j:]]
    if len(rest) == 6 and _odometer_block(rest):
        extras.update(odometer=int(rest[0]), temperature=int(rest[1]), fuel=float(rest[2]))
        extras.update(altitude=int(rest[3]), lac=int(rest[4], 16), cid=int(rest[5], 16))
    elif rest:
        extras["data"] = rest  # cell ids, ICCID, battery...: layout varies by model
    return status


def _odometer_block(rest: list[str]) -> bool:
    # odometer, temperature, fuel, altitude, lac (hex), cid (hex)
    pats = (_DIGITS, _INT, _DECIMAL, _INT, _HEX, _HEX)
    return all(p.fullmatch(v) for p, v in zip(pats, rest, strict=True))


def _fix(fields: list[str], i: int, base: dict[str, Any], now: Clock) -> Position | Heartbeat:
    """The V1 layout from fields[i] (time of day) on; a Heartbeat with a reason when there is no fix."""
    extras: dict[str, Any] = {"type": base.pop("kind"), "maker": base.pop("maker")}
    if len(fields) < i + 9:
        return Heartbeat(**base, extras={**extras, "reason": "too few fields"})
    lat = _coordinate(fields[i + 2], fields[i + 3], "NS", 90)
    lon = _coordinate(fields[i + 4], fields[i + 5], "EW", 180)
    valid = _validity(fields[i + 1])
    j = i + 8
    if _SMALL_INT.fullmatch(fields[j]) and j + 1 < len(fields) and _DATE.fullmatch(fields[j + 1]):
        extras["battery_level"] = int(fields[j])  # some models put a battery field before the date
        j += 1
    when, source = _fix_time(fields[i], fields[j], now)
    status = _trailing(fields, j + 1, extras)
    reason = "no coordinates" if lat is None or lon is None else "bad validity" if valid is None else None
    if when is None or reason is not None or lat is None or lon is None:
        if status is not None:
            extras.update(_status_extras(status))
        return Heartbeat(**base, extras={**extras, "reason": reason or source})
    if source != "device":
        extras["time_source"] = source
    speed = _number(fields[i + 6])
    return Position(
        **base,
        time=when,
        lat=lat,
        lon=lon,
        valid=bool(valid),
        speed_kmh=None if speed is None else speed * KNOT_KMH,
        course=_number(fields[i + 7]),
        status=status or 0,
        alarms=status_alarms(status) if status is not None else frozenset(),
        flags=status_flags(status or 0),
        extras=extras,
    )


def _v4_fix_start(fields: list[str]) -> int | None:
    """Index of the time field of the fix a V4 reply carries: the last place where the V1 layout fits."""
    for k in range(len(fields) - 9, 3, -1):
        if (
            _TOD.fullmatch(fields[k])
            and fields[k + 1] in ("A", "V", "B")
            and fields[k + 3] in ("N", "S")
            and fields[k + 5] in ("E", "W")
        ):
            return k
    return None


def _decode_v4(fields: list[str], base: dict[str, Any], now: Clock) -> list[Decoded]:
    k = _v4_fix_start(fields)
    reply = fields[3:k] if k is not None else fields[3:]
    failed = any(v.strip().upper() in ("ERROR", "FAIL", "FAILED") for v in reply)
    out: list[Decoded] = [
        CommandReply(protocol=PROTOCOL, device=base["device"], result=1 if failed else 0, text=",".join(reply))
    ]
    if k is not None:
        out.append(_fix(fields, k, base, now))
    return out


def _cells(values: list[str], width: int) -> list[dict[str, int]]:
    cells = []
    for n in range(len(values) // width):
        lac, cid = values[n * width], values[n * width + 1]
        cells.append({"lac": int(lac), "cid": int(cid)})
    return cells


def _dated(extras: dict[str, Any], tod: str, day: str, now: Clock) -> None:
    when, _ = _fix_time(tod, day, now)
    if when is not None:
        extras["time"] = when


def _nbr(f: list[str], extras: dict[str, Any], now: Clock) -> None:
    # hhmmss, mcc, mnc, delay, count, (lac, cid, rssi) * count, ddmmyy, status
    count = int(f[7])
    values = f[8 : 8 + 3 * count]
    extras.update(mcc=int(f[4]), mnc=int(f[5]), cells=_cells(values, 3))
    for cell, n in zip(extras["cells"], range(count), strict=False):
        cell["rssi"] = int(values[3 * n + 2])
    _dated(extras, f[3], f[8 + 3 * count], now)
    extras.update(_status_extras(int(f[9 + 3 * count], 16)))


def _link(f: list[str], extras: dict[str, Any], now: Clock) -> None:
    # hhmmss, rssi, satellites, battery, steps, turnovers, ddmmyy, status
    extras.update(rssi=int(f[4]), satellites=int(f[5]), battery_level=int(f[6]), steps=int(f[7]), turnovers=int(f[8]))
    _dated(extras, f[3], f[9], now)
    extras.update(_status_extras(int(f[10], 16)))


def _v3(f: list[str], extras: dict[str, Any], now: Clock) -> None:
    # hhmmss, mcc+mnc, count, (lac, cid, signal, ?) * count, battery (hex), reboot, X, ddmmyy, status
    count = int(f[5])
    j = 6 + 4 * count
    if f[j + 2] != "X":
        raise ValueError("V3 layout")
    extras.update(mcc=int(f[4][:3]), mnc=int(f[4][3:]), cells=_cells(f[6:j], 4), battery_raw=int(f[j], 16))
    _dated(extras, f[3], f[j + 3], now)
    extras.update(_status_extras(int(f[j + 4], 16)))


def _vp1_cells(f: list[str], extras: dict[str, Any], now: Clock) -> None:
    # V, mcc, mnc, lac,cid,rssi Y lac,cid,rssi Y ...
    cells = [c.split(",") for c in ",".join(f[6:]).split("Y")]
    extras.update(mcc=int(f[4]), mnc=int(f[5]))
    extras["cells"] = [{"lac": int(c[0]), "cid": int(c[1]), "rssi": int(c[2])} for c in cells]


def _heartbeat(f: list[str], extras: dict[str, Any], now: Clock) -> None:
    if len(f) > 3 and _DIGITS.fullmatch(f[3]):
        extras["battery_level"] = int(f[3])


_NO_FIX: dict[str, Callable[[list[str], dict[str, Any], Clock], None]] = {
    "HTBT": _heartbeat,
    "V0": _heartbeat,
    "NBR": _nbr,
    "LINK": _link,
    "V3": _v3,
}


def _decode_vp1(f: list[str], base: dict[str, Any], now: Clock) -> Decoded:
    if len(f) > 3 and f[3] in ("A", "B") and len(f) >= 11:
        # A|B, lat, N|S, lon, E|W, speed, course, ddmmyy: no time of day
        fields = [f[0], f[1], f[2], "", "A", *f[4:11]]
        return _fix(fields, 3, base, now)
    return _no_fix(f, base, now, _vp1_cells)


def _no_fix(
    f: list[str], base: dict[str, Any], now: Clock, parse: Callable[[list[str], dict[str, Any], Clock], None]
) -> Heartbeat:
    extras: dict[str, Any] = {"type": base.pop("kind"), "maker": base.pop("maker")}
    try:
        parse(f, extras, now)
    except (ValueError, IndexError):
        extras["reason"] = "malformed"
    return Heartbeat(**base, extras=extras)


def decode_text(frame: bytes, *, device: str = "", now: Clock | None = None) -> list[Decoded]:
    """One whole text frame `*...#`. `device` stands in for an empty id (the connection's device)."""
    clock = now or _utcnow
    fields = frame[1:-1].decode("latin-1").split(",")
    kind = fields[2] if len(fields) > 2 else ""
    frame_id = fields[1] if len(fields) > 1 else ""
    if frame_id and not _DIGITS.fullmatch(frame_id):
        return [FrameError(protocol=PROTOCOL, reason="device id is not numeric", raw=frame[:ERROR_HEAD])]
    if not (frame_id or device):
        return [FrameError(protocol=PROTOCOL, reason="no device id on this connection", raw=frame[:ERROR_HEAD])]
    base: dict[str, Any] = {"protocol": PROTOCOL, "device": frame_id or device, "kind": kind, "maker": fields[0]}
    if kind == "V4":
        return _decode_v4(fields, base, clock)
    if kind == "SMS":
        reply = frame[1:-1].decode("latin-1").split(",", 3)[3:]
        return [CommandReply(protocol=PROTOCOL, device=base["device"], text=reply[0] if reply else "")]
    if kind in _NO_FIX:
        return [_no_fix(fields, base, clock, _NO_FIX[kind])]
    if kind == "VP1":
        return [_decode_vp1(fields, base, clock)]
    if kind.startswith("V"):
        return [_fix(fields, 3, base, clock)]
    return [Unsupported(protocol=PROTOCOL, device=base["device"], body=frame)]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------------------------
# Stream decoder


class H02Decoder:
    """Per-connection decoder: feed bytes in any chunks, get messages and frame errors back.

    `now` supplies the receive time used only for text frames that carry no date (tests pin it).
    """

    protocol = PROTOCOL

    def __init__(self, *, max_buffer: int = 65536, now: Clock | None = None) -> None:
        self._buf = bytearray()
        self._max_buffer = max_buffer
        self._now = now or _utcnow
        self._text_limit = min(MAX_TEXT, max_buffer)
        self._device = ""  # the id this connection has used
        self._tail: int | None = None  # vendor bytes skipped since the last binary frame
        self._junk_n = 0
        self._junk_head = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Decoded]:
        buf = self._buf
        buf += data
        out: list[Decoded] = []
        pos = 0
        while True:
            m = _START.search(buf, pos)
            end = m.start() if m else len(buf)
            if end > pos:
                self._skip(bytes(buf[pos:end]), out)
                pos = end
            if m is None:
                break
            step = self._text(buf, pos, out) if buf[pos] == 0x2A else self._binary(buf, pos, out)
            if step is None:
                break  # a frame start waiting for more bytes
            pos = step
        del buf[:pos]
        if len(buf) > self._max_buffer:
            self._emit(out, FrameError(protocol=PROTOCOL, reason="frame exceeds buffer", raw=bytes(buf[:ERROR_HEAD])))
            buf.clear()
        return out

    # -- text

    def _text(self, buf: bytearray, start: int, out: list[Decoded]) -> int | None:
        if len(buf) - start < 4:
            return None
        if not _MAKER.match(buf, start):
            self._skip(bytes(buf[start : start + 1]), out)
            return start + 1
        limit = start + self._text_limit
        stop = _TEXT_STOP.search(buf, start + 1, limit)
        if stop is None:
            if len(buf) < limit:
                return None
            self._error(out, f"no '#' within {self._text_limit} bytes", buf[start:limit])
            return limit
        at = stop.start()
        if buf[at] == 0x23:  # '#'
            frame = bytes(buf[start : at + 1])
            msgs = decode_text(frame, device=self._device, now=self._now)
            self._tail = None
            self._emit(out, *msgs)
            return at + 1
        if buf[at] == 0x2A:  # '*': the next frame started before this one ended
            self._error(out, "text frame cut by a new frame", buf[start:at])
            return at
        # A control byte: binary data; it most likely started at the last '$'.
        dollar = buf.rfind(b"$", start + 1, at)
        resume = dollar if dollar >= 0 else at
        self._error(out, "text frame cut by binary data", buf[start:resume])
        return resume

    # -- binary

    def _binary(self, buf: bytearray, start: int, out: list[Decoded]) -> int | None:
        first = self._pick(buf, start)
        if first == 0:
            return None
        if first == -1:
            self._skip(bytes(buf[start : start + 1]), out)
            return start + 1
        assert isinstance(first, _Layout)
        layout, at = first, start
        if len(buf) > start + 1 and buf[start + 1] == 0x24:
            # `$$`: a vendor byte 0x24 before the real frame, or an id starting with 24.
            second = self._pick(buf, start + 1)
            if second == 0:
                return None
            if isinstance(second, _Layout) and self._prefer(second.device(buf, start + 1), layout.device(buf, start)):
                layout, at = second, start + 1
        if at > start:
            self._skip(bytes(buf[start:at]), out)
        frame = bytes(buf[at : at + layout.size])
        position = decode_binary(frame, layout)
        self._emit(out, position)
        self._tail = 0
        return at + layout.size

    def _pick(self, buf: bytearray, start: int) -> _Layout | int:
        """The id layout a binary frame at `start` uses, 0 when more bytes are needed, -1 when none fits."""
        short, long_ = SHORT.state(buf, start), LONG.state(buf, start)
        known = self._device
        if short == 1 and (long_ == -1 or SHORT.device(buf, start) == known):
            return SHORT
        if long_ == 1 and (short == -1 or LONG.device(buf, start) == known):
            return LONG
        if short == 1 and long_ == 1:
            return SHORT
        return -1 if short == long_ == -1 else 0

    def _prefer(self, second: str, first: str) -> bool:
        return second == self._device != first

    # -- output

    def _emit(self, out: list[Decoded], *msgs: Decoded) -> None:
        self._flush_junk(out)
        for m in msgs:
            if isinstance(m, Message) and m.device:
                self._device = m.device
        out.extend(msgs)

    def _error(self, out: list[Decoded], reason: str, raw: bytearray | bytes) -> None:
        self._tail = None
        self._emit(out, FrameError(protocol=PROTOCOL, reason=reason, raw=bytes(raw[:ERROR_HEAD])))

    def _skip(self, data: bytes, out: list[Decoded]) -> None:
        """Bytes outside any frame: CR/LF is dropped, vendor tails are allowed, the rest is garbage."""
        data = data.translate(None, _CRLF)
        if self._tail is not None and data:
            room = MAX_TAIL - self._tail
            self._tail += min(room, len(data))
            data = data[room:]
            if self._tail >= MAX_TAIL and data:
                self._tail = None
        while data:
            take = min(len(data), self._max_buffer - self._junk_n)
            if len(self._junk_head) < ERROR_HEAD:
                self._junk_head += data[: ERROR_HEAD - len(self._junk_head)]
            self._junk_n += take
            data = data[take:]
            if self._junk_n >= self._max_buffer:
                self._flush_junk(out)

    def _flush_junk(self, out: list[Decoded]) -> None:
        if self._junk_n:
            out.append(
                FrameError(
                    protocol=PROTOCOL, reason=f"{self._junk_n} bytes outside any frame", raw=bytes(self._junk_head)
                )
            )
            self._junk_n = 0
            self._junk_head.clear()


# ---------------------------------------------------------------------------------------------
# Replies and encoders


def ack_for(message: Decoded, *, now: datetime | None = None) -> bytes | None:
    """The reply the terminal expects (Traccar's): V1 and NBR -> `*HQ,<id>,V4,<type>,<yyyyMMddHHmmss>#`,
    HTBT/V0 -> the frame echoed up to its type. Binary reports and everything else get none."""
    if not isinstance(message, Position | Heartbeat) or not message.device:
        return None
    kind = message.extras.get("type")
    if kind in ("V1", "NBR"):
        stamp = (now or _utcnow()).astimezone(UTC).strftime("%Y%m%d%H%M%S")
        return f"*HQ,{message.device},V4,{kind},{stamp}#".encode("ascii")
    if kind in ("HTBT", "V0"):
        return f"*{message.extras.get('maker', 'HQ')},{message.device},{kind}#".encode("ascii")
    return None


_COMMAND = re.compile(r"[A-Za-z0-9]+")
_PARAM = re.compile(r"[\x20-\x7e]*")


def encode_command(device: str, command: str, *params: str) -> bytes:
    """A platform text command, e.g. `encode_command(id, "S20", "130305", "1", "1")` -> `*HQ,<id>,S20,...#`."""
    if not _DIGITS.fullmatch(device):
        raise ProtocolError(f"H02 device id must be digits: {device!r}")
    if not _COMMAND.fullmatch(command):
        raise ProtocolError(f"bad H02 command name: {command!r}")
    for p in params:
        if not _PARAM.fullmatch(p) or any(c in p for c in ",*#"):
            raise ProtocolError(f"bad H02 command parameter: {p!r}")
    return ("*HQ," + ",".join((device, command, *params)) + "#").encode("ascii")


def _ddmm(value: float, degree_digits: int, decimals: int) -> str:
    scale = 10**decimals
    degrees, units = divmod(round(abs(value) * 60 * scale), 60 * scale)
    return f"{degrees:0{degree_digits}d}{units // scale:02d}.{units % scale:0{decimals}d}"


def _check_fix(time_: datetime, lat: float, lon: float) -> None:
    if time_.tzinfo is None:
        raise ProtocolError("time must be timezone-aware")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ProtocolError(f"coordinates out of range: {lat}, {lon}")


def encode_position(
    device: str,
    time: datetime,
    lat: float,
    lon: float,
    *,
    valid: bool = True,
    speed_kmh: float = 0.0,
    course: float = 0.0,
    status: int = 0xFFFFFBFF,
    maker: str = "HQ",
    kind: str = "V1",
    decimals: int = 4,
) -> bytes:
    """A V1 text report as a terminal sends it (speed in knots, minutes with `decimals` places)."""
    if not _DIGITS.fullmatch(device):
        raise ProtocolError(f"H02 device id must be digits: {device!r}")
    _check_fix(time, lat, lon)
    t = time.astimezone(UTC)
    fields = (
        maker,
        device,
        kind,
        t.strftime("%H%M%S"),
        "A" if valid else "V",
        _ddmm(lat, 2, decimals),
        "S" if lat < 0 else "N",
        _ddmm(lon, 3, decimals),
        "W" if lon < 0 else "E",
        f"{max(speed_kmh, 0.0) / KNOT_KMH:.2f}",
        f"{round(course) % 360:03d}",
        t.strftime("%d%m%y"),
        f"{status & 0xFFFFFFFF:08X}",
    )
    return ("*" + ",".join(fields) + "#").encode("ascii")


def encode_binary_position(
    device: str,
    time: datetime,
    lat: float,
    lon: float,
    *,
    valid: bool = True,
    speed_kmh: float = 0.0,
    course: float = 0.0,
    status: int = 0xFFFFFBFF,
    battery: int = 6,
    tail: bytes = b"\xff\x00\x00",
) -> bytes:
    """A binary report: 10-digit ids use the 5-byte id, 15-digit ones the 8-byte form. `tail` stands for
    the vendor bytes (3 of them make the common 32-byte frame)."""
    if not _DIGITS.fullmatch(device) or len(device) not in (10, 15):
        raise ProtocolError(f"binary H02 ids have 10 or 15 digits: {device!r}")
    _check_fix(time, lat, lon)
    t = time.astimezone(UTC)
    knots = min(round(max(speed_kmh, 0.0) / KNOT_KMH), 999)
    flags = (0x2 if valid else 0) | (0x4 if lat >= 0 else 0) | (0x8 if lon >= 0 else 0)
    lat_digits = _ddmm(lat, 2, 4).replace(".", "")
    lon_digits = _ddmm(lon, 3, 4).replace(".", "")
    digits = (device + "0" if len(device) == 15 else device) + t.strftime("%H%M%S%d%m%y") + lat_digits
    body = bytes.fromhex(digits) + bytes((battery & 0xFF,))
    body += bytes.fromhex(lon_digits + f"{flags:x}" + f"{knots:03d}{round(course) % 360:03d}")
    return b"$" + body + (status & 0xFFFFFFFF).to_bytes(4, "big") + tail
