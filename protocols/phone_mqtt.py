"""Phones over MQTT: OwnTracks-compatible location messages in JSON or msgpack, sans-I/O.

The MQTT client hands over each publish as (topic, payload); `decode_publish` returns normalized
messages. The payload's first byte selects the encoding: `{`, `[`, whitespace or a UTF-8 BOM
is JSON, a msgpack map header (0x80-0x8f, 0xde, 0xdf) is msgpack; anything else is a FrameError.

## MQTT topics

| topic | published by | payload `_type` | becomes |
|---|---|---|---|
| `owntracks/<user>/<device>` | OwnTracks app | `location` | Position |
| `owntracks/<user>/<device>` | broker (the app's last will) | `lwt` | Logout |
| `owntracks/<user>/<device>/event` | OwnTracks app | `transition` | Unsupported |
| `city/<device>/location` | our phone app, fleet simulator | `location` (may be omitted) | Position |
| `city/<device>/event` | our phone app | `checkin`, `checkout` | Position with `extras.event` |
| `city/<device>/event` | our phone app | `ack` with `id` (message seen) | CommandReply (`reply_serial`: id) |
| `city/<device>/message` | the server, to the phone | `message` with `id`, `text` | (`encode_message`) |
| `city/<device>/message` | the server, to the phone | `attendance` (a verdict) | (`encode_attendance_answer`) |

The server subscribes to the filters in `SUBSCRIPTIONS` (QoS 1 recommended):
`owntracks/+/+`, `owntracks/+/+/event`, `city/+/location`, `city/+/event`.

- Device id: the `<device>` topic level, as registered on the server. For OwnTracks the user
  level is kept in `extras.user`; set the app's Device ID to the registered id, because two users'
  devices with the same name are the same device here. A level containing `+`, `#` or nothing is
  refused.
- Location fields (OwnTracks names): `lat`, `lon`, `tst` (Unix seconds, fix time) are required;
  optional `acc` (m), `alt` (m), `vel` (km/h), `cog` (degrees), `vac` (m), `batt` (%), `bs`
  (battery status 0 unknown, 1 unplugged, 2 charging, 3 full), `tid`, `t` (trigger: p ping,
  c region, b beacon, r response, u manual, t timer, v mode change), `conn` (w wifi, o offline,
  m mobile), `m` (monitoring mode), `created_at` (Unix seconds the message was made), `SSID`,
  `BSSID`, `inregions`, `p` (pressure, kPa), and our own `mock` (true when the phone reports a
  mock-location provider). A negative `acc`/`vel`/`cog` means unknown.
- Check-in/out (`city/<device>/event`, an inspector starting or ending a shift): the location
  fields above plus `_type` `checkin` or `checkout`, optional `post` (duty post id) and `note`
  (text). A check-in must carry a position (attendance checks where it happened); `mock: true`
  is recorded in `extras.mock`, not judged here. The server answers each on the message topic:
  `{"_type": "attendance", "event": "checkin", "tst": <the event's tst>, "accepted": false,
  "reason": "outside_grid"}` (`reason` null when accepted).
- Other `_type`s: `lwt` means the phone dropped off the broker (Logout); `status` is the app
  answering a status request (Heartbeat); `transition`, `waypoint(s)`, `card`, `cmd`, `steps`,
  `encrypted`, `beacon`, `request`, `configuration` ... are well-formed but not ours to use
  (Unsupported): geofences are evaluated server side from the positions themselves.
- An empty payload clears a retained message; it decodes to nothing. Retained locations arrive
  again when the server reconnects; the store keeps one row per device and fix time.
- Extras keys: user, battery_pct, charging, vertical_accuracy_m, tid, trigger, conn,
  monitoring_mode, created_at, ssid, bssid, inregions, pressure_kpa, mock, event, post, note.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack

from protocols.messages import (
    CommandReply,
    Decoded,
    FrameError,
    Heartbeat,
    Logout,
    Position,
    ProtocolError,
    Unsupported,
    storable_text,
)

PROTOCOL = "mqtt"  # the name the database and the settings use
MAX_PAYLOAD = 65536  # a location message is a few hundred bytes

SUBSCRIPTIONS: tuple[str, ...] = ("owntracks/+/+", "owntracks/+/+/event", "city/+/location", "city/+/event")

EVENTS = frozenset({"checkin", "checkout"})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_JSON_START = frozenset(b"{[ \t\r\n\xef")  # 0xef: a UTF-8 byte order mark; [ to say "not a map"
_MSGPACK_MAP = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])
_HEARTBEAT_TYPES = frozenset({"status"})
_BATTERY_STATUS = {1: False, 2: True, 3: True}  # bs -> charging (0 = unknown)


class _Bad(Exception):
    """A field of the wrong type or out of range; becomes a FrameError naming the field."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


# ---------------------------------------------------------------------------------------------
# Entry points


def topic_for(device: str) -> str:
    """The topic a phone publishes its locations to."""
    return f"city/{_level(device)}/location"


def event_topic_for(device: str) -> str:
    """The topic a phone publishes check-in/check-out events to."""
    return f"city/{_level(device)}/event"


