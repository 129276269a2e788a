"""Vectorized decoding of JT/T 808 location reports (0x0200) in bulk, into PositionColumns.

For a large buffer of back-to-back frames (a blind-area flood after an outage, a capture, the
benchmark) the per-frame work moves into numpy: frame boundaries, unescaping, check codes,
headers, the 28-byte basic block, BCD times, and the common additional items (mileage 0x01,
satellites 0x31). Any frame that is not plain (another message id, a bad check code, other
additional items, a subpackage...) goes through the per-frame decoder, so both paths say exactly
the same thing; a buffer whose framing is irregular (garbage, stray flags) is handed whole to the
per-frame decoder. Small inputs skip numpy: its fixed cost per call only pays on many frames.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from protocols import jt808
from protocols.columns import PositionColumns
from protocols.messages import Decoded, Heartbeat, Position

_BEIJING_S = 8 * 3600
_SIMPLE_ITEMS = {0x01: 4, 0x31: 1}  # items decoded in columns; any other item sends the frame per-frame
_MAX_ITEMS = 8


class Jt808BulkDecoder:
    """Like `jt808.Jt808Decoder`, but runs of location reports come back as PositionColumns."""

    protocol = jt808.PROTOCOL

    def __init__(self, *, max_buffer: int = 1 << 26, lenient: bool = False, min_bulk_bytes: int = 4096) -> None:
        self._frames = jt808.Jt808Decoder(max_buffer=max_buffer, lenient=lenient)
        self._buf = bytearray()
        self._max_buffer = max_buffer
        self.min_bulk_bytes = min_bulk_bytes

    def feed(self, data: bytes) -> list[Decoded | PositionColumns]:
        # A partial frame the per-frame decoder holds must be completed there.
        if self._frames.buffered or len(self._buf) + len(data) < self.min_bulk_bytes:
            # The per-frame decoder holds a partial frame, or there is too little for numpy to pay.
            pending = bytes(self._buf) + data
            self._buf.clear()
            return list(self._frames.feed(pending))
        self._buf += data
        buf = bytes(self._buf)
        a = np.frombuffer(buf, dtype=np.uint8)
        flags = np.flatnonzero(a == jt808.FLAG)
        if len(flags) < 2 or flags[0] != 0:
            return self._fallback()
        usable = len(flags) - len(flags) % 2
        starts = flags[0:usable:2]
        ends = flags[1:usable:2]
        # Regular framing: each frame starts right after the previous one ended, none is empty.
        if np.any(starts[1:] != ends[:-1] + 1) or np.any(ends - starts < 2):
            return self._fallback()
        consumed = int(ends[-1]) + 1
        if usable < len(flags) and flags[-1] != consumed:
            return self._fallback()  # bytes between the last whole frame and a new start flag
        if usable == len(flags) and consumed < len(buf):
            return self._fallback()  # trailing bytes without a start flag
        del self._buf[:consumed]
        return _decode_frames(self._frames, a[:consumed], starts, ends)

    def _fallback(self) -> list[Decoded | PositionColumns]:
        pending = bytes(self._buf)
        self._buf.clear()
        return list(self._frames.feed(pending))


def _be16(u: npt.NDArray[np.uint8], at: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return (u[at].astype(np.int64) << 8) | u[at + 1]


def _be32(u: npt.NDArray[np.uint8], at: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return (_be16(u, at) << 16) | _be16(u, at + 2)


def _decode_frames(
    frames: jt808.Jt808Decoder,
    a: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
) -> list[Decoded | PositionColumns]:
    got = decode_columns(a, starts, ends)
    if got is None:
        return [d for i in range(len(starts)) for d in frames.frame(a[starts[i] + 1 : ends[i]].tobytes())]
    cols, ok = got
    return _merge(frames, a, starts, ends, ok, cols)


def decode_columns(
    a: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]
) -> tuple[PositionColumns, npt.NDArray[np.bool_]] | None:
    """Columns for the frames between flags `starts[i]` and `ends[i]` of `a`, and which of them are
    plain location reports (the others' rows are meaningless: decode those frame by frame).
    None when there is too little to decode in columns."""
    n = len(starts)
    # Unescape: 7d 01 -> 7d, 7d 02 -> 7e; drop the second byte of each pair and all flags.
    esc = np.flatnonzero(a == jt808.ESC)
    nxt = a[np.minimum(esc + 1, len(a) - 1)]
    bad_escape_at = esc[(nxt != 1) & (nxt != 2)]
    u = a.copy()
    u[esc] = 0x7C + nxt
    drop = np.zeros(len(a) + 1, dtype=np.int64)
    drop[esc + 2] += 1  # the byte after each escape lead goes (counted from the position after it)
    drop[starts + 1] += 1
    drop[ends + 1] += 1
    removed_before = np.cumsum(drop)[: len(a) + 1]  # bytes removed before each position
    keep = np.ones(len(a), dtype=bool)
    keep[esc + 1] = False
    keep[starts] = False
    keep[ends] = False
    u = u[keep]
    if len(u) < 32:
        return None
    s = starts + 1 - removed_before[starts + 1]  # content start in u
    e = ends - removed_before[ends]  # content end (exclusive) in u
    length = e - s

    ok = length >= 12 + 1
    if len(bad_escape_at):
        frame_of = np.searchsorted(starts, bad_escape_at, side="right") - 1
        ok[frame_of] = False
    xor = np.bitwise_xor.reduceat(u, s) if len(u) else np.zeros(n, dtype=np.uint8)
    ok &= xor == 0

    sc = np.where(ok, s, 0)  # safe indexes for rows that are not ok
    msg_id = _be16(u, sc)
    attrs = _be16(u, sc + 2)
    v2019 = (attrs & 0x4000) != 0
    header = np.where(v2019, 17, 12)
    body_len = attrs & 0x3FF
    ok &= (msg_id == jt808.MSG_LOCATION) & ((attrs & 0x3C00) == 0)
    ok &= length - header - 1 == body_len
    ok &= body_len >= jt808.BASIC_SIZE

    b = np.where(ok, sc + header, 0)  # body start
    # BCD time, Beijing time.
    t = u[(b + 22)[:, None] + np.arange(6)]
    hi, lo = t >> 4, t & 0x0F
    ok &= np.all((hi <= 9) & (lo <= 9), axis=1)
    d = (hi * 10 + lo).astype(np.int64)
    yy, mo, dd, hh, mi, ss = (d[:, k] for k in range(6))
    ok &= (mo >= 1) & (mo <= 12) & (dd >= 1) & (hh < 24) & (mi < 60) & (ss < 60)
    month = (np.where(ok, yy + 30, 30).astype("datetime64[Y]")).astype("datetime64[M]") + np.where(ok, mo - 1, 0)
    day = month.astype("datetime64[D]") + np.where(ok, dd - 1, 0)
    ok &= day.astype("datetime64[M]") == month  # the day exists in that month
    seconds = day.astype(np.int64) * 86400 + hh * 3600 + mi * 60 + ss - _BEIJING_S

    # Additional items: mileage and satellites in columns; anything else goes per-frame.
    end = b + body_len
    mileage = np.full(n, np.nan)
    satellites = np.full(n, -1, dtype=np.int16)
    pos = b + jt808.BASIC_SIZE
    for _ in range(_MAX_ITEMS):
        active = ok & (pos < end)
        if not active.any():
            break
        at = np.where(active, pos, 0)
        item = u[at]
        size = u[np.minimum(at + 1, len(u) - 1)].astype(np.int64)
        fits = at + 2 + size <= end
        is_mileage = active & fits & (item == 0x01) & (size == 4)
        is_sats = active & fits & (item == 0x31) & (size == 1)
        ok &= ~active | is_mileage | is_sats
        if is_mileage.any():
            mileage[is_mileage] = _be32(u, at[is_mileage] + 2) / 10
        if is_sats.any():
            satellites[is_sats] = u[at[is_sats] + 2]
        pos = np.where(active, at + 2 + size, pos)
    ok &= ~(pos < end)  # more items than the loop looked at

    # The basic block.
    alarm = _be32(u, b)
    status = _be32(u, b + 4)
    lat = _be32(u, b + 8) / 1e6
    lon = _be32(u, b + 12) / 1e6
    lat = np.where(status & 0b100, -lat, lat)
    lon = np.where(status & 0b1000, -lon, lon)
    altitude = _be16(u, b + 16)
    altitude = np.where(altitude >= 0x8000, altitude - 0x10000, altitude).astype(np.float64)
    speed = _be16(u, b + 18) / 10
    course = _be16(u, b + 20).astype(np.float64)
    serial = _be16(u, np.where(v2019, sc + 15, sc + 10))

    # Device ids: few distinct phones per buffer; decode each distinct one once.
    device = np.zeros(n, dtype=np.int64)
    devices: list[str] = []
    if ok.any():
        rows = sc[ok]
        is2019 = v2019[ok]
        phone = u[(rows + np.where(is2019, 5, 4))[:, None] + np.arange(10)]
        phone[~is2019, 6:] = 0
        key = np.ascontiguousarray(np.concatenate([phone, is2019[:, None].astype(np.uint8)], axis=1))
        keys, inverse = np.unique(key.view(np.dtype((np.void, 11))).ravel(), return_inverse=True)
        device[ok] = inverse.ravel()
        for k in keys:
            raw = bytes(k)
            devices.append(jt808.device_id(raw[:10] if raw[10] else raw[:6]))

    cols = PositionColumns(
        protocol=jt808.PROTOCOL,
        devices=devices,
        device=device.astype(np.int32).ravel(),
        msg_id=msg_id.astype(np.int32),
        serial=serial.astype(np.int32),
        version=np.where(v2019, 2019, 2013).astype(np.int16),
        time_us=seconds * 1_000_000,
        lat=lat,
        lon=lon,
        valid=(status & 0b10) != 0,
        speed_kmh=speed,
        course=course,
        altitude_m=altitude.astype(np.float64, copy=False),
        satellites=satellites,
        alarm=alarm,
        status=status,
        mileage_km=mileage,
        backfill=np.zeros(n, dtype=bool),
    )
    return cols, ok


def _merge(
    frames: jt808.Jt808Decoder,
    a: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
    ok: npt.NDArray[np.bool_],
    cols: PositionColumns,
) -> list[Decoded | PositionColumns]:
    """Frames that were not plain are decoded one by one; a plain location result joins the columns."""
    in_columns = ok.copy()
    others: dict[int, list[Decoded]] = {}
    for i in np.flatnonzero(~ok).tolist():
        decoded = frames.frame(a[starts[i] + 1 : ends[i]].tobytes())
        if len(decoded) == 1 and isinstance(decoded[0], Position) and decoded[0].msg_id == jt808.MSG_LOCATION:
            _set_row(cols, i, decoded[0])
            in_columns[i] = True
        else:
            others[i] = decoded
    if not others:
        return [cols]
    out: list[Decoded | PositionColumns] = []
    run_start = 0
    for i in sorted(others):
        if i > run_start:
            out.append(cols.take(slice(run_start, i)))
        out.extend(others[i])
        run_start = i + 1
    if run_start < len(starts):
        out.append(cols.take(slice(run_start, len(starts))))
    return out


def _set_row(cols: PositionColumns, i: int, p: Position) -> None:
    if p.device not in cols.devices:
        cols.devices.append(p.device)
    cols.device[i] = cols.devices.index(p.device)
    cols.msg_id[i] = p.msg_id
    cols.serial[i] = p.serial
    cols.version[i] = p.version
    cols.time_us[i] = round(p.time.timestamp() * 1_000_000)
    cols.lat[i] = p.lat
    cols.lon[i] = p.lon
    cols.valid[i] = p.valid
    cols.speed_kmh[i] = np.nan if p.speed_kmh is None else p.speed_kmh
    cols.course[i] = np.nan if p.course is None else p.course
    cols.altitude_m[i] = np.nan if p.altitude_m is None else p.altitude_m
    cols.satellites[i] = -1 if p.satellites is None else p.satellites
    cols.alarm[i] = p.alarm
    cols.status[i] = p.status
    cols.mileage_km[i] = np.nan if p.mileage_km is None else p.mileage_km
    cols.backfill[i] = p.backfill
    if p.extras:
        cols.extras[i] = p.extras


def general_response_prefix(device: str, version: int) -> bytes:
    """The fixed start of every 0x8001 to a terminal: message id, attributes, version, phone number.

    What follows it is the platform's serial, the body (acked serial, acked id, result) and the
    check code, which `encode_general_responses` fills in for many answers at once."""
    hello = Heartbeat(protocol=jt808.PROTOCOL, device=device, version=version)
    frame = jt808.encode_general_response(hello, 0, serial=0)
    raw = jt808.unescape(frame[1:-1])
    assert raw is not None  # the encoder's own output
    return raw[: 15 if version == 2019 else 10]


def encode_general_responses(
    prefix: npt.NDArray[np.uint8],
    serial: npt.NDArray[np.int64],
    acked_serial: npt.NDArray[np.int64],
    acked_id: npt.NDArray[np.int64],
    result: npt.NDArray[np.int64],
) -> tuple[bytes, npt.NDArray[np.int64]]:
    """Many 0x8001 frames in one go: row i is `prefix[i]` (see `general_response_prefix`), then
    the fields. Returns the frames back to back and the offset where each starts (n + 1 offsets),
    so the answers to one terminal are one slice, written with one system call."""
    n, p = prefix.shape
    c = np.empty((n, p + 8), dtype=np.uint8)
    c[:, :p] = prefix
    for at, v in ((p, serial), (p + 2, acked_serial), (p + 4, acked_id)):
        c[:, at] = v >> 8
        c[:, at + 1] = v & 0xFF
    c[:, p + 6] = result
    c[:, p + 7] = np.bitwise_xor.reduce(c[:, : p + 7], axis=1)
    flat = c.ravel()
    special = (flat == jt808.FLAG) | (flat == jt808.ESC)
    width = 1 + special.astype(np.int64)
    body = np.repeat(flat, width)
    at = (np.cumsum(width) - width)[special]
    body[at] = jt808.ESC
    body[at + 1] = flat[special] - 0x7C  # 7e -> 7d 02, 7d -> 7d 01
    body_len = width.reshape(n, -1).sum(axis=1)
    frame_len = body_len + 2
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(frame_len, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    out[offsets[:-1]] = jt808.FLAG
    out[offsets[1:] - 1] = jt808.FLAG
    row = np.repeat(np.arange(n), body_len)
    out[np.arange(len(body)) + 2 * row + 1] = body
    return out.tobytes(), offsets
