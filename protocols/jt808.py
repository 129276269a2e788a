"""JT/T 808 (2011, 2013, 2019): framing, decoding of terminal messages, encoding of platform messages.

Sans-I/O: `Jt808Decoder.feed(bytes)` returns normalized messages; the `encode_*` functions return
frame bytes ready to send. Policy for malformed frames (the captures show terminals that compute
the check code wrongly or never escape 0x7d): rejected with a `FrameError` by default. A decoder
made with `lenient=True` (a per-device setting) accepts exactly three more things:
  - a frame whose check code is wrong (`extras["lenient"]` holds "check_code");
  - a frame whose 0x7d bytes are not valid escapes, when the check code fits the raw bytes;
  - a frame whose unescaped bytes fail the check code while the raw (not unescaped) bytes fit both
    the check code and the header's body length: a terminal that never escapes 0x7d and happened
    to send 0x7d 0x01 / 0x7d 0x02 (captures 39, 105-107). Both forms say "unescaped_0x7d".
Frames cut by an unescaped 0x7e cannot be repaired and are rejected in both modes.

Subpackaged messages (header bit 13) are reassembled by the decoder. Every packet that does not
complete its message yields a `PacketReceived` so the platform can answer it with 0x8001; the
packet that completes it yields the decoded message, carrying that packet's serial. So answering
every decoded item acknowledges every packet exactly once.

Other framings: vendor messages 0x5501/0x5502 with a one-byte serial (an 11-byte header) are framed
and come back as `Unsupported`; Traccar-style ASCII frames in parentheses are reported as
"text framing not supported" without losing the next 0x7e frame.

Device ids: the BCD terminal phone with leading zeros removed ("013912345678" and the 2019 form
"00000000013912345678" are both "13912345678"), so a terminal keeps its id across protocol
revisions. A phone field that is not BCD is kept as the hex of its bytes.
"""

from __future__ import annotations

import struct
import time as _clock
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
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
MSG_MEDIA_EVENT = 0x0800
MSG_MEDIA_DATA = 0x0801
MSG_PASSTHROUGH = 0x0900
# Platform -> terminal
MSG_GENERAL_RESPONSE = 0x8001
MSG_REGISTRATION_RESPONSE = 0x8100
MSG_LOCATION_QUERY = 0x8201
MSG_TEMPORARY_TRACKING = 0x8202
MSG_TEXT = 0x8300
MSG_SET_CIRCLES = 0x8600
MSG_DELETE_CIRCLES = 0x8601
MSG_SET_POLYGON = 0x8604
MSG_DELETE_POLYGONS = 0x8605
MSG_SET_ROUTE = 0x8606
MSG_DELETE_ROUTES = 0x8607
MSG_MEDIA_REPLY = 0x8800

# Vendor lock messages framed with a one-byte serial (FACTS; captures 32-34, 44, 66, 69, 70).
_SHORT_SERIAL_IDS = frozenset({0x5501, 0x5502})

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


# A terminal repeats the same few status and alarm words: name each word once.
@lru_cache(maxsize=4096)
def status_flags(status: int) -> frozenset[str]:
    return _named_bits(status, STATUS_BITS) | {LOAD_STATES[status >> 8 & 0b11]}


@lru_cache(maxsize=4096)
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
    """XOR of all bytes, eight at a time (a byte loop costs several microseconds per frame)."""
    pad = -len(data) % 8
    value = 0
    for word in struct.unpack(f">{(len(data) + pad) // 8}Q", data + bytes(pad)):
        value ^= word
    value ^= value >> 32
    value ^= value >> 16
    value ^= value >> 8
    return value & 0xFF


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


# The value of each packed-BCD byte (-1 when a nibble is not a decimal digit): one lookup per field
# instead of hex text and int() on every report.
_BCD_VALUE = tuple((b >> 4) * 10 + (b & 0x0F) if b >> 4 <= 9 and b & 0x0F <= 9 else -1 for b in range(256))


def bcd_time(data: bytes) -> datetime | None:
    """BCD YYMMDDhhmmss in Beijing time to UTC; None when not a valid time."""
    if len(data) != 6:
        return None
    v = _BCD_VALUE
    yy, mo, dd, hh, mi, ss = v[data[0]], v[data[1]], v[data[2]], v[data[3]], v[data[4]], v[data[5]]
    if yy < 0 or mo < 0 or dd < 0 or hh < 0 or mi < 0 or ss < 0:
        return None
    try:
        local = datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=UTC)
    except ValueError:
        return None
    return local - BEIJING


def time_bcd(t: datetime) -> bytes:
    local = t.astimezone(UTC) + BEIJING
    return bytes.fromhex(local.strftime("%y%m%d%H%M%S"))


# ---------------------------------------------------------------------------------------------
# Messages of this protocol that have no normalized counterpart in protocols.messages


@dataclass(slots=True, kw_only=True)
class PacketReceived(Message):
    """One packet of a subpackaged message that is not complete yet: answer it with 0x8001.

    `serial` is this packet's serial; `total` and `index` (from 1) come from its header."""

    total: int
    index: int


@dataclass(slots=True, kw_only=True)
class MediaEvent(Message):
    """0x0800: the terminal announces a multimedia item (answered with 0x8001)."""

    media_id: int
    media_type: int  # 0 image, 1 audio, 2 video
    media_format: int  # 0 JPEG, 1 TIF, 2 MP3, 3 WAV, 4 WMV
    event: int  # 0 platform order, 1 timer, 2 robbery alarm, 3 collision/rollover
    channel: int


@dataclass(slots=True, kw_only=True)
class Media(Message):
    """0x0801: a multimedia item, reassembled from its packets (answered with 0x8800)."""

    media_id: int
    media_type: int
    media_format: int
    event: int
    channel: int
    data: bytes = b""
    position: Position | None = None  # the 28-byte location block of 2013/2019, when present


@dataclass(slots=True, kw_only=True)
class Passthrough(Message):
    """0x0900: `kind` is the passthrough type (0x00 GNSS detail, 0x0B IC card, 0x41/0x42 serial ports,
    0xF0-0xFF user-defined); `content` is the rest of the body, uninterpreted."""

    kind: int
    content: bytes = b""


# ---------------------------------------------------------------------------------------------
# Header


