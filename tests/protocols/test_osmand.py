"""OsmAnd HTTP: the captured Traccar requests, hand-made requests, encode/decode round trips, fuzz."""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import osmand
from protocols.messages import FrameError, Heartbeat, Message, Position, ProtocolError, Unsupported
from tests.vectors import payload_bytes, records

RECEIVED = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))


def decode(method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"", **kw: Any) -> list:
    return osmand.decode_request(method, target, headers or {}, body, received=RECEIVED, **kw)


def one_position(out: list) -> Position:
    assert len(out) == 1 and isinstance(out[0], Position), out
    return out[0]


# ---------------------------------------------------------------------------------------------
# Captured requests

# The vectors carry no `fix` for OsmAnd (Traccar only checks these are sane), so the values below are
# read by hand from each request. speed is km/h; None = field absent; "server" = no timestamp sent.
EXPECTED: dict[int, dict[str, Any]] = {
    0: dict(device="48241179", lat=37.4219983, lon=-122.084, time="2025-06-15T13:45:12.862+00:00",
            speed=0.0, course=None, altitude=5.0, accuracy=5.0),
    1: dict(device="48241179", lat=37.4219983, lon=-122.084, time="2025-06-15T13:45:12.862+00:00",
            speed=0.0, course=None, altitude=5.0, accuracy=5.0),
    2: dict(device="658765", lat=37.785834, lon=-122.406417, time="2025-05-09T04:11:30.579+00:00",
            speed=None, course=None, altitude=0.0, accuracy=5.0),
    3: dict(device="8737767034", lat=-6.1148096, lon=106.6837015, time="2021-07-21T08:06:34.444+00:00",
            speed=18.67 * 3.6, course=63.0, altitude=35.7, accuracy=3.8),
    6: dict(device="902064", lat=42.06288, lon=-88.23412, time="2016-01-27T18:55:47+00:00",
            speed=0.0, course=None, altitude=224.0, accuracy=None),
    7: dict(device="902064", lat=42.06288, lon=-88.23412, time="2015-09-12T14:38:06.579+00:00",
            speed=0.0, course=None, altitude=224.0, accuracy=None),
    8: dict(device="353861053849681", lat=49.60688, lon=6.15788, time="2014-06-04T09:10:11+00:00",
            speed=0.0, course=None, altitude=384.7, accuracy=None),
    9: dict(device="123456", lat=60.0, lon=30.0, time="2013-08-22T13:14:27+00:00",
            speed=0.0, course=0.0, altitude=0.0, accuracy=None),
    10: dict(device="123456", lat=60.0, lon=30.0, time="2013-08-22T13:14:27+00:00",
             speed=None, course=None, altitude=None, accuracy=None),
    11: dict(device="123456", lat=60.0, lon=30.0, time="server",
             speed=0.0, course=0.0, altitude=0.0, accuracy=None),
    12: dict(device="861001000719969", lat=41.666667, lon=-0.883333, time="server",
             speed=0.0, course=None, altitude=350.059479, accuracy=None),
    13: dict(device="123456", lat=60.0, lon=30.0, time="2013-08-22T13:14:27+00:00",
             speed=None, course=None, altitude=None, accuracy=None),
    14: dict(device="123456789012345", lat=40.7232948571, lon=-74.0061408571, time="2017-09-07T05:56:50+00:00",
             speed=40 * 1.852, course=7.19889788244, altitude=None, accuracy=None),
}  # fmt: skip

# Extras we read from the same requests (hand-checked), beyond Traccar's single attribute check.
EXPECTED_EXTRAS: dict[int, dict[str, Any]] = {
    0: {"moving": False, "event": "motionchange", "activity": "still", "battery_pct": 100.0, "charging": False},
    2: {"mock": True, "uuid": "2FB04C65-99CF-42AB-8DD3-EBCB4B108BF8", "activity": "unknown"},
    3: {"battery_pct": 79.0, "speed_accuracy": 0.26, "activity_confidence": 100.0},
    6: {"hdop": 6.0},
    11: {"vacc": 0, "hacc": 0, "time_source": "server"},
    12: {"battery_pct": 87, "time_source": "server"},
    14: {"ignition": True, "rpm": 933, "fuel": 24},
}

