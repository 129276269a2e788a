"""Phones over MQTT: hand-made OwnTracks/city messages in JSON and msgpack, round trips, fuzz.

There are no captured MQTT messages in the vectors; the messages below are written from the OwnTracks
JSON format (field names and units) with values chosen so that every mapping can be checked.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import phone_mqtt
from protocols.messages import FrameError, Heartbeat, Logout, Message, Position, ProtocolError, Unsupported

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
TST = 1_700_000_000
TIME = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)

# What an OwnTracks Android app publishes (every optional field present).
OWNTRACKS = {
    "_type": "location",
    "lat": -33.8568,
    "lon": -70.6483,
    "tst": TST,
    "acc": 12,
    "alt": 540,
    "vel": 36,
    "cog": 271,
    "vac": 3,
    "batt": 77,
    "bs": 2,
    "tid": "i7",
    "t": "u",
    "conn": "m",
    "m": 1,
    "created_at": TST + 5,
    "SSID": "depot",
    "BSSID": "00:11:22:33:44:55",
    "inregions": ["depot", "zone 3"],
    "p": 101.3,
    "topic": "owntracks/alice/i7",  # OwnTracks HTTP mode adds this; ignored
}
OWNTRACKS_EXTRAS = {
    "user": "alice",
    "battery_pct": 77,
    "charging": True,
    "vertical_accuracy_m": 3,
    "tid": "i7",
    "trigger": "u",
    "conn": "m",
    "monitoring_mode": 1,
    "created_at": TST + 5,
    "ssid": "depot",
    "bssid": "00:11:22:33:44:55",
    "inregions": ["depot", "zone 3"],
    "pressure_kpa": 101.3,
}


def as_json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def as_msgpack(doc: dict[str, Any]) -> bytes:
    return msgpack.packb(doc, use_bin_type=True)


ENCODINGS = pytest.mark.parametrize("encode", [as_json, as_msgpack], ids=["json", "msgpack"])


def one(out: list[Any], kind: type) -> Any:
    assert [type(m) for m in out] == [kind], out
    return out[0]


# ---------------------------------------------------------------------------------------------
# Hand-made messages


@ENCODINGS
def test_owntracks_location(encode: Any) -> None:
    p = one(phone_mqtt.decode_publish("owntracks/alice/i7-phone", encode(OWNTRACKS)), Position)
    assert (p.protocol, p.device, p.time, p.valid) == ("mqtt", "i7-phone", TIME, True)
    assert (p.lat, p.lon) == (-33.8568, -70.6483)
    assert (p.speed_kmh, p.course, p.altitude_m, p.accuracy_m) == (36.0, 271.0, 540.0, 12.0)
    assert p.extras == OWNTRACKS_EXTRAS


@ENCODINGS
def test_city_location_minimal_and_type_optional(encode: Any) -> None:
    p = one(phone_mqtt.decode_publish("city/car-9/location", encode({"lat": 31.2, "lon": 121.5, "tst": TST})), Position)
    assert (p.device, p.lat, p.lon, p.time) == ("car-9", 31.2, 121.5, TIME)
    assert (p.speed_kmh, p.course, p.altitude_m, p.accuracy_m, p.extras) == (None, None, None, None, {})


@ENCODINGS
@pytest.mark.parametrize("kind", ["checkin", "checkout"])
def test_checkin_checkout(encode: Any, kind: str) -> None:
    doc = {"_type": kind, "lat": 22.5, "lon": 114.1, "tst": TST, "acc": 8, "mock": True, "post": "A-12", "note": "ok"}
    p = one(phone_mqtt.decode_publish("city/inspector-3/event", encode(doc)), Position)
    assert (p.device, p.lat, p.lon, p.time, p.accuracy_m) == ("inspector-3", 22.5, 114.1, TIME, 8.0)
    assert p.extras == {"event": kind, "mock": True, "post": "A-12", "note": "ok"}


def test_checkin_needs_a_position_and_a_type() -> None:
    out = phone_mqtt.decode_publish("city/i/event", b'{"_type":"checkin","tst":1700000000}')
    assert one(out, FrameError).reason == "bad lat"
    # An event topic has no default _type: a bare fix there is not a check-in.
    out = phone_mqtt.decode_publish("city/i/event", b'{"lat":1,"lon":2,"tst":1700000000}')
    assert one(out, FrameError).reason == "missing _type"


@ENCODINGS
def test_other_types(encode: Any) -> None:
    assert one(phone_mqtt.decode_publish("owntracks/u/d", encode({"_type": "lwt", "tst": TST})), Logout).device == "d"
    hb = one(phone_mqtt.decode_publish("owntracks/u/d", encode({"_type": "status", "android": {}})), Heartbeat)
    assert hb.device == "d" and hb.extras == {"type": "status"}
    for kind in ("transition", "waypoint", "waypoints", "card", "cmd", "encrypted", "steps", "x-vendor"):
        payload = encode({"_type": kind, "lat": 1, "lon": 2, "tst": TST})
        u = one(phone_mqtt.decode_publish("owntracks/u/d/event", payload), Unsupported)
        assert (u.device, u.body) == ("d", payload)


def test_negative_means_unknown_and_course_folds() -> None:
    doc = {"_type": "location", "lat": 0, "lon": 0, "tst": TST, "vel": -1, "cog": 725, "acc": -1, "bs": 0}
    p = one(phone_mqtt.decode_publish("city/d/location", as_json(doc)), Position)
    assert (p.speed_kmh, p.course, p.accuracy_m) == (None, 5.0, None)
    assert "charging" not in p.extras  # bs 0 = unknown


def test_msgpack_timestamp_extension_and_fractional_tst() -> None:
    doc = {"_type": "location", "lat": 1.5, "lon": -2.5, "tst": msgpack.Timestamp(TST, 250_000_000)}
    p = one(phone_mqtt.decode_publish("city/d/location", msgpack.packb(doc, datetime=False)), Position)
    assert p.time == TIME.replace(microsecond=250000)
    p = one(phone_mqtt.decode_publish("city/d/location", b'{"lat":1,"lon":2,"tst":1700000000.5}'), Position)
    assert p.time == TIME.replace(microsecond=500000)


def test_json_with_bom_and_whitespace() -> None:
    for payload in (b'\xef\xbb\xbf{"lat":1,"lon":2,"tst":1700000000}', b'\n {"lat":1,"lon":2,"tst":1700000000}'):
        assert one(phone_mqtt.decode_publish("city/d/location", payload), Position).lat == 1.0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00\x01", "unknown encoding"),
        (b"lat=1&lon=2", "unknown encoding"),
        (b"{lat:1}", "bad json"),
        (b'{"lat":NaN,"lon":1,"tst":1}', "bad json"),
        (b"[1, 2]", "payload is not a map"),
        (b"\x81\xa3lat", "bad msgpack"),
        (b"\x81\x01\x02", "bad msgpack"),  # integer map key
        (as_msgpack({"lat": 1}) + b"\x00", "bad msgpack"),  # trailing data
        (b'{"lon":1,"tst":1}', "bad lat"),
        (b'{"lat":"1","lon":1,"tst":1}', "bad lat"),
        (b'{"lat":90.0001,"lon":1,"tst":1}', "bad lat"),
        (b'{"lat":1,"lon":-181,"tst":1}', "bad lon"),
        (b'{"lat":1,"lon":1e999,"tst":1}', "bad lon"),  # json reads 1e999 as Infinity
        (b'{"lat":1,"lon":1}', "bad tst"),
        (b'{"lat":1,"lon":1,"tst":"now"}', "bad tst"),
        (b'{"lat":1,"lon":1,"tst":1e300}', "bad tst"),
        (b'{"lat":1,"lon":1,"tst":true}', "bad tst"),
        (b'{"lat":1,"lon":1,"tst":1,"vel":"fast"}', "bad vel"),
        (b'{"lat":1,"lon":1,"tst":1,"tid":7}', "bad tid"),
        (b'{"lat":1,"lon":1,"tst":1,"mock":"yes"}', "bad mock"),
        (b'{"lat":1,"lon":1,"tst":1,"inregions":"home"}', "bad inregions"),
        (b'{"lat":1,"lon":1,"tst":1,"inregions":["a\\u0000"]}', "bad inregions"),
        (b'{"lat":1,"lon":1,"tst":1,"tid":"\\ud800"}', "bad tid"),
        (as_msgpack({"lat": 1, "lon": 1, "tst": 1, "SSID": "a\x00b"}), "bad SSID"),
        (b'{"lat":1,"lon":1,"tst":1,"bs":1.5}', "bad bs"),
        (b'{"_type":5,"lat":1,"lon":1,"tst":1}', "bad _type"),
        (b"[" * 50_000, "bad json"),  # too deep for the parser
    ],
)
def test_bad_payloads(payload: bytes, reason: str) -> None:
    err = one(phone_mqtt.decode_publish("city/d7/location", payload), FrameError)
    assert (err.protocol, err.reason, err.device) == ("mqtt", reason, "d7")
    assert err.raw == payload[: phone_mqtt.MAX_PAYLOAD]


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("owntracks/u", "unknown topic"),
        ("owntracks/u/d/info", "unknown topic"),
        ("city/d/commands", "unknown topic"),
        ("city/d", "unknown topic"),
        ("/city/d/location", "unknown topic"),
        ("city//location", "bad device id in topic"),
        ("city/+/location", "bad device id in topic"),
        ("owntracks/u/#", "bad device id in topic"),
        ("owntracks//d", "bad user in topic"),
        ("", "unknown topic"),
    ],
)
def test_bad_topics(topic: str, reason: str) -> None:
    assert one(phone_mqtt.decode_publish(topic, b'{"lat":1,"lon":1,"tst":1}'), FrameError).reason == reason


def test_empty_payload_clears_retained_message() -> None:
    assert phone_mqtt.decode_publish("owntracks/u/d", b"") == []


def test_oversized_payload() -> None:
    payload = b'{"lat":1,"lon":1,"tst":1,"pad":"' + b"x" * phone_mqtt.MAX_PAYLOAD + b'"}'
    err = one(phone_mqtt.decode_publish("city/d/location", payload), FrameError)
    assert err.reason == "payload too large" and len(err.raw) == phone_mqtt.MAX_PAYLOAD


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching (+ one level, # the rest)."""
    f, t = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


