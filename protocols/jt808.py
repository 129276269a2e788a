"""JT/T 808 (2011, 2013, 2019): framing, decoding of terminal messages, encoding of platform messages.

Sans-I/O: `Jt808Decoder.feed(bytes)` returns normalized messages; the `encode_*` functions return
frame bytes ready to send. Policy for malformed frames (the captures show terminals that compute
the check code wrongly or never escape 0x7d): rejected with a `FrameError` by default. A decoder
made with `lenient=True` (a per-device setting) also accepts a frame whose check code is wrong, or
whose 0x7d bytes are not escaped when the check code fits the raw bytes; such positions carry
`extras["lenient"]` naming what was forgiven. Frames cut by an unescaped 0x7e cannot be repaired
and are rejected in both modes.

Device ids: the BCD terminal phone with leading zeros removed ("013912345678" and the 2019 form
"00000000013912345678" are both "13912345678"), so a terminal keeps its id across protocol
revisions. A phone field that is not BCD is kept as the hex of its bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from protocols.messages import (
    Authentication,
    CommandReply,
    Decoded,
    FrameError,
    Heartbeat,
    Logout,
    Message,
    Position,
    ProtocolError,
    Registration,
    Unsupported,
)

PROTOCOL = "jt808"
FLAG = 0x7E
ESC = 0x7D
MAX_BODY = 1023

# Terminal -> platform
MSG_TERMINAL_RESPONSE = 0x0001
MSG_HEARTBEAT = 0x0002
MSG_LOGOUT = 0x0003
MSG_REGISTRATION = 0x0100
MSG_AUTHENTICATION = 0x0102
MSG_LOCATION = 0x0200
MSG_LOCATION_QUERY_REPLY = 0x0201
MSG_BATCH_LOCATION = 0x0704
# Platform -> terminal
MSG_GENERAL_RESPONSE = 0x8001
MSG_REGISTRATION_RESPONSE = 0x8100

RESULT_OK = 0
RESULT_FAILURE = 1
RESULT_MESSAGE_ERROR = 2
RESULT_NOT_SUPPORTED = 3
RESULT_ALARM_CONFIRMED = 4

BEIJING = timedelta(hours=8)

# Alarm word bits (JT/T 808-2019 table 24).
ALARM_BITS: dict[int, str] = {
    0: "sos",
    1: "overspeed",
    2: "fatigue",
    3: "danger_warning",
    4: "gnss_fault",
    5: "gnss_antenna_open",
    6: "gnss_antenna_short",
    7: "power_low",
    8: "power_off",
    9: "display_fault",
    10: "tts_fault",
    11: "camera_fault",
    12: "ic_card_fault",
    13: "overspeed_warning",
    14: "fatigue_warning",
    18: "driving_time_exceeded",
    19: "parking_overtime",
    20: "area_in_out",
    21: "route_in_out",
    22: "route_time_abnormal",
    23: "route_deviation",
    24: "vss_fault",
    25: "fuel_abnormal",
    26: "stolen",
    27: "illegal_ignition",
    28: "illegal_displacement",
    29: "collision_warning",
    30: "rollover_warning",
    31: "illegal_door_open",
}

# Status word bits (table 25); bits 8-9 (load state) are decoded separately.
STATUS_BITS: dict[int, str] = {
    0: "acc",
    1: "positioned",
    2: "south",
    3: "west",
    4: "out_of_service",
    5: "coordinates_encrypted",
    10: "fuel_cut",
    11: "circuit_cut",
    12: "doors_locked",
    13: "door1_open",
    14: "door2_open",
    15: "door3_open",
    16: "door4_open",
    17: "door5_open",
    18: "gps",
    19: "beidou",
    20: "glonass",
    21: "galileo",
}
LOAD_STATES = {0b00: "load_empty", 0b01: "load_half", 0b10: "load_reserved", 0b11: "load_full"}


def _named_bits(word: int, names: dict[int, str]) -> frozenset[str]:
    return frozenset(name for bit, name in names.items() if word >> bit & 1)


def status_flags(status: int) -> frozenset[str]:
    return _named_bits(status, STATUS_BITS) | {LOAD_STATES[status >> 8 & 0b11]}


def alarm_flags(alarm: int) -> frozenset[str]:
    return _named_bits(alarm, ALARM_BITS)


# ---------------------------------------------------------------------------------------------
# Escaping and check code


def escape(raw: bytes) -> bytes:
    return raw.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(escaped: bytes) -> bytes | None:
    """Undo the escaping; None when a 0x7d is not followed by 0x01 or 0x02."""
    if b"\x7d" not in escaped:
        return escaped
    raw = escaped.replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")
    # Every 0x7d of the input must have been part of an escape pair.
    if escaped.count(b"\x7d") != escaped.count(b"\x7d\x01") + escaped.count(b"\x7d\x02"):
        return None
    return raw


def check_code(data: bytes) -> int:
    value = 0
    for b in data:
        value ^= b
    return value


# ---------------------------------------------------------------------------------------------
# Field helpers


def bcd_digits(data: bytes) -> str | None:
    """Packed BCD to digits; None when a nibble is not decimal."""
    digits = data.hex()
    return digits if digits.isdigit() else None


def device_id(phone: bytes) -> str:
    digits = bcd_digits(phone)
    if digits is None:
        return phone.hex()
    return digits.lstrip("0") or "0"


def phone_field(device: str, version: int) -> bytes:
    """The header phone bytes for a device id made by `device_id`."""
    size = 10 if version == 2019 else 6
    if device.isdigit():
        if len(device) > size * 2:
            raise ProtocolError(f"terminal phone {device!r} longer than {size * 2} digits")
        return bytes.fromhex(device.rjust(size * 2, "0"))
    try:
        raw = bytes.fromhex(device)
    except ValueError as e:
        raise ProtocolError(f"terminal phone {device!r} is neither digits nor hex") from e
    if len(raw) != size:
        raise ProtocolError(f"terminal phone {device!r} is not {size} bytes")
    return raw


def gbk(data: bytes) -> str:
    return data.split(b"\x00", 1)[0].decode("gbk", errors="replace").strip()


def bcd_time(data: bytes) -> datetime | None:
    """BCD YYMMDDhhmmss in Beijing time to UTC; None when not a valid time."""
    digits = bcd_digits(data)
    if digits is None:
        return None
    try:
        local = datetime(
            2000 + int(digits[0:2]),
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return local - BEIJING


def time_bcd(t: datetime) -> bytes:
    local = t.astimezone(UTC) + BEIJING
    return bytes.fromhex(local.strftime("%y%m%d%H%M%S"))


# ---------------------------------------------------------------------------------------------
# Header


_HEAD = struct.Struct(">HH")
_HEAD_2013 = struct.Struct(">HH6sH")
_HEAD_2019 = struct.Struct(">HHB10sH")
_PACKAGE = struct.Struct(">HH")


class _Header:
    __slots__ = ("attrs", "body_len", "device", "length", "msg_id", "packages", "serial", "version")

    def __init__(self, frame: bytes) -> None:
        msg_id, attrs = _HEAD.unpack_from(frame)
        self.msg_id = msg_id
        self.attrs = attrs
        self.body_len = attrs & 0x03FF
        if attrs & 0x4000:
            _, _, _proto_version, phone, self.serial = _HEAD_2019.unpack_from(frame)
            self.version = 2019
            self.length = _HEAD_2019.size
        else:
            _, _, phone, self.serial = _HEAD_2013.unpack_from(frame)
            self.version = 2013
            self.length = _HEAD_2013.size
        self.device = device_id(phone)
        self.packages: tuple[int, int] | None = None
        if attrs & 0x2000:
            self.packages = _PACKAGE.unpack_from(frame, self.length)
            self.length += _PACKAGE.size


# ---------------------------------------------------------------------------------------------
# Body decoders


_BASIC = struct.Struct(">IIIIhHH6s")
BASIC_SIZE = _BASIC.size  # 28


def _item_mileage(v: bytes, p: dict[str, Any]) -> None:
    if len(v) == 4:
        p["mileage_km"] = int.from_bytes(v) / 10


def _item_satellites(v: bytes, p: dict[str, Any]) -> None:
    if len(v) == 1:
        p["satellites"] = v[0]


def _word_item(key: str, scale: float | None = None) -> Callable[[bytes, dict[str, Any]], None]:
    def item(v: bytes, p: dict[str, Any]) -> None:
        value = int.from_bytes(v)
        p["extras"][key] = value / scale if scale else value

    return item


def _item_overspeed(v: bytes, p: dict[str, Any]) -> None:
    if v:
        p["extras"]["overspeed_area"] = {
            "type": v[0],
            "id": int.from_bytes(v[1:5]) if len(v) >= 5 else None,
        }


def _item_area_event(v: bytes, p: dict[str, Any]) -> None:
    if len(v) == 6:
        p["extras"]["area_event"] = {
            "type": v[0],
            "id": int.from_bytes(v[1:5]),
            "direction": "out" if v[5] else "in",
        }


def _item_route_time(v: bytes, p: dict[str, Any]) -> None:
    if len(v) == 7:
        p["extras"]["route_time"] = {
            "segment": int.from_bytes(v[0:4]),
            "seconds": int.from_bytes(v[4:6]),
            "result": "too_long" if v[6] else "too_short",
        }


def _item_analog(v: bytes, p: dict[str, Any]) -> None:
    if len(v) == 4:
        word = int.from_bytes(v)
        p["extras"]["ad0"] = word & 0xFFFF
        p["extras"]["ad1"] = word >> 16


_ITEMS: dict[int, Callable[[bytes, dict[str, Any]], None]] = {
    0x01: _item_mileage,
    0x02: _word_item("fuel_l", 10),
    0x03: _word_item("tacho_speed_kmh", 10),
    0x04: _word_item("alarm_event_id"),
    0x11: _item_overspeed,
    0x12: _item_area_event,
    0x13: _item_route_time,
    0x25: _word_item("vehicle_signals"),
    0x2A: _word_item("io_status"),
    0x2B: _item_analog,
    0x30: _word_item("rssi"),
    0x31: _item_satellites,
}


def _decode_location(header: _Header, body: bytes, *, backfill: bool = False) -> Position | FrameError:
    if len(body) < BASIC_SIZE:
        return _error(header, f"location body {len(body)} bytes, shorter than 28", body)
    alarm, status, lat_u, lon_u, altitude, speed, course, bcd = _BASIC.unpack_from(body)
    time = bcd_time(bcd)
    if time is None:
        return _error(header, f"location time {bcd.hex()} is not a valid BCD time", body)
    lat = lat_u / 1e6
    lon = lon_u / 1e6
    if status & 0b100:
        lat = -lat
    if status & 0b1000:
        lon = -lon
    fields: dict[str, Any] = {"extras": {}}
    pos = BASIC_SIZE
    end = len(body)
    while pos + 2 <= end:
        item_id = body[pos]
        size = body[pos + 1]
        value = body[pos + 2 : pos + 2 + size]
        if len(value) < size:
            fields["extras"]["items_truncated"] = True
            break
        pos += 2 + size
        handler = _ITEMS.get(item_id)
        if handler is not None:
            handler(value, fields)
        else:
            fields["extras"][f"x{item_id:02x}"] = value.hex()
    return Position(
        protocol=PROTOCOL,
        device=header.device,
        msg_id=header.msg_id,
        serial=header.serial,
        version=header.version,
        time=time,
        lat=lat,
        lon=lon,
        valid=bool(status & 0b10),
        speed_kmh=speed / 10,
        course=float(course),
        altitude_m=float(altitude),
        satellites=fields.get("satellites"),
        alarm=alarm,
        status=status,
        alarms=alarm_flags(alarm),
        flags=status_flags(status),
        mileage_km=fields.get("mileage_km"),
        backfill=backfill,
        extras=fields["extras"],
    )


def _error(header: _Header, reason: str, raw: bytes = b"") -> FrameError:
    return FrameError(
        protocol=PROTOCOL,
        reason=f"0x{header.msg_id:04x}: {reason}",
        raw=raw,
        device=header.device,
        msg_id=header.msg_id,
        serial=header.serial,
    )


def _base(header: _Header) -> dict[str, Any]:
    return {
        "protocol": PROTOCOL,
        "device": header.device,
        "msg_id": header.msg_id,
        "serial": header.serial,
        "version": header.version,
    }


# Body sizes of manufacturer id, model and terminal id per revision.
_REGISTRATION_LAYOUT = {2011: (5, 8, 7), 2013: (5, 20, 7), 2019: (11, 30, 30)}


def _decode_registration(header: _Header, body: bytes) -> Registration | FrameError:
    # 2011 and 2013 share the header; only the body length tells them apart.
    version = 2019 if header.version == 2019 else 2013 if len(body) >= 37 else 2011
    maker_n, model_n, tid_n = _REGISTRATION_LAYOUT[version]
    fixed = 4 + maker_n + model_n + tid_n + 1
    if len(body) < fixed:
        return _error(header, f"registration body {len(body)} bytes, needs {fixed}", body)
    province, city = struct.unpack_from(">HH", body)
    pos = 4
    maker = gbk(body[pos : pos + maker_n])
    pos += maker_n
    model = gbk(body[pos : pos + model_n])
    pos += model_n
    terminal_id = gbk(body[pos : pos + tid_n])
    pos += tid_n
    return Registration(
        **_base(header) | {"version": version},
        province=province,
        city=city,
        manufacturer=maker,
        model=model,
        terminal_id=terminal_id,
        plate_color=body[pos],
        plate=gbk(body[pos + 1 :]),
    )


def _decode_authentication(header: _Header, body: bytes) -> Authentication | FrameError:
    if header.version == 2019 and body:
        n = body[0]
        if len(body) < 1 + n:
            return _error(header, "authentication code shorter than its length byte", body)
        rest = body[1 + n :]
        return Authentication(
            **_base(header),
            code=gbk(body[1 : 1 + n]),
            imei=gbk(rest[:15]),
            software_version=gbk(rest[15:35]),
        )
    return Authentication(**_base(header), code=gbk(body))


def _decode_terminal_response(header: _Header, body: bytes) -> CommandReply | FrameError:
    if len(body) < 5:
        return _error(header, f"general response body {len(body)} bytes, needs 5", body)
    reply_serial, reply_id, result = struct.unpack_from(">HHB", body)
    return CommandReply(**_base(header), reply_serial=reply_serial, reply_id=reply_id, result=result)


def _decode_batch(header: _Header, body: bytes) -> list[Decoded]:
    if len(body) < 3:
        return [_error(header, "batch upload shorter than its 3-byte head", body)]
    count, kind = struct.unpack_from(">HB", body)
    out: list[Decoded] = []
    pos = 3
    for _ in range(count):
        if pos + 2 > len(body):
            out.append(_error(header, "batch upload ends before its declared item count", body))
            break
        size = int.from_bytes(body[pos : pos + 2])
        item = body[pos + 2 : pos + 2 + size]
        pos += 2 + size
        if len(item) < size:
            out.append(_error(header, "batch item longer than the remaining body", body))
            break
        out.append(_decode_location(header, item, backfill=kind == 1))
    return out


def decode_frame(raw: bytes) -> list[Decoded]:
    """Decode one unescaped frame (header + body, check code already removed)."""
    if len(raw) < _HEAD_2013.size:
        return [FrameError(protocol=PROTOCOL, reason=f"frame of {len(raw)} bytes is shorter than a header")]
    header = _Header(raw)
    if len(raw) < header.length:
        return [_error(header, "frame shorter than its header")]
    body = raw[header.length :]
    if len(body) != header.body_len:
        return [_error(header, f"body is {len(body)} bytes, header says {header.body_len}", raw)]
    if header.attrs & 0x1C00:
        return [_error(header, "encrypted body (RSA) is not supported", raw)]
    if header.packages is not None:
        # Reassembly of subpackaged messages belongs to a later revision; say so explicitly.
        return [Unsupported(**_base(header), body=body)]
    msg_id = header.msg_id
    if msg_id == MSG_LOCATION:
        return [_decode_location(header, body)]
    if msg_id == MSG_BATCH_LOCATION:
        return _decode_batch(header, body)
    if msg_id == MSG_HEARTBEAT:
        return [Heartbeat(**_base(header))]
    if msg_id == MSG_LOCATION_QUERY_REPLY:
        return [_decode_location(header, body[2:])]
    if msg_id == MSG_REGISTRATION:
        return [_decode_registration(header, body)]
    if msg_id == MSG_AUTHENTICATION:
        return [_decode_authentication(header, body)]
    if msg_id == MSG_TERMINAL_RESPONSE:
        return [_decode_terminal_response(header, body)]
    if msg_id == MSG_LOGOUT:
        return [Logout(**_base(header))]
    return [Unsupported(**_base(header), body=body)]


# ---------------------------------------------------------------------------------------------
# Stream decoder


class Jt808Decoder:
    """Per-connection decoder: feed bytes in any chunks, get messages and frame errors back."""

    protocol = PROTOCOL

    def __init__(self, *, max_buffer: int = 65536, lenient: bool = False) -> None:
        self._buf = bytearray()
        self._max_buffer = max_buffer
        self.lenient = lenient

    def feed(self, data: bytes) -> list[Decoded]:
        buf = self._buf
        buf += data
        out: list[Decoded] = []
        pos = 0
        while True:
            start = buf.find(FLAG, pos)
            if start < 0:
                if len(buf) > pos:
                    out.append(_garbage(bytes(buf[pos:])))
                pos = len(buf)
                break
            if start > pos:
                out.append(_garbage(bytes(buf[pos:start])))
            end = buf.find(FLAG, start + 1)
            if end < 0:
                pos = start
                break
            if end == start + 1:
                # Two flags in a row: the first ended a frame we never saw; start again at the second.
                pos = end
                continue
            out.extend(self._frame(bytes(buf[start + 1 : end])))
            pos = end + 1
        del buf[:pos]
        if len(buf) > self._max_buffer:
            out.append(
                FrameError(
                    protocol=PROTOCOL,
                    reason=f"no frame end within {self._max_buffer} bytes",
                    raw=bytes(buf[:64]),
                )
            )
            buf.clear()
        return out

    def _frame(self, escaped: bytes) -> list[Decoded]:
        forgiven: list[str] = []
        raw = unescape(escaped)
        if raw is None:
            if not (self.lenient and check_code(escaped[:-1]) == escaped[-1]):
                return [FrameError(protocol=PROTOCOL, reason="invalid escape sequence", raw=escaped)]
            raw, forgiven = escaped, ["unescaped_0x7d"]
        if len(raw) < 2:
            return [FrameError(protocol=PROTOCOL, reason="empty frame", raw=escaped)]
        content, code = raw[:-1], raw[-1]
        if check_code(content) != code:
            if not self.lenient:
                return [
                    FrameError(
                        protocol=PROTOCOL,
                        reason=f"check code 0x{code:02x} does not match 0x{check_code(content):02x}",
                        raw=escaped,
                    )
                ]
            forgiven.append("check_code")
        decoded = decode_frame(content)
        if forgiven:
            for m in decoded:
                if isinstance(m, Position):
                    m.extras["lenient"] = forgiven
        return decoded


def _garbage(data: bytes) -> FrameError:
    return FrameError(protocol=PROTOCOL, reason=f"{len(data)} bytes outside any frame", raw=data[:64])


# ---------------------------------------------------------------------------------------------
# Encoders


def encode_frame(
    msg_id: int, device: str, serial: int, body: bytes = b"", *, version: int = 2013, protocol_version: int = 1
) -> bytes:
    """A complete escaped frame with flags, for either side."""
    if len(body) > MAX_BODY:
        raise ProtocolError(f"body of {len(body)} bytes needs subpackaging (max {MAX_BODY})")
    phone = phone_field(device, version)
    attrs = len(body)
    if version == 2019:
        attrs |= 0x4000
        head = _HEAD_2019.pack(msg_id, attrs, protocol_version, phone, serial & 0xFFFF)
    else:
        head = _HEAD_2013.pack(msg_id, attrs, phone, serial & 0xFFFF)
    content = head + body
    return b"\x7e" + escape(content + bytes([check_code(content)])) + b"\x7e"


def encode_general_response(msg: Message | FrameError, result: int, *, serial: int) -> bytes:
    """0x8001 answering a terminal message (by its id and serial)."""
    body = struct.pack(">HHB", msg.serial, msg.msg_id, result)
    version = msg.version if isinstance(msg, Message) else 2013
    return encode_frame(MSG_GENERAL_RESPONSE, msg.device, serial, body, version=version)


def encode_registration_response(msg: Registration, result: int, auth_code: str, *, serial: int) -> bytes:
    """0x8100: result 0 carries the authentication code the terminal must present from now on."""
    body = struct.pack(">HB", msg.serial, result)
    if result == RESULT_OK:
        body += auth_code.encode("gbk")
    return encode_frame(MSG_REGISTRATION_RESPONSE, msg.device, serial, body, version=msg.version)


# Terminal-side encoders: the fleet simulator and the tests speak as terminals.


def encode_location_body(
    *,
    time: datetime,
    lat: float,
    lon: float,
    speed_kmh: float = 0.0,
    course: float = 0.0,
    altitude_m: float = 0.0,
    valid: bool = True,
    alarm: int = 0,
    status: int = 0,
    mileage_km: float | None = None,
    satellites: int | None = None,
) -> bytes:
    status = status & ~0b1110 | (0b10 if valid else 0) | (0b100 if lat < 0 else 0) | (0b1000 if lon < 0 else 0)
    body = _BASIC.pack(
        alarm,
        status,
        round(abs(lat) * 1e6),
        round(abs(lon) * 1e6),
        round(altitude_m),
        round(speed_kmh * 10),
        round(course) % 360,
        time_bcd(time),
    )
    if mileage_km is not None:
        body += b"\x01\x04" + round(mileage_km * 10).to_bytes(4)
    if satellites is not None:
        body += b"\x31\x01" + bytes([satellites])
    return body


def encode_registration_body(
    *,
    province: int = 0,
    city: int = 0,
    manufacturer: str = "",
    model: str = "",
    terminal_id: str = "",
    plate_color: int = 0,
    plate: str = "",
    version: int = 2013,
) -> bytes:
    maker_n, model_n, tid_n = _REGISTRATION_LAYOUT[version]

    def fixed(text: str, n: int) -> bytes:
        return text.encode("gbk")[:n].ljust(n, b"\x00")

    return (
        struct.pack(">HH", province, city)
        + fixed(manufacturer, maker_n)
        + fixed(model, model_n)
        + fixed(terminal_id, tid_n)
        + bytes([plate_color])
        + plate.encode("gbk")
    )


def encode_authentication_body(code: str, *, version: int = 2013, imei: str = "", software: str = "") -> bytes:
    if version == 2019:
        raw = code.encode("gbk")
        return (
            bytes([len(raw)]) + raw + imei.encode()[:15].ljust(15, b"\x00") + software.encode()[:20].ljust(20, b"\x00")
        )
    return code.encode("gbk")


def parse_general_response(frame: bytes) -> tuple[int, int, int]:
    """(reply serial, reply id, result) of a 0x8001 frame; used by simulators and tests."""
    (decoded,) = _platform_frame(frame, MSG_GENERAL_RESPONSE)
    return struct.unpack_from(">HHB", decoded)


def parse_registration_response(frame: bytes) -> tuple[int, int, str]:
    """(reply serial, result, auth code) of a 0x8100 frame."""
    (body,) = _platform_frame(frame, MSG_REGISTRATION_RESPONSE)
    reply_serial, result = struct.unpack_from(">HB", body)
    return reply_serial, result, gbk(body[3:])


def _platform_frame(frame: bytes, msg_id: int) -> tuple[bytes]:
    if len(frame) < 2 or frame[0] != FLAG or frame[-1] != FLAG:
        raise ProtocolError("not a flagged frame")
    raw = unescape(frame[1:-1])
    if raw is None or check_code(raw[:-1]) != raw[-1]:
        raise ProtocolError("bad escape or check code")
    header = _Header(raw[:-1])
    if header.msg_id != msg_id:
        raise ProtocolError(f"expected 0x{msg_id:04x}, got 0x{header.msg_id:04x}")
    return (raw[header.length : -1],)
