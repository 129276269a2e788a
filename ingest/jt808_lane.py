"""JT/T 808 location reports of many connections, decoded, stored and answered together.

A connection whose terminal is authenticated hands each read that holds whole frames to the lane
instead of decoding it itself. Once per pass of the event loop the lane decodes everything it was
handed as one buffer in numpy columns (`protocols.jt808_bulk`), turns the plain location reports
into one PositionBatch and, after its commit, answers each connection with all its 0x8001 frames
in one write. Per report that is a few microseconds instead of a Python object, a row and a
callback each. Any frame that is not a plain location report of the connection's own terminal
(heartbeats, 0x0704 batches, fixes that cannot be stored, another phone number, bad check codes)
goes back to its connection and through the per-frame path, so both paths answer alike.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ingest.fixes import fixes_ok, h3_cells
from ingest.reports import ReportSink
from protocols import jt808
from protocols.jt808_bulk import decode_columns, encode_general_responses
from store.batch import PositionBatch

if TYPE_CHECKING:
    from ingest.jt808_server import Jt808Connection

_FLAG = bytes([jt808.FLAG])
log = logging.getLogger("telematics.ingest")


class Jt808Lane:
    def __init__(self, sink: ReportSink, *, delay: float = 0.003, max_bytes: int = 1 << 20) -> None:
        self._sink = sink
        # Numpy's cost per pass is mostly fixed: gathering reads for a few milliseconds makes each
        # pass larger and each report cheaper, against a batch deadline of tens of milliseconds.
        self.delay = delay
        self.max_bytes = max_bytes
        self._chunks: list[bytes] = []
        self._conns: list[Jt808Connection] = []
        self._bytes = 0
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None

    def offer(self, conn: Jt808Connection, data: bytes) -> bool:
        """Take `data` for the next pass if it is whole frames (the caller decodes it otherwise)."""
        if data[:1] != _FLAG or data[-1:] != _FLAG or data.count(_FLAG) & 1:
            return False
        self._chunks.append(data)
        self._conns.append(conn)
        conn.in_lane = True
        self._bytes += len(data)
        if self._bytes >= self.max_bytes:
            self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.delay, self.flush) if self.delay > 0 else loop.call_soon(self.flush)
        return True

    def flush(self) -> None:
        """Decode and queue what was handed in (also called early to keep a connection's order)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        chunks, conns = self._chunks, self._conns
        if not chunks:
            return
        self._chunks, self._conns, self._bytes = [], [], 0
        for conn in conns:
            conn.in_lane = False
        try:
            batch, answer, others = self._plan(chunks, conns)
        except Exception:
            # A defect here must not cost the terminals their reports: the connections decode alone.
            log.exception("bulk decoding of %d reads failed; decoding them frame by frame", len(chunks))
            self._sink.counters.inc("jt808.lane_failures")
            batch, answer, others = None, None, [(c, data, True) for c, data in enumerate(chunks)]
        if batch is not None and answer is not None:
            self._sink.counters.inc("jt808.bulk_reports", len(batch))
            self._sink.submit_batch(batch, answer, protocol=jt808.PROTOCOL)
        for c, data, whole in others:  # in the order they came in
            if whole:
                conns[c].decode_alone(data)
            else:
                conns[c].decode_frame(data)

    def _plan(
        self, chunks: list[bytes], conns: list[Jt808Connection]
    ) -> tuple[PositionBatch | None, _Answer | None, list[tuple[int, bytes, bool]]]:
        """The batch of plain reports with its answer, and what goes back to the connections:
        (read index, bytes, whole read or one frame's content)."""
        buf = b"".join(chunks)
        a = np.frombuffer(buf, dtype=np.uint8)
        flags = np.flatnonzero(a == jt808.FLAG)
        starts, ends = flags[0::2], flags[1::2]
        chunk_start = np.zeros(len(chunks), dtype=np.int64)
        np.cumsum([len(c) for c in chunks[:-1]], out=chunk_start[1:])
        chunk = np.searchsorted(chunk_start, starts, side="right") - 1  # the read each frame came in
        # A read with bytes between its frames, or an empty frame, goes whole to its connection.
        irregular = np.zeros(len(chunks), dtype=bool)
        irregular[chunk[1:][starts[1:] != ends[:-1] + 1]] = True
        irregular[chunk[ends - starts < 2]] = True
        got = decode_columns(a, starts, ends) if len(starts) else None
        if got is None:
            return None, None, [(c, data, True) for c, data in enumerate(chunks)]
        cols, ok = got
        ok &= ~irregular[chunk]
        # Each frame must be a report of the connection's own terminal, in the version it authenticated with.
        chunk_device = np.array([conn.device.id if conn.device else -1 for conn in conns], dtype=np.int64)
        chunk_version = np.array([conn.version for conn in conns], dtype=np.int64)
        device_ids = {conn.device.uid: conn.device.id for conn in conns if conn.device}
        # (-2 at the end: rows that are not plain reports index 0 even when no device was decoded)
        row_device = np.array([*(device_ids.get(uid, -2) for uid in cols.devices), -2], dtype=np.int64)[cols.device]
        ok &= (row_device == chunk_device[chunk]) & (cols.version == chunk_version[chunk])
        sink = self._sink
        now_us = time.time_ns() // 1000
        ok &= fixes_ok(cols.lat, cols.lon, cols.time_us, latest_us=now_us + int(sink.max_future.total_seconds() * 1e6))

        others: list[tuple[int, bytes, bool]] = []
        for i in np.flatnonzero(~ok).tolist():
            c = int(chunk[i])
            if not irregular[c]:
                others.append((c, a[starts[i] + 1 : ends[i]].tobytes(), False))
            elif not others or others[-1][0] != c or not others[-1][2]:
                others.append((c, chunks[c], True))
        rows = np.flatnonzero(ok)
        n = len(rows)
        if n == 0:
            return None, None, others
        lat, lon = cols.lat[rows], cols.lon[rows]
        batch = PositionBatch(
            device_id=row_device[rows].astype(np.int32),
            fix_time=cols.time_us[rows],
            receive_time=np.full(n, now_us, dtype=np.int64),
            lat=lat,
            lon=lon,
            speed_kmh=cols.speed_kmh[rows].astype(np.float32),
            course=cols.course[rows].astype(np.float32),
            altitude_m=cols.altitude_m[rows].astype(np.float32),
            accuracy_m=np.full(n, np.nan, dtype=np.float32),
            satellites=cols.satellites[rows],
            valid=cols.valid[rows],
            status=cols.status[rows],
            alarm=cols.alarm[rows],
            mileage_km=cols.mileage_km[rows],
            h3_cell=h3_cells(lat, lon, sink.h3_resolution),
            protocol=[jt808.PROTOCOL] * n,
            extras=[None] * n,
        )
        prefixes = [conn.ack_prefix for conn in conns]  # as they are now: a later re-authentication may change them
        answer = _Answer(conns, prefixes, chunk[rows], cols.serial[rows].astype(np.int64), cols.version[rows])
        return batch, answer, others


class _Answer:
    """After the commit: every connection's 0x8001 frames for its reports, in one write each."""

    __slots__ = ("_acked_serial", "_chunk", "_conns", "_prefixes", "_version")

    def __init__(
        self,
        conns: list[Jt808Connection],
        prefixes: list[bytes],
        chunk: npt.NDArray[np.int64],
        acked_serial: npt.NDArray[np.int64],
        version: npt.NDArray[np.int16],
    ) -> None:
        self._conns = conns
        self._prefixes = prefixes
        self._chunk = chunk  # the read each row came in, ascending
        self._acked_serial = acked_serial
        self._version = version

    def __call__(self, stored: npt.NDArray[np.bool_]) -> None:
        result = np.where(stored, jt808.RESULT_OK, jt808.RESULT_FAILURE)
        versions = np.unique(self._version)
        if len(versions) == 1:
            self._answer(None, result)
        else:  # 2013 and 2019 answers have headers of different lengths
            for v in versions:
                self._answer(np.flatnonzero(self._version == v), result)

    def _answer(self, rows: npt.NDArray[np.intp] | None, result: npt.NDArray[np.int64]) -> None:
        chunk = self._chunk if rows is None else self._chunk[rows]
        acked = self._acked_serial if rows is None else self._acked_serial[rows]
        if rows is not None:
            result = result[rows]
        reads, first, count = np.unique(chunk, return_index=True, return_counts=True)
        conns = [self._conns[c] for c in reads.tolist()]
        # The platform's own serials: each connection counts on from where it was.
        base = np.empty(len(reads), dtype=np.int64)
        for k, conn in enumerate(conns):
            base[k] = conn.take_serials(int(count[k]))
        index = np.repeat(np.arange(len(reads)), count)
        serial = (base[index] + 1 + np.arange(len(chunk)) - first[index]) & 0xFFFF
        prefix = np.frombuffer(b"".join(self._prefixes[c] for c in reads.tolist()), dtype=np.uint8)
        prefix = prefix.reshape(len(reads), -1)[index]
        out, offsets = encode_general_responses(prefix, serial, acked, np.full(len(chunk), jt808.MSG_LOCATION), result)
        for k, conn in enumerate(conns):
            lo = int(first[k])
            conn.send_answers(out[offsets[lo] : offsets[lo + int(count[k])]])
