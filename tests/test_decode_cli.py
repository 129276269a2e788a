"""`telematics decode`: a user pastes what a terminal sent and sees what the server understands."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from protocols import jt808
from telematics import decode
from telematics.cli import main
from tests.vectors import payload_bytes, records


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_jt808_hex_position(capsys: pytest.CaptureFixture[str]) -> None:
    t = datetime(2026, 11, 21, 8, 30, 5, tzinfo=UTC)
    frame = jt808.encode_frame(
        jt808.MSG_LOCATION,
        "13912345678",
        42,
        jt808.encode_location_body(time=t, lat=-22.9, lon=-43.2, speed_kmh=50.4, course=181, altitude_m=12),
    )
    assert main(["decode", "--protocol", "jt808", frame.hex()]) == 0
    (m,) = _lines(capsys.readouterr().out)
    assert m["type"] == "position" and m["protocol"] == "jt808" and m["device"] == "13912345678"
    assert m["time"] == "2026-11-21T08:30:05Z"
    assert (m["lat"], m["lon"], m["speed_kmh"], m["course"], m["altitude_m"]) == (-22.9, -43.2, 50.4, 181.0, 12.0)
    assert m["valid"] is True and isinstance(m["alarm"], int) and isinstance(m["status"], int)
    assert m["extras"] == {}


def test_bad_frame_reported_and_decoding_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    good = jt808.encode_frame(jt808.MSG_HEARTBEAT, "13912345678", 1)
    bad = bytearray(good)
    bad[-2] ^= 0x01
    assert main(["decode", "--protocol", "jt808", bytes(bad).hex(), good.hex()]) == 1
    first, second = _lines(capsys.readouterr().out)
    assert "check code" in str(first["error"])
    assert second["type"] == "heartbeat" and second["device"] == "13912345678"


def test_raw_stream_from_standard_input() -> None:
    """A captured byte stream of every JT/T 808 vector, through a real process and a pipe."""
    stream = b"".join(payload_bytes(r) for r in records("jt808"))
    result = subprocess.run(
        [sys.executable, "-m", "telematics.cli", "decode", "--protocol", "jt808", "--raw", "-"],
        input=stream,
        capture_output=True,
        check=False,
    )
    lines = _lines(result.stdout.decode())
    positions = [m for m in lines if m.get("type") == "position"]
    errors = [m for m in lines if "error" in m]
    assert len(positions) > 80  # the captures hold 90-odd fixes; broken frames may take a neighbour
    assert errors and result.returncode == 1  # some captures are broken on purpose
    assert all(isinstance(m["lat"], float) and str(m["time"]).endswith("Z") for m in positions)


def test_incomplete_frame_at_the_end_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    frame = jt808.encode_frame(jt808.MSG_HEARTBEAT, "1", 1)
    assert main(["decode", "--protocol", "jt808", frame.hex(), frame[:-3].hex()]) == 1
    first, second = _lines(capsys.readouterr().out)
    assert first["type"] == "heartbeat"
    assert "incomplete frame at end of input" in str(second["error"])


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "--protocol", "jt808"]) == 2
    assert main(["decode", "--protocol", "jt808", "zz-not-hex"]) == 2
    assert "not hex" in capsys.readouterr().err


def test_back_to_back_frames_in_one_chunk() -> None:
    frame = jt808.encode_frame(jt808.MSG_HEARTBEAT, "1", 1)
    assert decode.run("jt808", [frame * 3], out=(buf := io.StringIO())) == 0
    assert [m["type"] for m in _lines(buf.getvalue())] == ["heartbeat"] * 3


def test_every_protocol_through_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    """Each protocol decodes what its own encoder made, from the command line."""
    from protocols import h02, nmea, phone_mqtt
    from protocols.messages import Position

    t = datetime(2026, 11, 21, 8, 30, 5, tzinfo=UTC)
    fix = Position(protocol="mqtt", device="insp-7", time=t, lat=22.5, lon=114.1, valid=True, accuracy_m=8.0)
    cases = [
        (["--protocol", "h02", h02.encode_position("4210051415", t, -22.5, 114.1).decode()], "4210051415", -22.5),
        (
            ["--protocol", "nmea", (nmea.encode_identification("T55-1") + nmea.encode_position(t, 22.5, -114.1)).hex()],
            "T55-1",
            22.5,
        ),
        (
            ["--protocol", "mqtt", "--topic", phone_mqtt.topic_for("insp-7"), phone_mqtt.encode_location(fix).decode()],
            "insp-7",
            22.5,
        ),
        (
            ["--protocol", "osmand", "GET /?id=ph1&lat=22.5&lon=114.1&timestamp=1763713805 HTTP/1.1\r\n\r\n"],
            "ph1",
            22.5,
        ),
    ]
    for argv, device, lat in cases:
        assert main(["decode", *argv]) == 0, argv
        positions = [m for m in _lines(capsys.readouterr().out) if m.get("type") == "position"]
        assert [(m["device"], m["lat"]) for m in positions] == [(device, lat)], argv
    assert main(["decode", "--protocol", "mqtt", "{}"]) == 2
    assert "needs --topic" in capsys.readouterr().err