_HEAD = struct.Struct(">HH")
_HEAD_2013 = struct.Struct(">HH6sH")
_HEAD_2019 = struct.Struct(">HHB10sH")
_HEAD_SHORT = struct.Struct(">HH6sB")
_PACKAGE = struct.Struct(">HH")


class _Header:
    __slots__ = ("attrs", "body_len", "device", "length", "msg_id", "packages", "serial", "short", "version")

    def __init__(self, frame: bytes, *, short_serial: bool = False) -> None:
        """`frame` must be at least `_header_size` bytes (checked by `_parse`)."""
        msg_id, attrs = _HEAD.unpack_from(frame)
        self.msg_id = msg_id
        self.attrs = attrs
        self.body_len = attrs & 0x03FF
        self.short = short_serial
        self.packages: tuple[int, int] | None = None
        if short_serial:
            # Vendor variant: the attribute bits above the length are vendor flags, not encryption.
            _, _, phone, self.serial = _HEAD_SHORT.unpack_from(frame)
            self.version = 2013
            self.length = _HEAD_SHORT.size
            self.device = device_id(phone)
            return
        if attrs & 0x4000:
            _, _, _proto_version, phone, self.serial = _HEAD_2019.unpack_from(frame)
            self.version = 2019
            self.length = _HEAD_2019.size
        else:
            _, _, phone, self.serial = _HEAD_2013.unpack_from(frame)
            self.version = 2013
            self.length = _HEAD_2013.size
        self.device = device_id(phone)
        if attrs & 0x2000:
            self.packages = _PACKAGE.unpack_from(frame, self.length)
            self.length += _PACKAGE.size

    def whole(self, body_len: int) -> _Header:
        """This header standing for the reassembled message (no packages, the joined length)."""
        h = object.__new__(_Header)
        for name in _Header.__slots__:
            setattr(h, name, getattr(self, name))
        h.packages = None
        h.body_len = body_len
        h.attrs = self.attrs & ~0x23FF
        return h


def _header_size(attrs: int) -> int:
    return (_HEAD_2019.size if attrs & 0x4000 else _HEAD_2013.size) + (_PACKAGE.size if attrs & 0x2000 else 0)


def _parse(raw: bytes) -> tuple[_Header, bytes] | FrameError:
    """Header and body of one unescaped frame without its check code, or why it is malformed."""
    if len(raw) < _HEAD.size:
        return FrameError(protocol=PROTOCOL, reason=f"frame of {len(raw)} bytes is shorter than a header", raw=raw)
    msg_id, attrs = _HEAD.unpack_from(raw)
    size = _header_size(attrs)
    short = (
        msg_id in _SHORT_SERIAL_IDS
        and len(raw) - _HEAD_SHORT.size == attrs & 0x03FF
        and len(raw) - size != attrs & 0x03FF
    )
    if short:
        size = _HEAD_SHORT.size
    if len(raw) < size:
        return FrameError(
            protocol=PROTOCOL,
            reason=f"0x{msg_id:04x}: frame of {len(raw)} bytes is shorter than its {size}-byte header",
            raw=raw,
            msg_id=msg_id,
        )
    header = _Header(raw, short_serial=short)
    body = raw[header.length :]
    if len(body) != header.body_len:
        return _error(header, f"body is {len(body)} bytes, header says {header.body_len}", raw)
    if header.attrs & 0x1C00 and not short:
        return _error(header, "encrypted body (RSA) is not supported", raw)
    return header, body


# ---------------------------------------------------------------------------------------------
# Body decoders


_BASIC = struct.Struct(">IIIIhHH6s")
BASIC_SIZE = _BASIC.size  # 28

ItemHandler = Callable[[bytes, dict[str, Any]], None]


def _item_mileage(v: bytes, p: dict[str, Any]) -> None:
    if len(v) == 4:
        p["mileage_km"] = int.from_bytes(v) / 10


def _item_satellites(v: bytes, p: dict[str, Any]) -> None:
    if len(v) == 1:
        p["satellites"] = v[0]


def _word_item(key: str, scale: float | None = None) -> ItemHandler:
    def item(v: bytes, p: dict[str, Any]) -> None:
        value = int.from_bytes(v)
        p["extras"][key] = value / scale if scale else value

    return item


def _raw_item(key: str) -> ItemHandler:
    def item(v: bytes, p: dict[str, Any]) -> None:
        p["extras"][key] = v.hex()

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


def _item_cabin_temperature(v: bytes, p: dict[str, Any]) -> None:
    # 2019: WORD, top bit = negative (sign and magnitude, not two's complement). Vendors reuse 0x06
    # with other lengths (capture 20: a one-byte battery level), which stay raw.
    if len(v) == 2:
        word = int.from_bytes(v)
        p["extras"]["cabin_temp_c"] = -(word & 0x7FFF) if word & 0x8000 else word
    else:
        p["extras"]["x06"] = v.hex()


def _item_custom_length(v: bytes, p: dict[str, Any]) -> None:
    # 0xE0 announces how many bytes of vendor items (0xE1-0xFF) follow. Those are parsed as ordinary
    # items anyway, so the announced length is only recorded (verify: FACTS marks 0xE0 usage unsure).
    p["extras"]["custom_length"] = int.from_bytes(v)


