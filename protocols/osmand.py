"""OsmAnd over HTTP (the Traccar Client phone app and compatible trackers), sans-I/O.

The HTTP layer hands over one parsed request; `decode_request` returns normalized messages and
`response_for` the status to answer. Two request forms:

- Query form: GET with the fields in the query string, or POST with them in the query string or in an
  `application/x-www-form-urlencoded` body. Fields: `id`/`deviceid`, `lat` + `lon` or
  `location=lat,lon`, `timestamp` (Unix seconds, Unix milliseconds, ISO 8601 or
  `yyyy-MM-dd HH:mm:ss`, UTC when no offset is given), `speed` (knots unless the endpoint is
  configured with another unit), `bearing`/`heading`, `altitude`, `accuracy`, `hdop`, `batt`,
  `charge`, `valid`, `driverUniqueId`, repeated `cell=mcc,mnc,lac,cid[,rssi]` and `wifi=mac,rssi`.
  Any other field lands in `extras`, typed as int, float or bool when it reads as one.
- JSON form (Content-Type application/json, the Transistorsoft background-geolocation layout):
  `device_id`, `location` (one object or a list of them, for batched uploads) with `timestamp`,
  `coords` (speed in m/s, -1 = unknown; heading -1 = unknown), `is_moving`, `odometer` (m),
  `event`, `activity.type`, `battery.level` (0..1, -1 unknown), `battery.is_charging`, `mock`,
  `uuid`, and `extras` (free key/values, merged into our extras under their own names).

Outcomes:
- a Position per fix; a request with a device id but no coordinates (only `cell=`/`wifi=`
  data) gives a Heartbeat whose extras carry that data, since we cannot invent a location;
- no device id: FrameError "missing device id"; a field that does not parse: FrameError "bad <field>";
  text PostgreSQL cannot store (NaN, Infinity, NUL, lone surrogates) is refused the same way;
- a JSON document that holds no location: Unsupported;
- `response_for`: 200 with an empty body when anything usable was decoded (good entries of a
  batch are kept and the batch is not resent forever for one bad entry), 400 otherwise. Answering
  404 to an unknown device and putting a queued command into the body is the HTTP layer's business.

Extras keys: hdop, battery_pct, charging, driver_id, cells [{mcc, mnc, lac, cid, rssi?}],
wifi [{mac, rssi}], moving, event, activity, activity_confidence, mock, uuid, speed_accuracy,
heading_accuracy, altitude_accuracy, ellipsoidal_altitude, floor, time_source
("server" when the request had no timestamp and the receive time was used), fix_time (of a Heartbeat),
plus the sender's unknown fields under their own names, or as `app_<name>` where the name is one of ours.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from protocols.messages import (
    Decoded,
    FrameError,
    Heartbeat,
    Message,
    Position,
    ProtocolError,
    Unsupported,
    storable_text,
)

PROTOCOL = "osmand"
MAX_BODY = 1 << 20  # batched JSON uploads of a phone that was offline for hours stay well below this
MAX_FIELDS = 500
MAX_RAW = 4096  # bytes of a bad request kept in its FrameError

# km/h per unit of the `speed` query field.
SPEED_UNITS: dict[str, float] = {"knots": 1.852, "kmh": 1.0, "mps": 3.6, "mph": 1.609344}

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS_THRESHOLD = 100_000_000_000  # larger integer timestamps are milliseconds (seconds would be year 5138+)

# Unambiguous (no nested optional digit runs) so that a megabyte of digits cannot backtrack quadratically.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d{1,18}", re.ASCII)  # fits int64; longer ones are not ids or counts
_UNIX = re.compile(r"(\d{1,18})(?:\.(\d{1,9}))?", re.ASCII)
_ISO_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", re.ASCII)
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})

# Query fields with a meaning of their own; everything else goes to extras.
_KNOWN = frozenset(
    {
        "id",
        "deviceid",
        "lat",
        "lon",
        "location",
        "timestamp",
        "speed",
        "bearing",
        "heading",
        "altitude",
        "accuracy",
        "hdop",
        "batt",
        "charge",
        "valid",
        "driverUniqueId",
        "cell",
        "wifi",
    }
)
_REPEATED = frozenset({"cell", "wifi"})

# Extras keys this module fills itself; a sender's field of the same name is kept as "app_<name>".
_RESERVED = frozenset(
    {
        "hdop",
        "battery_pct",
        "charging",
        "driver_id",
        "cells",
        "wifi",
        "fix_time",
        "time_source",
        "moving",
        "event",
        "uuid",
        "mock",
        "activity",
        "activity_confidence",
        "speed_accuracy",
        "heading_accuracy",
        "altitude_accuracy",
        "ellipsoidal_altitude",
        "floor",
    }
)


class _Bad(Exception):
    """A field that does not parse; becomes a FrameError naming the field."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