# Traccar attribute keys -> our extras keys. Every OsmAnd attribute key in the vectors is checked
# (there is one: an app extra passed through under its own name); none is left unchecked.
ATTRIBUTE_KEYS = {"device_integer_twelve_test": "device_integer_twelve_test"}


def sane(p: Position) -> None:
    """Traccar's `location_checked` rules, in our units."""
    assert datetime(1999, 12, 31, tzinfo=UTC) < p.time <= RECEIVED + timedelta(hours=25)
    assert -90 <= p.lat <= 90 and -180 <= p.lon <= 180
    assert p.altitude_m is None or -12262 <= p.altitude_m <= 18000
    assert p.speed_kmh is None or 0 <= p.speed_kmh / 1.852 <= 869
    assert p.course is None or 0 <= p.course <= 360


def check_expected(p: Position, want: dict[str, Any]) -> None:
    assert p.device == want["device"]
    assert abs(p.lat - want["lat"]) < 1e-6 and abs(p.lon - want["lon"]) < 1e-6
    assert p.time == (RECEIVED if want["time"] == "server" else datetime.fromisoformat(want["time"]))
    for ours, key in ((p.speed_kmh, "speed"), (p.course, "course"), (p.altitude_m, "altitude")):
        assert ours == pytest.approx(want[key]) if want[key] is not None else ours is None, key
    assert p.accuracy_m == want["accuracy"]


def test_vectors() -> None:
    recs = records("osmand")
    assert len(recs) == 15
    checked_attributes = 0
    # No decoder state exists for HTTP, but the records still go in order, grouped by test method.
    for _method, group in groupby(recs, key=lambda r: r["test_method"]):
        for rec in group:
            http = rec["http"]
            assert http["target"].encode("latin-1") in payload_bytes(rec)  # the parts match the raw request
            out: list[Any] = osmand.decode_request(
                http["method"], http["target"], dict(http["headers"]), http["body"].encode("latin-1"), received=RECEIVED
            )
            status, body = osmand.response_for(out)
            order, expect = rec["order"], rec["expect"]
            if expect["null"]:
                # Order 5 is null because it has no id/deviceid: Traccar answers 400 and stores nothing.
                assert order == 5
                assert [type(m) for m in out] == [FrameError]
                assert out[0].reason == "missing device id"
                assert (status, body) == (400, b"")
                continue
            assert (status, body) == (200, b"")
            if order == 4:
                # verifyNotNull: an id with cell and Wi-Fi data but no coordinates. We cannot invent a
                # location, so it is a Heartbeat keeping the network data for a later geolocation step.
                assert [type(m) for m in out] == [Heartbeat]
                assert out[0].device == "123456"
                assert out[0].extras["cells"] == [
                    {"mcc": 257, "mnc": 2, "lac": 16, "cid": 2224},
                    {"mcc": 257, "mnc": 2, "lac": 16, "cid": 2223, "rssi": -90},
                ]
                assert out[0].extras["wifi"] == [
                    {"mac": "00:14:22:01:23:45", "rssi": -80},
                    {"mac": "00:1c:b3:09:85:15", "rssi": -70},
                ]
                assert out[0].extras["fix_time"] == "2013-08-22T13:14:27+00:00"
                continue
            p = one_position(out)
            assert p.protocol == "osmand" and p.valid
            if expect.get("location_checked"):
                sane(p)
            check_expected(p, EXPECTED[order])
            for key, value in EXPECTED_EXTRAS.get(order, {}).items():
                assert p.extras[key] == value, (order, key)
            attr = expect.get("attribute")
            if attr:
                assert p.extras[ATTRIBUTE_KEYS[attr["key"]]] == attr["value"]
                checked_attributes += 1
    assert checked_attributes == 1


# ---------------------------------------------------------------------------------------------
# Hand-made requests