_ITEMS: dict[int, ItemHandler] = {
    0x01: _item_mileage,
    0x02: _word_item("fuel_l", 10),
    0x03: _word_item("tacho_speed_kmh", 10),
    0x04: _word_item("alarm_event_id"),
    0x05: _raw_item("tyre_pressure"),  # 2019; per-tyre layout unverified, so kept raw
    0x06: _item_cabin_temperature,
    0x11: _item_overspeed,
    0x12: _item_area_event,
    0x13: _item_route_time,
    # JT/T 1078 video alarm words
    0x14: _word_item("video_alarm"),
    0x15: _word_item("video_signal_loss"),
    0x16: _word_item("video_occlusion"),
    0x17: _word_item("storage_fault"),
    0x18: _word_item("driving_behaviour"),
    0x25: _word_item("vehicle_signals"),
    0x2A: _word_item("io_status"),
    0x2B: _item_analog,
    0x30: _word_item("rssi"),
    0x31: _item_satellites,
    # Active-safety add-on standards: structures differ by province, so kept raw.
    0x64: _raw_item("adas"),
    0x65: _raw_item("dsm"),
    0x66: _raw_item("tpms"),
    0x67: _raw_item("bsd"),
    0xE0: _item_custom_length,
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


_MEDIA_HEAD = struct.Struct(">IBBBB")
# Signatures of the media formats 0x0801 carries (JPEG, TIFF, WAV, MP3, WMV/ASF): data that starts
# with one has no location block in front of it.
_MEDIA_MAGIC = (b"\xff\xd8", b"II*\x00", b"MM\x00*", b"RIFF", b"ID3", b"\xff\xfb", b"\x30\x26\xb2\x75")


def _media_head(header: _Header, body: bytes) -> tuple[int, int, int, int, int] | FrameError:
    if len(body) < _MEDIA_HEAD.size:
        return _error(header, f"multimedia body {len(body)} bytes, needs 8", body)
    return _MEDIA_HEAD.unpack_from(body)


def _decode_media_event(header: _Header, body: bytes) -> MediaEvent | FrameError:
    head = _media_head(header, body)
    if isinstance(head, FrameError):
        return head
    media_id, media_type, media_format, event, channel = head
    return MediaEvent(
        **_base(header),
        media_id=media_id,
        media_type=media_type,
        media_format=media_format,
        event=event,
        channel=channel,
    )


def _decode_media(header: _Header, body: bytes) -> Media | FrameError:
    head = _media_head(header, body)
    if isinstance(head, FrameError):
        return head
    media_id, media_type, media_format, event, channel = head
    data = body[_MEDIA_HEAD.size :]
    position = None
    # 2013/2019 put a 28-byte location block before the data; 2011 and some vendors (a G10LS document)
    # do not. The block is taken when the data does not start with a media signature and the block's
    # BCD time is valid (verify: a heuristic, there is no flag for it).
    if len(data) >= BASIC_SIZE and not data.startswith(_MEDIA_MAGIC) and bcd_time(data[22:28]) is not None:
        located = _decode_location(header, data[:BASIC_SIZE])
        if isinstance(located, Position):
            position = located
            data = data[BASIC_SIZE:]
    return Media(
        **_base(header),
        media_id=media_id,
        media_type=media_type,
        media_format=media_format,
        event=event,
        channel=channel,
        data=data,
        position=position,
    )


def _decode_passthrough(header: _Header, body: bytes) -> Passthrough | FrameError:
    if not body:
        return _error(header, "passthrough without its type byte")
    return Passthrough(**_base(header), kind=body[0], content=body[1:])


def _one(decode: Callable[[_Header, bytes], Decoded]) -> Callable[[_Header, bytes], list[Decoded]]:
    return lambda header, body: [decode(header, body)]


_BODIES: dict[int, Callable[[_Header, bytes], list[Decoded]]] = {
    MSG_LOCATION: _one(_decode_location),
    MSG_BATCH_LOCATION: _decode_batch,
    MSG_HEARTBEAT: lambda header, body: [Heartbeat(**_base(header))],
    MSG_LOCATION_QUERY_REPLY: lambda header, body: [_decode_location(header, body[2:])],
    MSG_REGISTRATION: _one(_decode_registration),
    MSG_AUTHENTICATION: _one(_decode_authentication),
    MSG_TERMINAL_RESPONSE: _one(_decode_terminal_response),
    MSG_LOGOUT: lambda header, body: [Logout(**_base(header))],
    MSG_MEDIA_EVENT: _one(_decode_media_event),
    MSG_MEDIA_DATA: _one(_decode_media),
    MSG_PASSTHROUGH: _one(_decode_passthrough),
}


def _decode_body(header: _Header, body: bytes) -> list[Decoded]:
    decode = _BODIES.get(header.msg_id)
    if decode is None:
        return [Unsupported(**_base(header), body=body)]
    return decode(header, body)


def decode_frame(raw: bytes) -> list[Decoded]:
    """Decode one unescaped frame (header + body, check code already removed).

    Stateless: a packet of a subpackaged message comes back as `Unsupported` with the packet's body
    unless it is a whole message by itself (1 of 1); `Jt808Decoder` reassembles."""
    parsed = _parse(raw)
    if isinstance(parsed, FrameError):
        return [parsed]
    header, body = parsed
    if header.packages is not None and header.packages != (1, 1):
        return [Unsupported(**_base(header), body=body)]
    return _decode_body(header.whole(len(body)) if header.packages else header, body)


# ---------------------------------------------------------------------------------------------
# Reassembly of subpackaged messages


@dataclass(slots=True)
class _Pending:
    total: int
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0
    touched: float = 0.0


# (device, message id, packet count, serial of packet 1): the serials of one message's packets
# are consecutive, so every packet names its first one.
_Key = tuple[str, int, int, int]


class _Reassembler:
    """Pending subpackaged messages, bounded in count and bytes, dropped after a quiet timeout."""

    def __init__(self, max_messages: int, max_bytes: int, timeout_s: float) -> None:
        self.pending: dict[_Key, _Pending] = {}
        self.bytes = 0
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def add(self, header: _Header, body: bytes, now: float) -> list[Decoded]:
        assert header.packages is not None
        total, index = header.packages
        if not 1 <= index <= total:
            return [_error(header, f"packet index {index} outside 1..{total}", body)]
        if total == 1:
            return _decode_body(header.whole(len(body)), body)
        key = (header.device, header.msg_id, total, (header.serial - index + 1) & 0xFFFF)
        out: list[Decoded] = []
        entry = self.pending.get(key)
        if entry is None:
            while len(self.pending) >= self.max_messages:
                out.append(self._drop(next(iter(self.pending)), "too many pending messages"))
            entry = self.pending[key] = _Pending(total)
        old = entry.parts.get(index, b"")  # a resent packet replaces the earlier copy
        entry.parts[index] = body
        entry.size += len(body) - len(old)
        self.bytes += len(body) - len(old)
        entry.touched = now
        if len(entry.parts) == total:
            del self.pending[key]
            self.bytes -= entry.size
            whole = b"".join(entry.parts[i] for i in range(1, total + 1))
            return out + _decode_body(header.whole(len(whole)), whole)
        out.append(PacketReceived(**_base(header), total=total, index=index))
        while self.bytes > self.max_bytes:
            out.append(self._drop(next(iter(self.pending)), f"pending packets exceed {self.max_bytes} bytes"))
        return out

    def expire(self, now: float) -> list[Decoded]:
        stale = [k for k, e in self.pending.items() if now - e.touched > self.timeout_s]
        return [self._drop(k, f"no packet for {self.timeout_s:g} s") for k in stale]

    def _drop(self, key: _Key, why: str) -> FrameError:
        device, msg_id, total, first = key
        entry = self.pending.pop(key)
        self.bytes -= entry.size
        # msg_id stays 0: every packet was already answered, so no further reply is due.
        return FrameError(
            protocol=PROTOCOL,
            reason=f"0x{msg_id:04x}: subpackaged message from serial {first} dropped with "
            f"{len(entry.parts)} of {total} packets: {why}",
            device=device,
        )


# ---------------------------------------------------------------------------------------------
# Stream decoder


class Jt808Decoder:
    """Per-connection decoder: feed bytes in any chunks, get messages and frame errors back.

    `max_buffer` bounds the bytes held while waiting for a frame's end flag; the pending
    subpackaged messages are bounded separately (`max_pending_messages`, `max_pending_bytes`) and
    dropped when no packet of theirs arrived for `pending_timeout_s` seconds of the `now` clock
    given to `feed` (time.monotonic() by default)."""

    protocol = PROTOCOL

    def __init__(
        self,
        *,
        max_buffer: int = 65536,
        lenient: bool = False,
        max_pending_messages: int = 16,
        max_pending_bytes: int = 1 << 22,
        pending_timeout_s: float = 60.0,
    ) -> None:
        self._buf = bytearray()
        self._max_buffer = max_buffer
        self.lenient = lenient
        self._packets = _Reassembler(max_pending_messages, max_pending_bytes, pending_timeout_s)

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buf)

    @property
    def pending_messages(self) -> int:
        return len(self._packets.pending)

    @property
    def pending_bytes(self) -> int:
        return self._packets.bytes

    def feed(self, data: bytes, now: float | None = None) -> list[Decoded]:
        if now is None:
            now = _clock.monotonic()
        out: list[Decoded] = self._packets.expire(now) if self._packets.pending else []
        buf = self._buf
        buf += data
        pos = 0
        while True:
            start = buf.find(FLAG, pos)
            if start < 0:
                pos = _outside(buf, pos, len(buf), out, closed=False)
                break
            if start > pos:
                _outside(buf, pos, start, out, closed=True)
            end = buf.find(FLAG, start + 1)
            if end < 0:
                pos = start
                break
            if end == start + 1:
                # Two flags in a row: the first ended a frame we never saw; start again at the second.
                pos = end
                continue
            decoded = self.frame(bytes(buf[start + 1 : end]), now)
            out.extend(decoded)
            # A candidate that fails as a whole may be junk running from a stray flag up to the start
            # flag of the next frame: its end flag is reused as a start, so one stray 0x7e costs no
            # real frame (garbage between frames would otherwise shift the pairing for good).
            pos = end if all(isinstance(m, FrameError) for m in decoded) else end + 1
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

    def frame(self, escaped: bytes, now: float | None = None) -> list[Decoded]:
        """One frame's messages, from the bytes between its flags."""
        checked = self._check(escaped)
        if isinstance(checked, FrameError):
            return [checked]
        content, forgiven = checked
        parsed = _parse(content)
        if isinstance(parsed, FrameError):
            if "check_code" in forgiven:
                # Most likely a fragment (a frame cut by a raw 0x7e): its "header" names no real
                # device or message, so nothing must be answered to it.
                return [FrameError(protocol=PROTOCOL, reason=f"{parsed.reason}; check code wrong too", raw=escaped)]
            return [parsed]
        header, body = parsed
        if header.packages is None:
            decoded = _decode_body(header, body)
        else:
            decoded = self._packets.add(header, body, _clock.monotonic() if now is None else now)
        if forgiven:
            for m in decoded:
                if isinstance(m, Position):
                    m.extras["lenient"] = forgiven
        return decoded

    def _check(self, escaped: bytes) -> tuple[bytes, list[str]] | FrameError:
        """Unescape and verify the check code; the content (without the code) and what was forgiven."""
        raw = unescape(escaped)
        if raw is None:
            if not (self.lenient and _code_fits(escaped)):
                return FrameError(protocol=PROTOCOL, reason="invalid escape sequence", raw=escaped)
            return escaped[:-1], ["unescaped_0x7d"]
        if len(raw) < 2:
            return FrameError(protocol=PROTOCOL, reason="empty frame", raw=escaped)
        content, code = raw[:-1], raw[-1]
        if check_code(content) == code:
            return content, []
        if not self.lenient:
            return FrameError(
                protocol=PROTOCOL,
                reason=f"check code 0x{code:02x} does not match 0x{check_code(content):02x}",
                raw=escaped,
            )
        if raw is not escaped and _code_fits(escaped) and not isinstance(_parse(escaped[:-1]), FrameError):
            return escaped[:-1], ["unescaped_0x7d"]  # a terminal that never escapes 0x7d
        return content, ["check_code"]


