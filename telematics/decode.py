"""`telematics decode`: what the server understands of what a terminal sent.

One JSON object per line per decoded message; a frame that cannot be decoded prints an object
with `error` and decoding goes on. The exit status is 1 when any frame failed.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import IO, Any

from protocols.messages import Decoded, FrameError, Position

STREAM_PROTOCOLS = ("jt808", "gt06", "h02", "nmea")
PROTOCOLS = (*STREAM_PROTOCOLS, "osmand", "mqtt")
TEXT_PROTOCOLS = ("h02", "nmea", "osmand")

_TYPES = {
    "Position": "position",
    "Registration": "registration",
    "Authentication": "authentication",
    "Login": "login",
    "Heartbeat": "heartbeat",
    "Logout": "logout",
    "CommandReply": "command_reply",
    "Unsupported": "unsupported",
}


def _stream_decoder(protocol: str) -> Any:
    if protocol == "jt808":
        from protocols.jt808 import Jt808Decoder

        return Jt808Decoder(max_buffer=1 << 24)
    if protocol == "gt06":
        from protocols.gt06 import Gt06Decoder

        return Gt06Decoder(max_buffer=1 << 24)
    if protocol == "h02":
        from protocols.h02 import H02Decoder

        return H02Decoder(max_buffer=1 << 24)
    from protocols.nmea import NmeaDecoder

    return NmeaDecoder(max_buffer=1 << 24)


def _value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, frozenset | set):
        return sorted(v)
    if isinstance(v, dict):
        return {str(k): _value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_value(x) for x in v]
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _value(getattr(v, f.name)) for f in dataclasses.fields(v)}
    return v


def as_json(m: Decoded) -> dict[str, Any]:
    if isinstance(m, FrameError):
        out: dict[str, Any] = {"error": m.reason, "protocol": m.protocol}
        if m.device:
            out["device"] = m.device
        if m.msg_id:
            out["msg_id"] = m.msg_id
        out["raw"] = m.raw.hex()
        return out
    name = type(m).__name__
    out = {"type": _TYPES.get(name, name.lower())}
    for f in dataclasses.fields(m):
        out[f.name] = _value(getattr(m, f.name))
    if isinstance(m, Position):
        out["time"] = _value(m.time)
    return out


def _http_requests(data: bytes) -> Iterable[tuple[str, str, dict[str, str], bytes] | str]:
    """Raw HTTP/1.1 requests, back to back, as (method, target, headers, body); a string is an error."""
    pos = 0
    while pos < len(data):
        while data[pos : pos + 2] == b"\r\n":
            pos += 2
        if pos >= len(data):
            return
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            yield "incomplete HTTP request head"
            return
        lines = data[pos:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            yield f"bad request line {lines[0][:80]!r}"
            return
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip()] = v.strip()
        size = int(headers.get("Content-Length", "0") or 0)
        body = data[end + 4 : end + 4 + size]
        pos = end + 4 + size
        yield parts[0], parts[1], headers, body


def decode(protocol: str, chunks: Iterable[bytes], *, topic: str = "") -> Iterable[Decoded]:
    if protocol in STREAM_PROTOCOLS:
        decoder = _stream_decoder(protocol)
        for chunk in chunks:
            yield from decoder.feed(chunk)
        if hasattr(decoder, "flush"):  # NMEA holds the last fix until it knows the sentence set is complete
            yield from decoder.flush()
        if decoder.buffered:
            yield FrameError(protocol=protocol, reason=f"incomplete frame at end of input ({decoder.buffered} bytes)")
        return
    if protocol == "osmand":
        from protocols import osmand

        for request in _http_requests(b"".join(chunks)):
            if isinstance(request, str):
                yield FrameError(protocol="osmand", reason=request)
            else:
                yield from osmand.decode_request(*request)
        return
    from protocols import phone_mqtt

    for chunk in chunks:
        yield from phone_mqtt.decode_publish(topic, chunk)


def parse_inputs(protocol: str, hex_args: list[str], raw: IO[bytes] | None) -> list[bytes]:
    if raw is not None:
        return [raw.read()]
    out = []
    for h in hex_args:
        text = "".join(h.split())
        try:
            out.append(bytes.fromhex(text))
        except ValueError:
            if protocol in TEXT_PROTOCOLS:
                out.append(h.encode("latin-1"))  # a text protocol pasted as text
            elif protocol == "mqtt":
                out.append(h.encode("utf-8") if h.lstrip().startswith("{") else base64.b64decode(h))
            else:
                raise ValueError(f"not hex: {h[:40]!r}") from None
    return out


def run(protocol: str, chunks: list[bytes], out: IO[str] | None = None, *, topic: str = "") -> int:
    out = out or sys.stdout
    failed = False
    for m in decode(protocol, chunks, topic=topic):
        failed = failed or isinstance(m, FrameError)
        out.write(json.dumps(as_json(m), ensure_ascii=False) + "\n")
    return 1 if failed else 0
