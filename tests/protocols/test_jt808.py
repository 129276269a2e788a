"""JT/T 808 codec: captured vectors, lenient policy, subpackages, multimedia, platform encoders, streams, fuzz."""

from __future__ import annotations

import os
import random
import struct
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protocols import jt808
from protocols.jt808 import (
    CircleArea,
    CircleAreas,
    Jt808Decoder,
    Media,
    MediaEvent,
    PacketReceived,
    Passthrough,
    PolygonArea,
    Route,
    RoutePoint,
    SpeedLimit,
    TextMessage,
    TimeWindow,
)
from protocols.messages import (
    Authentication,
    Decoded,
    FrameError,
    Heartbeat,
    Message,
    Position,
    ProtocolError,
    Registration,
    Unsupported,
)
from tests.vectors import payload_bytes, records

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "100"))
DEVICE = "13912345678"
T0 = datetime(2026, 3, 1, 8, 30, 15, tzinfo=UTC)

# --------------------------------------------------------------------------------------------
# Captured vectors

# Records handled specially, and why (the numbers are `order` within the JT/T 808 records).
BAD_CHECK_CODE = {33, 87, 108, 109}  # derived xor_ok False: strict mode rejects them
RAW_7E_INSIDE = {18, 44, 57, 97, 108}  # cut by the 0x7e splitter: rejected in both modes, cannot be repaired
NEVER_ESCAPES = {39, 105, 106, 107}  # 0x7d 0x01 sent raw: unescaping "succeeds" but the check fails; lenient only
BAD_ESCAPE = {45, 50, 104}  # a raw 0x7d not followed by 01/02; check code fits the raw bytes; lenient only
LENGTH_MISMATCH = {87, 111}  # header body length != bytes present: rejected in both modes (Traccar ignores it)
TEXT_FRAMES = {52, 67}  # "(...)" vendor text framing: 'text framing not supported'
SHORT_SERIAL = {32, 33, 34, 44, 66, 69, 70}  # 0x5501/0x5502 with a one-byte serial: Unsupported
# Records where Traccar returns a position holding the last known fix plus an attribute; we have no
# fix there, so they decode to these types instead (vendor ids -> Unsupported, 0x0900 -> Passthrough).
NO_FIX_TYPES = {
    7: Unsupported,  # 0x0702 driver identity: not decoded
    17: Unsupported,  # 0x0701 vendor text result
    19: Passthrough,
    22: Passthrough,
    23: Unsupported,  # 0x6006 vendor version text
    39: Passthrough,  # lenient only (NEVER_ESCAPES)
    45: Passthrough,  # lenient only (BAD_ESCAPE)
    48: Unsupported,  # 0x0210 vendor
    54: Passthrough,
    60: Unsupported,  # 0x2070 vendor
    68: Unsupported,  # 0x1300 vendor text result
    99: Unsupported,  # 0x0210 vendor
    100: Unsupported,  # 0x0107 terminal attributes: not decoded
    112: Passthrough,
}
# Why each `expect.null` record decodes to no position, and what it decodes to instead.
NULL_TYPES: dict[int, type[Decoded]] = {
    4: Registration,  # 0x0100: answered with 0x8100
    37: Authentication,  # 0x0102: answered with 0x8001
    52: FrameError,  # text framing (a time request) we do not speak
    55: Registration,
    83: Registration,
    84: Registration,
    85: Registration,
    86: Authentication,
    88: Authentication,
    89: Registration,
    92: Heartbeat,  # empty 0x0002
    101: Unsupported,  # vendor 0x1007 time-zone sync
}
# Traccar attribute keys we check, as a function of one decoded position.
ATTRIBUTE_CHECKS: dict[str, Any] = {
    "sat": lambda p: p.satellites,
    "videoAlarm": lambda p: p.extras.get("video_alarm"),
}
# Keys not checked, and why: they come from vendor items (0x51-0x6C, 0x80-0xFF) or vendor reuse of
# reserved alarm bits that we keep raw in extras (FACTS: map per model), from message types we do not
# decode (0x0701/0x0702/0x0107/0x6006/0x1300/0x5501 text and lock data), from Traccar's notion of a
# device time zone, or from Passthrough content we keep uninterpreted.
UNCHECKED_KEYS = {
    "power", "batteryLevel", "cardCode", "battery", "motion", "timezone", "rpm", "tire1Pressure",
    "driverUniqueId", "result", "fuelUsed", "temp1", "temp3", "iccid", "unlockResult", "lock2Battery",
    "dtcs", "event", "driver", "tilt", "charge", "lock1Locked", "fuel1", "fuel2", "imei", "door",
    "alarmLabel", "steps", "tag1Mac", "deviceTemp", "alarm",
}  # fmt: skip
# "alarm" is not checked either: every capture asserting one takes it from a vendor item or a reserved
# alarm bit (record 106's "sos" comes from the JC371 item 0xE8, not from alarm bit 0, which is clear);
# the raw alarm word itself is checked against the derived data for every position.


def jt808_records() -> list[dict[str, Any]]:
    return records("jt808")


@cache
def decoded_vectors(lenient: bool) -> dict[int, list[Decoded]]:
    """Each record's output, fed in order through one decoder per test method."""
    decoders: dict[str, Jt808Decoder] = {}
    out: dict[int, list[Decoded]] = {}
    for r in jt808_records():
        decoder = decoders.setdefault(r["test_method"], Jt808Decoder(lenient=lenient))
        out[r["order"]] = decoder.feed(payload_bytes(r), now=0.0)
    return out