def _code_fits(frame: bytes) -> bool:
    return len(frame) >= 2 and check_code(frame[:-1]) == frame[-1]


def _outside(buf: bytearray, pos: int, end: int, out: list[Decoded], *, closed: bool) -> int:
    """Report the bytes of buf[pos:end], which lie outside any 0x7e frame; return where reporting stopped.

    `closed`: a flag follows, so everything is reported. Otherwise bytes whose meaning depends on
    what comes next (an unclosed text frame, garbage not yet ended by '(' or 0x7e) stay buffered,
    so the errors do not depend on how the stream was split."""
    while pos < end:
        opening = buf.find(b"(", pos, end)
        if opening < 0:
            if closed:
                out.append(_garbage(bytes(buf[pos:end])))
                pos = end
            return pos
        if opening > pos:
            out.append(_garbage(bytes(buf[pos:opening])))
        closing = buf.find(b")", opening, end)
        if closing < 0:
            if closed:
                out.append(_garbage(bytes(buf[opening:end])))
                pos = end
            else:
                pos = opening
            return pos
        out.append(
            FrameError(protocol=PROTOCOL, reason="text framing not supported", raw=bytes(buf[opening : closing + 1]))
        )
        pos = closing + 1
    return pos


def _garbage(data: bytes) -> FrameError:
    return FrameError(protocol=PROTOCOL, reason=f"{len(data)} bytes outside any frame", raw=data[:64])