# ---------------------------------------------------------------------------------------------
# Entry points


def decode_request(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    speed_unit: str = "knots",
    received: datetime | None = None,
) -> list[Decoded]:
    """Messages in one HTTP request. `received` (default: now) stands in for a missing timestamp."""
    if speed_unit not in SPEED_UNITS:
        raise ProtocolError(f"unknown speed unit {speed_unit!r}; use one of {sorted(SPEED_UNITS)}")
    raw = _raw(method, target, body)
    try:
        return _decode(method, target, headers, body, SPEED_UNITS[speed_unit], received, raw)
    except _Bad as e:
        return [FrameError(protocol=PROTOCOL, reason=f"bad {e.field}", raw=raw)]


def response_for(decoded: list[Decoded]) -> tuple[int, bytes]:
    """HTTP status and body to answer: 200 once anything usable was decoded, else 400."""
    if any(isinstance(m, Message) for m in decoded):
        return 200, b""
    return 400, b""


def encode_query(position: Position, *, speed_unit: str = "knots") -> str:
    """The query string (without '?') a Traccar Client would send for this position.

    Times go out as Unix seconds or milliseconds when exact, else as ISO 8601. Extras that this
    module decodes (hdop, battery_pct, charging, driver_id, cells, wifi) get their own fields, other
    scalar extras are sent under their own names.
    """
    factor = SPEED_UNITS.get(speed_unit)
    if factor is None:
        raise ProtocolError(f"unknown speed unit {speed_unit!r}")
    if not position.device:
        raise ProtocolError("position without device id")
    pairs: list[tuple[str, str]] = [
        ("id", position.device),
        ("lat", repr(float(position.lat))),
        ("lon", repr(float(position.lon))),
        ("timestamp", _encode_time(position.time)),
    ]
    optional = (
        ("speed", None if position.speed_kmh is None else position.speed_kmh / factor),
        ("bearing", position.course),
        ("altitude", position.altitude_m),
        ("accuracy", position.accuracy_m),
    )
    pairs += [(key, repr(float(value))) for key, value in optional if value is not None]
    if not position.valid:
        pairs.append(("valid", "false"))
    try:
        pairs += _encode_extras(position.extras)
    except (KeyError, TypeError, ValueError) as e:
        raise ProtocolError(f"malformed extras: {e!r}") from e
    return urlencode(pairs)


# ---------------------------------------------------------------------------------------------
# Request forms


def _decode(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    factor: float,
    received: datetime | None,
    raw: bytes,
) -> list[Decoded]:
    method = method.upper()
    if method not in ("GET", "POST"):
        return [FrameError(protocol=PROTOCOL, reason=f"method {method[:16]} not allowed", raw=raw)]
    if len(body) > MAX_BODY:
        return [FrameError(protocol=PROTOCOL, reason="body too large", raw=raw)]
    query = target.partition("?")[2].partition("#")[0]
    if method == "POST" and body:
        media = _media_type(headers)
        if media == "application/json" or media.endswith("+json") or (not media and body.lstrip()[:1] in (b"{", b"[")):
            return _decode_json(body, query, received, raw)
        if media == "application/x-www-form-urlencoded" or not query:
            query = f"{query}&{body.decode('utf-8', 'replace')}" if query else body.decode("utf-8", "replace")
    return [_decode_fields(_parse_query(query), factor, received, raw)]


def _media_type(headers: Mapping[str, str]) -> str:
    for key, value in headers.items():
        if key.lower() == "content-type":
            return value.partition(";")[0].strip().lower()
    return ""