def expected_device(phone_hex: str) -> str:
    return phone_hex.lstrip("0") or "0" if phone_hex.isdigit() else phone_hex


def derived_locations(r: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for f in r["derived"].get("frames", []):
        if "location" in f:
            out.append(f["location"])
        out.extend(f.get("batch", {}).get("items", []))
    return out


def positions(items: list[Decoded]) -> list[Position]:
    return [m for m in items if isinstance(m, Position)]


def test_special_sets_match_the_derived_data() -> None:
    """The special-case lists above are what the extractor found in the bytes, not guesses."""
    by_order = {r["order"]: r for r in jt808_records()}
    assert len(by_order) == 113
    bad = {o for o, r in by_order.items() if any(not f["xor_ok"] for f in r["derived"].get("frames", []))}
    assert bad == BAD_CHECK_CODE
    raw7e = {
        o for o, r in by_order.items() if any(f.get("unescaped_7e_inside") for f in r["derived"].get("frames", []))
    }
    assert raw7e == RAW_7E_INSIDE
    text = {o for o, r in by_order.items() if "parentheses" in r["derived"]["framing"]}
    assert text == TEXT_FRAMES
    nulls = {o for o, r in by_order.items() if r["expect"]["null"]}
    assert nulls == set(NULL_TYPES)
    keys = {r["expect"]["attribute"]["key"] for r in by_order.values() if "attribute" in r["expect"]}
    assert keys == set(ATTRIBUTE_CHECKS) | UNCHECKED_KEYS


@pytest.mark.parametrize("r", jt808_records(), ids=lambda r: f"jt808-{r['order']}")
def test_vector_record(r: dict[str, Any]) -> None:
    order = r["order"]
    strict = decoded_vectors(False)[order]
    lenient = decoded_vectors(True)[order]
    special = BAD_CHECK_CODE | RAW_7E_INSIDE | NEVER_ESCAPES | BAD_ESCAPE | LENGTH_MISMATCH | TEXT_FRAMES
    assert strict and lenient, "every record yields something (a message or a FrameError)"

    if order in TEXT_FRAMES:
        for out in (strict, lenient):
            assert [(type(m), m.reason) for m in out] == [(FrameError, "text framing not supported")]  # type: ignore[union-attr]
        return
    if order in RAW_7E_INSIDE or order in LENGTH_MISMATCH:
        for out in (strict, lenient):
            assert out and all(isinstance(m, FrameError) for m in out)
        if order in RAW_7E_INSIDE and order in BAD_CHECK_CODE | {18, 44, 57, 97}:
            # lenient errors of fragments name no device: nothing is answered to a made-up header
            assert all(not m.device or m.msg_id for m in lenient)
        return
    if order in BAD_CHECK_CODE | NEVER_ESCAPES | BAD_ESCAPE:
        assert len(strict) == 1 and isinstance(strict[0], FrameError)
        reason = strict[0].reason
        assert ("check code" in reason) if order not in BAD_ESCAPE else reason == "invalid escape sequence"
        out = lenient
        forgiven = ["check_code"] if order in BAD_CHECK_CODE else ["unescaped_0x7d"]
        for p in positions(out):
            assert p.extras["lenient"] == forgiven
    else:
        assert order not in special
        assert strict == lenient
        out = strict
    assert not any(isinstance(m, FrameError) for m in out), out

    # header fields
    frame = r["derived"]["frames"][0]
    for m in out:
        assert isinstance(m, Message)
        assert m.device == expected_device(frame["terminal_phone_hex"])
        assert m.serial == frame["serial"]
        assert m.msg_id == int(frame["msg_id"], 16)
        assert m.version == 2019 if frame["version_flag_2019"] else m.version in (2011, 2013)

    if r["expect"]["null"]:
        assert not positions(out)
        assert [type(m) for m in out] == [NULL_TYPES[order]]
        return
    if order in SHORT_SERIAL:
        assert [type(m) for m in out] == [Unsupported]
        return
    if order in NO_FIX_TYPES:
        assert [type(m) for m in out] == [NO_FIX_TYPES[order]]
        return
    check_positions(r, positions(out))
    assert len(positions(out)) == len(out)


def check_positions(r: dict[str, Any], got: list[Position]) -> None:
    locations = derived_locations(r)
    assert len(got) == len(locations) >= 1
    for p, loc in zip(got, locations, strict=True):
        assert p.lat == pytest.approx(loc["lat"], abs=1e-9)
        assert p.lon == pytest.approx(loc["lon"], abs=1e-9)
        assert p.time == datetime.fromisoformat(loc["time_utc_if_gmt8"])
        assert p.alarm == int(loc["alarm"], 16) and p.status == int(loc["status"], 16)
        assert p.valid is loc["fix_valid"]
        assert p.altitude_m == loc["altitude_m"] and p.course == loc["course"]
        assert p.speed_kmh == pytest.approx(loc["speed_kmh"])
        assert ("items_truncated" in p.extras) is (not loc["extra_tlv_parse_clean"])
    first = got[0]
    fix = r["expect"].get("fix")
    if fix:  # no JT/T 808 record carries one today; kept so a new capture is checked
        assert first.time == datetime.fromisoformat(fix["time_utc"])
        assert first.valid is fix["valid"]
        assert first.lat == pytest.approx(fix["lat"], abs=1e-6) and first.lon == pytest.approx(fix["lon"], abs=1e-6)
    if "location_checked" in r["expect"]:  # Traccar's sanity checks
        for p in got:
            assert p.time > datetime(1999, 12, 31, tzinfo=UTC)
            assert -90 <= p.lat <= 90 and -180 <= p.lon <= 180
            assert p.altitude_m is not None and -12262 <= p.altitude_m <= 18000
            assert p.speed_kmh is not None and 0 <= p.speed_kmh / 1.852 <= 869
            assert p.course is not None and 0 <= p.course <= 360
    attribute = r["expect"].get("attribute")
    if attribute is None:
        return
    key, value = attribute["key"], attribute["value"]
    if key in ATTRIBUTE_CHECKS:
        assert ATTRIBUTE_CHECKS[key](first) == value
    else:
        assert key in UNCHECKED_KEYS


def test_vector_counts() -> None:
    """Strict mode rejects every record with a wrong check code; lenient mode recovers what it can."""
    strict, lenient = decoded_vectors(False), decoded_vectors(True)
    rejected = {o for o, out in strict.items() if not [m for m in out if not isinstance(m, FrameError)]}
    assert rejected == BAD_CHECK_CODE | RAW_7E_INSIDE | NEVER_ESCAPES | BAD_ESCAPE | LENGTH_MISMATCH | TEXT_FRAMES
    bad_code = [
        o for o in BAD_CHECK_CODE if any("check code" in m.reason for m in strict[o] if isinstance(m, FrameError))
    ]
    assert sorted(bad_code) == [33, 87, 108, 109]
    recovered = {o for o in rejected if not any(isinstance(m, FrameError) for m in lenient[o])}
    assert recovered == {33, 109} | NEVER_ESCAPES | BAD_ESCAPE
    assert isinstance(lenient[33][0], Unsupported) and lenient[33][0].device == "858012030003"
    (p,) = positions(lenient[109])
    assert p.extras["lenient"] == ["check_code"]


def test_short_serial_vendor_frames() -> None:
    """0x5501/0x5502 with an 11-byte header (one-byte serial): framed, device and serial right."""
    out = decoded_vectors(False)
    for order, device, serial in ((32, "856009001017", 71), (66, "740190311185", 6), (70, "700160818000", 1)):
        (m,) = out[order]
        assert isinstance(m, Unsupported) and (m.device, m.serial) == (device, serial)
        assert len(m.body) == struct.unpack_from(">H", payload_bytes(jt808_records()[order]), 3)[0] & 0x3FF
    # The standard 12-byte header still wins when its length fits (a 0x5501 with a WORD serial).
    frame = jt808.encode_frame(0x5501, DEVICE, 0x1234, b"\x01\x02")
    (m,) = Jt808Decoder().feed(frame)
    assert isinstance(m, Unsupported) and (m.device, m.serial, m.body) == (DEVICE, 0x1234, b"\x01\x02")


def test_passthrough_capture() -> None:
    (m,) = decoded_vectors(False)[19]
    assert isinstance(m, Passthrough)
    body = payload_bytes(jt808_records()[19])[13:-2]
    assert (m.kind, m.content) == (body[0], body[1:])


# --------------------------------------------------------------------------------------------
# Lenient policy on synthetic frames


def location_frame(serial: int = 1, *, device: str = DEVICE, version: int = 2013, **kw: Any) -> bytes:
    body = jt808.encode_location_body(time=kw.pop("time", T0), lat=kw.pop("lat", 31.2), lon=kw.pop("lon", 121.5), **kw)
    return jt808.encode_frame(jt808.MSG_LOCATION, device, serial, body, version=version)


def unescaped_frame(content: bytes) -> bytes:
    """What a terminal that never escapes 0x7d sends."""
    return b"\x7e" + content + bytes([jt808.check_code(content)]) + b"\x7e"


def test_lenient_policy() -> None:
    good = location_frame()
    wrong_code = bytearray(good)
    wrong_code[-2] ^= 0x01
    assert isinstance(Jt808Decoder().feed(bytes(wrong_code))[0], FrameError)
    (p,) = Jt808Decoder(lenient=True).feed(bytes(wrong_code))
    assert isinstance(p, Position) and p.extras["lenient"] == ["check_code"]

    # A body holding 0x7d 0x01 sent raw: unescaping makes it one byte short and breaks the code.
    body = jt808.encode_location_body(time=T0, lat=1, lon=2) + b"\xe1\x02\x7d\x01"
    content = struct.pack(">HH6sH", 0x0200, len(body), bytes.fromhex("013912345678"), 9) + body
    raw = unescaped_frame(content)
    assert jt808.unescape(raw[1:-1]) is not None
    (err,) = Jt808Decoder().feed(raw)
    assert isinstance(err, FrameError) and "check code" in err.reason
    (p,) = Jt808Decoder(lenient=True).feed(raw)
    assert isinstance(p, Position) and p.extras["lenient"] == ["unescaped_0x7d"] and p.extras["xe1"] == "7d01"

    # A raw 0x7d followed by something else: not an escape at all.
    body = jt808.encode_location_body(time=T0, lat=1, lon=2) + b"\xe1\x02\x7d\x05"
    content = struct.pack(">HH6sH", 0x0200, len(body), bytes.fromhex("013912345678"), 9) + body
    assert Jt808Decoder().feed(unescaped_frame(content))[0] == FrameError(
        protocol="jt808", reason="invalid escape sequence", raw=unescaped_frame(content)[1:-1]
    )
    (p,) = Jt808Decoder(lenient=True).feed(unescaped_frame(content))
    assert isinstance(p, Position) and p.extras["xe1"] == "7d05"

    # Lenient does not forgive a wrong length, nor a code that fits neither form.
    bad_len = struct.pack(">HH6sH", 0x0200, 40, bytes.fromhex("013912345678"), 9) + body
    assert isinstance(Jt808Decoder(lenient=True).feed(unescaped_frame(bad_len))[0], FrameError)


# --------------------------------------------------------------------------------------------
# Positions: round trips


times = st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2098, 12, 30), timezones=st.just(UTC)).map(
    lambda t: t.replace(microsecond=0)
)
headers = st.sampled_from(
    [
        (2013, "13912345678"),
        (2013, "1"),
        (2013, "999999999999"),
        (2013, "abcdef012345"),
        (2019, "13912345678"),
        (2019, "12345678901234567890"),
        (2019, "abcdef0123456789abcd"),
    ]
)