def ack_for(message: Decoded, *, serial: int = 0) -> bytes | None:
    """The platform's answer to a decoded item, numbered `serial` (the platform's own counter).

    0x8800 for multimedia data, 0x8001 for the rest (result 3 for unsupported ids, 2 for a frame
    error whose header was readable). None for registration and authentication (their answer
    depends on the device registry), for the terminal's own replies, and for unreadable frames.
    A 0x0704 batch yields several positions from one frame: answer the first only."""
    if isinstance(message, FrameError):
        if message.device and message.msg_id:
            return encode_general_response(message, RESULT_MESSAGE_ERROR, serial=serial)
        return None
    if isinstance(message, Registration | Authentication | CommandReply):
        return None
    if isinstance(message, Media):
        return encode_media_reply(message.device, serial, message.media_id, version=message.version)
    result = RESULT_NOT_SUPPORTED if isinstance(message, Unsupported) else RESULT_OK
    return encode_general_response(message, result, serial=serial)


# ---------------------------------------------------------------------------------------------
# Encoders


def _encode(
    msg_id: int,
    device: str,
    serial: int,
    body: bytes,
    version: int,
    protocol_version: int,
    packages: tuple[int, int] | None = None,
) -> bytes:
    phone = phone_field(device, version)
    attrs = len(body) | (0x2000 if packages else 0)
    if version == 2019:
        attrs |= 0x4000
        head = _HEAD_2019.pack(msg_id, attrs, protocol_version, phone, serial & 0xFFFF)
    else:
        head = _HEAD_2013.pack(msg_id, attrs, phone, serial & 0xFFFF)
    if packages:
        head += _PACKAGE.pack(*packages)
    content = head + body
    return b"\x7e" + escape(content + bytes([check_code(content)])) + b"\x7e"


def encode_frame(
    msg_id: int, device: str, serial: int, body: bytes = b"", *, version: int = 2013, protocol_version: int = 1
) -> bytes:
    """A complete escaped frame with flags, for either side."""
    if len(body) > MAX_BODY:
        raise ProtocolError(f"body of {len(body)} bytes needs subpackaging (max {MAX_BODY})")
    return _encode(msg_id, device, serial, body, version, protocol_version)


def encode_frames(
    msg_id: int,
    device: str,
    serial: int,
    body: bytes = b"",
    *,
    version: int = 2013,
    protocol_version: int = 1,
    packet_size: int = MAX_BODY,
) -> list[bytes]:
    """One frame, or the packets of a subpackaged message when the body exceeds `packet_size`.

    Packets take consecutive serials from `serial`: the caller advances its counter by len(result)."""
    if not 1 <= packet_size <= MAX_BODY:
        raise ProtocolError(f"packet size {packet_size} outside 1..{MAX_BODY}")
    if len(body) <= packet_size:
        return [_encode(msg_id, device, serial, body, version, protocol_version)]
    chunks = [body[i : i + packet_size] for i in range(0, len(body), packet_size)]
    if len(chunks) > 0xFFFF:
        raise ProtocolError(f"body of {len(body)} bytes needs more than 65535 packets")
    total = len(chunks)
    return [
        _encode(msg_id, device, serial + i, chunk, version, protocol_version, (total, i + 1))
        for i, chunk in enumerate(chunks)
    ]


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


def encode_location_query(device: str, serial: int, *, version: int = 2013) -> bytes:
    """0x8201: the terminal answers with 0x0201 (its current location)."""
    return encode_frame(MSG_LOCATION_QUERY, device, serial, b"", version=version)


def encode_temporary_tracking(
    device: str, serial: int, interval_s: int, validity_s: int, *, version: int = 2013
) -> bytes:
    """0x8202: report every `interval_s` seconds for `validity_s` seconds (interval 0 stops it; verify)."""
    return encode_frame(MSG_TEMPORARY_TRACKING, device, serial, _pack(">HI", interval_s, validity_s), version=version)


@dataclass(frozen=True, slots=True)
class TextMessage:
    """0x8300 as the terminal receives it. `text_type` (1 notice, 2 service) exists in 2019 only."""

    text: str
    urgent: bool = False
    display: bool = True
    tts: bool = False
    advertising: bool = False
    can_fault: bool = False  # flag bit 5: 0 navigation information, 1 CAN fault code
    text_type: int | None = None


_TEXT_FLAGS = {"urgent": 0, "display": 2, "tts": 3, "advertising": 4, "can_fault": 5}


def encode_text_message(
    device: str,
    serial: int,
    text: str,
    *,
    urgent: bool = False,
    display: bool = True,
    tts: bool = False,
    advertising: bool = False,
    can_fault: bool = False,
    text_type: int = 1,
    version: int = 2013,
) -> list[bytes]:
    """0x8300 text (GBK), subpackaged when long; the terminal answers with 0x0001."""
    options = {"urgent": urgent, "display": display, "tts": tts, "advertising": advertising, "can_fault": can_fault}
    flag = sum(1 << _TEXT_FLAGS[name] for name, on in options.items() if on)
    body = bytes([flag]) + (bytes([text_type]) if version == 2019 else b"") + _gbk_bytes(text)
    return encode_frames(MSG_TEXT, device, serial, body, version=version)


# Areas and routes. Attribute bits the encoders set from the inputs (bits 0 and 1 from FACTS; the
# hemisphere bits 6/7 of areas and 2/3 of route segments from JT/T 808-2013: verify).
AREA_BY_TIME = 1 << 0
AREA_SPEED_LIMIT = 1 << 1
AREA_SOUTH = 1 << 6
AREA_WEST = 1 << 7
_AREA_DERIVED = AREA_BY_TIME | AREA_SPEED_LIMIT | AREA_SOUTH | AREA_WEST
ROUTE_BY_TIME = 1 << 0
SEGMENT_TIMES = 1 << 0
SEGMENT_SPEED_LIMIT = 1 << 1
SEGMENT_SOUTH = 1 << 2
SEGMENT_WEST = 1 << 3
_SEGMENT_DERIVED = SEGMENT_TIMES | SEGMENT_SPEED_LIMIT | SEGMENT_SOUTH | SEGMENT_WEST


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """When an area or route applies. A datetime (UTC) is sent as Beijing time; a time of day
    (the terminal's clock, i.e. Beijing) is sent with date 00-00-00, which repeats daily."""

    start: datetime | dtime
    end: datetime | dtime