def test_topics_and_subscriptions() -> None:
    assert phone_mqtt.topic_for("bus-12") == "city/bus-12/location"
    assert phone_mqtt.event_topic_for("bus-12") == "city/bus-12/event"
    decodable = ["owntracks/u/d", "owntracks/u/d/event", phone_mqtt.topic_for("d"), phone_mqtt.event_topic_for("d")]
    for topic in decodable:
        assert any(matches(f, topic) for f in phone_mqtt.SUBSCRIPTIONS), topic
        assert not isinstance(phone_mqtt.decode_publish(topic, b'{"_type":"lwt"}')[0], FrameError)
    # The server must not subscribe to anything it would only reject.
    assert not any(matches(f, "owntracks/u/d/cmd") for f in phone_mqtt.SUBSCRIPTIONS)
    for bad in ("", "a/b", "a+", "#", "x\x00"):
        with pytest.raises(ProtocolError):
            phone_mqtt.topic_for(bad)


def test_encode_misuse() -> None:
    p = Position(protocol="mqtt", device="d", time=TIME, lat=1, lon=2, valid=True)
    with pytest.raises(ProtocolError):
        phone_mqtt.encode_location(p, fmt="xml")
    with pytest.raises(ProtocolError):
        phone_mqtt.encode_location(
            Position(protocol="x", device="d", time=datetime(2024, 1, 1), lat=1, lon=2, valid=True)
        )
    with pytest.raises(ProtocolError):
        phone_mqtt.encode_location(Position(protocol="x", device="d", time=TIME, lat=math.nan, lon=2, valid=True))


