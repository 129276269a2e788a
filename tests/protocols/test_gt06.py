"""GT06: the captured Traccar frames, acks and encoders, round trips, stream splitting, fuzz."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import gt06
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
from tests.vectors import payload_bytes, records

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
IMEI = "864717003283581"
T0 = datetime(2024, 3, 1, 12, 30, 45, tzinfo=UTC)

# ---------------------------------------------------------------------------------------------
# Captured frames. One decoder for the whole test method (login state carries over); each payload is
# followed by flush() because Traccar hands every payload to its decoder as one complete unit.

VECTORS = records("gt06")
BY_ORDER = {r["order"]: r for r in VECTORS}

# What every record must decode to. Positions are checked further below.
LOGIN = {1, 118, 139, 140, 154}
HEARTBEAT = {16, 32, 40, 55, 122, 141, 169, 171, 172} | {163}  # 163: 0x8A time request
REPLY = {56, 98, 125, 128, 136, 137, 138}
POSITION = {
    3, 24, 25, 26, 28, 29, 31, 34, 41, 43, 46, 49, 53, 54, 64, 65, 67, 74, 75, 85, 87, 89, 90, 97, 111,
    123, 124, 135, 142, 143, 144, 146, 147, 148, 149, 153, 157, 158, 170, 177, 179, 180, 185, 186,
}  # fmt: skip
CRC_BAD = {35, 36, 37, 52, 115, 145, 155, 165, 166, 167, 168, 174}  # derived crc_ok false, length fine
# Length field that does not land on 0d0a (derived length_matches false), or below 5 (161: 78 78 01 08 0d 0a).
LENGTH_BAD = {38, 70, 76, 77, 99, 100, 101, 102, 103, 104, 105, 106, 107, 159, 160, 161}
NO_LOGIN = {0}
# Everything else is a well-framed vendor packet this codec does not decode (Wi-Fi/multi-cell LBS 0x17
# 0x19 0x28 0x2c 0xa1 0xa2, info 0x94, serial data 0x9b, 0x70 modular, 0x95 event, 0x32/0x34/0x36/0x37
# vendor GPS, OBD 0x8c, peripherals 0xf1 0xf2, ...) or a standard number whose content does not fit
# the standard layout (173, 175, 178: a model-specific 0x22/0x12 with the IMEI in front).
UNSUPPORTED = set(BY_ORDER) - LOGIN - HEARTBEAT - REPLY - POSITION - CRC_BAD - LENGTH_BAD - NO_LOGIN

# Why each verifyNull record yields no position.
NULL_WHY = {
    0: "0x12 before any login: cannot be attributed (FrameError 'no login')",
    1: "login", 118: "login", 139: "login", 140: "login", 154: "login",
    155: "login with a bad CRC: rejected",
    159: "login whose length field overshoots the data: rejected",
    51: "0x19 multi-cell LBS (vendor): Unsupported",
    58: "0x66 vendor PID packet: Unsupported",
    119: "0x35 photo information: Unsupported",
    131: "0x84 unknown 0x7979 packet: Unsupported",
    151: "three 0xfd firmware-text frames: three Unsupported",
    152: "0x81 command-related packet: Unsupported",
    156: "0x1f unknown: Unsupported (acknowledged)",
    161: "length field 1 (no serial, no CRC): rejected",
    162: "0x2a address request: Unsupported, no reply without a geocoder",
    163: "0x8a time request: Heartbeat answered with the UTC time",
}  # fmt: skip

# Traccar alarm names -> ours.
TRACCAR_ALARMS = {
    "sos": {"sos"},
    "tampering": {"tamper"},
    "lowBattery": {"low_battery", "low_external_battery"},
    "removing": {"removal"},
    "hardAcceleration": {"harsh_acceleration"},
    "hardBraking": {"harsh_braking"},
    "accident": {"collision"},
}
ALARM_NOT_CHECKED = {
    41: "alarm byte 0x0C: not in the Concox table this codec uses",
    43: "alarm byte 0x25: not in the Concox table this codec uses",
    170: "model LW4G-4B reads 0x19 as hard acceleration; the standard table says low battery",
}
BATTERY_NOT_CHECKED = {
    24: "vendor status block: the 'voltage level' byte holds a percentage (93)",
    55: "16-byte vendor heartbeat variant",
}
# Attribute keys not checked: vendor packets this codec leaves Unsupported (driverUniqueId, tag1Temp,
# steps, humidity, eventFiles, networkTechnology, door, serial, adc1, result, event on 0x95), vendor tails
# of standard packets (temp1, drivingTime, power/battery in long 0x13 variants), and model layouts of
# records 169-186 (power, hours, battery, driverUniqueId, event). altitude: GT06 standard packets carry none.
UNCHECKED_KEYS = {
    "power", "driverUniqueId", "tag1Temp", "steps", "humidity", "eventFiles", "temp1", "battery",
    "networkTechnology", "altitude", "event", "drivingTime", "door", "serial", "adc1", "hours", "result",
}  # fmt: skip
# Records 169-186 (model_override): checked = decoded in the standard layout and asserted like the others:
# 169/171/172 heartbeats, 170/177/185/186 alarm positions (177's alarm 0x30 harsh braking matches),
# 179/180 positions, 174 CRC error, 173/175/176/178/181-184 Unsupported. Their vendor attributes are not.
MODEL_CHECKED = {169, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186}


def kind_of(item: Decoded) -> str:
    return type(item).__name__


def only(out: list[Decoded], cls: type[Any]) -> Any:
    """The single item of `out`, checked to be a `cls`."""
    assert len(out) == 1 and isinstance(out[0], cls), out
    return out[0]


def errors(out: list[Decoded]) -> list[FrameError]:
    return [m for m in out if isinstance(m, FrameError)]


@pytest.fixture(scope="module")
def decoded() -> dict[int, list[Decoded]]:
    decoder = gt06.Gt06Decoder()
    out: dict[int, list[Decoded]] = {}
    methods = {r["test_method"] for r in VECTORS}
    assert methods == {"testDecode"}  # one method: one decoder for all records
    for r in VECTORS:
        out[r["order"]] = decoder.feed(payload_bytes(r)) + decoder.flush()
    return out


def test_vector_sets_cover_every_record() -> None:
    sets = [LOGIN, HEARTBEAT, REPLY, POSITION, CRC_BAD, LENGTH_BAD, NO_LOGIN]
    assert sum(len(s) for s in sets) == len(set().union(*sets))  # disjoint
    assert len(VECTORS) == 187
    assert all(not r["expect"]["null"] for r in VECTORS if r["order"] in POSITION)
    assert {o for o, r in BY_ORDER.items() if r.get("model_override")} == MODEL_CHECKED


@pytest.mark.parametrize("order", sorted(BY_ORDER))
def test_vector_kind(decoded: dict[int, list[Decoded]], order: int) -> None:
    out = decoded[order]
    if order in CRC_BAD:
        assert "crc" in only(out, FrameError).reason
        return
    if order in LENGTH_BAD:
        err = only(out, FrameError)
        assert "length" in err.reason or "truncated" in err.reason
        assert err.raw == payload_bytes(BY_ORDER[order])
        return
    if order in NO_LOGIN:
        assert "no login" in only(out, FrameError).reason
        return
    expected = (
        "Login" if order in LOGIN
        else "Heartbeat" if order in HEARTBEAT
        else "CommandReply" if order in REPLY
        else "Position" if order in POSITION
        else "Unsupported"
    )  # fmt: skip
    frames = len(BY_ORDER[order]["derived"]["frames"])
    assert [kind_of(m) for m in out] == [expected] * frames
    assert all(m.device for m in out if isinstance(m, Message))


def test_crc_failures_are_counted(decoded: dict[int, list[Decoded]]) -> None:
    bad = {o for o, r in BY_ORDER.items() if any(f.get("crc_ok") is False for f in r["derived"]["frames"])}
    crc_rejected = {
        o for o, out in decoded.items() if any(isinstance(m, FrameError) and "crc" in m.reason for m in out)
    }
    assert crc_rejected == CRC_BAD
    # The other four frames with a wrong CRC also have a wrong length field: rejected for that first.
    assert bad - CRC_BAD == {38, 105, 106, 107} <= LENGTH_BAD
    assert len(CRC_BAD) == 12


@pytest.mark.parametrize("order", sorted(o for o, r in BY_ORDER.items() if r["expect"]["null"]))
def test_vector_null(decoded: dict[int, list[Decoded]], order: int) -> None:
    assert order in NULL_WHY
    assert not any(isinstance(m, Position) for m in decoded[order])


def _session_tz(decoded: dict[int, list[Decoded]], order: int) -> int:
    """Zone of the last accepted login before `order` (what the decoder applies)."""
    tz = 0
    for o in sorted(decoded):
        if o >= order:
            break
        for m in decoded[o]:
            if isinstance(m, Login):
                tz = m.extras.get("tz_offset_minutes", 0)
    return tz


@pytest.mark.parametrize("order", sorted(POSITION))
def test_vector_position(decoded: dict[int, list[Decoded]], order: int) -> None:
    r = BY_ORDER[order]
    (pos,) = decoded[order]
    assert isinstance(pos, Position)
    assert -90 <= pos.lat <= 90 and -180 <= pos.lon <= 180
    assert pos.time.tzinfo is UTC and pos.time.year > 1999
    assert pos.course is not None and 0 <= pos.course < 360
    gps = r["derived"]["frames"][0].get("gps")
    if gps is not None:
        assert pos.lat == pytest.approx(gps["lat"], abs=1e-6)
        assert pos.lon == pytest.approx(gps["lon"], abs=1e-6)
        assert pos.valid is gps["fix_valid"]
        assert pos.speed_kmh == gps["speed_kmh"]
        assert pos.course == gps["course"]
        assert pos.satellites == gps["satellites"]
        assert pos.status == int(gps["flags_word"], 16)
        sent = datetime.fromisoformat(gps["time_as_sent"]).replace(tzinfo=UTC)
        assert pos.time == sent - timedelta(minutes=_session_tz(decoded, order))
    fix = r["expect"].get("fix")
    if fix:
        # Traccar's fix is rounded to 5 decimals (its tolerance_deg 1e-5); the 1e-6 check is the derived one.
        assert pos.lat == pytest.approx(fix["lat"], abs=fix["tolerance_deg"])
        assert pos.lon == pytest.approx(fix["lon"], abs=fix["tolerance_deg"])
        assert pos.valid is fix["valid"]
        assert pos.time == datetime.fromisoformat(fix["time_utc"].replace("Z", "+00:00"))


def test_login_time_zone_applies_to_following_positions(decoded: dict[int, list[Decoded]]) -> None:
    (login,) = decoded[154]
    assert isinstance(login, Login) and login.extras["tz_offset_minutes"] == -4 * 60  # 0x190a: 4:00 west
    (pos,) = decoded[157]
    assert isinstance(pos, Position) and pos.time == datetime(2017, 8, 25, 21, 2, 22, tzinfo=UTC)
    assert _session_tz(decoded, 143) == 0  # login 140 had no zone word


ATTRIBUTE_RECORDS = sorted(o for o, r in BY_ORDER.items() if r["expect"].get("attribute"))


@pytest.mark.parametrize("order", ATTRIBUTE_RECORDS)
def test_vector_attribute(decoded: dict[int, list[Decoded]], order: int) -> None:
    attr = BY_ORDER[order]["expect"]["attribute"]
    key, value = attr["key"], attr["value"]
    out = decoded[order]
    msg = out[0]
    if isinstance(msg, FrameError | Unsupported):
        return  # rejected or not decoded: asserted by test_vector_kind
    if key == "alarm" and order not in ALARM_NOT_CHECKED:
        assert isinstance(msg, Position)
        assert msg.alarms & TRACCAR_ALARMS[value], (msg.alarm, msg.alarms)
    elif key == "ignition":
        assert isinstance(msg, Position) and ("acc" in msg.flags) is value
    elif key == "batteryLevel" and order not in BATTERY_NOT_CHECKED:
        assert isinstance(msg, Position | Heartbeat) and msg.extras["battery_level"] == value
    elif key == "iccid":
        assert isinstance(msg, CommandReply) and value in msg.text
    else:
        assert key in UNCHECKED_KEYS or order in ALARM_NOT_CHECKED or order in BATTERY_NOT_CHECKED


def test_vector_logins_and_replies(decoded: dict[int, list[Decoded]]) -> None:
    for order in sorted(LOGIN):
        frame = BY_ORDER[order]["derived"]["frames"][0]
        (login,) = decoded[order]
        assert isinstance(login, Login)
        assert login.device == frame["login_imei"]
        assert gt06.ack_for(login) == bytes.fromhex(frame["login_reply_hex"])
    assert only(decoded[118], Login).extras["type_code"] == 0xA001
    # Command replies: text and the server flag echoed.
    texts = {o: only(decoded[o], CommandReply).text for o in REPLY}
    assert texts[98] == "Command error!"  # UTF-16BE on 0x7979
    assert texts[125] == "DYD=Success!"  # length byte 0: text runs to the language word, NULs stripped
    assert texts[137] == "Cut off the fuel supply: Success!"
    assert texts[128].startswith("Current position!Lat:N54.739332")  # not turned into a position
    assert all(gt06.ack_for(decoded[o][0]) is None for o in REPLY)


def test_vector_heartbeat_and_alarm_details(decoded: dict[int, list[Decoded]]) -> None:
    (hb,) = decoded[122]  # c4 06 04 00 02
    assert isinstance(hb, Heartbeat)
    assert hb.extras["voltage_level"] == 6 and hb.extras["gsm_signal"] == 4 and hb.extras["battery_level"] == 100
    assert hb.extras["charging"] and hb.extras["gps_fixed"] and hb.extras["fuel_cut"] and not hb.extras["acc"]
    assert gt06.ack_for(hb) == gt06.encode_frame(0x13, serial=hb.serial)
    (alarm,) = decoded[142]  # 0x16, terminal info 0x48: alarm code 1 (vibration), alarm byte 0x03 vibration
    assert isinstance(alarm, Position) and alarm.alarms == {"vibration"} and alarm.alarm == 3
    assert alarm.extras["mcc"] == 460 and alarm.extras["lac"] == 0x287D and alarm.extras["cell_id"] == 0x1F71
    ack = gt06.ack_for(alarm)
    assert ack is not None and ack[3] == 0x16 and ack[4:6] == (0x1C).to_bytes(2, "big")
    (fence,) = decoded[87]  # 0xA4 4G alarm: MNC word, LAC dword, 8-byte cell, fence byte
    assert isinstance(fence, Position) and fence.extras["fence_id"] == 0xFF and fence.extras["mnc"] == 1
    assert fence.alarms == {"power_off"} and fence.extras["cell_id"] == 0x615F801
    (four_g,) = decoded[28]  # 0xA0
    assert isinstance(four_g, Position) and four_g.extras["upload_reason"] == 0x0E
    assert four_g.lat == pytest.approx(-12.936676, abs=1e-6) and four_g.lon == pytest.approx(-38.396418, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# CRC, acks and encoders


def test_crc_itu() -> None:
    assert gt06.crc_itu(b"123456789") == 0x906E  # CRC-16/X-25 check value
    assert gt06.crc_itu(bytes.fromhex("05010005")) == 0x9FF8  # Concox login reply 7878050100059FF80D0A


def test_ack_for() -> None:
    dec = gt06.Gt06Decoder()
    (login,) = dec.feed(gt06.encode_login(IMEI, serial=5))
    assert gt06.ack_for(login) == bytes.fromhex("7878050100059ff80d0a")
    (pos,) = dec.feed(gt06.encode_position(time=T0, lat=1.0, lon=2.0, serial=0x1234))
    assert gt06.ack_for(pos) == gt06.encode_frame(0x22, serial=0x1234)
    (unknown,) = dec.feed(gt06.encode_frame(0x1F, b"\x00\x01", serial=7))
    assert isinstance(unknown, Unsupported) and gt06.ack_for(unknown) == gt06.encode_frame(0x1F, serial=7)
    (long_unknown,) = dec.feed(gt06.encode_frame(0x1F, b"\x00\x01", serial=7, long=True))
    assert isinstance(long_unknown, Unsupported) and gt06.ack_for(long_unknown) is None  # no acks on 79 79
    (time_req,) = dec.feed(gt06.encode_frame(0x8A, serial=6))
    now = datetime(2031, 12, 24, 23, 59, 58, tzinfo=UTC)
    assert gt06.ack_for(time_req, now=now) == gt06.encode_frame(0x8A, bytes((31, 12, 24, 23, 59, 58)), serial=6)
    (address,) = dec.feed(gt06.encode_frame(0x2A, b"\x00" * 10, serial=8))
    assert gt06.ack_for(address) is None
    (bad,) = dec.feed(b"\x78\x78\x05\x13\x00\x01\x00\x00\r\n")
    assert isinstance(bad, FrameError) and gt06.ack_for(bad) is None


def test_encode_command_layout() -> None:
    frame = gt06.encode_command("RELAY,1#", serial=0x0102, server_flag=0xA1B2C3D4)
    assert frame[:2] == b"xx" and frame[-2:] == b"\r\n" and frame[2] == len(frame) - 5
    assert frame[3] == 0x80 and frame[4] == 4 + 8 and frame[5:9] == bytes.fromhex("a1b2c3d4")
    assert frame[9:17] == b"RELAY,1#" and frame[17:19] == b"\x01\x02"
    assert int.from_bytes(frame[19:21], "big") == gt06.crc_itu(frame[2:19])
    with_lang = gt06.encode_command("DYD,000000#", serial=1, language=2)
    assert with_lang[-8:-6] == b"\x00\x02"
    long = gt06.encode_command("X" * 250, serial=1)
    assert long[:2] == b"yy" and int.from_bytes(long[2:4], "big") == len(long) - 6
    with pytest.raises(ProtocolError):
        gt06.encode_command("relé", serial=1)
    with pytest.raises(ProtocolError):
        gt06.encode_command("X" * 252, serial=1)
    with pytest.raises(ProtocolError):
        gt06.encode_command("X", serial=0x10000)
    # The decoder frames our own command (as an unknown terminal packet) with the body intact.
    dec = gt06.Gt06Decoder()
    dec.feed(gt06.encode_login(IMEI, serial=1))
    (echo,) = dec.feed(frame)
    assert isinstance(echo, Unsupported) and echo.body == frame[4:17]


def test_command_reply_decoding() -> None:
    dec = gt06.Gt06Decoder()
    dec.feed(gt06.encode_login(IMEI, serial=1))
    text = b"Relay:ON"
    ascii_reply = bytes((4 + len(text),)) + (77).to_bytes(4, "big") + text + b"\x00\x02"
    (reply,) = dec.feed(gt06.encode_frame(0x15, ascii_reply, serial=3))
    assert isinstance(reply, CommandReply) and reply.text == "Relay:ON" and reply.reply_serial == 77
    utf16 = (78).to_bytes(4, "big") + b"\x02" + "Готово".encode("utf-16-be")
    (reply2,) = dec.feed(gt06.encode_frame(0x21, utf16, serial=4, long=True))
    assert isinstance(reply2, CommandReply) and reply2.text == "Готово" and reply2.reply_serial == 78


def test_login_time_zone_policy() -> None:
    dec = gt06.Gt06Decoder(tz_offset_minutes=480)
    dec.feed(gt06.encode_login(IMEI, serial=1))  # no zone word: the configured +8:00 applies
    pos = only(dec.feed(gt06.encode_position(time=T0, lat=1, lon=1, serial=2)), Position)
    assert pos.time == T0 - timedelta(hours=8)
    login = only(dec.feed(gt06.encode_login(IMEI, serial=3, type_code=0x100F, tz_offset_minutes=-330)), Login)
    assert login.extras["tz_offset_minutes"] == -330
    pos = only(dec.feed(gt06.encode_position(time=T0, lat=1, lon=1, serial=4)), Position)
    assert pos.time == T0 + timedelta(minutes=330)  # the login's zone wins over the configured one
    only(dec.feed(gt06.encode_login(IMEI, serial=5, type_code=0x100F, tz_offset_minutes=0)), Login)
    pos = only(dec.feed(gt06.encode_position(time=T0, lat=1, lon=1, serial=6)), Position)
    assert pos.time == T0  # an explicit zero zone wins too
    only(dec.feed(gt06.encode_login(IMEI, serial=7)), Login)  # a login without a zone: configured again
    pos = only(dec.feed(gt06.encode_position(time=T0, lat=1, lon=1, serial=8)), Position)
    assert pos.time == T0 - timedelta(hours=8)


def test_packets_before_login_are_not_attributed() -> None:
    dec = gt06.Gt06Decoder()
    pos = gt06.encode_position(time=T0, lat=10, lon=20, serial=9)
    err, err2 = dec.feed(pos + gt06.encode_heartbeat(serial=10))
    assert isinstance(err, FrameError) and "no login" in err.reason and err.raw == pos and err.serial == 9
    assert isinstance(err2, FrameError) and "no login" in err2.reason and err2.msg_id == 0x13
    out = dec.feed(gt06.encode_login(IMEI, serial=11) + pos)
    assert [kind_of(m) for m in out] == ["Login", "Position"] and out[1].device == IMEI


def test_short_and_odd_content_is_unsupported_not_fatal() -> None:
    dec = gt06.Gt06Decoder()
    dec.feed(gt06.encode_login(IMEI, serial=1))
    bad_date = bytes((24, 13, 40, 0, 0, 0)) + bytes(12)
    out = dec.feed(gt06.encode_frame(0x22, bad_date, serial=2) + gt06.encode_frame(0x12, b"", serial=3))
    assert [kind_of(m) for m in out] == ["Unsupported", "Unsupported"]
    (short_login,) = dec.feed(gt06.encode_frame(0x01, b"\x01\x02", serial=4))
    assert isinstance(short_login, FrameError) and "login" in short_login.reason


# ---------------------------------------------------------------------------------------------
# Round trips

latitudes = st.floats(min_value=-90, max_value=90, allow_nan=False)
longitudes = st.floats(min_value=-180, max_value=180, allow_nan=False)
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda t: t.replace(microsecond=0, tzinfo=UTC)
)


@given(
    time=times,
    lat=latitudes,
    lon=longitudes,
    speed=st.integers(0, 255),
    course=st.integers(0, 359),
    valid=st.booleans(),
    sats=st.integers(0, 15),
    mcc=st.integers(0, 999),
    mnc=st.integers(0, 999),
    lac=st.integers(0, 0xFFFF),
    cell=st.integers(0, 0xFFFFFF),
    acc=st.booleans(),
    backfill=st.booleans(),
    mileage=st.none() | st.integers(0, 0xFFFFFFFF).map(lambda m: m / 1000),
    serial=st.integers(0, 0xFFFF),
)
def test_position_round_trip(**kw: Any) -> None:
    frame = gt06.encode_position(
        time=kw["time"], lat=kw["lat"], lon=kw["lon"], serial=kw["serial"], speed_kmh=kw["speed"],
        course=kw["course"], valid=kw["valid"], satellites=kw["sats"], mcc=kw["mcc"], mnc=kw["mnc"],
        lac=kw["lac"], cell_id=kw["cell"], acc=kw["acc"], backfill=kw["backfill"], mileage_km=kw["mileage"],
    )  # fmt: skip
    dec = gt06.Gt06Decoder()
    dec.feed(gt06.encode_login(IMEI, serial=0))
    (pos,) = dec.feed(frame)
    assert isinstance(pos, Position)
    assert (pos.device, pos.msg_id, pos.serial) == (IMEI, 0x22, kw["serial"])
    assert pos.time == kw["time"]
    assert abs(pos.lat - kw["lat"]) <= 1e-6 and abs(pos.lon - kw["lon"]) <= 1e-6
    # Hemisphere survives (a value that rounds to 0 has no sign to keep).
    if abs(kw["lat"]) > 1e-6:
        assert (pos.lat < 0) == (kw["lat"] < 0)
    if abs(kw["lon"]) > 1e-6:
        assert (pos.lon < 0) == (kw["lon"] < 0)
    assert pos.speed_kmh == kw["speed"] and pos.course == kw["course"]
    assert pos.valid is kw["valid"] and pos.satellites == kw["sats"]
    assert (pos.extras["mcc"], pos.extras["mnc"], pos.extras["lac"], pos.extras["cell_id"]) == (
        kw["mcc"], kw["mnc"], kw["lac"], kw["cell"],
    )  # fmt: skip
    assert ("acc" in pos.flags) is kw["acc"] and pos.backfill is kw["backfill"]
    assert pos.mileage_km == kw["mileage"]


@given(imei=st.from_regex(r"\A[0-9]{15}\Z"), serial=st.integers(0, 0xFFFF), tz=st.integers(-12 * 60, 14 * 60))
def test_login_round_trip(imei: str, serial: int, tz: int) -> None:
    dec = gt06.Gt06Decoder()
    (login,) = dec.feed(gt06.encode_login(imei, serial=serial, type_code=0x2201, tz_offset_minutes=tz))
    assert isinstance(login, Login) and login.device == imei and login.serial == serial
    assert login.extras["tz_offset_minutes"] == tz and login.extras["type_code"] == 0x2201
    assert gt06.ack_for(login) == gt06.encode_frame(0x01, serial=serial)


# ---------------------------------------------------------------------------------------------
# Stream properties


def _frames(n: int) -> list[bytes]:
    frames = [gt06.encode_login(IMEI, serial=0)]
    for i in range(n):
        sign = -1 if i % 2 else 1
        frames.append(
            gt06.encode_position(time=T0 + timedelta(seconds=i), lat=sign * 33.5, lon=-sign * 70.25, serial=i + 1)
        )
        if i % 3 == 0:
            frames.append(gt06.encode_heartbeat(serial=1000 + i))
    return frames


FRAMES = _frames(12)
STREAM = b"".join(FRAMES)


def _summary(items: list[Decoded]) -> list[tuple[Any, ...]]:
    return [(kind_of(m), m.msg_id, m.serial, getattr(m, "reason", ""), getattr(m, "raw", b"")) for m in items]


def _feed_split(data: bytes, cuts: list[int], **kw: Any) -> list[Decoded]:
    dec = gt06.Gt06Decoder(**kw)
    out: list[Decoded] = []
    prev = 0
    for cut in [*sorted(cuts), len(data)]:
        out += dec.feed(data[prev:cut])
        prev = cut
        assert dec.buffered <= dec._max
    return out + dec.flush()


def test_one_byte_at_a_time() -> None:
    whole = _feed_split(STREAM, [])
    assert len(whole) == len(FRAMES) and not any(isinstance(m, FrameError) for m in whole)
    assert _summary(_feed_split(STREAM, list(range(len(STREAM))))) == _summary(whole)


@given(st.lists(st.integers(0, len(STREAM)), max_size=40))
def test_split_anywhere_same_messages(cuts: list[int]) -> None:
    assert _summary(_feed_split(STREAM, cuts)) == _summary(_feed_split(STREAM, []))


# A stream with bad frames too: a CRC error, a Wi-Fi packet with length 0, garbage.
MIXED = (
    FRAMES[0]
    + b"\x00\xffjunk"
    + bytes.fromhex("787800691710231108500200cc080c4e2fa5640c4e2fa66e0d0a")
    + FRAMES[1][:-3]
    + bytes((FRAMES[1][-3] ^ 1,))
    + FRAMES[1][-2:]
    + FRAMES[2]
    + b"\x78"
    + FRAMES[3]
)


def test_mixed_stream_policy() -> None:
    out = _feed_split(MIXED, [])
    kinds = ["Login", "FrameError", "FrameError", "FrameError", "Heartbeat", "FrameError", "Position"]
    assert [kind_of(m) for m in out] == kinds
    junk, wifi, crc, stray = errors(out)
    assert "garbage" in junk.reason and junk.raw == b"\x00\xffjunk"
    assert "length" in wifi.reason
    assert "crc" in crc.reason
    assert "length" in stray.reason and stray.raw == b"\x78"  # stray 0x78: false start "78 78 78"
    # That false start does not hold the position back until more data arrives.
    dec = gt06.Gt06Decoder()
    dec.feed(FRAMES[0])
    assert [kind_of(m) for m in dec.feed(b"\x78" + FRAMES[3])] == ["FrameError", "Position"]


@given(st.lists(st.integers(0, len(MIXED)), max_size=30))
def test_mixed_stream_split_anywhere(cuts: list[int]) -> None:
    assert _summary(_feed_split(MIXED, cuts)) == _summary(_feed_split(MIXED, []))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    where=st.integers(1, len(FRAMES) - 1),
    # Biased towards marker, length and stop bytes so that false starts are common.
    garbage=st.lists(
        st.sampled_from([0x78, 0x79, 0x0D, 0x0A, 0x00, 0x05, 0x20]) | st.integers(0, 255), min_size=1, max_size=300
    ).map(bytes),
    cuts=st.lists(st.integers(0, 4000), max_size=10),
)
def test_garbage_loses_only_frames_it_touches(where: int, garbage: bytes, cuts: list[int]) -> None:
    data = b"".join(FRAMES[:where]) + garbage + b"".join(FRAMES[where:])
    out = _feed_split(data, [c for c in cuts if c <= len(data)])
    good = [(m.msg_id, m.serial) for m in out if isinstance(m, Message)]
    expected = [(m.msg_id, m.serial) for m in _feed_split(STREAM, [])]
    # Every frame survives: a false start inside the garbage is cut back when a valid frame lies in its span.
    assert good == expected, (garbage.hex(), where)
    assert any(isinstance(m, FrameError) for m in out)
    assert _summary(out) == _summary(_feed_split(data, []))  # and the split does not matter


def test_false_start_whose_span_ends_on_a_real_frame_end() -> None:
    # 78 78 25: a 42-byte span that ends exactly on the 0d0a of the next (39-byte) frame; its CRC fails.
    dec = gt06.Gt06Decoder()
    dec.feed(FRAMES[0])
    assert len(FRAMES[1]) == 39
    out = dec.feed(b"\x78\x78\x25" + FRAMES[1])
    assert [kind_of(m) for m in out] == ["FrameError", "Position"] and "length" in errors(out)[0].reason


def test_buffer_is_bounded() -> None:
    dec = gt06.Gt06Decoder(max_buffer=256)
    out = dec.feed(b"\x00" * 1000)
    assert dec.buffered <= 256 and any("overflow" in m.reason for m in out if isinstance(m, FrameError))
    # A 79 79 length larger than the buffer is refused at once, and the next frame still decodes.
    out = dec.feed(b"\x79\x79\xff\xff\x01" + FRAMES[0])
    assert [kind_of(m) for m in out][-1] == "Login" and any("length" in getattr(m, "reason", "") for m in out)
    # Megabytes of back-to-back frames in one call.
    big = STREAM * 300
    out = gt06.Gt06Decoder(max_buffer=256).feed(big)
    assert len(out) == len(FRAMES) * 300 and not any(isinstance(m, FrameError) for m in out)


# ---------------------------------------------------------------------------------------------
# Fuzz


def _mutate(frame: bytes, data: st.DataObject) -> bytes:
    b = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "length"]))
        if op == "flip" and b:
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut" and b:
            del b[data.draw(st.integers(0, len(b) - 1)) :]
        elif op == "insert":
            b[data.draw(st.integers(0, len(b))) : 0] = data.draw(st.binary(max_size=8))
        elif op == "length" and len(b) > 3:
            b[2] = data.draw(st.integers(0, 255))
    return bytes(b)


SAMPLES = [payload_bytes(r) for r in VECTORS] + FRAMES


@settings(max_examples=FUZZ_EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_gt06(data: st.DataObject) -> None:
    pieces = [FRAMES[0]]
    for _ in range(data.draw(st.integers(1, 6))):
        kind = data.draw(st.sampled_from(["random", "mutated", "valid"]))
        if kind == "random":
            pieces.append(data.draw(st.binary(max_size=200)))
        else:
            frame = data.draw(st.sampled_from(SAMPLES))
            pieces.append(_mutate(frame, data) if kind == "mutated" else frame)
    stream = b"".join(pieces)
    max_buffer = data.draw(st.sampled_from([64, 512, 65536]))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    try:
        out = _feed_split(stream, cuts, max_buffer=max_buffer)
    except ProtocolError:
        return
    for m in out:
        assert isinstance(m, Message | FrameError)
        if isinstance(m, Position):
            assert -90 <= m.lat <= 90 and -180 <= m.lon <= 180 and m.time.tzinfo is UTC
        gt06.ack_for(m)  # never raises
    consumed = sum(len(m.raw) for m in out if isinstance(m, FrameError))
    assert consumed <= len(stream)