@dataclass(frozen=True, slots=True)
class SpeedLimit:
    max_kmh: int
    duration_s: int  # how long the speed may be exceeded before the alarm
    night_max_kmh: int = 0  # 2019 only


@dataclass(frozen=True, slots=True)
class CircleArea:
    area_id: int
    lat: float
    lon: float
    radius_m: int
    attributes: int = 0  # other attribute bits (alarms, doors...); bits 0, 1, 6, 7 come from the fields
    window: TimeWindow | None = None
    speed: SpeedLimit | None = None
    name: str = ""  # 2019 only


@dataclass(frozen=True, slots=True)
class PolygonArea:
    area_id: int
    vertices: tuple[tuple[float, float], ...]  # (lat, lon), all in one hemisphere
    attributes: int = 0
    window: TimeWindow | None = None
    speed: SpeedLimit | None = None
    name: str = ""  # 2019 only


@dataclass(frozen=True, slots=True)
class RoutePoint:
    """An inflection point; the segment from it to the next point carries width and limits."""

    point_id: int
    segment_id: int
    lat: float
    lon: float
    width_m: int  # segment width, BYTE
    attributes: int = 0  # other segment bits; bits 0-3 come from the fields
    time_limits: tuple[int, int] | None = None  # (too long, too short) travel time thresholds, s
    speed: SpeedLimit | None = None


@dataclass(frozen=True, slots=True)
class Route:
    route_id: int
    points: tuple[RoutePoint, ...]
    attributes: int = 0  # bit 0 comes from `window`
    window: TimeWindow | None = None
    name: str = ""  # 2019 only (verify)


@dataclass(frozen=True, slots=True)
class CircleAreas:
    """0x8600 as the terminal receives it."""

    action: int  # 0 replace all, 1 append, 2 modify
    areas: tuple[CircleArea, ...]


AREA_REPLACE = 0
AREA_APPEND = 1
AREA_MODIFY = 2


def _pack(fmt: str, *values: int) -> bytes:
    try:
        return struct.pack(fmt, *values)
    except struct.error as e:
        raise ProtocolError(f"value out of range for {fmt}: {values}") from e


def _gbk_bytes(text: str) -> bytes:
    try:
        return text.encode("gbk")
    except UnicodeEncodeError as e:
        raise ProtocolError(f"text {text!r} is not GBK-encodable") from e


def _degrees(value: float) -> int:
    return round(abs(value) * 1e6)


def _hemisphere(lats: Sequence[float], lons: Sequence[float], south: int, west: int) -> int:
    bits = 0
    for values, bit, what in ((lats, south, "latitudes"), (lons, west, "longitudes")):
        if any(v < 0 for v in values):
            if any(v > 0 for v in values):
                raise ProtocolError(f"{what} of one area or segment lie in both hemispheres")
            bits |= bit
    return bits


def _window_bytes(t: datetime | dtime) -> bytes:
    if isinstance(t, datetime):
        return time_bcd(t)
    return b"\x00\x00\x00" + bytes.fromhex(t.strftime("%H%M%S"))


def _name_bytes(name: str) -> bytes:
    raw = _gbk_bytes(name)
    return _pack(">H", len(raw)) + raw


def _limits(attributes: int, derived: int, window: TimeWindow | None, speed: SpeedLimit | None) -> int:
    return attributes & ~derived | (AREA_BY_TIME if window else 0) | (AREA_SPEED_LIMIT if speed else 0)


def _window_speed(window: TimeWindow | None, speed: SpeedLimit | None) -> bytes:
    out = _window_bytes(window.start) + _window_bytes(window.end) if window else b""
    if speed:
        out += _pack(">HB", speed.max_kmh, speed.duration_s)
    return out


def _night_and_name(speed: SpeedLimit | None, name: str, version: int) -> bytes:
    if version != 2019:
        return b""
    return (_pack(">H", speed.night_max_kmh) if speed else b"") + _name_bytes(name)


def _circle_bytes(area: CircleArea, version: int) -> bytes:
    attrs = _limits(area.attributes, _AREA_DERIVED, area.window, area.speed)
    attrs |= _hemisphere([area.lat], [area.lon], AREA_SOUTH, AREA_WEST)
    head = _pack(">IHIII", area.area_id, attrs, _degrees(area.lat), _degrees(area.lon), area.radius_m)
    return head + _window_speed(area.window, area.speed) + _night_and_name(area.speed, area.name, version)


def encode_set_circle_areas(
    device: str, serial: int, areas: Sequence[CircleArea], *, action: int = AREA_APPEND, version: int = 2013
) -> list[bytes]:
    """0x8600; 2019 adds each area's night speed limit and name."""
    body = _pack(">BB", action, len(areas)) + b"".join(_circle_bytes(a, version) for a in areas)
    return encode_frames(MSG_SET_CIRCLES, device, serial, body, version=version)


def encode_set_polygon(device: str, serial: int, area: PolygonArea, *, version: int = 2013) -> list[bytes]:
    """0x8604. 2019: the night speed and the name follow the vertices (order: verify)."""
    lats = [v[0] for v in area.vertices]
    lons = [v[1] for v in area.vertices]
    attrs = _limits(area.attributes, _AREA_DERIVED, area.window, area.speed)
    attrs |= _hemisphere(lats, lons, AREA_SOUTH, AREA_WEST)
    body = _pack(">IH", area.area_id, attrs) + _window_speed(area.window, area.speed)
    body += _pack(">H", len(area.vertices))
    body += b"".join(_pack(">II", _degrees(lat), _degrees(lon)) for lat, lon in area.vertices)
    body += _night_and_name(area.speed, area.name, version)
    return encode_frames(MSG_SET_POLYGON, device, serial, body, version=version)