def _parse_query(query: str) -> dict[str, Any]:
    """Fields of a query string: first value of single fields, all values of repeated ones."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError as e:  # more than MAX_FIELDS fields
        raise _Bad("query (too many fields)") from e
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if not (storable_text(key) and storable_text(value)):
            raise _Bad("query (NUL or unencodable text)")
        if key in _REPEATED:
            fields.setdefault(key, []).append(value)
        else:
            fields.setdefault(key, value)
    return fields


def _decode_fields(f: dict[str, Any], factor: float, received: datetime | None, raw: bytes) -> Decoded:
    device = (f.get("id") or f.get("deviceid") or "").strip()
    if not device:
        return FrameError(protocol=PROTOCOL, reason="missing device id", raw=raw)
    extras = _foreign({k: _typed(v) for k, v in f.items() if k not in _KNOWN})
    _query_extras(f, extras)
    lat, lon = _query_latlon(f)
    stamp = f.get("timestamp") or ""
    time = _parse_time(stamp) if stamp else None
    if stamp and time is None:
        raise _Bad("timestamp")
    if lat is None or lon is None:
        if time is not None:
            extras["fix_time"] = time.isoformat()
        return Heartbeat(protocol=PROTOCOL, device=device, extras=extras)
    if time is None:
        time = received or datetime.now(UTC)
        extras["time_source"] = "server"
    speed = _opt_float(f, "speed")
    return Position(
        protocol=PROTOCOL,
        device=device,
        time=time,
        lat=lat,
        lon=lon,
        valid=_bool(f["valid"], "valid") if f.get("valid") else True,
        speed_kmh=None if speed is None or speed < 0 else speed * factor,
        course=_course(_opt_float(f, "bearing") if f.get("bearing") else _opt_float(f, "heading")),
        altitude_m=_opt_float(f, "altitude"),
        accuracy_m=_non_negative(_opt_float(f, "accuracy")),
        extras=extras,
    )


def _foreign(fields: dict[str, Any]) -> dict[str, Any]:
    """A sender's own key/values, renamed where they would pass for a field we fill."""
    return {f"app_{k}" if k in _RESERVED else k: v for k, v in fields.items()}


def _query_latlon(f: dict[str, Any]) -> tuple[float | None, float | None]:
    if f.get("location"):
        parts = f["location"].split(",")
        if len(parts) != 2:
            raise _Bad("location")
        return _lat(parts[0].strip(), "location"), _lon(parts[1].strip(), "location")
    lat = _lat(f["lat"], "lat") if f.get("lat") else None
    lon = _lon(f["lon"], "lon") if f.get("lon") else None
    if (lat is None) != (lon is None):
        raise _Bad("lon" if lon is None else "lat")
    return lat, lon


def _query_extras(f: dict[str, Any], extras: dict[str, Any]) -> None:
    if f.get("hdop"):
        extras["hdop"] = _float(f["hdop"], "hdop")
    if f.get("batt"):
        extras["battery_pct"] = _number(f["batt"], "batt")
    if f.get("charge"):
        extras["charging"] = _bool(f["charge"], "charge")
    if f.get("driverUniqueId"):
        extras["driver_id"] = f["driverUniqueId"]
    if f.get("cell"):
        extras["cells"] = [_cell(v) for v in f["cell"] if v]
    if f.get("wifi"):
        extras["wifi"] = [_wifi(v) for v in f["wifi"] if v]


def _cell(value: str) -> dict[str, int]:
    parts = [p.strip() for p in value.split(",")]
    if len(parts) not in (4, 5) or not all(_INTEGER.fullmatch(p) for p in parts):
        raise _Bad("cell")
    numbers = [int(p) for p in parts]
    cell = dict(zip(("mcc", "mnc", "lac", "cid"), numbers, strict=False))
    if len(numbers) == 5:
        cell["rssi"] = numbers[4]
    return cell


def _wifi(value: str) -> dict[str, Any]:
    mac, _, rssi = value.partition(",")
    mac, rssi = mac.strip(), rssi.strip()
    if not mac or not _INTEGER.fullmatch(rssi):
        raise _Bad("wifi")
    return {"mac": mac.replace("-", ":").lower(), "rssi": int(rssi)}


# ---------------------------------------------------------------------------------------------
# JSON form


