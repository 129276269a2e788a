"""GT06 (Concox and clones): stream framing, decoding of terminal packets, encoding of server packets.

Sans-I/O: `Gt06Decoder.feed(bytes)` returns normalized messages; `ack_for(message)` gives the reply the
terminal waits for; the `encode_*` functions build frames (commands, and terminal packets for simulators
and tests).

Framing policy (the captures show terminals with wrong CRCs and wrong length fields):
- A frame is start (78 78 with a 1-byte length, 79 79 with a 2-byte length), length, protocol number,
  content, serial, CRC-ITU, 0d 0a. The stop bytes must sit where the length field points.
- A frame whose CRC-ITU does not match is rejected (`FrameError`, reason "bad crc ..."). No lenient mode.
- A length field below 5 (the Wi-Fi packets 0x17/0x69 sent with length 0) or one that does not land on
  0d 0a is rejected ("bad length ..."); the bad frame ends at the first 0d 0a or just before the next
  start marker, whichever comes first, so the next frame survives.
- Bytes before a start marker are reported as one "garbage" error once the next marker arrives.
- `flush()` (end of input) reports a frame that cannot complete as "truncated" and decodes what follows.
- A well-framed packet before any login cannot be attributed: `FrameError` reason "no login".
- A well-framed packet whose content does not fit the standard layout (vendor variants, impossible
  dates) becomes `Unsupported` with its content, like an unknown protocol number.

Decoded messages carry `version` = the start marker (0x7878 or 0x7979): replies are only due on 0x7878.
Device times are converted to UTC with the zone of the last login when it carried one, else with the
decoder's `tz_offset_minutes` (default 0: UTC, what 0x22 and newer firmware send).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from protocols.messages import (
    CommandReply,
    Decoded,
    FrameError,
    Heartbeat,
    Login,
    Message,
    Position,
    ProtocolError,
    Unsupported,
)

PROTOCOL = "gt06"
START_SHORT = 0x7878
START_LONG = 0x7979
_SHORT = b"\x78\x78"
_LONG = b"\x79\x79"
_STOP = b"\r\n"
MIN_LENGTH = 5  # protocol number + serial + CRC

MSG_LOGIN = 0x01
MSG_GPS = 0x10
MSG_GPS_LBS_6 = 0x11
MSG_GPS_LBS_1 = 0x12
MSG_STATUS = 0x13
MSG_STRING = 0x15
MSG_GPS_LBS_STATUS_1 = 0x16
MSG_STRING_INFO = 0x21
MSG_GPS_LBS_2 = 0x22
MSG_GPS_LBS_STATUS_2 = 0x26
MSG_GPS_LBS_STATUS_3 = 0x27
MSG_ADDRESS_REQUEST = 0x2A
MSG_COMMAND = 0x80
MSG_TIME_REQUEST = 0x8A
MSG_GPS_4G = 0xA0
MSG_ALARM_4G = 0xA4

# Alarm byte of the alarm packets (Concox VL03 table; other models differ).
ALARM_NAMES: dict[int, str] = {
    0x01: "sos",
    0x02: "power_cut",
    0x03: "vibration",
    0x04: "geofence_enter",
    0x05: "geofence_exit",
    0x06: "overspeed",
    0x09: "tow",
    0x0E: "low_external_battery",
    0x0F: "low_external_battery",
    0x11: "power_off",
    0x13: "tamper",
    0x14: "door",
    0x19: "low_battery",
    0x29: "harsh_acceleration",
    0x2C: "collision",
    0x30: "harsh_braking",
}
# Bits 3-5 of the terminal info byte. 7 is not in the Concox table: capture 75 (Traccar "removing").
INFO_ALARM_NAMES: dict[int, str] = {1: "vibration", 2: "power_cut", 3: "low_battery", 4: "sos", 7: "removal"}
INFO_FLAGS: dict[int, str] = {0: "armed", 1: "acc", 2: "charging", 6: "gps_fixed", 7: "fuel_cut"}


def _make_crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc_itu(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X-25 (reflected 0x1021, init 0xFFFF, final XOR 0xFFFF), GT06's "CRC-ITU"."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFF


# ---------------------------------------------------------------------------------------------------
# Content layouts

_GPS = struct.Struct(">6BBIIBH")  # date-time, info/satellites, lat, lon, speed, course/status
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_STATUS = struct.Struct(">5B")  # terminal info, voltage level, GSM signal, alarm, language
_HEARTBEAT = struct.Struct(">3B")
_REPLY_HEAD = struct.Struct(">BI")  # 0x15: command length, server flag
_INFO_HEAD = struct.Struct(">IB")  # 0x21: server flag, encoding
_COORD_SCALE = 1_800_000.0

# Course/status word
_CS_COURSE = 0x03FF
_CS_NORTH = 1 << 10
_CS_WEST = 1 << 11
_CS_VALID = 1 << 12
_CS_DIFF = 1 << 13
_CS_ACC_KNOWN = 1 << 14
_CS_ACC = 1 << 15


class _Layout(Exception):
    """Content does not fit the standard layout: the packet becomes Unsupported."""


def _local_to_utc(fields: tuple[int, ...], tz_minutes: int) -> datetime:
    yy, mo, dd, hh, mi, ss = fields
    try:
        local = datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=UTC)
    except ValueError as e:
        raise _Layout("bad date-time") from e
    return local - timedelta(minutes=tz_minutes)


def _gps_block(body: bytes, tz_minutes: int) -> dict[str, Any]:
    """The 18-byte GPS block shared by the location and alarm packets."""
    if len(body) < _GPS.size:
        raise _Layout("short gps block")
    *dt, info, lat_raw, lon_raw, speed, cs = _GPS.unpack_from(body, 0)
    lat = lat_raw / _COORD_SCALE
    lon = lon_raw / _COORD_SCALE
    if lat > 90.0 or lon > 180.0:
        raise _Layout("coordinates out of range")
    flags: set[str] = set()
    if cs & _CS_DIFF:
        flags.add("differential")
    if cs & _CS_ACC_KNOWN and cs & _CS_ACC:  # firmware that reports ACC in the course word
        flags.add("acc")
    return {
        "time": _local_to_utc(tuple(dt), tz_minutes),
        "lat": lat if cs & _CS_NORTH else -lat,
        "lon": -lon if cs & _CS_WEST else lon,
        "valid": bool(cs & _CS_VALID),
        "speed_kmh": float(speed),
        "course": float(cs & _CS_COURSE),
        "satellites": info & 0x0F,
        "status": cs,
        "flags": flags,
        "extras": {"gps_info_length": info >> 4},
    }


def _lbs(data: bytes, extras: dict[str, Any], *, wide: bool) -> int:
    """MCC, MNC, LAC, cell id into extras; returns bytes used (0 when they do not fit).

    2G: LAC WORD, cell id 3 bytes; 4G (`wide`): LAC DWORD, cell id 8 bytes. MCC top bit: MNC is a WORD.
    """
    if len(data) < 2:
        return 0
    mcc = _U16.unpack_from(data, 0)[0]
    mnc_size = 2 if mcc & 0x8000 else 1
    lac_size, cell_size = (4, 8) if wide else (2, 3)
    used = 2 + mnc_size + lac_size + cell_size
    if len(data) < used:
        return 0
    at = 2
    mnc = int.from_bytes(data[at : at + mnc_size], "big")
    at += mnc_size
    lac = int.from_bytes(data[at : at + lac_size], "big")
    at += lac_size
    cell = int.from_bytes(data[at : at + cell_size], "big")
    extras.update(mcc=mcc & 0x7FFF, mnc=mnc, lac=lac, cell_id=cell)
    return used


def _battery(voltage_level: int) -> dict[str, int]:
    """Voltage level 0-6 as a percentage; other values are vendor fields, left raw."""
    return {"battery_level": round(voltage_level * 100 / 6)} if voltage_level <= 6 else {}


def _info_flags(info: int) -> tuple[set[str], set[str]]:
    """Terminal info byte -> (flags, alarms)."""
    flags = {name for bit, name in INFO_FLAGS.items() if info >> bit & 1}
    alarm = INFO_ALARM_NAMES.get(info >> 3 & 0x07)
    return flags, {alarm} if alarm else set()


def _position(
    base: dict[str, Any], gps: dict[str, Any], *, alarm: int = 0, alarms: set[str] | None = None, **kw: Any
) -> Position:
    return Position(
        **base,
        time=gps["time"],
        lat=gps["lat"],
        lon=gps["lon"],
        valid=gps["valid"],
        speed_kmh=gps["speed_kmh"],
        course=gps["course"],
        satellites=gps["satellites"],
        status=gps["status"],
        alarm=alarm,
        alarms=frozenset(alarms or ()),
        flags=frozenset(gps["flags"]),
        extras=gps["extras"],
        **kw,
    )


def _decode_location(base: dict[str, Any], body: bytes, tz: int) -> Message:
    """0x10 (GPS only), 0x11/0x12 (GPS + 2G cell), 0x22 (+ ACC, reason, re-upload, mileage), 0xA0 (4G)."""
    gps = _gps_block(body, tz)
    proto = base["msg_id"]
    rest = body[_GPS.size :]
    if proto == MSG_GPS:
        return _position(base, gps)
    used = _lbs(rest, gps["extras"], wide=proto == MSG_GPS_4G)
    if proto not in (MSG_GPS_LBS_2, MSG_GPS_4G) or not used:
        return _position(base, gps)  # 0x11/0x12 tails vary by vendor: ignored
    tail = rest[used:]
    backfill = False
    mileage = None
    if len(tail) >= 3:
        acc, reason, reupload = tail[0], tail[1], tail[2]
        if acc:
            gps["flags"].add("acc")
        gps["extras"]["upload_reason"] = reason
        backfill = reupload == 1
        if len(tail) == 7:  # optional mileage, metres
            mileage = _U32.unpack_from(tail, 3)[0] / 1000.0
    return _position(base, gps, backfill=backfill, mileage_km=mileage)


def _decode_alarm(base: dict[str, Any], body: bytes, tz: int) -> Message:
    """0x16/0x26 (GPS, LBS length, 2G cell, status), 0x27 (+ fence number), 0xA4 (4G cell, + fence).

    The LBS length byte is inconsistent across firmware (with or without itself), so the status block
    is read from the end of the content and the cell fields from what lies between.
    """
    proto = base["msg_id"]
    gps = _gps_block(body, tz)
    has_fence = proto in (MSG_GPS_LBS_STATUS_3, MSG_ALARM_4G)
    tail_size = _STATUS.size + (1 if has_fence else 0)
    if len(body) < _GPS.size + 1 + tail_size:
        raise _Layout("short alarm packet")
    extras = gps["extras"]
    status_at = len(body) - tail_size
    _lbs(body[_GPS.size + 1 : status_at], extras, wide=proto == MSG_ALARM_4G)
    info, voltage, gsm, alarm, language = _STATUS.unpack_from(body, status_at)
    if has_fence:
        extras["fence_id"] = body[-1]
    info_flags, alarms = _info_flags(info)
    gps["flags"] |= info_flags
    if alarm in ALARM_NAMES:
        alarms.add(ALARM_NAMES[alarm])
    extras.update(terminal_info=info, voltage_level=voltage, gsm_signal=gsm, language=language)
    extras.update(_battery(voltage))
    return _position(base, gps, alarm=alarm, alarms=alarms)


def _decode_status(base: dict[str, Any], body: bytes, tz: int) -> Message:
    """0x13 heartbeat: terminal info, voltage level 0-6, GSM signal 0-4, alarm BYTE, language BYTE."""
    if len(body) < _HEARTBEAT.size:
        raise _Layout("short heartbeat")
    info, voltage, gsm = _HEARTBEAT.unpack_from(body, 0)
    flags, alarms = _info_flags(info)
    extras: dict[str, Any] = {name: name in flags for name in INFO_FLAGS.values()}
    extras.update(terminal_info=info, voltage_level=voltage, gsm_signal=gsm)
    extras.update(_battery(voltage))
    if len(body) >= 5:
        alarm, language = body[3], body[4]
        extras.update(alarm=alarm, language=language)
        if alarm in ALARM_NAMES:
            alarms.add(ALARM_NAMES[alarm])
    extras["alarms"] = frozenset(alarms)
    return Heartbeat(**base, extras=extras)


def _text(raw: bytes, *, utf16: bool = False) -> str:
    if utf16:
        return raw[: len(raw) & ~1].decode("utf-16-be", "replace").strip("\x00")
    return raw.decode("ascii", "replace").strip("\x00").rstrip("\r\n")


def _decode_string(base: dict[str, Any], body: bytes, tz: int) -> Message:
    """0x15: command length (4 + text), server flag DWORD, ASCII text, language WORD (often)."""
    if len(body) < _REPLY_HEAD.size:
        raise _Layout("short command reply")
    size, flag = _REPLY_HEAD.unpack_from(body, 0)
    end = 1 + size
    if size < 4 or end > len(body):  # length byte 0 or wrong: text runs to the language word
        end = len(body) - 2 if len(body) >= _REPLY_HEAD.size + 2 else len(body)
    text = _text(body[_REPLY_HEAD.size : end])
    return CommandReply(**base, reply_serial=flag, reply_id=MSG_COMMAND, text=text)


def _decode_string_info(base: dict[str, Any], body: bytes, tz: int) -> Message:
    """0x21: server flag DWORD, encoding BYTE (1 ASCII, else UTF-16BE), text."""
    if len(body) < _INFO_HEAD.size:
        raise _Layout("short command reply")
    flag, encoding = _INFO_HEAD.unpack_from(body, 0)
    text = _text(body[_INFO_HEAD.size :], utf16=encoding != 1)
    return CommandReply(**base, reply_serial=flag, reply_id=MSG_COMMAND, text=text)


def _decode_time_request(base: dict[str, Any], body: bytes, tz: int) -> Message:
    return Heartbeat(**base, extras={"request": "time"})


_Handler = Callable[[dict[str, Any], bytes, int], Message]
_HANDLERS: dict[int, _Handler] = {
    MSG_GPS: _decode_location,
    MSG_GPS_LBS_6: _decode_location,
    MSG_GPS_LBS_1: _decode_location,
    MSG_GPS_LBS_2: _decode_location,
    MSG_GPS_4G: _decode_location,
    MSG_GPS_LBS_STATUS_1: _decode_alarm,
    MSG_GPS_LBS_STATUS_2: _decode_alarm,
    MSG_GPS_LBS_STATUS_3: _decode_alarm,
    MSG_ALARM_4G: _decode_alarm,
    MSG_STATUS: _decode_status,
    MSG_STRING: _decode_string,
    MSG_STRING_INFO: _decode_string_info,
    MSG_TIME_REQUEST: _decode_time_request,
}


def _login_zone(word: int) -> int | None:
    """Time-zone/language WORD -> minutes east of UTC (bits 15-4 zone as hhmm, bit 3 west)."""
    hhmm = word >> 4
    hours, minutes = divmod(hhmm, 100)
    if hours > 14 or minutes >= 60:
        return None
    total = hours * 60 + minutes
    return -total if word & 0x08 else total


def _decode_login(base: dict[str, Any], body: bytes) -> Login | FrameError:
    if len(body) < 8:
        return FrameError(protocol=PROTOCOL, reason="login too short", msg_id=MSG_LOGIN, serial=base["serial"])
    terminal_id = body[:8].hex()
    imei = terminal_id[1:] if terminal_id[0] == "0" else terminal_id
    extras: dict[str, Any] = {"terminal_id": terminal_id}
    if len(body) >= 10:
        extras["type_code"] = _U16.unpack_from(body, 8)[0]
    if len(body) >= 12:
        word = _U16.unpack_from(body, 10)[0]
        zone = _login_zone(word)
        extras["language"] = word & 0x03
        if zone is not None:
            extras["tz_offset_minutes"] = zone
    return Login(**{**base, "device": imei}, extras=extras)


# ---------------------------------------------------------------------------------------------------
# Stream decoder


class Gt06Decoder:
    """Bytes in, messages out; remembers the login (device id, time zone) of its connection."""

    protocol = PROTOCOL

    def __init__(self, *, max_buffer: int = 65536, tz_offset_minutes: int = 0) -> None:
        if max_buffer < 16:
            raise ProtocolError("max_buffer too small for a GT06 frame")
        self._max = max_buffer
        self._buf = bytearray()
        self._scan = 0  # bytes of the buffer already searched for a marker / stop while waiting
        self._inner = 0  # next offset to check for a valid frame inside an incomplete head frame
        self._default_tz = tz_offset_minutes
        self._tz = tz_offset_minutes
        self.device = ""

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Decoded]:
        out: list[Decoded] = []
        # Slices keep the buffer near max_buffer even when megabytes arrive at once.
        for at in range(0, len(data), self._max):
            self._buf += data[at : at + self._max]
            while self._step(out):
                pass
            self._bound(out)
        return out

    def flush(self) -> list[Decoded]:
        """End of input (connection closed): report the frame that cannot complete, decode what follows.

        A false start in garbage may declare a length that swallows real frames; they are recovered here.
        """
        out: list[Decoded] = []
        while self._buf:
            while self._step(out):
                pass
            if not self._buf:
                break
            at_marker = bytes(self._buf[:2]) in (_SHORT, _LONG) or (
                len(self._buf) == 1 and self._buf[0] in (0x78, 0x79)
            )
            end = self._find(1, stop_too=at_marker)
            raw = self._consume(end if end > 0 else len(self._buf))
            out.append(
                self._error("truncated frame at end of input" if at_marker else "garbage before frame start", raw)
            )
        return out

    def _error(self, reason: str, raw: bytes, msg_id: int = 0, serial: int = 0) -> FrameError:
        return FrameError(protocol=PROTOCOL, reason=reason, raw=raw, device=self.device, msg_id=msg_id, serial=serial)

    def _consume(self, n: int) -> bytes:
        raw = bytes(self._buf[:n])
        del self._buf[:n]
        self._scan = self._inner = 0
        return raw

    def _find(self, start: int, *, stop_too: bool) -> int:
        """End of the bytes to drop: the next start marker, or (stop_too) just past the next 0d 0a."""
        buf = self._buf
        frm = max(start, self._scan)
        hits = [i for i in (buf.find(_SHORT, frm), buf.find(_LONG, frm)) if i >= 0]
        if stop_too:
            i = buf.find(_STOP, max(2, frm))
            if i >= 0:
                hits.append(i + 2)
        if not hits:
            self._scan = max(start, len(buf) - 1)  # a marker may straddle the end
            return -1
        return min(hits)

    def _step(self, out: list[Decoded]) -> bool:
        buf = self._buf
        if len(buf) < 2:
            return False
        head = bytes(buf[:2])
        if head != _SHORT and head != _LONG:
            end = self._find(1, stop_too=False)
            if end < 0:
                return False
            out.append(self._error("garbage before frame start", self._consume(end)))
            return True
        long = head == _LONG
        hlen = 4 if long else 3
        if len(buf) < hlen:
            return False
        length = (buf[2] << 8 | buf[3]) if long else buf[2]
        total = hlen + length + 2
        reason = f"bad length field {length}"
        if length < MIN_LENGTH or total > self._max:
            return self._recover(out, reason)
        if len(buf) < total:
            # A false start (stray 0x78 before a frame) must not hold back the frames inside its span.
            return self._recover(out, reason) if self._inner_valid(total) else False
        if buf[total - 2 : total] != _STOP:
            return self._recover(out, reason)
        crc_ok = self._crc_ok(0, total)
        if not crc_ok and self._inner_valid(total):
            # The stop bytes only happened to fit: a false start whose span ends where a real frame ends.
            return self._recover(out, reason)
        out.append(self._frame(self._consume(total), hlen, crc_ok))
        return True

    def _crc_ok(self, at: int, end: int) -> bool:
        buf = self._buf
        return crc_itu(buf[at + 2 : end - 4]) == (buf[end - 4] << 8 | buf[end - 3])

    def _inner_valid(self, span_end: int) -> bool:
        """Whether a complete, valid frame lies inside the head frame's span (buf[1:span_end]).

        Depends on content only, so early (head incomplete) and late (head complete) answers agree and the
        result does not depend on how the stream is split. Incremental: `_inner` skips refuted markers.
        """
        buf = self._buf
        limit = min(span_end, len(buf))
        at = max(self._inner, 1)
        while True:
            hits = [i for i in (buf.find(_SHORT, at, limit), buf.find(_LONG, at, limit)) if i >= 0]
            if not hits:
                self._inner = max(1, limit - 1)
                return False
            p = min(hits)
            hlen = 4 if buf[p] == 0x79 else 3
            if len(buf) < p + hlen:
                self._inner = p
                return False
            length = (buf[p + 2] << 8 | buf[p + 3]) if hlen == 4 else buf[p + 2]
            end = p + hlen + length + 2
            if length >= MIN_LENGTH and end <= span_end:
                if end > len(buf):
                    self._inner = p  # pending: look again when more bytes arrive
                    return False
                if buf[end - 2 : end] == _STOP and self._crc_ok(p, end):
                    return True
            at = p + 1

    def _recover(self, out: list[Decoded], reason: str) -> bool:
        end = self._find(1, stop_too=True)
        if end < 0:
            return False
        out.append(self._error(reason, self._consume(end)))
        return True

    def _bound(self, out: list[Decoded]) -> None:
        if len(self._buf) > self._max:
            # Only waiting states get here (a frame longer than max_buffer is refused up front).
            out.append(self._error("buffer overflow: no frame found", self._consume(len(self._buf) - 1)))

    def _frame(self, frame: bytes, hlen: int, crc_ok: bool) -> Decoded:
        proto = frame[hlen]
        serial = _U16.unpack_from(frame, len(frame) - 6)[0]
        if not crc_ok:
            given = _U16.unpack_from(frame, len(frame) - 4)[0]
            return self._error(f"bad crc: {given:04x} != {crc_itu(frame[2:-4]):04x}", frame, proto, serial)
        body = frame[hlen + 1 : -6]
        version = START_LONG if hlen == 4 else START_SHORT
        base: dict[str, Any] = {
            "protocol": PROTOCOL,
            "device": self.device,
            "msg_id": proto,
            "serial": serial,
            "version": version,
        }
        if proto == MSG_LOGIN and version == START_SHORT:
            return self._login(base, body, frame)
        if not self.device:
            return self._error("no login: packet cannot be attributed", frame, proto, serial)
        handler = _HANDLERS.get(proto)
        if handler is None:
            return Unsupported(**base, body=body)
        try:
            return handler(base, body, self._tz)
        except _Layout:
            return Unsupported(**base, body=body)

    def _login(self, base: dict[str, Any], body: bytes, frame: bytes) -> Decoded:
        msg = _decode_login(base, body)
        if isinstance(msg, FrameError):
            msg.raw = frame
            return msg
        self.device = msg.device
        self._tz = msg.extras.get("tz_offset_minutes", self._default_tz)
        return msg


# ---------------------------------------------------------------------------------------------------
# Encoders


def encode_frame(protocol_number: int, content: bytes = b"", *, serial: int, long: bool = False) -> bytes:
    """A complete frame; `long` selects 79 79 with a 2-byte length."""
    if not 0 <= serial <= 0xFFFF or not 0 <= protocol_number <= 0xFF:
        raise ProtocolError("serial or protocol number out of range")
    length = len(content) + MIN_LENGTH
    if long:
        if length > 0xFFFF:
            raise ProtocolError("content too long for a 79 79 frame")
        head = _LONG + _U16.pack(length)
    else:
        if length > 0xFF:
            raise ProtocolError("content too long for a 78 78 frame")
        head = _SHORT + _U8.pack(length)
    checked = head[2:] + bytes((protocol_number,)) + content + _U16.pack(serial)
    return head[:2] + checked + _U16.pack(crc_itu(checked)) + _STOP


def encode_ack(protocol_number: int, *, serial: int) -> bytes:
    """The empty reply: same protocol number, echoed serial (login, heartbeat, alarms, others)."""
    return encode_frame(protocol_number, serial=serial)


def encode_time_reply(now: datetime, *, serial: int) -> bytes:
    """0x8A answer: the current UTC date-time as YY MM DD hh mm ss."""
    t = now.astimezone(UTC)
    return encode_frame(MSG_TIME_REQUEST, _time6(t), serial=serial)


def ack_for(message: Decoded, *, now: datetime | None = None) -> bytes | None:
    """The reply a terminal waits for, or None. `now` (UTC) answers time requests; defaults to the clock."""
    if isinstance(message, FrameError) or message.version != START_SHORT:
        return None
    proto = message.msg_id
    if proto == MSG_TIME_REQUEST:
        return encode_time_reply(now or datetime.now(UTC), serial=message.serial)
    if isinstance(message, CommandReply) or proto == MSG_ADDRESS_REQUEST:
        return None  # a reply to us needs none; an address needs a geocoder this codec does not have
    return encode_ack(proto, serial=message.serial)


def encode_command(text: str, *, serial: int, server_flag: int = 0, language: int | None = None) -> bytes:
    """0x80 online command: length (4 + text), server flag DWORD, ASCII text, optional language WORD."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as e:
        raise ProtocolError("GT06 commands are ASCII") from e
    if len(raw) > 0xFF - 4:
        raise ProtocolError("command text too long")
    if not 0 <= server_flag <= 0xFFFFFFFF:
        raise ProtocolError("server flag out of range")
    content = _REPLY_HEAD.pack(4 + len(raw), server_flag) + raw
    if language is not None:
        content += _U16.pack(language)
    return encode_frame(MSG_COMMAND, content, serial=serial, long=len(content) + MIN_LENGTH > 0xFF)