@pytest.mark.parametrize(("unit", "kmh"), [("knots", 18.52), ("kmh", 10.0), ("mps", 36.0), ("mph", 16.09344)])
def test_speed_units(unit: str, kmh: float) -> None:
    p = one_position(decode("GET", "/?id=7&lat=1&lon=2&timestamp=1700000000&speed=10", speed_unit=unit))
    assert p.speed_kmh == pytest.approx(kmh)


def test_unknown_speed_unit_is_misuse() -> None:
    with pytest.raises(ProtocolError):
        decode("GET", "/?id=7&lat=1&lon=2", speed_unit="furlongs")


def test_post_form_body_and_post_query() -> None:
    form = one_position(decode("POST", "/", FORM, b"id=abc&lat=-33.9&lon=-70.1&timestamp=1700000000&bearing=400"))
    assert (form.device, form.lat, form.lon, form.course) == ("abc", -33.9, -70.1, 40.0)
    query = one_position(decode("POST", "/?deviceid=abc&lat=-33.9&lon=-70.1&timestamp=1700000000", {}, b""))
    assert (query.device, query.time) == ("abc", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC))
    # A header name in another case and a charset parameter are still understood.
    lower = one_position(
        decode("POST", "/", {"content-type": "application/x-www-form-urlencoded; charset=UTF-8"}, b"id=x&lat=1&lon=2")
    )
    assert lower.device == "x"


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("1700000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("1700000000.25", datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=UTC)),
        ("1700000000123", datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)),
        ("2023-11-14T22:13:20Z", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("2023-11-15T06:13:20+08:00", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("2023-11-14 22:13:20", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
    ],
)
def test_timestamp_forms(stamp: str, expected: datetime) -> None:
    p = one_position(decode("GET", f"/?id=1&lat=1&lon=1&timestamp={quote(stamp)}"))
    assert p.time == expected and "time_source" not in p.extras


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("id=1&lat=abc&lon=2", "bad lat"),
        ("id=1&lat=91&lon=2", "bad lat"),
        ("id=1&lat=1&lon=-180.5", "bad lon"),
        ("id=1&lat=1&lon=nan", "bad lon"),
        ("id=1&lat=1", "bad lon"),
        ("id=1&location=1;2", "bad location"),
        ("id=1&lat=1&lon=2&speed=fast", "bad speed"),
        ("id=1&lat=1&lon=2&bearing=1_0", "bad bearing"),
        ("id=1&lat=1&lon=2&altitude=inf", "bad altitude"),
        ("id=1&lat=1&lon=2&accuracy=1e999", "bad accuracy"),
        ("id=1&lat=1&lon=2&timestamp=yesterday", "bad timestamp"),
        ("id=1&lat=1&lon=2&timestamp=99999999999999999", "bad timestamp"),
        ("id=1&lat=1&lon=2&valid=maybe", "bad valid"),
        ("id=1&lat=1&lon=2&charge=x", "bad charge"),
        ("id=1&lat=1&lon=2&batt=half", "bad batt"),
        ("id=1&lat=1&lon=2&hdop=--1", "bad hdop"),
        ("id=1&lat=1&lon=2&cell=1,2,3", "bad cell"),
        ("id=1&lat=1&lon=2&wifi=aa:bb", "bad wifi"),
        ("id=1&lat=1&lon=2&cell=1,2,3,%D9%A3", "bad cell"),  # an Arabic-Indic digit is not a number here
        ("id=1&lat=%D9%A3&lon=2", "bad lat"),
        ("id=1&lat=1&lon=2&note=a%00b", "bad query (NUL or unencodable text)"),
        ("id=1&lat=1&lon=2&note=\udc80", "bad query (NUL or unencodable text)"),
        ("lat=1&lon=2", "missing device id"),
        ("id=%20%20&lat=1&lon=2", "missing device id"),
    ],
)
def test_bad_fields_name_the_field(query: str, reason: str) -> None:
    out = decode("GET", "/?" + query)
    assert [type(m) for m in out] == [FrameError]
    assert out[0].reason == reason
    assert osmand.response_for(out) == (400, b"")