def _decode_json(body: bytes, query: str, received: datetime | None, raw: bytes) -> list[Decoded]:
    try:
        text = body.decode("utf-8")
        root = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        return [FrameError(protocol=PROTOCOL, reason="bad json", raw=raw)]
    # Only \u escapes can smuggle NUL or a lone surrogate past strict UTF-8 decoding.
    if "\\u" in text and not _all_storable(root):
        return [FrameError(protocol=PROTOCOL, reason="bad json (NUL or unencodable text)", raw=raw)]
    device = ""
    if isinstance(root, dict):
        device = _json_device(root.get("device_id"))
    if not device:
        q = _parse_query(query)
        device = (q.get("id") or q.get("deviceid") or "").strip()
    if not device:
        return [FrameError(protocol=PROTOCOL, reason="missing device id", raw=raw)]
    locations = _json_locations(root)
    if not locations:
        return [Unsupported(protocol=PROTOCOL, device=device, body=body[:MAX_RAW])]
    out: list[Decoded] = []
    for loc in locations:
        try:
            out.append(_json_position(device, loc, received))
        except _Bad as e:
            out.append(FrameError(protocol=PROTOCOL, reason=f"bad {e.field}", raw=raw, device=device))
    return out


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity cannot be stored in jsonb


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999 reads as infinity, which jsonb cannot store either
        raise ValueError(f"{text[:20]} is out of range")
    return number


def _all_storable(value: Any) -> bool:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return all(storable_text(k) and _all_storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_all_storable(v) for v in value)
    return True