def test_encode_is_owntracks_shaped() -> None:
    p = Position(
        protocol="mqtt",
        device="d",
        time=TIME.replace(microsecond=900000),
        lat=-1.25,
        lon=-2.5,
        valid=True,
        speed_kmh=20.0,
        extras={"battery_pct": 50, "tid": "ab", "charging": False, "user": "not sent"},
    )
    doc = json.loads(phone_mqtt.encode_location(p))
    assert doc == {
        "_type": "location",
        "lat": -1.25,
        "lon": -2.5,
        "tst": TST,
        "vel": 20.0,
        "batt": 50,
        "tid": "ab",
        "bs": 1,
    }
    assert msgpack.unpackb(phone_mqtt.encode_location(p, fmt="msgpack")) == doc


# ---------------------------------------------------------------------------------------------
# Round trips


def texts(max_size: int) -> st.SearchStrategy[str]:
    """Text a phone can send and the store can keep (NUL and lone surrogates are refused: test_bad_payloads)."""
    return st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=max_size)


levels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=16)
quantity = st.none() | st.floats(0, 5000) | st.integers(0, 5000).map(float)
extras = st.fixed_dictionaries(
    {},
    optional={
        "battery_pct": st.integers(0, 100),
        "charging": st.booleans(),
        "vertical_accuracy_m": st.floats(0, 100),
        "tid": texts(3),
        "trigger": st.sampled_from(["p", "c", "b", "r", "u", "t", "v"]),
        "conn": st.sampled_from(["w", "o", "m"]),
        "monitoring_mode": st.integers(-1, 2),
        "created_at": st.integers(TST - 10**6, TST + 10**6),
        "ssid": texts(32),
        "bssid": texts(17),
        "inregions": st.lists(texts(8), max_size=3),
        "pressure_kpa": st.floats(50, 110),
        "mock": st.booleans(),
    },
)
events = st.fixed_dictionaries(
    {"event": st.sampled_from(sorted(phone_mqtt.EVENTS))},
    optional={"post": texts(10), "note": texts(40)},
)
positions = st.builds(
    lambda device, time, lat, lon, speed, course, alt, acc, ex: Position(
        protocol="mqtt",
        device=device,
        time=time,
        lat=lat,
        lon=lon,
        valid=True,
        speed_kmh=speed,
        course=course,
        altitude_m=alt,
        accuracy_m=acc,
        extras=ex,
    ),
    levels,
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
        lambda t: t.replace(microsecond=0)  # OwnTracks tst is whole seconds
    ),
    st.floats(-90, 90),
    st.floats(-180, 180),
    quantity,
    st.none() | st.floats(0, 360),
    st.none() | st.floats(-500, 9000),
    quantity,
    st.one_of(extras, st.tuples(extras, events).map(lambda pair: {**pair[0], **pair[1]})),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(positions, st.sampled_from(["json", "msgpack"]), st.none() | levels)