def test_negative_values_mean_unknown_and_valid_flag() -> None:
    p = one_position(decode("GET", "/?id=1&lat=1&lon=2&speed=-1&heading=-1&accuracy=-1&valid=0"))
    assert (p.speed_kmh, p.course, p.accuracy_m, p.valid) == (None, None, None, False)
    assert p.time == RECEIVED and p.extras["time_source"] == "server"


def test_cell_and_wifi_tolerate_surrounding_whitespace() -> None:
    out = decode("GET", "/?id=1&cell=%1F250,+1,2,3&wifi=AA-BB-CC-DD-EE-FF,%09-50")
    hb = out[0]
    assert isinstance(hb, Heartbeat)
    assert hb.extras == {
        "cells": [{"mcc": 250, "mnc": 1, "lac": 2, "cid": 3}],
        "wifi": [{"mac": "aa:bb:cc:dd:ee:ff", "rssi": -50}],
    }


def test_unknown_fields_cannot_pass_for_ours() -> None:
    p = one_position(decode("GET", "/?id=1&lat=1&lon=2&timestamp=1700000000&cells=x&time_source=gps&mock=1"))
    assert p.extras == {"app_cells": "x", "app_time_source": "gps", "app_mock": 1}


def test_location_param_and_extras_typing() -> None:
    p = one_position(
        decode("GET", "/?id=1&location=-12.5,-45.25&driverUniqueId=D42&charge=true&batt=55.5&note=hi&door=false")
    )
    assert (p.lat, p.lon) == (-12.5, -45.25)
    assert p.extras == {
        "driver_id": "D42",
        "charging": True,
        "battery_pct": 55.5,
        "note": "hi",
        "door": False,
        "time_source": "server",
    }


def test_json_batch_keeps_good_entries() -> None:
    good = {"timestamp": "2024-01-02T03:04:05Z", "coords": {"latitude": -1.5, "longitude": -2.5, "speed": 10}}
    bad = {"timestamp": "2024-01-02T03:04:06Z", "coords": {"latitude": "north", "longitude": 1}}
    body = json.dumps({"device_id": 99, "location": [good, bad]}).encode()
    out = decode("POST", "/", JSON, body)
    assert [type(m) for m in out] == [Position, FrameError]
    assert out[0].device == "99" and out[0].speed_kmh == pytest.approx(36.0)
    assert out[1].reason == "bad latitude" and out[1].device == "99"
    assert osmand.response_for(out) == (200, b"")


def test_json_odometer_battery_and_query_id() -> None:
    loc = {
        "timestamp": "2024-01-02T03:04:05.5Z",
        "coords": {"latitude": 10, "longitude": 20, "heading": 370, "accuracy": 7},
        "odometer": 12345.6,
        "battery": {"level": 0.5, "is_charging": True},
        "extras": {"moving": "the app's own", "shift": "B"},
        "is_moving": True,
    }
    # No device_id in the document: the id in the target is used (Transistorsoft `params` off).
    p = one_position(decode("POST", "/?id=dev-1", JSON, json.dumps({"location": loc}).encode()))
    assert p.device == "dev-1"
    assert p.time == datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)
    assert p.mileage_km == pytest.approx(12.3456) and p.course == 10.0 and p.accuracy_m == 7.0
    assert p.extras["battery_pct"] == 50.0 and p.extras["charging"] is True
    assert p.extras["moving"] is True and p.extras["shift"] == "B"
    assert p.extras["app_moving"] == "the app's own"  # renamed, so it cannot pass for ours


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "bad json"),
        (b'{"device_id":"1","location":{"coords":{"latitude":NaN,"longitude":1}}}', "bad json"),
        (b'{"location":{"coords":{"latitude":1,"longitude":1}}}', "missing device id"),
        (b'{"device_id":"1","location":{"coords":{"latitude":1}}}', "bad longitude"),
        (b'{"device_id":"1","location":{"timestamp":"soon","coords":{"latitude":1,"longitude":1}}}', "bad timestamp"),
        (b'{"device_id":"1","location":{"coords":{"latitude":1,"longitude":1,"speed":true}}}', "bad speed"),
        (b'{"device_id":"1","location":{"coords":{"latitude":1e999,"longitude":1}}}', "bad json"),  # infinity
        (
            b'{"device_id":"1","location":{"coords":{"latitude":1,"longitude":1},"extras":{"a":"\\u0000"}}}',
            "bad json (NUL or unencodable text)",
        ),
        (
            b'{"device_id":"1","location":{"coords":{"latitude":1,"longitude":1},"extras":{"\\udc00":1}}}',
            "bad json (NUL or unencodable text)",
        ),
        (b'{"device_id":"1","location":"here"}', "bad location"),
        (b'{"device_id":"1","location":{"timestamp":"2024-01-01T00:00:00Z"}}', "bad location.coords"),
        (b"\xff\xfe", "bad json"),
        (b"[" * 50_000, "bad json"),  # too deep for the parser
    ],
)
def test_bad_json(body: bytes, reason: str) -> None:
    out = decode("POST", "/", JSON, body)
    assert [type(m) for m in out] == [FrameError]
    assert out[0].reason == reason
    assert osmand.response_for(out) == (400, b"")