@st.composite
def fixes(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "time": draw(times),
        "lat": draw(st.floats(-90, 90)),
        "lon": draw(st.floats(-180, 180)),
        "speed_kmh": draw(st.integers(0, 65535)) / 10,
        "course": draw(st.integers(0, 359)),
        "altitude_m": draw(st.integers(-32768, 32767)),
        "valid": draw(st.booleans()),
        "alarm": draw(st.integers(0, 2**32 - 1)),
        "status": draw(st.integers(0, 2**32 - 1)),
        "mileage_km": draw(st.none() | st.integers(0, 2**32 - 1).map(lambda v: v / 10)),
        "satellites": draw(st.none() | st.integers(0, 255)),
    }


@settings(max_examples=EXAMPLES, deadline=None)
@given(fixes(), headers, st.integers(0, 0xFFFF))
@example(  # every field holding 0x7e / 0x7d, southern and western
    {
        "time": T0,
        "lat": -0x7E7D7E7D / 1e6 / 30,
        "lon": -0x7D7E7D7E / 1e6 / 20,
        "speed_kmh": 0x7E7D / 10,
        "course": 0x7E,
        "altitude_m": 0x7D7E,
        "valid": True,
        "alarm": 0x7E7D7E7D,
        "status": 0x7D7E7D7E,
        "mileage_km": 0x7E7E7E7E / 10,
        "satellites": 0x7E,
    },
    (2019, "13912345678"),
    0x7E7D,
)
def test_position_round_trip(fix: dict[str, Any], header: tuple[int, str], serial: int) -> None:
    version, device = header
    frame = location_frame(serial, device=device, version=version, **fix)
    assert frame.count(b"\x7e") == 2
    (p,) = Jt808Decoder().feed(frame)
    assert isinstance(p, Position)
    assert (p.device, p.serial, p.version, p.time, p.valid) == (device, serial, version, fix["time"], fix["valid"])
    assert abs(p.lat - fix["lat"]) <= 0.5e-6 + 1e-12 and abs(p.lon - fix["lon"]) <= 0.5e-6 + 1e-12
    assert (p.lat < 0) == (round(fix["lat"] * 1e6) < 0) and (p.lon < 0) == (round(fix["lon"] * 1e6) < 0)
    assert (p.speed_kmh, p.course, p.altitude_m) == (fix["speed_kmh"], fix["course"], fix["altitude_m"])
    assert p.alarm == fix["alarm"] and p.alarms == jt808.alarm_flags(fix["alarm"])
    assert (p.mileage_km, p.satellites) == (fix["mileage_km"], fix["satellites"])