def encode_login(
    imei: str, *, serial: int, type_code: int | None = None, tz_offset_minutes: int | None = None, language: int = 2
) -> bytes:
    """0x01 login as a terminal sends it (simulators, tests). The zone word needs the type code."""
    digits = imei.rjust(16, "0")
    if len(digits) != 16 or not digits.isdigit():
        raise ProtocolError("terminal id must be up to 16 digits")
    content = bytes.fromhex(digits)
    if type_code is not None:
        content += _U16.pack(type_code)
        if tz_offset_minutes is not None:
            hours, minutes = divmod(abs(tz_offset_minutes), 60)
            word = (hours * 100 + minutes) << 4 | (0x08 if tz_offset_minutes < 0 else 0) | (language & 0x03)
            content += _U16.pack(word)
    return encode_frame(MSG_LOGIN, content, serial=serial)


def encode_heartbeat(
    *,
    serial: int,
    terminal_info: int = 0,
    voltage_level: int = 4,
    gsm_signal: int = 4,
    alarm: int = 0,
    language: int = 2,
) -> bytes:
    """0x13 heartbeat as a terminal sends it."""
    content = _STATUS.pack(terminal_info, voltage_level, gsm_signal, alarm, language)
    return encode_frame(MSG_STATUS, content, serial=serial)