def decode_publish(topic: str, payload: bytes) -> list[Decoded]:
    """Messages in one MQTT publish."""
    route = _route(topic)
    if isinstance(route, FrameError):
        route.raw = payload[:MAX_PAYLOAD]
        return [route]
    device, user, default_type = route
    if not payload:
        return []  # a retained message being cleared
    if len(payload) > MAX_PAYLOAD:
        return [_error("payload too large", payload[:MAX_PAYLOAD], device)]
    doc = _parse(payload)
    if isinstance(doc, str):
        return [_error(doc, payload, device)]
    kind = doc.get("_type", default_type)
    if not isinstance(kind, str):
        return [_error("bad _type" if kind is not None else "missing _type", payload, device)]
    if kind == "location" or kind in EVENTS:
        try:
            return [_position(device, user, kind, doc)]
        except _Bad as e:
            return [_error(f"bad {e.field}", payload, device)]
    if kind == "lwt":
        return [Logout(protocol=PROTOCOL, device=device)]
    if kind == "ack":
        message_id = doc.get("id")
        if not isinstance(message_id, int) or isinstance(message_id, bool) or message_id < 0:
            return [_error("bad id", payload, device)]
        return [CommandReply(protocol=PROTOCOL, device=device, reply_serial=message_id, result=0)]
    if kind in _HEARTBEAT_TYPES:
        return [Heartbeat(protocol=PROTOCOL, device=device, extras={"type": kind})]
    return [Unsupported(protocol=PROTOCOL, device=device, body=payload)]


def message_topic_for(device: str) -> str:
    """The topic a phone subscribes to for the dispatcher's messages."""
    return f"city/{_level(device)}/message"


def encode_message(message_id: int, text: str, *, fmt: str = "json") -> bytes:
    """A dispatcher's message to a phone; the app answers on its event topic with
    `{"_type": "ack", "id": <message_id>}` once the inspector has seen it."""
    return _dump({"_type": "message", "id": message_id, "text": text}, fmt)


def encode_attendance_answer(
    event: str, time: datetime, accepted: bool, reason: str | None, *, fmt: str = "json"
) -> bytes:
    """The server's answer to a check-in or check-out (`event`) made at `time`, for `message_topic_for`."""
    if event not in EVENTS:
        raise ProtocolError(f"not an attendance event: {event!r}")
    return _dump(
        {"_type": "attendance", "event": event, "tst": _unix(time), "accepted": accepted, "reason": reason}, fmt
    )


def encode_location(position: Position, *, fmt: str = "json") -> bytes:
    """An OwnTracks location message for this position (the topic carries the device id).

    `tst` is whole seconds, as OwnTracks sends it; a position whose extras name a check-in or
    check-out event (`extras["event"]`) is encoded as that event, for `event_topic_for`.
    """
    event = position.extras.get("event")
    doc: dict[str, Any] = {
        "_type": event if event in EVENTS else "location",
        "lat": position.lat,
        "lon": position.lon,
        "tst": _unix(position.time),
    }
    for key, value in (
        ("acc", position.accuracy_m),
        ("alt", position.altitude_m),
        ("vel", position.speed_kmh),
        ("cog", position.course),
    ):
        if value is not None:
            doc[key] = value
    for extra, (key, _parse_value) in _EXTRAS_BY_NAME.items():
        if extra in position.extras:
            doc[key] = position.extras[extra]
    if position.extras.get("charging") is not None:
        doc["bs"] = 2 if position.extras["charging"] else 1
    if event in EVENTS:
        doc.update((key, position.extras[key]) for key in ("post", "note") if key in position.extras)
    return _dump(doc, fmt)


# ---------------------------------------------------------------------------------------------
# Topic routing and payload parsing


def _route(topic: str) -> tuple[str, str | None, str | None] | FrameError:
    """(device, owntracks user or None, default _type) for a topic, or why it is not ours."""
    levels = topic.split("/")
    if len(levels) in (3, 4) and levels[0] == "owntracks" and (len(levels) == 3 or levels[3] == "event"):
        user, device = levels[1], levels[2]
        if not _valid_level(user):
            return FrameError(protocol=PROTOCOL, reason="bad user in topic")
        return (device, user, None) if _valid_level(device) else _bad_device()
    if len(levels) == 3 and levels[0] == "city" and levels[2] in ("location", "event"):
        default = "location" if levels[2] == "location" else None
        return (levels[1], None, default) if _valid_level(levels[1]) else _bad_device()
    return FrameError(protocol=PROTOCOL, reason="unknown topic")


def _bad_device() -> FrameError:
    return FrameError(protocol=PROTOCOL, reason="bad device id in topic")


def _valid_level(level: str) -> bool:
    return bool(level) and "+" not in level and "#" not in level and "\x00" not in level


def _level(device: str) -> str:
    if not _valid_level(device) or "/" in device:
        raise ProtocolError(f"device id {device!r} cannot be an MQTT topic level")
    return device