def test_location_items() -> None:
    items = (
        b"\x05\x04\x01\x02\x03\x04"
        + b"\x06\x02\x80\x0c"  # -12 degC: sign and magnitude
        + b"\x14\x04\x00\x00\x00\x05\x15\x04\x00\x00\x00\x03\x16\x04\x00\x00\x00\x01"
        + b"\x17\x02\x00\x02\x18\x02\x00\x07"
        + b"\x64\x03\xaa\xbb\xcc\x65\x01\x01\x66\x01\x02\x67\x01\x03"
        + b"\xe0\x01\x04\xe1\x02\x00\x72"
        + b"\x99\x01\xff"
    )
    body = jt808.encode_location_body(time=T0, lat=1, lon=2) + items
    (p,) = Jt808Decoder().feed(jt808.encode_frame(jt808.MSG_LOCATION, DEVICE, 1, body))
    assert isinstance(p, Position)
    assert p.extras == {
        "tyre_pressure": "01020304",
        "cabin_temp_c": -12,
        "video_alarm": 5,
        "video_signal_loss": 3,
        "video_occlusion": 1,
        "storage_fault": 2,
        "driving_behaviour": 7,
        "adas": "aabbcc",
        "dsm": "01",
        "tpms": "02",
        "bsd": "03",
        "custom_length": 4,
        "xe1": "0072",
        "x99": "ff",
    }
    warm = jt808.encode_location_body(time=T0, lat=1, lon=2) + b"\x06\x02\x00\x19\x06\x01\x50"
    (p,) = Jt808Decoder().feed(jt808.encode_frame(jt808.MSG_LOCATION, DEVICE, 1, warm))
    assert isinstance(p, Position) and p.extras["x06"] == "50"  # the later, vendor-sized item stays raw
    assert "cabin_temp_c" in p.extras and p.extras["cabin_temp_c"] == 25


# --------------------------------------------------------------------------------------------
# Subpackages and multimedia


def media_frames(
    media_id: int, data: bytes, *, serial: int = 100, packet_size: int = 64, version: int = 2013
) -> list[bytes]:
    location = jt808.encode_location_body(time=T0, lat=-22.9, lon=-43.2)[: jt808.BASIC_SIZE]
    body = jt808.encode_media_body(media_id, data, media_format=0, event=1, channel=2, location=location)
    return jt808.encode_frames(jt808.MSG_MEDIA_DATA, DEVICE, serial, body, version=version, packet_size=packet_size)