def test_json_without_location_is_unsupported_and_answered() -> None:
    out = decode("POST", "/", JSON, b'{"device_id":"5","ping":true}')
    assert [type(m) for m in out] == [Unsupported] and out[0].device == "5"
    assert osmand.response_for(out) == (200, b"")


def test_method_and_size_limits() -> None:
    assert decode("DELETE", "/?id=1&lat=1&lon=1")[0].reason == "method DELETE not allowed"
    big = decode("POST", "/", FORM, b"id=1&lat=1&lon=1&x=" + b"a" * osmand.MAX_BODY)
    assert big[0].reason == "body too large" and len(big[0].raw) <= osmand.MAX_RAW
    many = "&".join(f"k{i}=1" for i in range(osmand.MAX_FIELDS + 1))
    assert decode("GET", "/?id=1&" + many)[0].reason == "bad query (too many fields)"
    assert osmand.response_for([]) == (400, b"")


# ---------------------------------------------------------------------------------------------
# Round trips through encode_query

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=20)
finite = st.floats(allow_nan=False, allow_infinity=False)
times = st.datetimes(
    min_value=datetime(1975, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    lambda t: t.replace(microsecond=0)
)
cells = st.fixed_dictionaries(
    {
        "mcc": st.integers(0, 999),
        "mnc": st.integers(0, 999),
        "lac": st.integers(0, 65535),
        "cid": st.integers(0, 2**28),
    },
    optional={"rssi": st.integers(-120, 0)},
)
wifis = st.fixed_dictionaries(
    {"mac": st.from_regex(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", fullmatch=True), "rssi": st.integers(-100, 0)}
)
custom_keys = st.from_regex(r"x_[a-z]{1,8}", fullmatch=True)
custom_values = (
    st.integers(-(10**12), 10**12) | st.booleans() | finite | st.from_regex(r"s:[a-z ]{0,10}", fullmatch=True)
)
extras = st.fixed_dictionaries(
    {},
    optional={
        "hdop": st.floats(0, 50),
        "battery_pct": st.integers(0, 100),
        "charging": st.booleans(),
        "driver_id": st.from_regex(r"[A-Z0-9]{1,10}", fullmatch=True),
        "cells": st.lists(cells, min_size=1, max_size=3),
        "wifi": st.lists(wifis, min_size=1, max_size=3),
    },
).flatmap(lambda own: st.dictionaries(custom_keys, custom_values, max_size=3).map(lambda c: {**c, **own}))

positions = st.builds(
    lambda device, time, lat, lon, valid, speed, course, alt, acc, ex: Position(
        protocol="osmand",
        device=device,
        time=time,
        lat=lat,
        lon=lon,
        valid=valid,
        speed_kmh=speed,
        course=course,
        altitude_m=alt,
        accuracy_m=acc,
        extras=ex,
    ),
    ids,
    times,
    st.floats(-90, 90),
    st.floats(-180, 180),
    st.booleans(),
    st.none() | st.floats(0, 1000),
    st.none() | st.floats(0, 360),
    st.none() | st.floats(-500, 9000),
    st.none() | st.floats(0, 5000),
    extras,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(positions, st.sampled_from(sorted(osmand.SPEED_UNITS)), st.booleans())
def test_round_trip(p: Position, unit: str, as_form: bool) -> None:
    query = osmand.encode_query(p, speed_unit=unit)
    if as_form:
        out = decode("POST", "/", FORM, query.encode(), speed_unit=unit)
    else:
        out = decode("GET", "/?" + query, speed_unit=unit)
    got = one_position(out)
    assert (got.device, got.time, got.lat, got.lon, got.valid) == (p.device, p.time, p.lat, p.lon, p.valid)
    assert (got.course, got.altitude_m, got.accuracy_m) == (p.course, p.altitude_m, p.accuracy_m)
    if p.speed_kmh is None:
        assert got.speed_kmh is None
    else:
        assert got.speed_kmh == pytest.approx(p.speed_kmh, rel=1e-12, abs=1e-12)
    assert got.extras == p.extras


def test_encode_query_misuse() -> None:
    p = Position(protocol="osmand", device="1", time=datetime(2024, 1, 1, tzinfo=UTC), lat=0, lon=0, valid=True)
    with pytest.raises(ProtocolError):
        osmand.encode_query(p, speed_unit="parsecs")
    with pytest.raises(ProtocolError):
        osmand.encode_query(Position(protocol="osmand", device="", time=p.time, lat=0, lon=0, valid=True))
    with pytest.raises(ProtocolError):
        osmand.encode_query(
            Position(protocol="osmand", device="1", time=datetime(2024, 1, 1), lat=0, lon=0, valid=True)
        )


# ---------------------------------------------------------------------------------------------
# Fuzz

VALID_TARGETS = [r["http"]["target"] for r in records("osmand") if r["http"]["method"] == "GET"]
VALID_BODIES = [r["http"]["body"].encode() for r in records("osmand") if r["http"]["body"]]


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        if buf:
            buf[pos % len(buf)] = value
    return bytes(buf)


edits = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8)
targets = (
    st.text(max_size=300)
    | st.builds(lambda t, e: _mutate(t.encode(), e).decode("latin-1"), st.sampled_from(VALID_TARGETS), edits)
    | st.builds(lambda t, cut: t[:cut], st.sampled_from(VALID_TARGETS), st.integers(0, 300))
)
bodies = (
    st.binary(max_size=600)
    | st.builds(_mutate, st.sampled_from(VALID_BODIES), edits)
    | st.builds(lambda b, cut: b[:cut], st.sampled_from(VALID_BODIES), st.integers(0, 900))
)
header_sets = st.sampled_from([{}, JSON, FORM, {"Content-Type": "text/plain"}, {"Content-Type": ";;"}])


def assert_storable(extras: dict[str, Any]) -> None:
    """What PostgreSQL jsonb accepts: no NaN/Infinity, no NUL, valid UTF-8 (no lone surrogates)."""
    text = json.dumps(extras, allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")
    assert "\\u0000" not in text


@settings(max_examples=FUZZ_EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["GET", "POST", "post", "PUT", ""]), targets, header_sets, bodies)
def test_fuzz_osmand(method: str, target: str, headers: dict[str, str], body: bytes) -> None:
    out = osmand.decode_request(method, target, headers, body, received=RECEIVED)
    assert isinstance(out, list) and out
    for m in out:
        assert isinstance(m, Message | FrameError)
        if isinstance(m, FrameError):
            assert m.reason and len(m.raw) <= osmand.MAX_RAW
        if isinstance(m, Position):
            assert m.device and m.device == m.device.strip()
            assert -90 <= m.lat <= 90 and -180 <= m.lon <= 180
            for v in (m.speed_kmh, m.course, m.altitude_m, m.accuracy_m):
                assert v is None or math.isfinite(v)
            assert m.time.tzinfo is not None
            assert_storable(m.extras)
    status, _ = osmand.response_for(out)
    assert status == (200 if any(isinstance(m, Message) for m in out) else 400)