def _parse(payload: bytes) -> dict[str, Any] | str:
    """The payload's map, or the reason it has none."""
    first = payload[0]
    if first in _JSON_START:
        try:
            doc = json.loads(payload.decode("utf-8-sig"), parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return "bad json"
    elif first in _MSGPACK_MAP:
        try:
            doc = msgpack.unpackb(payload, raw=False, timestamp=3, strict_map_key=True)
        except Exception:  # msgpack raises a zoo of types (ExtraData, FormatError, StackError, ...)
            return "bad msgpack"
    else:
        return "unknown encoding"
    return doc if isinstance(doc, dict) else "payload is not a map"


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _error(reason: str, payload: bytes, device: str = "") -> FrameError:
    return FrameError(protocol=PROTOCOL, reason=reason, raw=payload[:MAX_PAYLOAD], device=device)


# ---------------------------------------------------------------------------------------------
# Location fields


def _position(device: str, user: str | None, kind: str, doc: dict[str, Any]) -> Position:
    lat = _coordinate(doc, "lat", 90)
    lon = _coordinate(doc, "lon", 180)
    extras: dict[str, Any] = {}
    if user is not None:
        extras["user"] = user
    for key, (extra, parse) in _EXTRAS.items():
        if doc.get(key) is not None:
            extras[extra] = parse(doc[key], key)
    charging = _BATTERY_STATUS.get(_int(doc["bs"], "bs")) if doc.get("bs") is not None else None
    if charging is not None:
        extras["charging"] = charging
    if kind in EVENTS:
        extras["event"] = kind
        for key in ("post", "note"):
            if doc.get(key) is not None:
                extras[key] = _str(doc[key], key)
    return Position(
        protocol=PROTOCOL,
        device=device,
        time=_time(doc.get("tst"), "tst"),
        lat=lat,
        lon=lon,
        valid=True,
        speed_kmh=_known(doc, "vel"),
        course=_course(_known(doc, "cog")),
        altitude_m=_opt(doc, "alt"),
        accuracy_m=_known(doc, "acc"),
        extras=extras,
    )


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(field)
    try:
        number = float(value)
    except OverflowError:
        raise _Bad(field) from None
    if not math.isfinite(number):
        raise _Bad(field)
    return number


def _opt(doc: dict[str, Any], key: str) -> float | None:
    value = doc.get(key)
    return None if value is None else _number(value, key)


def _known(doc: dict[str, Any], key: str) -> float | None:
    """An optional non-negative quantity; phones send -1 for unknown."""
    value = _opt(doc, key)
    return None if value is None or value < 0 else value


def _coordinate(doc: dict[str, Any], key: str, limit: float) -> float:
    if doc.get(key) is None:
        raise _Bad(key)
    value = _number(doc[key], key)
    if not -limit <= value <= limit:
        raise _Bad(key)
    return value


def _course(value: float | None) -> float | None:
    return value % 360 if value is not None and value > 360 else value


def _time(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):  # a msgpack timestamp extension
        return value.astimezone(UTC)
    seconds = _number(value, field) if value is not None else None
    if seconds is None:
        raise _Bad(field)
    try:
        if isinstance(value, int):
            return EPOCH + timedelta(seconds=value)
        return EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise _Bad(field) from None


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(field)
    return value


def _str(value: Any, field: str) -> str:
    if not isinstance(value, str) or not storable_text(value):
        raise _Bad(field)
    return value


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise _Bad(field)
    return value


def _real(value: Any, field: str) -> float | int:
    """A number kept as sent (int stays int) for extras."""
    _number(value, field)
    return value


def _unix_field(value: Any, field: str) -> int | float:
    if isinstance(value, datetime):
        return _unix(value)
    return _real(value, field)


def _str_list(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and storable_text(v) for v in value):
        raise _Bad(field)
    return list(value)


# OwnTracks key -> (our extras key, parser). Parsers raise _Bad for a wrong type.
_EXTRAS: dict[str, tuple[str, Callable[[Any, str], Any]]] = {
    "batt": ("battery_pct", _real),
    "vac": ("vertical_accuracy_m", _real),
    "tid": ("tid", _str),
    "t": ("trigger", _str),
    "conn": ("conn", _str),
    "m": ("monitoring_mode", _int),
    "created_at": ("created_at", _unix_field),
    "SSID": ("ssid", _str),
    "BSSID": ("bssid", _str),
    "inregions": ("inregions", _str_list),
    "p": ("pressure_kpa", _real),
    "mock": ("mock", _bool),
}
_EXTRAS_BY_NAME = {extra: (key, parse) for key, (extra, parse) in _EXTRAS.items()}


# ---------------------------------------------------------------------------------------------
# Encoding helpers


def _unix(time: datetime) -> int:
    if time.tzinfo is None:
        raise ProtocolError("naive datetime; positions carry UTC times")
    return (time - EPOCH) // timedelta(seconds=1)


def _dump(doc: dict[str, Any], fmt: str) -> bytes:
    try:
        if fmt == "json":
            return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
        if fmt == "msgpack":
            return msgpack.packb(doc, use_bin_type=True)
    except (ValueError, TypeError) as e:
        raise ProtocolError(f"cannot encode position: {e}") from e
    raise ProtocolError(f"unknown format {fmt!r}; use 'json' or 'msgpack'")
