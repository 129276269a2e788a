"""NMEA 0183 over TCP: raw sentences from simple terminals, decoded with pynmea2.

Sans-I/O: `NmeaDecoder.feed(bytes)` returns normalized messages; `encode_identification` and
`encode_position` build sentences for tests and the fleet simulator. NMEA has no acknowledgements, so
`ack_for` always returns None.

Identification. Plain NMEA does not say who is talking, so a terminal must name itself first with the
proprietary sentence `$PGID,<id>*hh` (as T55-family terminals do); the decoder answers it with
`Login(device=<id>)`, and a later `$PGID` renames the connection. Sentences before any identification
yield `FrameError(reason="no identification")`.

Lines end with LF (a CR before it is dropped). A line longer than 1024 bytes is garbage: it is reported
once and skipped up to the next LF. Every sentence must carry a correct `*hh` checksum (pynmea2's strict
check); a missing or wrong one is a `FrameError`, as is a line that is not a sentence. Talkers GP, GN,
BD, GB, GL and GA are accepted (GB is BeiDou's newer id); other talkers and sentence types are
`Unsupported`.

Fixes. RMC (time, date, position, speed, course, status), GGA (satellites, altitude, HDOP, fix quality)
and VTG (course, speed) of one epoch are merged into one `Position`. An epoch is the run of these
sentences with one time of day (VTG has none and joins the epoch it arrives in). Terminals repeat a fixed
set of sentences per fix, so the decoder learns that set from the first epoch, which is closed when a
sentence that cannot belong to it arrives (one epoch late); later epochs are emitted as soon as they hold
the whole set, with no wait. `flush()` emits an epoch still open (call it when the connection goes idle
or closes). A GGA without an RMC takes its date from the last RMC of the connection, or from the receive
clock, on the day that puts it nearest. An epoch without coordinates (no fix yet) becomes a Heartbeat.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pynmea2

from protocols.messages import Decoded, FrameError, Heartbeat, Login, Position, ProtocolError, Unsupported

PROTOCOL = "nmea"
KNOT_KMH = 1.852
MAX_LINE = 1024
ERROR_HEAD = 64
TALKERS = frozenset(("GP", "GN", "BD", "GB", "GL", "GA"))
FIX_SENTENCES = frozenset(("RMC", "GGA", "VTG"))

Clock = Callable[[], datetime]

_TOD = re.compile(r"([0-9]{2})([0-9]{2})([0-9]{2})(?:\.([0-9]{1,6}))?")
_DATE = re.compile(r"([0-9]{2})([0-9]{2})([0-9]{2})")
_LAT = re.compile(r"([0-9]{2})([0-9]{2}(?:\.[0-9]+)?)")
_LON = re.compile(r"([0-9]{3})([0-9]{2}(?:\.[0-9]+)?)")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]*)?")
_DEVICE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------------------------
# Field parsers (strict: pynmea2 returns the raw text when its own conversion fails)


def _field(data: list[str], i: int) -> str:
    return data[i].strip() if i < len(data) else ""


def _number(text: str) -> float | None:
    return float(text) if _NUMBER.fullmatch(text) else None


def _tod(text: str) -> time | None:
    m = _TOD.fullmatch(text)
    if m is None or int(m[1]) > 23 or int(m[2]) > 59 or int(m[3]) > 59:
        return None
    micro = int((m[4] or "0").ljust(6, "0"))
    return time(int(m[1]), int(m[2]), int(m[3]), micro)


def _date(text: str) -> date | None:
    m = _DATE.fullmatch(text)
    if m is None:
        return None
    yy = int(m[3])
    try:
        # Two-digit years: GPS began in 1980, so 80-99 are 1980-1999 (the classic 1994 examples).
        return date(1900 + yy if yy >= 80 else 2000 + yy, int(m[2]), int(m[1]))
    except ValueError:
        return None


def _coordinate(text: str, hemisphere: str, pattern: re.Pattern[str], letters: str, limit: int) -> float | None:
    m = pattern.fullmatch(text)
    if m is None or hemisphere not in (letters[0], letters[1]):
        return None
    minutes = float(m[2])
    value = int(m[1]) + minutes / 60
    if minutes >= 60 or value > limit:
        return None
    return -value if hemisphere == letters[1] else value


def _lat_lon(data: list[str], i: int) -> tuple[float, float] | None:
    lat = _coordinate(_field(data, i), _field(data, i + 1), _LAT, "NS", 90)
    lon = _coordinate(_field(data, i + 2), _field(data, i + 3), _LON, "EW", 180)
    return None if lat is None or lon is None else (lat, lon)


def _nearest_day(tod: time, reference: datetime) -> datetime:
    days = (reference.date() + timedelta(days=d) for d in (-1, 0, 1))
    return min((datetime.combine(d, tod, UTC) for d in days), key=lambda t: abs(t - reference))


# ---------------------------------------------------------------------------------------------
# Epoch assembly


@dataclass(slots=True)
class _Epoch:
    tod: time | None
    parts: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # type -> (talker, fields)

    def accepts(self, kind: str, tod: time | None) -> bool:
        return kind not in self.parts and (tod is None or self.tod is None or tod == self.tod)


def _sentence_tod(kind: str, data: list[str]) -> time | None:
    return None if kind == "VTG" else _tod(_field(data, 0))


def _vtg(data: list[str]) -> tuple[float | None, float | None]:
    """(course, speed km/h); NMEA 2.x has unit letters after each value, older terminals do not."""
    if _field(data, 1) == "T":
        course, knots, kmh = _field(data, 0), _field(data, 4), _field(data, 6)
    else:
        course, knots, kmh = _field(data, 0), _field(data, 2), _field(data, 3)
    speed = _number(kmh)
    if speed is None and (kn := _number(knots)) is not None:
        speed = kn * KNOT_KMH
    return _number(course), speed


# ---------------------------------------------------------------------------------------------
# Stream decoder


class NmeaDecoder:
    """Per-connection decoder: feed bytes in any chunks, get messages and frame errors back.

    `now` is the receive clock, used only to date a GGA when no RMC has given a date (tests pin it).
    """

    protocol = PROTOCOL

    def __init__(self, *, max_buffer: int = 65536, now: Clock | None = None) -> None:
        self._buf = bytearray()
        self._max_buffer = max_buffer
        self._line_limit = max(1, min(MAX_LINE, max_buffer - 2))
        self._now = now or _utcnow
        self._discarding = False  # inside an over-long line, dropping bytes up to the next LF
        self.device = ""
        self._epoch: _Epoch | None = None
        self._expected: frozenset[str] = frozenset()  # the sentence set this terminal sends per fix
        self._last_fix: datetime | None = None  # the last RMC date and time, to date GGA-only epochs

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
            end = buf.find(b"\n", pos)
            if end < 0:
                break
            line = bytes(buf[pos:end])
            pos = end + 1
            if self._discarding:
                self._discarding = False
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self._line_limit:
                out.append(self._too_long(line))
            else:
                out.extend(self._line(line))
        pending = len(buf) - pos
        if self._discarding:
            pos = len(buf)
        elif pending > self._line_limit + 1:  # even a CR before the coming LF would not save it
            out.append(self._too_long(bytes(buf[pos:])))
            self._discarding = True
            pos = len(buf)
        del buf[:pos]
        return out

    def flush(self) -> list[Decoded]:
        """Emit the epoch still open (the connection went idle or closed)."""
        return self._close()

    def _too_long(self, line: bytes) -> FrameError:
        return FrameError(protocol=PROTOCOL, reason=f"line longer than {self._line_limit} bytes", raw=line[:ERROR_HEAD])

    def _error(self, reason: str, line: bytes) -> list[Decoded]:
        return [FrameError(protocol=PROTOCOL, reason=reason, raw=line[:ERROR_HEAD], device=self.device)]

    def _line(self, line: bytes) -> list[Decoded]:
        if not line.strip():
            return []
        if not line.isascii():
            return self._error("non-ASCII bytes in sentence", line)
        text = line.decode("ascii").strip()
        if not text.startswith("$"):
            return self._error("not an NMEA sentence", line)
        try:
            msg = pynmea2.parse(text, check=True)
        except pynmea2.ChecksumError:
            return self._error("bad checksum" if "*" in text else "missing checksum", line)
        except pynmea2.SentenceTypeError:
            # Checksum already verified by pynmea2: a well-formed sentence of a type it does not know.
            return self._unsupported(line)
        except Exception:  # pynmea2 has vendor sentence classes that may raise anything on bad input
            return self._error("unparseable sentence", line)
        if isinstance(msg, pynmea2.ProprietarySentence) and msg.manufacturer.upper() == "GID":
            return self._identify(msg.data, line)
        if not self.device:
            return self._error("no identification", line)
        if isinstance(msg, pynmea2.TalkerSentence) and msg.talker in TALKERS and msg.sentence_type in FIX_SENTENCES:
            return self._fix(msg.sentence_type, msg.talker, list(msg.data))
        return self._unsupported(line)

    def _unsupported(self, line: bytes) -> list[Decoded]:
        if not self.device:
            return self._error("no identification", line)
        return [Unsupported(protocol=PROTOCOL, device=self.device, body=line)]

    def _identify(self, data: list[str], line: bytes) -> list[Decoded]:
        device = _field(data, 1)
        if not _DEVICE.fullmatch(device):
            return self._error("bad identification", line)
        out = self._close()
        if device != self.device:
            self._expected, self._last_fix = frozenset(), None
        self.device = device
        out.append(Login(protocol=PROTOCOL, device=device))
        return out

    # -- epochs

    def _fix(self, kind: str, talker: str, data: list[str]) -> list[Decoded]:
        tod = _sentence_tod(kind, data)
        out: list[Decoded] = []
        epoch = self._epoch
        if epoch is not None and not epoch.accepts(kind, tod):
            # This terminal's epoch is over before reaching the expected set: learn the set it sends now.
            self._expected = frozenset(epoch.parts)
            out.extend(self._close())
            epoch = None
        if epoch is None:
            epoch = self._epoch = _Epoch(tod)
        epoch.parts[kind] = (talker, data)
        if epoch.tod is None:
            epoch.tod = tod
        if self._expected and self._expected <= epoch.parts.keys():
            out.extend(self._close())
        return out

    def _close(self) -> list[Decoded]:
        epoch, self._epoch = self._epoch, None
        if epoch is None:
            return []
        return [self._position(epoch)]

    def _position(self, epoch: _Epoch) -> Position | Heartbeat:
        rmc = epoch.parts.get("RMC")
        gga = epoch.parts.get("GGA")
        vtg = epoch.parts.get("VTG")
        extras: dict[str, Any] = {"sentences": sorted(epoch.parts)}
        where = (_lat_lon(rmc[1], 2) if rmc else None) or (_lat_lon(gga[1], 1) if gga else None)
        when = self._time(epoch.tod, _date(_field(rmc[1], 8)) if rmc else None)
        if where is None or when is None:
            return Heartbeat(
                protocol=PROTOCOL, device=self.device, extras={**extras, "reason": "no fix" if when else "no time"}
            )
        speed = course = None
        valid = False
        if rmc:
            extras["talker"] = rmc[0]
            knots = _number(_field(rmc[1], 6))
            speed = None if knots is None else knots * KNOT_KMH
            course = _number(_field(rmc[1], 7))
            mode = _field(rmc[1], 11)
            valid = _field(rmc[1], 1) == "A" and mode != "N"
            if mode:
                extras["mode"] = mode
        if vtg and (speed is None or course is None):
            vtg_course, vtg_speed = _vtg(vtg[1])
            speed = speed if speed is not None else vtg_speed
            course = course if course is not None else vtg_course
        satellites = altitude = None
        if gga:
            extras.setdefault("talker", gga[0])
            quality = _number(_field(gga[1], 5))
            sats = _number(_field(gga[1], 6))
            satellites = None if sats is None else int(sats)
            altitude = _number(_field(gga[1], 8))
            if (hdop := _number(_field(gga[1], 7))) is not None:
                extras["hdop"] = hdop
            if quality is not None:
                extras["fix_quality"] = int(quality)
            if not rmc:
                valid = bool(quality)
        return Position(
            protocol=PROTOCOL,
            device=self.device,
            time=when,
            lat=where[0],
            lon=where[1],
            valid=valid,
            speed_kmh=speed,
            course=course,
            altitude_m=altitude,
            satellites=satellites,
            extras=extras,
        )

    def _time(self, tod: time | None, day: date | None) -> datetime | None:
        if tod is None:
            return None
        if day is not None:
            self._last_fix = datetime.combine(day, tod, UTC)
            return self._last_fix
        # GGA without RMC: date it from the last RMC, else from the receive clock.
        return _nearest_day(tod, self._last_fix or self._now())


# ---------------------------------------------------------------------------------------------
# Replies and encoders


def ack_for(message: Decoded) -> bytes | None:
    """NMEA terminals expect no replies."""
    return None


def checksum(body: str) -> str:
    """The two hex digits after `*`: XOR of the characters between `$` and `*`."""
    return f"{pynmea2.NMEASentence.checksum(body):02X}"


def sentence(body: str) -> bytes:
    """`$<body>*hh\\r\\n`."""
    if not body.isascii() or any(c in body for c in "$*\r\n"):
        raise ProtocolError(f"bad NMEA sentence body: {body!r}")
    return f"${body}*{checksum(body)}\r\n".encode("ascii")


def encode_identification(device: str) -> bytes:
    """The `$PGID,<id>*hh` line a terminal sends first."""
    if not _DEVICE.fullmatch(device):
        raise ProtocolError(f"bad NMEA terminal id: {device!r}")
    return sentence(f"PGID,{device}")


def _ddmm(value: float, degree_digits: int, decimals: int) -> str:
    scale = 10**decimals
    degrees, units = divmod(round(abs(value) * 60 * scale), 60 * scale)
    return f"{degrees:0{degree_digits}d}{units // scale:02d}.{units % scale:0{decimals}d}"


def encode_position(
    time: datetime,
    lat: float,
    lon: float,
    *,
    valid: bool = True,
    speed_kmh: float = 0.0,
    course: float = 0.0,
    altitude_m: float | None = None,
    satellites: int | None = None,
    hdop: float | None = None,
    talker: str = "GP",
    with_gga: bool = True,
    decimals: int = 5,
) -> bytes:
    """An RMC sentence, followed by a GGA of the same time unless `with_gga` is false."""
    if time.tzinfo is None:
        raise ProtocolError("time must be timezone-aware")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ProtocolError(f"coordinates out of range: {lat}, {lon}")
    if talker not in TALKERS:
        raise ProtocolError(f"unknown talker: {talker!r}")
    t = time.astimezone(UTC)
    tod = f"{t:%H%M%S}.{t.microsecond // 10000:02d}"
    where = f"{_ddmm(lat, 2, decimals)},{'S' if lat < 0 else 'N'},{_ddmm(lon, 3, decimals)},{'W' if lon < 0 else 'E'}"
    knots = max(speed_kmh, 0.0) / KNOT_KMH
    heading = round(course % 360, 2) % 360
    status, mode = ("A", "A") if valid else ("V", "N")
    rmc = f"{talker}RMC,{tod},{status},{where},{knots:.3f},{heading:.2f},{t:%d%m%y},,,{mode}"
    out = sentence(rmc)
    if with_gga:
        sats = "" if satellites is None else f"{satellites:02d}"
        dop = "" if hdop is None else f"{hdop:.2f}"
        alt = "" if altitude_m is None else f"{altitude_m:.1f}"
        gga = f"{talker}GGA,{tod},{where},{1 if valid else 0},{sats},{dop},{alt},M,0.0,M,,"
        out += sentence(gga)
    return out