def test_media_reassembled_in_order() -> None:
    data = b"\xff\xd8" + bytes(range(256)) * 2
    frames = media_frames(7, data)
    assert len(frames) == 9
    decoder = Jt808Decoder()
    out = [m for f in frames for m in decoder.feed(f, now=0.0)]
    assert [(type(m), m.serial) for m in out[:-1]] == [(PacketReceived, 100 + i) for i in range(8)]
    assert [m.index for m in out[:-1] if isinstance(m, PacketReceived)] == list(range(1, 9))
    media = out[-1]
    assert isinstance(media, Media)
    assert (media.media_id, media.event, media.channel, media.data, media.serial) == (7, 1, 2, data, 108)
    assert media.position is not None and media.position.lat == pytest.approx(-22.9) and media.position.time == T0
    assert decoder.pending_messages == 0 and decoder.pending_bytes == 0
    assert jt808.ack_for(out[0], serial=5) == jt808.encode_general_response(out[0], 0, serial=5)
    reply = jt808.decode_platform_frame(jt808.ack_for(media, serial=6) or b"")
    assert (reply.msg_id, reply.serial, reply.value) == (jt808.MSG_MEDIA_REPLY, 6, (7, ()))


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.binary(min_size=1, max_size=700),
    st.integers(8, 200),
    st.randoms(use_true_random=False),
    st.sampled_from([2013, 2019]),
)
def test_media_reassembled_out_of_order(data: bytes, packet_size: int, rnd: random.Random, version: int) -> None:
    frames = media_frames(9, b"\xff\xd8" + data, serial=0xFFFE, packet_size=packet_size, version=version)
    order = list(range(len(frames)))
    rnd.shuffle(order)
    decoder = Jt808Decoder()
    out = [m for i in order for m in decoder.feed(frames[i], now=1.0)]
    *received, media = out
    assert all(isinstance(m, PacketReceived) for m in received) and len(received) == len(frames) - 1
    assert isinstance(media, Media) and media.data == b"\xff\xd8" + data and media.version == version
    assert media.serial == (0xFFFE + order[-1]) & 0xFFFF  # serials wrap; the completing packet's serial


def test_media_without_location_block_and_media_event() -> None:
    body = jt808.encode_media_body(3, b"\xff\xd8\xff\xe0jpeg", media_type=0, location=None)
    (m,) = Jt808Decoder().feed(jt808.encode_frame(jt808.MSG_MEDIA_DATA, DEVICE, 4, body))
    assert isinstance(m, Media) and m.position is None and m.data == b"\xff\xd8\xff\xe0jpeg"
    (e,) = Jt808Decoder().feed(jt808.encode_frame(jt808.MSG_MEDIA_EVENT, DEVICE, 5, body[:8]))
    assert e == MediaEvent(
        protocol="jt808", device=DEVICE, msg_id=0x0800, serial=5, version=2013,
        media_id=3, media_type=0, media_format=0, event=0, channel=1,
    )  # fmt: skip
    (err,) = Jt808Decoder().feed(jt808.encode_frame(jt808.MSG_MEDIA_EVENT, DEVICE, 5, body[:7]))
    assert isinstance(err, FrameError) and err.device == DEVICE


def test_subpackage_timeout_and_bounds() -> None:
    frames = media_frames(1, b"\xff\xd8" + bytes(300))
    decoder = Jt808Decoder(pending_timeout_s=60)
    decoder.feed(frames[0], now=0.0)
    decoder.feed(frames[1], now=50.0)
    assert decoder.pending_messages == 1
    assert decoder.feed(b"", now=109.0) == []  # 59 s after the last packet
    (err,) = decoder.feed(b"", now=111.0)
    assert isinstance(err, FrameError) and "2 of 6 packets" in err.reason and err.device == DEVICE
    assert err.msg_id == 0  # every packet was answered already: nothing more to answer
    assert decoder.pending_messages == 0 and decoder.pending_bytes == 0
    # the rest of the message now starts a new pending entry instead of completing a stale one
    out = [m for f in frames[2:] for m in decoder.feed(f, now=112.0)]
    assert all(isinstance(m, PacketReceived) for m in out) and decoder.pending_messages == 1

    decoder = Jt808Decoder(max_pending_messages=16)
    for i in range(17):
        out = decoder.feed(media_frames(i, b"\xff\xd8" + bytes(100), serial=i * 10)[0], now=0.0)
    assert decoder.pending_messages == 16
    assert [type(m) for m in out] == [FrameError, PacketReceived] and "too many pending" in out[0].reason  # type: ignore[union-attr]

    decoder = Jt808Decoder(max_pending_bytes=150)
    frames = media_frames(2, b"\xff\xd8" + bytes(300))
    out = [m for f in frames[:3] for m in decoder.feed(f, now=0.0)]
    assert isinstance(out[-1], FrameError) and "exceed 150 bytes" in out[-1].reason
    assert decoder.pending_bytes <= 150 and decoder.pending_messages == 0


