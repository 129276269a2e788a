"""NMEA 0183 over TCP: hand-made sentences with hand-computed values, epoch merging, framing, fuzzing.

There are no NMEA captures in the vectors file. The first sentences are the classic examples published
with the NMEA 0183 descriptions (their checksums 6A, 47, 48 and 53 come from there, not from our code).
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from functools import reduce
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import nmea
from protocols.messages import Decoded, FrameError, Heartbeat, Login, Position, ProtocolError, Unsupported

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
KN = 1.852
FUZZ = int(os.environ.get("FUZZ_EXAMPLES", "300"))

HELLO = b"$PGID,T55000123*62\r\n"
RMC = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n"
GGA = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"
VTG = b"$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48\r\n"
RMC_NO_FIX = b"$GPRMC,,V,,,,,,,,,,N*53\r\n"


def _cs(body: str) -> str:
    """XOR checksum written out here, independent of the module."""
    return f"{reduce(lambda a, c: a ^ ord(c), body, 0):02X}"


def _line(body: str) -> bytes:
    return f"${body}*{_cs(body)}\r\n".encode()


def _decoder(**kw: Any) -> nmea.NmeaDecoder:
    return nmea.NmeaDecoder(now=lambda: NOW, **kw)


def _positions(msgs: list[Decoded]) -> list[Position]:
    return [m for m in msgs if isinstance(m, Position)]


def test_identification_checksum_is_right() -> None:
    assert _line("PGID,T55000123") == HELLO


def test_classic_rmc_gga_pair() -> None:
    dec = _decoder()
    msgs = dec.feed(HELLO + RMC + GGA) + dec.flush()
    assert msgs[0] == Login(protocol="nmea", device="T55000123")
    [p] = msgs[1:]
    assert isinstance(p, Position) and p.device == "T55000123"
    # 48 deg 07.038 min = 48 + 7.038/60 = 48.1173; 11 deg 31.000 min = 11.516666...
    assert p.lat == pytest.approx(48.1173, abs=1e-9) and p.lon == pytest.approx(11 + 31 / 60, abs=1e-9)
    # 23 March 1994 (year 94 pivots to 1994), 12:35:19 UTC
    assert p.time == datetime(1994, 3, 23, 12, 35, 19, tzinfo=UTC)
    assert p.valid is True
    assert p.speed_kmh == pytest.approx(22.4 * 1.852)  # 41.4848 km/h
    assert p.course == 84.4
    # from the GGA: 8 satellites, HDOP 0.9, 545.4 m above mean sea level, GPS fix (quality 1)
    assert (p.satellites, p.altitude_m, p.extras["hdop"], p.extras["fix_quality"]) == (8, 545.4, 0.9, 1)
    assert p.extras["sentences"] == ["GGA", "RMC"]


def test_vtg_fills_speed_and_course_for_gga_terminals() -> None:
    # GGA + VTG, no RMC: date from the receive clock (2024-06-01), VTG: 54.7 deg true, 10.2 km/h.
    dec = _decoder()
    msgs = dec.feed(HELLO + GGA + VTG) + dec.flush()
    [p] = _positions(msgs)
    assert p.time == datetime(2024, 6, 1, 12, 35, 19, tzinfo=UTC)
    assert (p.course, p.speed_kmh, p.valid) == (54.7, 10.2, True)


def test_old_vtg_without_unit_letters() -> None:
    # NMEA 1.5 VTG: true course, magnetic course, knots, km/h
    dec = _decoder()
    msgs = dec.feed(HELLO + GGA + _line("GPVTG,054.7,034.4,005.5,010.2")) + dec.flush()
    [p] = _positions(msgs)
    assert (p.course, p.speed_kmh) == (54.7, 10.2)


def test_southern_western_hand_made() -> None:
    # 37 deg 51.65 min S = -37.860833..., 145 deg 07.36 min E = 145.122666...
    # 33 deg 27.000 min S / 070 deg 39.600 min W = -33.45, -70.66
    dec = _decoder()
    msgs = dec.feed(
        HELLO
        + _line("GNRMC,081836.50,A,3751.65000,S,14507.36000,E,0.000,,150924,,,A")
        + _line("BDRMC,081837.00,A,3327.00000,S,07039.60000,W,10.000,270.00,150924,,,D")
    )
    msgs += dec.flush()
    a, b = _positions(msgs)
    assert (a.lat, a.lon) == (pytest.approx(-(37 + 51.65 / 60)), pytest.approx(145 + 7.36 / 60))
    assert a.time == datetime(2024, 9, 15, 8, 18, 36, 500000, tzinfo=UTC) and a.course is None
    assert (b.lat, b.lon) == (pytest.approx(-33.45), pytest.approx(-70.66))
    assert b.speed_kmh == pytest.approx(18.52) and b.course == 270.0 and b.extras["talker"] == "BD"


@pytest.mark.parametrize("talker", ["GP", "GN", "BD", "GL", "GA", "GB"])
def test_talkers(talker: str) -> None:
    dec = _decoder()
    msgs = (
        dec.feed(HELLO + _line(f"{talker}RMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W")) + dec.flush()
    )
    assert len(_positions(msgs)) == 1


def test_other_talkers_and_types_are_unsupported() -> None:
    gsv = _line("GPGSV,1,1,01,05,40,083,46")
    lines = [_line("IIRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"), gsv, _line("GPXYZ,1,2")]
    msgs = _decoder().feed(HELLO + b"".join(lines))
    assert [type(m) for m in msgs] == [Login, Unsupported, Unsupported, Unsupported]
    assert isinstance(msgs[2], Unsupported) and msgs[2].body == gsv.rstrip(b"\r\n")


def test_no_identification() -> None:
    dec = _decoder()
    msgs = dec.feed(RMC + _line("GPGSV,1,1,00") + HELLO + RMC) + dec.flush()
    assert [getattr(m, "reason", None) for m in msgs[:2]] == ["no identification", "no identification"]
    assert isinstance(msgs[2], Login) and len(_positions(msgs)) == 1


def test_checksums() -> None:
    bad = RMC.replace(b"*6A", b"*6B")
    missing = RMC.replace(b"*6A", b"")
    msgs = _decoder().feed(HELLO + bad + missing + b"GPRMC,hello\r\n" + b"$PGID,T5*00\r\n")
    reasons = [m.reason for m in msgs if isinstance(m, FrameError)]
    assert reasons == ["bad checksum", "missing checksum", "not an NMEA sentence", "bad checksum"]
    assert not _positions(msgs)


def test_lf_only_and_blank_lines() -> None:
    dec = _decoder()
    msgs = dec.feed(HELLO.replace(b"\r\n", b"\n") + b"\n\r\n" + RMC.replace(b"\r\n", b"\n") + GGA) + dec.flush()
    assert [type(m) for m in msgs] == [Login, Position]


def test_long_line_is_garbage_and_skipped() -> None:
    junk = b"$GPRMC," + b"1" * 1100
    for chunks in ([HELLO + junk + b"\r\n" + RMC + GGA], [HELLO, junk[:600], junk[600:], b"\r", b"\n" + RMC + GGA]):
        dec = _decoder()
        msgs = [m for c in chunks for m in dec.feed(c)] + dec.flush()
        assert [type(m) for m in msgs] == [Login, FrameError, Position]
        assert isinstance(msgs[1], FrameError) and msgs[1].reason == "line longer than 1024 bytes"
        assert len(dec._buf) <= 1026
    # exactly 1024 bytes before CR LF is still a line (a bad one here, but judged as a sentence)
    line = b"$" + b"A" * 1023
    [_, err] = _decoder().feed(HELLO + line + b"\r\n")
    assert isinstance(err, FrameError) and err.reason == "unparseable sentence"


def test_no_fix_is_a_heartbeat() -> None:
    dec = _decoder()
    msgs = dec.feed(HELLO + RMC_NO_FIX) + dec.flush()
    [hb] = msgs[1:]
    assert isinstance(hb, Heartbeat) and hb.device == "T55000123"


def test_epochs_are_learned_then_emitted_without_wait() -> None:
    t0 = datetime(2024, 5, 5, 10, 0, 0, tzinfo=UTC)
    pairs = [nmea.encode_position(t0 + timedelta(seconds=i), 1.0 + i, 2.0, satellites=7) for i in range(3)]
    dec = _decoder()
    assert [type(m) for m in dec.feed(HELLO + pairs[0])] == [Login]  # first epoch: set not known yet
    got = dec.feed(pairs[1])  # the next RMC closes the first epoch; the second is complete at its GGA
    assert [p.lat for p in _positions(got)] == [1.0, 2.0] and all(p.satellites == 7 for p in _positions(got))
    assert [p.lat for p in _positions(dec.feed(pairs[2]))] == [3.0]
    assert dec.flush() == []


def test_gga_before_rmc_and_rmc_only_terminals() -> None:
    t0 = datetime(2024, 5, 5, 10, 0, 0, tzinfo=UTC)
    epochs = []
    for i in range(3):
        rmc, gga = nmea.encode_position(t0 + timedelta(seconds=i), 5.0, 6.0, altitude_m=12.0).splitlines(keepends=True)
        epochs.append(gga + rmc)
    dec = _decoder()
    msgs = dec.feed(HELLO + b"".join(epochs)) + dec.flush()
    assert [(p.time.second, p.altitude_m, p.speed_kmh) for p in _positions(msgs)] == [(i, 12.0, 0.0) for i in range(3)]
    only = [nmea.encode_position(t0 + timedelta(seconds=i), 5.0, 6.0, with_gga=False) for i in range(3)]
    dec = _decoder()
    assert len(_positions(dec.feed(HELLO + only[0]))) == 0  # the first waits for the next sentence
    assert len(_positions(dec.feed(only[1]))) == 2  # which shows the terminal sends RMC alone
    assert len(_positions(dec.feed(only[2]))) == 1  # from then on each one comes at once
    assert dec.flush() == []


def test_gga_alone_takes_the_last_rmc_date() -> None:
    rmc = _line("GPRMC,235959,A,4807.038,N,01131.000,E,0,0,311223,,")
    gga = _line("GPGGA,000001,4807.038,N,01131.000,E,1,05,1.0,10.0,M,0,M,,")
    dec = _decoder()
    msgs = dec.feed(HELLO + rmc + gga) + dec.flush()
    # RMC at 2023-12-31 23:59:59; a GGA at 00:00:01 is nearest on the next day
    assert [p.time for p in _positions(msgs)] == [
        datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC),
    ]


def test_reidentification_closes_the_epoch() -> None:
    dec = _decoder()
    msgs = dec.feed(HELLO + RMC + _line("PGID,OTHER1"))
    assert [type(m) for m in msgs] == [Login, Position, Login]
    assert msgs[1].device == "T55000123" and msgs[2].device == "OTHER1"


def test_ack_and_encoders() -> None:
    assert nmea.ack_for(Login(protocol="nmea", device="x")) is None
    assert nmea.encode_identification("T55000123") == HELLO
    assert nmea.checksum("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W") == "6A"
    with pytest.raises(ProtocolError):
        nmea.encode_identification("bad id")
    with pytest.raises(ProtocolError):
        nmea.encode_position(datetime(2024, 1, 1), 0.0, 0.0)
    with pytest.raises(ProtocolError):
        nmea.encode_position(NOW, 0.0, 181.0)
    rmc, gga = nmea.encode_position(NOW, -1.5, -2.25, speed_kmh=18.52, course=90).splitlines()
    assert (
        rmc
        == b"$GPRMC,120000.00,A,0130.00000,S,00215.00000,W,10.000,90.00,010624,,,A*" + _cs(rmc[1:-3].decode()).encode()
    )
    assert gga.startswith(b"$GPGGA,120000.00,0130.00000,S,00215.00000,W,1,")


# ---------------------------------------------------------------------------------------------
# Properties

_fixes = st.fixed_dictionaries(
    {
        "time": st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2079, 12, 31), timezones=st.just(UTC)
        ).map(lambda t: t.replace(microsecond=t.microsecond // 10000 * 10000)),
        "lat": st.floats(min_value=-89.99, max_value=89.99),
        "lon": st.floats(min_value=-179.99, max_value=179.99),
        "valid": st.booleans(),
        "speed_kmh": st.floats(min_value=0, max_value=500),
        "course": st.floats(min_value=0, max_value=359.99),
        "altitude_m": st.floats(min_value=-400, max_value=9000),
        "satellites": st.integers(0, 30),
        "hdop": st.floats(min_value=0.5, max_value=50),
    }
)


def _stream(fixes: list[dict[str, Any]]) -> bytes:
    return nmea.encode_identification("SIM42") + b"".join(nmea.encode_position(**f) for f in fixes)


def _check(p: Position, f: dict[str, Any]) -> None:
    assert p.device == "SIM42" and p.time == f["time"] and p.valid is f["valid"]
    assert p.lat == pytest.approx(f["lat"], abs=1e-6) and p.lon == pytest.approx(f["lon"], abs=1e-6)
    assert p.speed_kmh == pytest.approx(f["speed_kmh"], abs=0.001)
    assert p.course is not None and abs((p.course - f["course"] + 180) % 360 - 180) <= 0.006
    assert p.altitude_m == pytest.approx(f["altitude_m"], abs=0.05) and p.satellites == f["satellites"]
    assert p.extras["hdop"] == pytest.approx(f["hdop"], abs=0.005)


def _feed_all(dec: nmea.NmeaDecoder, chunks: list[bytes]) -> list[Decoded]:
    return [m for c in chunks for m in dec.feed(c)] + dec.flush()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@given(fixes=st.lists(_fixes, min_size=1, max_size=6))
def test_round_trip(fixes: list[dict[str, Any]]) -> None:
    msgs = _feed_all(_decoder(), [_stream(fixes)])
    positions = _positions(msgs)
    assert len(positions) == len(fixes) and len(msgs) == len(fixes) + 1
    for p, f in zip(positions, fixes, strict=True):
        _check(p, f)


@given(fixes=st.lists(_fixes, min_size=1, max_size=6), cuts=st.lists(st.integers(0, 5000), max_size=30))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_split_anywhere_gives_the_same_messages(fixes: list[dict[str, Any]], cuts: list[int]) -> None:
    data = _stream(fixes) + RMC_NO_FIX + b"$GPRMC,garbage*00\r\n" + GGA
    whole = _feed_all(_decoder(), [data])
    assert _feed_all(_decoder(), _split(data, cuts)) == whole
    assert _feed_all(_decoder(), [bytes([b]) for b in data]) == whole


@given(
    fixes=st.lists(_fixes, min_size=1, max_size=6),
    garbage=st.lists(st.tuples(st.integers(0, 12), st.binary(min_size=1, max_size=200)), max_size=4),
    own_line=st.booleans(),
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_garbage_between_lines_loses_only_touched_lines(
    fixes: list[dict[str, Any]], garbage: list[tuple[int, bytes]], own_line: bool
) -> None:
    lines = _stream(fixes).splitlines(keepends=True)  # PGID, then RMC, GGA per fix
    junk_before = {1 + i % len(lines[1:]): g.replace(b"\n", b"") for i, g in garbage}
    touched: set[int] = set()
    out = [lines[0]]
    for i, line in enumerate(lines[1:], start=1):
        if i in junk_before:
            out.append(junk_before[i] + (b"\n" if own_line else b""))
            touched.add((i - 1) // 2)  # the fix whose RMC or GGA the garbage is glued to
        out.append(line)
    positions = _positions(_feed_all(_decoder(), out))
    if own_line:  # garbage on a line of its own costs nothing
        assert len(positions) == len(fixes)
        for p, f in zip(positions, fixes, strict=True):
            _check(p, f)
    else:
        times = [p.time for p in positions]
        for n, f in enumerate(fixes):
            if n not in touched:
                assert f["time"] in times


_SEEDS = [HELLO, RMC, GGA, VTG, RMC_NO_FIX, nmea.encode_position(NOW, -10.0, -20.0, satellites=5)]


@settings(max_examples=FUZZ, suppress_health_check=[HealthCheck.too_slow])
@given(
    seeds=st.lists(st.sampled_from(_SEEDS), min_size=1, max_size=8),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    noise=st.binary(max_size=400),
    cuts=st.lists(st.integers(0, 10_000), max_size=10),
    max_buffer=st.sampled_from([64, 600, 65536]),
)
def test_fuzz_nmea(
    seeds: list[bytes], flips: list[tuple[int, int]], noise: bytes, cuts: list[int], max_buffer: int
) -> None:
    data = bytearray(HELLO + b"".join(seeds))
    for at, val in flips:
        data[at % len(data)] = val
    dec = _decoder(max_buffer=max_buffer)
    for chunk in _split(bytes(data) + noise + b"".join(seeds), cuts):
        try:
            msgs = dec.feed(chunk)
        except ProtocolError:
            continue
        assert len(dec._buf) <= max_buffer
        assert all(isinstance(m, (Position, Heartbeat, Login, Unsupported, FrameError)) for m in msgs)
    dec.flush()


def test_date_pivot() -> None:
    assert nmea._date("010180") == date(1980, 1, 1) and nmea._date("311279") == date(2079, 12, 31)
    assert nmea._date("300223") is None