def test_round_trip(p: Position, fmt: str, owntracks_user: str | None) -> None:
    payload = phone_mqtt.encode_location(p, fmt=fmt)
    is_event = p.extras.get("event") in phone_mqtt.EVENTS
    if owntracks_user is not None:
        topic = f"owntracks/{owntracks_user}/{p.device}" + ("/event" if is_event else "")
    else:
        topic = (phone_mqtt.event_topic_for if is_event else phone_mqtt.topic_for)(p.device)
    got = one(phone_mqtt.decode_publish(topic, payload), Position)
    assert (got.device, got.time, got.lat, got.lon, got.valid) == (p.device, p.time, p.lat, p.lon, True)
    assert (got.speed_kmh, got.course, got.altitude_m, got.accuracy_m) == (
        p.speed_kmh,
        p.course,
        p.altitude_m,
        p.accuracy_m,
    )
    expected_extras = dict(p.extras)
    if owntracks_user is not None:
        expected_extras["user"] = owntracks_user
    assert got.extras == expected_extras


# ---------------------------------------------------------------------------------------------
# Fuzz

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(["_type", "lat", "lon", "tst", "acc", "alt", "vel", "cog", "batt", "bs", "tid", "t"])
docs = st.dictionaries(field_names | st.text(max_size=6), json_values, max_size=8)
types = st.sampled_from(["location", "checkin", "checkout", "lwt", "status", "card", 7, None])
near_valid = st.builds(
    lambda base, kind, extra: {**base, "_type": kind, **extra},
    st.just({"lat": 1.0, "lon": 2.0, "tst": TST}),
    types,
    docs,
)


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        if buf:
            buf[pos % len(buf)] = value
    return bytes(buf)


def _encode_any(doc: Any, fmt: str) -> bytes:
    if fmt == "json":
        return json.dumps(doc).encode()  # may contain NaN/Infinity: must be refused, not stored
    return msgpack.packb(doc, use_bin_type=True)


edits = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6)
payloads = (
    st.binary(max_size=400)
    | st.builds(_encode_any, docs | near_valid, st.sampled_from(["json", "msgpack"]))
    | st.builds(_mutate, st.builds(_encode_any, near_valid, st.sampled_from(["json", "msgpack"])), edits)
    | st.builds(
        lambda b, cut: b[:cut], st.sampled_from([as_json(OWNTRACKS), as_msgpack(OWNTRACKS)]), st.integers(0, 600)
    )
)
topics = st.text(max_size=40) | st.sampled_from(
    ["owntracks/u/d", "owntracks/u/d/event", "city/d/location", "city/d/event", "city/+/location", "owntracks/u/d/x"]
)


def assert_storable(extras: dict[str, Any]) -> None:
    """What PostgreSQL jsonb accepts: no NaN/Infinity, no NUL, valid UTF-8 (no lone surrogates)."""
    text = json.dumps(extras, allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")
    assert "\\u0000" not in text


@settings(max_examples=FUZZ_EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(topics, payloads)
def test_fuzz_phone_mqtt(topic: str, payload: bytes) -> None:
    out = phone_mqtt.decode_publish(topic, payload)
    assert isinstance(out, list) and len(out) <= 1
    assert out or payload == b""
    for m in out:
        assert isinstance(m, Message | FrameError)
        if isinstance(m, FrameError):
            assert m.reason and len(m.raw) <= phone_mqtt.MAX_PAYLOAD
        else:
            assert m.device and "/" not in m.device
        if isinstance(m, Position):
            assert -90 <= m.lat <= 90 and -180 <= m.lon <= 180
            for v in (m.speed_kmh, m.course, m.altitude_m, m.accuracy_m):
                assert v is None or (math.isfinite(v) and v >= -1e6)
            assert m.time.tzinfo is not None
            assert_storable(m.extras)