def test_subpackage_edge_cases() -> None:
    # a resent packet replaces its earlier copy; a packet index outside 1..total is an error
    frames = media_frames(5, b"\xff\xd8" + bytes(100), packet_size=80)
    decoder = Jt808Decoder()
    assert isinstance(decoder.feed(frames[0], now=0)[0], PacketReceived)
    assert isinstance(decoder.feed(frames[0], now=0)[0], PacketReceived)
    assert decoder.pending_bytes == 80
    assert isinstance(decoder.feed(frames[1], now=0)[0], Media)
    body = jt808.encode_location_body(time=T0, lat=1, lon=2)
    head = struct.pack(">HH6sH", 0x0200, 0x2000 | len(body), bytes.fromhex("013912345678"), 3)
    for total, index in ((2, 0), (2, 3), (0, 0)):
        (err,) = Jt808Decoder().feed(unescaped_frame(head + struct.pack(">HH", total, index) + body))
        assert isinstance(err, FrameError) and "outside" in err.reason
    (p,) = Jt808Decoder().feed(unescaped_frame(head + struct.pack(">HH", 1, 1) + body))
    assert isinstance(p, Position) and p.serial == 3  # a message in one packet needs no reassembly
    # stateless decode_frame cannot reassemble: the packet comes back as Unsupported
    raw = jt808.unescape(frames[0][1:-2])
    assert raw is not None and isinstance(jt808.decode_frame(raw)[0], Unsupported)


def test_encode_frames_subpackages_large_bodies() -> None:
    body = bytes(range(256)) * 9  # 2304 bytes
    with pytest.raises(ProtocolError):
        jt808.encode_frame(0x0900, DEVICE, 1, body)
    frames = jt808.encode_frames(0x0900, DEVICE, 0xFFFF, body)
    assert len(frames) == 3
    parts = [jt808.decode_platform_frame(f) for f in frames]
    assert [p.packages for p in parts] == [(3, 1), (3, 2), (3, 3)]
    assert [p.serial for p in parts] == [0xFFFF, 0, 1] and all(len(p.body) <= 1023 for p in parts)
    out = Jt808Decoder().feed(b"".join(frames))
    assert isinstance(out[-1], Passthrough) and bytes([out[-1].kind]) + out[-1].content == body
    assert jt808.encode_frames(0x0900, DEVICE, 1, body[:1023]) == [jt808.encode_frame(0x0900, DEVICE, 1, body[:1023])]


# --------------------------------------------------------------------------------------------
# Platform encoders: round trips through decode_platform_frame(s)


ids = st.integers(0, 2**32 - 1)
words = st.integers(0, 0xFFFF)
names = st.text(alphabet="abcXYZ 019-北京路一号站", max_size=12)
beijing_times = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2098, 12, 30), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=0))
times_of_day = st.times().map(lambda t: t.replace(microsecond=0))
windows = st.none() | st.builds(TimeWindow, beijing_times | times_of_day, beijing_times | times_of_day)
lats = st.integers(-90_000_000, 90_000_000).map(lambda v: v / 1e6)
lons = st.integers(-180_000_000, 180_000_000).map(lambda v: v / 1e6)
versions = st.sampled_from([2013, 2019])


def speeds(version: int) -> st.SearchStrategy[SpeedLimit | None]:
    night = words if version == 2019 else st.just(0)
    return st.none() | st.builds(SpeedLimit, words, st.integers(0, 255), night)


def other_bits(derived: int, size: int) -> st.SearchStrategy[int]:
    return st.integers(0, (1 << size) - 1).map(lambda a: a & ~derived)


@st.composite
def circles(draw: st.DrawFn, version: int) -> CircleArea:
    return CircleArea(
        draw(ids),
        draw(lats),
        draw(lons),
        draw(ids),
        draw(other_bits(0b11000011, 16)),
        draw(windows),
        draw(speeds(version)),
        draw(names) if version == 2019 else "",
    )


@st.composite
def polygons(draw: st.DrawFn, version: int) -> PolygonArea:
    south, west = draw(st.booleans()), draw(st.booleans())
    pairs = st.tuples(lats.map(lambda v: -abs(v) if south else abs(v)), lons.map(lambda v: -abs(v) if west else abs(v)))
    return PolygonArea(
        draw(ids),
        tuple(draw(st.lists(pairs, min_size=3, max_size=150))),
        draw(other_bits(0b11000011, 16)),
        draw(windows),
        draw(speeds(version)),
        draw(names) if version == 2019 else "",
    )


@st.composite
def routes(draw: st.DrawFn, version: int) -> Route:
    points = st.builds(
        RoutePoint,
        ids,
        ids,
        lats,
        lons,
        st.integers(0, 255),
        other_bits(0b1111, 8),
        st.none() | st.tuples(words, words),
        speeds(version),
    )
    return Route(
        draw(ids),
        tuple(draw(st.lists(points, max_size=60))),
        draw(other_bits(1, 16)),
        draw(st.none() | st.builds(TimeWindow, beijing_times | times_of_day, beijing_times | times_of_day)),
        draw(names) if version == 2019 else "",
    )


def read_back(frames: list[bytes], msg_id: int, serial: int, version: int) -> Any:
    whole = jt808.decode_platform_frames(frames)
    assert (whole.msg_id, whole.device, whole.serial, whole.version) == (msg_id, DEVICE, serial, version)
    # the terminal side (our own decoder) reassembles the same body
    *acks, last = Jt808Decoder().feed(b"".join(frames))
    assert len(acks) == len(frames) - 1 and all(isinstance(a, PacketReceived) for a in acks)
    assert isinstance(last, Unsupported) and last.body == whole.body
    return whole.value


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), versions, words)
def test_area_and_route_round_trips(data: st.DataObject, version: int, serial: int) -> None:
    areas = tuple(data.draw(st.lists(circles(version), max_size=40)))
    action = data.draw(st.sampled_from([jt808.AREA_REPLACE, jt808.AREA_APPEND, jt808.AREA_MODIFY]))
    frames = jt808.encode_set_circle_areas(DEVICE, serial, areas, action=action, version=version)
    assert read_back(frames, jt808.MSG_SET_CIRCLES, serial, version) == CircleAreas(action, areas)

    polygon = data.draw(polygons(version))
    assert (
        read_back(jt808.encode_set_polygon(DEVICE, serial, polygon, version=version), 0x8604, serial, version)
        == polygon
    )

    route = data.draw(routes(version))
    assert read_back(jt808.encode_set_route(DEVICE, serial, route, version=version), 0x8606, serial, version) == route