def _point_bytes(p: RoutePoint, version: int) -> bytes:
    attrs = p.attributes & ~_SEGMENT_DERIVED | _hemisphere([p.lat], [p.lon], SEGMENT_SOUTH, SEGMENT_WEST)
    attrs |= (SEGMENT_TIMES if p.time_limits else 0) | (SEGMENT_SPEED_LIMIT if p.speed else 0)
    out = _pack(">IIIIBB", p.point_id, p.segment_id, _degrees(p.lat), _degrees(p.lon), p.width_m, attrs)
    if p.time_limits:
        out += _pack(">HH", *p.time_limits)
    if p.speed:
        out += _pack(">HB", p.speed.max_kmh, p.speed.duration_s)
        if version == 2019:
            out += _pack(">H", p.speed.night_max_kmh)  # verify: 2019 segment night speed
    return out


def encode_set_route(device: str, serial: int, route: Route, *, version: int = 2013) -> list[bytes]:
    """0x8606 (route layout not in FACTS: JT/T 808-2013 as recalled, verify; 2019 name at the end)."""
    attrs = route.attributes & ~ROUTE_BY_TIME | (ROUTE_BY_TIME if route.window else 0)
    body = _pack(">IH", route.route_id, attrs) + _window_speed(route.window, None)
    body += _pack(">H", len(route.points)) + b"".join(_point_bytes(p, version) for p in route.points)
    if version == 2019:
        body += _name_bytes(route.name)
    return encode_frames(MSG_SET_ROUTE, device, serial, body, version=version)


def _encode_delete(msg_id: int, device: str, serial: int, ids: Sequence[int], version: int) -> bytes:
    """Count BYTE + ids DWORD; no ids = delete all."""
    body = _pack(">B", len(ids)) + b"".join(_pack(">I", i) for i in ids)
    return encode_frame(msg_id, device, serial, body, version=version)


def encode_delete_circle_areas(device: str, serial: int, ids: Sequence[int] = (), *, version: int = 2013) -> bytes:
    """0x8601."""
    return _encode_delete(MSG_DELETE_CIRCLES, device, serial, ids, version)


def encode_delete_polygons(device: str, serial: int, ids: Sequence[int] = (), *, version: int = 2013) -> bytes:
    """0x8605."""
    return _encode_delete(MSG_DELETE_POLYGONS, device, serial, ids, version)


def encode_delete_routes(device: str, serial: int, ids: Sequence[int] = (), *, version: int = 2013) -> bytes:
    """0x8607."""
    return _encode_delete(MSG_DELETE_ROUTES, device, serial, ids, version)


def encode_media_reply(
    device: str, serial: int, media_id: int, missing: Sequence[int] = (), version: int = 2013
) -> bytes:
    """0x8800: media id, then the count and indices (WORD) of packets to send again; none = complete."""
    body = _pack(">IB", media_id, len(missing)) + b"".join(_pack(">H", i) for i in missing)
    return encode_frame(MSG_MEDIA_REPLY, device, serial, body, version=version)


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


def encode_media_body(
    media_id: int,
    data: bytes,
    *,
    media_type: int = 0,
    media_format: int = 0,
    event: int = 0,
    channel: int = 1,
    location: bytes | None = None,
) -> bytes:
    """A 0x0801 body (0x0800 is its first 8 bytes); `location` is a 28-byte basic block or None (2011)."""
    if location is not None and len(location) != BASIC_SIZE:
        raise ProtocolError("the location block of 0x0801 is 28 bytes")
    head = _pack(">IBBBB", media_id, media_type, media_format, event, channel)
    return head + (location or b"") + data


# ---------------------------------------------------------------------------------------------
# Platform frames read back (terminal simulators and tests)


@dataclass(slots=True)
class PlatformFrame:
    msg_id: int
    device: str
    serial: int
    version: int
    body: bytes
    packages: tuple[int, int] | None = None
    value: Any = None  # `parse_platform_body` of a whole message; None for a lone packet


def decode_platform_frame(frame: bytes) -> PlatformFrame:
    """One flagged frame (either direction), checked strictly; raises ProtocolError when malformed."""
    if len(frame) < 2 or frame[0] != FLAG or frame[-1] != FLAG:
        raise ProtocolError("not a flagged frame")
    raw = unescape(frame[1:-1])
    if raw is None or not _code_fits(raw):
        raise ProtocolError("bad escape or check code")
    parsed = _parse(raw[:-1])
    if isinstance(parsed, FrameError):
        raise ProtocolError(parsed.reason)
    header, body = parsed
    value = None if header.packages else parse_platform_body(header.msg_id, body, version=header.version)
    return PlatformFrame(header.msg_id, header.device, header.serial, header.version, body, header.packages, value)


def decode_platform_frames(frames: Sequence[bytes]) -> PlatformFrame:
    """The message made of `frames` (one whole frame, or all packets of one message in any order)."""
    parts = [decode_platform_frame(f) for f in frames]
    if len(parts) == 1 and parts[0].packages is None:
        return parts[0]
    if any(p.packages is None or p.packages[0] != len(parts) for p in parts):
        raise ProtocolError("frames are not the packets of one message")
    parts.sort(key=lambda p: p.packages[1] if p.packages else 0)
    if [p.packages[1] if p.packages else 0 for p in parts] != list(range(1, len(parts) + 1)):
        raise ProtocolError("packet indices are not 1..total")
    first = parts[0]
    body = b"".join(p.body for p in parts)
    value = parse_platform_body(first.msg_id, body, version=first.version)
    return PlatformFrame(first.msg_id, first.device, first.serial, first.version, body, None, value)