def _json_device(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def _json_locations(root: Any) -> list[Any]:
    """The location objects of a document: `{"location": {...} | [...]}`, a bare location, or a list."""
    if isinstance(root, dict):
        if "location" in root:
            loc = root["location"]
            return loc if isinstance(loc, list) else [loc]
        return [root] if "coords" in root else []
    return root if isinstance(root, list) else []


def _json_position(device: str, loc: Any, received: datetime | None) -> Position:
    if not isinstance(loc, dict):
        raise _Bad("location")
    coords = loc.get("coords")
    if not isinstance(coords, dict):
        raise _Bad("location.coords")
    lat = _lat(coords.get("latitude"), "latitude")
    lon = _lon(coords.get("longitude"), "longitude")
    extras = _json_extras(loc, coords)
    stamp = loc.get("timestamp")
    time = _parse_time(stamp) if isinstance(stamp, str) and stamp else None
    if stamp not in (None, "") and time is None:
        raise _Bad("timestamp")
    if time is None:
        time = received or datetime.now(UTC)
        extras["time_source"] = "server"
    speed = _json_opt(coords, "speed")
    odometer = _json_opt(loc, "odometer")
    return Position(
        protocol=PROTOCOL,
        device=device,
        time=time,
        lat=lat,
        lon=lon,
        valid=True,
        speed_kmh=None if speed is None or speed < 0 else speed * 3.6,
        course=_course(_json_opt(coords, "heading")),
        altitude_m=_json_opt(coords, "altitude"),
        accuracy_m=_non_negative(_json_opt(coords, "accuracy")),
        mileage_km=None if odometer is None or odometer < 0 else odometer / 1000,
        extras=extras,
    )


def _json_extras(loc: dict[str, Any], coords: dict[str, Any]) -> dict[str, Any]:
    app = loc.get("extras")
    extras = _foreign(app) if isinstance(app, dict) else {}
    for key in ("speed_accuracy", "heading_accuracy", "altitude_accuracy", "ellipsoidal_altitude", "floor"):
        value = _json_opt(coords, key)
        if value is not None and value >= 0:
            extras[key] = value
    if isinstance(loc.get("is_moving"), bool):
        extras["moving"] = loc["is_moving"]
    for key in ("event", "uuid"):
        if isinstance(loc.get(key), str):
            extras[key] = loc[key]
    if loc.get("mock") is True:
        extras["mock"] = True
    activity = loc.get("activity")
    if isinstance(activity, dict):
        if isinstance(activity.get("type"), str):
            extras["activity"] = activity["type"]
        confidence = _json_opt(activity, "confidence")
        if confidence is not None:
            extras["activity_confidence"] = confidence
    battery = loc.get("battery")
    if isinstance(battery, dict):
        level = _json_opt(battery, "level")
        if level is not None and 0 <= level <= 1:
            extras["battery_pct"] = round(level * 100, 1)
        if isinstance(battery.get("is_charging"), bool):
            extras["charging"] = battery["is_charging"]
    return extras


def _json_opt(obj: dict[str, Any], key: str) -> float | None:
    """A JSON number (or numeric string) at obj[key]; None when absent or null."""
    return _any_float(obj.get(key), key)


def _any_float(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _float(value, field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(field)
    try:
        number = float(value)
    except OverflowError:  # a JSON integer too large for a float
        raise _Bad(field) from None
    if not math.isfinite(number):
        raise _Bad(field)
    return number


# ---------------------------------------------------------------------------------------------
# Field parsers (raise _Bad naming the field)


def _float(value: str, field: str) -> float:
    text = value.strip()
    if not _NUMBER.fullmatch(text):
        raise _Bad(field)
    number = float(text)
    if not math.isfinite(number):
        raise _Bad(field)
    return number


def _number(value: str, field: str) -> int | float:
    text = value.strip()
    return int(text) if _INTEGER.fullmatch(text) else _float(text, field)


def _opt_float(f: dict[str, Any], key: str) -> float | None:
    return _float(f[key], key) if f.get(key) else None


def _lat(value: Any, field: str) -> float:
    return _coordinate(value, field, 90)


def _lon(value: Any, field: str) -> float:
    return _coordinate(value, field, 180)


def _coordinate(value: Any, field: str, limit: float) -> float:
    number = _any_float(value, field)
    if number is None or not -limit <= number <= limit:
        raise _Bad(field)
    return number


def _bool(value: str, field: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Bad(field)


def _course(value: float | None) -> float | None:
    """Phones send -1 for an unknown heading; anything else is folded into 0..360."""
    if value is None or value < 0:
        return None
    return value % 360 if value > 360 else value


def _non_negative(value: float | None) -> float | None:
    return None if value is None or value < 0 else value


def _typed(value: Any) -> Any:
    """An unknown field's value as int, float or bool when it reads as one, else the string."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    if _NUMBER.fullmatch(text):
        number = float(text)
        if math.isfinite(number):
            return number
    if text in ("true", "false"):
        return text == "true"
    return value


def _parse_time(value: str) -> datetime | None:
    """Unix seconds (with optional fraction), Unix milliseconds, or ISO 8601; None if none of these."""
    text = value.strip()
    try:
        unix = _UNIX.fullmatch(text)
        if unix:
            whole = int(unix[1])
            if unix[2] is None and whole > MS_THRESHOLD:
                return EPOCH + timedelta(milliseconds=whole)
            micros = int((unix[2] or "0")[:6].ljust(6, "0"))
            return EPOCH + timedelta(seconds=whole, microseconds=micros)
        if _ISO_PREFIX.match(text):
            parsed = datetime.fromisoformat(text)
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return None


# ---------------------------------------------------------------------------------------------
# Encoding helpers


def _encode_time(time: datetime) -> str:
    if time.tzinfo is None:
        raise ProtocolError("naive datetime; positions carry UTC times")
    delta = time - EPOCH
    if delta >= timedelta(0) and time.microsecond == 0:
        return str(delta // timedelta(seconds=1))
    ms = delta // timedelta(milliseconds=1)
    if time.microsecond % 1000 == 0 and ms > MS_THRESHOLD:
        return str(ms)
    return time.astimezone(UTC).isoformat()


def _encode_extras(extras: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    if "hdop" in extras:
        yield "hdop", _scalar(extras["hdop"])
    if "battery_pct" in extras:
        yield "batt", _scalar(extras["battery_pct"])
    if "charging" in extras:
        yield "charge", _scalar(bool(extras["charging"]))
    if "driver_id" in extras:
        yield "driverUniqueId", str(extras["driver_id"])
    for cell in extras.get("cells", ()):
        fields = [cell["mcc"], cell["mnc"], cell["lac"], cell["cid"]]
        if "rssi" in cell:
            fields.append(cell["rssi"])
        yield "cell", ",".join(str(int(v)) for v in fields)
    for wifi in extras.get("wifi", ()):
        yield "wifi", f"{wifi['mac']},{int(wifi['rssi'])}"
    for key, value in extras.items():
        if key not in _RESERVED and key not in _KNOWN and isinstance(value, str | int | float | bool):
            yield key, _scalar(value)


def _scalar(value: str | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _raw(method: str, target: str, body: bytes) -> bytes:
    head = f"{method} {target}".encode("utf-8", "replace")
    return (head + b"\r\n\r\n" + body if body else head)[:MAX_RAW]