@settings(max_examples=EXAMPLES, deadline=None)
@given(versions, words, st.lists(ids, max_size=255), st.lists(words, max_size=255), words, ids)
def test_small_command_round_trips(
    version: int, serial: int, id_list: list[int], missing: list[int], interval: int, validity: int
) -> None:
    def value(frame: bytes, msg_id: int) -> Any:
        decoded = jt808.decode_platform_frame(frame)
        assert (decoded.msg_id, decoded.serial, decoded.version, decoded.device) == (msg_id, serial, version, DEVICE)
        return decoded.value

    assert value(jt808.encode_location_query(DEVICE, serial, version=version), 0x8201) is None
    tracking = jt808.encode_temporary_tracking(DEVICE, serial, interval, validity, version=version)
    assert value(tracking, 0x8202) == (interval, validity)
    for msg_id, encode in (
        (0x8601, jt808.encode_delete_circle_areas),
        (0x8605, jt808.encode_delete_polygons),
        (0x8607, jt808.encode_delete_routes),
    ):
        assert value(encode(DEVICE, serial, id_list, version=version), msg_id) == tuple(id_list)
    media_id = validity
    assert value(jt808.encode_media_reply(DEVICE, serial, media_id, missing, version), 0x8800) == (
        media_id,
        tuple(missing),
    )


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    versions,
    words,
    st.text(alphabet=st.characters(codec="gbk", exclude_categories=["Cs"]), max_size=700),
    st.fixed_dictionaries({k: st.booleans() for k in ("urgent", "display", "tts", "advertising", "can_fault")}),
    st.sampled_from([1, 2]),
)
def test_text_round_trip(version: int, serial: int, text: str, flags: dict[str, bool], text_type: int) -> None:
    frames = jt808.encode_text_message(DEVICE, serial, text, text_type=text_type, version=version, **flags)
    whole = jt808.decode_platform_frames(frames)
    assert whole.value == TextMessage(text, text_type=text_type if version == 2019 else None, **flags)
    assert len(frames) == 1 + (len(whole.body) - 1) // 1023


def test_text_flag_bits_and_encoder_errors() -> None:
    (frame,) = jt808.encode_text_message(DEVICE, 1, "停车", urgent=True, display=True, tts=True, version=2019)
    body = jt808.decode_platform_frame(frame).body
    assert body[:2] == bytes([0b1101, 1]) and body[2:] == "停车".encode("gbk")
    with pytest.raises(ProtocolError):
        jt808.encode_set_polygon(DEVICE, 1, PolygonArea(1, ((1.0, 1.0), (-1.0, 1.0), (0.5, 2.0))))
    with pytest.raises(ProtocolError):
        jt808.encode_set_circle_areas(DEVICE, 1, [CircleArea(1, 1, 1, 2**32)])
    with pytest.raises(ProtocolError):
        jt808.encode_text_message(DEVICE, 1, "\U0001f600")
    # hemisphere bits and the daily window form on the wire
    (frame,) = jt808.encode_set_circle_areas(
        DEVICE, 1, [CircleArea(9, -1.5, -2.5, 100, window=TimeWindow(dtime(7), dtime(9, 30)))]
    )
    body = jt808.decode_platform_frame(frame).body
    assert struct.unpack_from(">BBIH", body) == (jt808.AREA_APPEND, 1, 9, 0b11000001)
    assert body[-12:] == bytes.fromhex("000000070000000000093000")
    (frame,) = jt808.encode_set_circle_areas(
        DEVICE, 1, [CircleArea(9, 1, 2, 100, window=TimeWindow(T0, T0 + timedelta(hours=1)))]
    )
    assert jt808.decode_platform_frame(frame).body[-12:-6] == bytes.fromhex("260301163015")  # Beijing time


def test_existing_replies_still_parse() -> None:
    (reg,) = Jt808Decoder().feed(
        jt808.encode_frame(0x0100, DEVICE, 3, jt808.encode_registration_body(manufacturer="M", plate="A1"))
    )
    assert isinstance(reg, Registration)
    assert jt808.parse_registration_response(jt808.encode_registration_response(reg, 0, "code", serial=4)) == (
        3,
        0,
        "code",
    )
    assert jt808.parse_general_response(jt808.encode_general_response(reg, 3, serial=4)) == (3, 0x0100, 3)
    with pytest.raises(ProtocolError):
        jt808.parse_general_response(jt808.encode_registration_response(reg, 0, "code", serial=4))
    assert jt808.ack_for(reg) is None
    unsupported = Unsupported(protocol="jt808", device=DEVICE, msg_id=0x5501, serial=7)
    assert jt808.parse_general_response(jt808.ack_for(unsupported) or b"") == (7, 0x5501, 3)
    assert jt808.ack_for(FrameError(protocol="jt808", reason="garbage")) is None


# --------------------------------------------------------------------------------------------
# Stream properties