class _Reader:
    """Sequential reads from a body; running past its end is a ProtocolError."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolError(f"body ends at {len(self.data)} bytes, needs {self.pos + n}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple[int, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def num(self, fmt: str) -> int:
        (value,) = self.unpack(fmt)
        return value

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.pos)


def _read_time(raw: bytes) -> datetime | dtime:
    if raw[:3] == b"\x00\x00\x00":
        digits = bcd_digits(raw[3:])
        if digits is not None and int(digits[:2]) < 24 and int(digits[2:4]) < 60 and int(digits[4:]) < 60:
            return dtime(int(digits[:2]), int(digits[2:4]), int(digits[4:]))
    else:
        t = bcd_time(raw)
        if t is not None:
            return t
    raise ProtocolError(f"{raw.hex()} is not a BCD time")


def _read_window(r: _Reader, attrs: int) -> TimeWindow | None:
    if not attrs & AREA_BY_TIME:
        return None
    return TimeWindow(_read_time(r.take(6)), _read_time(r.take(6)))


def _read_speed(r: _Reader, present: bool) -> SpeedLimit | None:
    return SpeedLimit(*r.unpack(">HB")) if present else None


def _read_name(r: _Reader) -> str:
    return r.take(r.num(">H")).decode("gbk", errors="replace")


def _signed(value: int, negative: bool) -> float:
    return -value / 1e6 if negative else value / 1e6


def _read_night_and_name(r: _Reader, speed: SpeedLimit | None, version: int) -> tuple[SpeedLimit | None, str]:
    if version != 2019:
        return speed, ""
    if speed:
        speed = SpeedLimit(speed.max_kmh, speed.duration_s, r.num(">H"))
    return speed, _read_name(r)


def _read_circle(r: _Reader, version: int) -> CircleArea:
    area_id, attrs, lat, lon, radius = r.unpack(">IHIII")
    window = _read_window(r, attrs)
    speed, name = _read_night_and_name(r, _read_speed(r, bool(attrs & AREA_SPEED_LIMIT)), version)
    return CircleArea(
        area_id,
        _signed(lat, bool(attrs & AREA_SOUTH)),
        _signed(lon, bool(attrs & AREA_WEST)),
        radius,
        attrs & ~_AREA_DERIVED,
        window,
        speed,
        name,
    )


def _read_polygon(r: _Reader, version: int) -> PolygonArea:
    area_id, attrs = r.unpack(">IH")
    window = _read_window(r, attrs)
    speed = _read_speed(r, bool(attrs & AREA_SPEED_LIMIT))
    south, west = bool(attrs & AREA_SOUTH), bool(attrs & AREA_WEST)
    vertices = tuple(
        (_signed(lat, south), _signed(lon, west)) for lat, lon in (r.unpack(">II") for _ in range(r.num(">H")))
    )
    speed, name = _read_night_and_name(r, speed, version)
    return PolygonArea(area_id, vertices, attrs & ~_AREA_DERIVED, window, speed, name)


def _read_point(r: _Reader, version: int) -> RoutePoint:
    point_id, segment_id, lat, lon, width, attrs = r.unpack(">IIIIBB")
    limits = (r.num(">H"), r.num(">H")) if attrs & SEGMENT_TIMES else None
    speed = _read_speed(r, bool(attrs & SEGMENT_SPEED_LIMIT))
    if speed and version == 2019:
        speed = SpeedLimit(speed.max_kmh, speed.duration_s, r.num(">H"))
    return RoutePoint(
        point_id,
        segment_id,
        _signed(lat, bool(attrs & SEGMENT_SOUTH)),
        _signed(lon, bool(attrs & SEGMENT_WEST)),
        width,
        attrs & ~_SEGMENT_DERIVED,
        limits,
        speed,
    )


def _read_route(r: _Reader, version: int) -> Route:
    route_id, attrs = r.unpack(">IH")
    window = _read_window(r, attrs)
    points = tuple(_read_point(r, version) for _ in range(r.num(">H")))
    name = _read_name(r) if version == 2019 else ""
    return Route(route_id, points, attrs & ~ROUTE_BY_TIME, window, name)


def _read_text(r: _Reader, version: int) -> TextMessage:
    flag = r.num(">B")
    text_type = r.num(">B") if version == 2019 else None
    options = {name: bool(flag >> bit & 1) for name, bit in _TEXT_FLAGS.items()}
    return TextMessage(r.rest().decode("gbk", errors="replace"), text_type=text_type, **options)


def _read_ids(r: _Reader) -> tuple[int, ...]:
    return tuple(r.num(">I") for _ in range(r.num(">B")))


def parse_platform_body(msg_id: int, body: bytes, *, version: int = 2013) -> Any:
    """The value an encoder above was given, read back from a whole message body:
    0x8001 (serial, id, result); 0x8100 (serial, result, code); 0x8201 None; 0x8202 (interval,
    validity); 0x8300 TextMessage; 0x8600 CircleAreas; 0x8604 PolygonArea; 0x8606 Route;
    0x8601/0x8605/0x8607 the ids; 0x8800 (media id, missing indices). Other ids: the body."""
    r = _Reader(body)
    value: Any
    if msg_id == MSG_GENERAL_RESPONSE:
        value = r.unpack(">HHB")
    elif msg_id == MSG_REGISTRATION_RESPONSE:
        reply_serial, result = r.unpack(">HB")
        return reply_serial, result, gbk(r.rest())
    elif msg_id == MSG_LOCATION_QUERY:
        value = None
    elif msg_id == MSG_TEMPORARY_TRACKING:
        value = r.unpack(">HI")
    elif msg_id == MSG_TEXT:
        return _read_text(r, version)
    elif msg_id == MSG_SET_CIRCLES:
        action, count = r.unpack(">BB")
        value = CircleAreas(action, tuple(_read_circle(r, version) for _ in range(count)))
    elif msg_id == MSG_SET_POLYGON:
        value = _read_polygon(r, version)
    elif msg_id == MSG_SET_ROUTE:
        value = _read_route(r, version)
    elif msg_id in (MSG_DELETE_CIRCLES, MSG_DELETE_POLYGONS, MSG_DELETE_ROUTES):
        value = _read_ids(r)
    elif msg_id == MSG_MEDIA_REPLY:
        media_id, count = r.unpack(">IB")
        value = media_id, tuple(r.num(">H") for _ in range(count))
    else:
        return body
    if r.pos != len(body):
        raise ProtocolError(f"0x{msg_id:04x}: {len(body) - r.pos} bytes left over")
    return value


def parse_general_response(frame: bytes) -> tuple[int, int, int]:
    """(reply serial, reply id, result) of a 0x8001 frame; used by simulators and tests."""
    value = _platform_value(frame, MSG_GENERAL_RESPONSE)
    return value[0], value[1], value[2]


def parse_registration_response(frame: bytes) -> tuple[int, int, str]:
    """(reply serial, result, auth code) of a 0x8100 frame."""
    value = _platform_value(frame, MSG_REGISTRATION_RESPONSE)
    return value[0], value[1], value[2]


def _platform_value(frame: bytes, msg_id: int) -> Any:
    decoded = decode_platform_frame(frame)
    if decoded.msg_id != msg_id:
        raise ProtocolError(f"expected 0x{msg_id:04x}, got 0x{decoded.msg_id:04x}")
    return decoded.value