def _time6(t: datetime) -> bytes:
    if not 2000 <= t.year <= 2255:
        raise ProtocolError("year out of range for GT06")
    return bytes((t.year - 2000, t.month, t.day, t.hour, t.minute, t.second))


def encode_position(
    *,
    time: datetime,
    lat: float,
    lon: float,
    serial: int,
    speed_kmh: float = 0.0,
    course: float = 0.0,
    valid: bool = True,
    satellites: int = 0,
    mcc: int = 0,
    mnc: int = 0,
    lac: int = 0,
    cell_id: int = 0,
    acc: bool = False,
    upload_reason: int = 0,
    backfill: bool = False,
    mileage_km: float | None = None,
) -> bytes:
    """0x22 location (time in UTC) as a terminal sends it; coordinates keep 1/1,800,000 degree."""
    if time.tzinfo is None:
        raise ProtocolError("time must be timezone-aware")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ProtocolError("coordinates out of range")
    speed = round(speed_kmh)
    heading = round(course) % 360
    if not 0 <= speed <= 0xFF or not 0 <= satellites <= 0x0F:
        raise ProtocolError("speed or satellites out of range")
    cs = heading | (_CS_NORTH if lat >= 0 else 0) | (_CS_WEST if lon < 0 else 0) | (_CS_VALID if valid else 0)
    content = _GPS.pack(
        *_time6(time.astimezone(UTC)),
        0xC0 | satellites,
        round(abs(lat) * _COORD_SCALE),
        round(abs(lon) * _COORD_SCALE),
        speed,
        cs,
    )
    wide_mnc = mnc > 0xFF
    content += _U16.pack(mcc | (0x8000 if wide_mnc else 0))
    content += _U16.pack(mnc) if wide_mnc else _U8.pack(mnc)
    content += _U16.pack(lac) + cell_id.to_bytes(3, "big")
    content += bytes((1 if acc else 0, upload_reason, 1 if backfill else 0))
    if mileage_km is not None:
        content += _U32.pack(round(mileage_km * 1000))
    return encode_frame(MSG_GPS_LBS_2, content, serial=serial)