def sample_frames() -> list[bytes]:
    frames = [location_frame(i, lat=-(i + 1) * 1.5, lon=-(i + 1) * 2.5) for i in range(3)]
    frames.append(jt808.encode_frame(jt808.MSG_HEARTBEAT, DEVICE, 50))
    frames.append(location_frame(51, version=2019, device="12345678901234567890"))
    frames.extend(media_frames(4, b"\xff\xd8" + bytes(range(200)), serial=60, packet_size=90))
    frames.append(b"(740190311185,1,001,ELOCK,3,529439)")
    frames.append(payload_bytes(jt808_records()[32]))  # short-serial vendor frame
    frames.append(jt808.encode_frame(jt808.MSG_PASSTHROUGH, DEVICE, 70, b"\xf0\x7e\x7d"))
    return frames


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.sampled_from(sample_frames()), min_size=1, max_size=12), st.data())
def test_split_anywhere_gives_the_same_messages(frames: list[bytes], data: st.DataObject) -> None:
    whole = b"\x00garbage" + b"".join(frames) + b"tail"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=8)))
    # The final flag ends the stream: bytes after the last frame are reported once something ends them.
    expected = Jt808Decoder().feed(whole + b"\x7e", now=0.0)
    decoder = Jt808Decoder()
    got: list[Decoded] = []
    for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True):
        got.extend(decoder.feed(whole[a:b], now=0.0))
    assert got + decoder.feed(b"\x7e", now=0.0) == expected
    one_by_one = Jt808Decoder()
    singles = [m for i in range(len(whole)) for m in one_by_one.feed(whole[i : i + 1], now=0.0)]
    assert singles + one_by_one.feed(b"\x7e", now=0.0) == expected


garbage = st.binary(min_size=1, max_size=30)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=10, unique=True), st.data())
def test_garbage_loses_only_the_frames_it_touches(serials: list[int], data: st.DataObject) -> None:
    frames = [location_frame(s, lat=-10.5, lon=-20.25) for s in serials]
    chunks: list[bytes] = []
    touched: set[int] = set()
    for i, f in enumerate(frames):
        junk = data.draw(st.none() | garbage)
        if junk is not None:
            chunks.append(junk)
            if b"\x7e" in junk:  # a flag in the junk can pair with the next frame's flags
                touched.update({serials[i], serials[i + 1] if i + 1 < len(serials) else -1})
        chunks.append(f)
    out = Jt808Decoder().feed(b"".join(chunks) + b"\x7e", now=0.0)
    got = [m.serial for m in out if isinstance(m, Position)]
    assert set(serials) - touched <= set(got)
    assert got == [s for s in serials if s in set(got)]  # order kept, nothing invented
    assert all(isinstance(m, Position | FrameError) for m in out)


def test_text_frame_does_not_lose_the_next_frame() -> None:
    frame = location_frame(5)
    decoder = Jt808Decoder()
    assert decoder.feed(b"(7401903111", now=0) == []  # an unclosed text frame waits for its end
    out = decoder.feed(b"85,BASE,2,TIME)" + frame, now=0)
    assert [type(m) for m in out] == [FrameError, Position]
    assert out[0] == FrameError(
        protocol="jt808", reason="text framing not supported", raw=b"(740190311185,BASE,2,TIME)"
    )


def test_buffer_is_bounded() -> None:
    decoder = Jt808Decoder(max_buffer=100)
    out = decoder.feed(b"\x7e" + bytes(150), now=0)
    assert isinstance(out[-1], FrameError) and "no frame end" in out[-1].reason and len(decoder._buf) == 0
    out = decoder.feed(b"(" + b"x" * 200, now=0)
    assert isinstance(out[-1], FrameError) and len(decoder._buf) == 0
    (p,) = decoder.feed(location_frame(1), now=0)
    assert isinstance(p, Position)


# --------------------------------------------------------------------------------------------
# Fuzz


def fuzz_seeds() -> list[bytes]:
    return [
        *sample_frames(),
        *[payload_bytes(r) for r in jt808_records()[::9]],
        location_frame(1, version=2019),
        jt808.encode_frames(0x0801, DEVICE, 1, bytes(1500))[0],
    ]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(st.sampled_from(fuzz_seeds())))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(frame) - 1, 0)))
        if op == "flip" and frame:
            frame[at] = draw(st.integers(0, 255))
        elif op == "insert":
            frame[at:at] = draw(st.binary(max_size=4))
        elif op == "delete" and frame:
            del frame[at]
        elif op == "truncate":
            del frame[at:]
    return bytes(frame)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated() | st.binary(max_size=200), max_size=20), st.booleans(), st.integers(1, 64))
def test_fuzz_jt808(chunks: list[bytes], lenient: bool, step: int) -> None:
    decoder = Jt808Decoder(max_buffer=512, lenient=lenient, max_pending_messages=4, max_pending_bytes=4096)
    stream = b"".join(chunks)
    now = 0.0
    for i in range(0, len(stream), step):
        try:
            out = decoder.feed(stream[i : i + step], now=now)
        except ProtocolError:
            continue
        now += 7.0
        assert all(isinstance(m, Message | FrameError) for m in out)
        for m in out:
            if isinstance(m, FrameError):
                assert m.reason and isinstance(m.raw, bytes)
            else:
                jt808.ack_for(m, serial=1)  # every decoded message can be answered
        assert len(decoder._buf) <= 512
        assert decoder.pending_messages <= 4 and decoder.pending_bytes <= 4096


def test_decoded_items_are_counted_by_kind() -> None:
    """One pass over the vectors in strict mode: the mix of results, so a change in policy shows."""
    kinds: defaultdict[str, int] = defaultdict(int)
    for out in decoded_vectors(False).values():
        for m in out:
            kinds[type(m).__name__] += 1
    assert kinds["Registration"] == 6 and kinds["Authentication"] == 3 and kinds["Heartbeat"] == 1
    assert kinds["Passthrough"] == 4 and kinds["Unsupported"] == 14 and kinds["Position"] == 91
