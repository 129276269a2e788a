"""The vectorized JT/T 808 decoder says exactly what the per-frame decoder says."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import jt808
from protocols.columns import PositionColumns
from protocols.jt808_bulk import Jt808BulkDecoder
from protocols.messages import Decoded, FrameError, Heartbeat, Position

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))


def expand(items: list[Decoded | PositionColumns]) -> list[Decoded]:
    out: list[Decoded] = []
    for item in items:
        if isinstance(item, PositionColumns):
            out.extend(item.positions(jt808.alarm_flags, jt808.status_flags))
        else:
            out.append(item)
    return out


times = st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2098, 12, 30), timezones=st.just(UTC)).map(
    lambda t: t.replace(microsecond=0)
)


@st.composite
def location_frame(draw: st.DrawFn) -> bytes:
    body = jt808.encode_location_body(
        time=draw(times),
        lat=draw(st.floats(-90, 90)),
        lon=draw(st.floats(-180, 180)),
        speed_kmh=draw(st.floats(0, 6553)),
        course=draw(st.floats(0, 359)),
        altitude_m=draw(st.integers(-32768, 32767)),
        alarm=draw(st.integers(0, 2**32 - 1)),
        status=draw(st.integers(0, 2**32 - 1)),
        mileage_km=draw(st.none() | st.floats(0, 429496729).map(lambda v: round(v, 1))),
        satellites=draw(st.none() | st.integers(0, 255)),
    )
    body += draw(st.sampled_from([b"", b"\x30\x01\x1f", b"\x2b\x04\x00\x01\x00\x02", b"\xe1\x02\x7e\x7d"]))
    version = draw(st.sampled_from([2013, 2019]))
    non_bcd = "abcdef012345" if version == 2013 else "abcdef0123456789abcd"
    return jt808.encode_frame(
        jt808.MSG_LOCATION,
        draw(st.sampled_from(["13912345678", "1", "100000000000", non_bcd])),
        draw(st.integers(0, 0xFFFF)),
        body,
        version=version,
    )


@st.composite
def stream(draw: st.DrawFn) -> list[bytes]:
    frames = draw(st.lists(location_frame(), min_size=1, max_size=40))
    extra = draw(
        st.lists(
            st.sampled_from(
                [
                    jt808.encode_frame(jt808.MSG_HEARTBEAT, "13912345678", 7),
                    b"\x7e\x02\x00\x00\x00\x7e",  # too short
                    b"\x7e\x7d\x05\x7e",  # bad escape
                ]
            ),
            max_size=3,
        )
    )
    for item in extra:
        frames.insert(draw(st.integers(0, len(frames))), item)
    return frames


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(stream(), st.booleans())
def test_same_messages_as_the_per_frame_decoder(frames: list[bytes], corrupt: bool) -> None:
    if corrupt:  # a wrong check code in one frame
        i = len(frames) // 2
        f = bytearray(frames[i])
        f[-2] = (f[-2] + 1) % 0x7D
        frames[i] = bytes(f)
    data = b"".join(frames)
    expected = jt808.Jt808Decoder().feed(data)
    got = expand(Jt808BulkDecoder(min_bulk_bytes=0).feed(data))
    assert got == expected


@settings(max_examples=EXAMPLES // 3, deadline=None)
@given(stream(), st.data())
def test_split_anywhere(frames: list[bytes], data: st.DataObject) -> None:
    whole = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=6)))
    decoder = Jt808BulkDecoder(min_bulk_bytes=data.draw(st.sampled_from([0, 64, 4096])))
    got: list[Decoded] = []
    for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True):
        got.extend(expand(decoder.feed(whole[a:b])))
    assert got == jt808.Jt808Decoder().feed(whole)


def test_plain_reports_come_back_as_one_column_block() -> None:
    start = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    frames = [
        jt808.encode_frame(
            jt808.MSG_LOCATION,
            "13912345678",
            i,
            jt808.encode_location_body(
                time=start + timedelta(seconds=i), lat=-22.5, lon=-43.2, mileage_km=10.5, satellites=8
            ),
        )
        for i in range(500)
    ]
    out = Jt808BulkDecoder().feed(b"".join(frames))
    assert len(out) == 1 and isinstance(out[0], PositionColumns)
    cols = out[0]
    assert cols.devices == ["13912345678"] and len(cols) == 500
    assert cols.serial.tolist() == list(range(500))
    assert cols.lat[0] == pytest.approx(-22.5) and cols.lon[0] == pytest.approx(-43.2)
    assert cols.time_us[1] - cols.time_us[0] == 1_000_000
    assert cols.positions()[0].time == start
    assert set(cols.mileage_km.tolist()) == {10.5} and set(cols.satellites.tolist()) == {8}


def test_other_messages_keep_their_place() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    loc = [jt808.encode_frame(0x0200, "1", i, jt808.encode_location_body(time=t, lat=1, lon=2)) for i in range(100)]
    hb = jt808.encode_frame(jt808.MSG_HEARTBEAT, "1", 999)
    bad = bytearray(loc[0])
    bad[-2] ^= 1
    out = Jt808BulkDecoder(min_bulk_bytes=0).feed(b"".join([*loc[:50], hb, bytes(bad), *loc[50:]]))
    kinds = [type(x) for x in out]
    assert kinds == [PositionColumns, Heartbeat, FrameError, PositionColumns]
    assert [len(out[0]), len(out[3])] == [50, 50]  # type: ignore[arg-type]
    assert all(isinstance(p, Position) for p in expand(out[3:]))
