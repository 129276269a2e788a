"""PostgreSQL's binary COPY format for a PositionBatch, built from its numpy columns.

A row-by-row `write_row` costs microseconds of Python per report; here the fixed-width columns
become one structured array, NULLs (NaN floats, satellites -1) are cut out with a byte mask, and
only the two variable columns (the protocol label and the rare extras) take a Python step per row.
Column order and types are `store.batch.COLUMNS` as the positions table has them.
"""

from __future__ import annotations

import json

import numpy as np

from store.batch import COLUMNS, PositionBatch

HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds: PostgreSQL's timestamp zero

# (name, big-endian type, NULL when) for the fixed-width columns, in table order.
_FIXED = (
    ("device_id", ">i4", None),
    ("fix_time", ">i8", None),
    ("receive_time", ">i8", None),
    ("lat", ">f8", None),
    ("lon", ">f8", None),
    ("speed_kmh", ">f4", "nan"),
    ("course", ">f4", "nan"),
    ("altitude_m", ">f4", "nan"),
    ("accuracy_m", ">f4", "nan"),
    ("satellites", ">i2", "negative"),
    ("valid", "u1", None),
    ("status", ">i8", None),
    ("alarm", ">i8", None),
    ("mileage_km", ">f8", "nan"),
    ("h3_cell", ">i8", None),
)
_VARIABLE = ("protocol", "extras")
assert tuple(name for name, _, _ in _FIXED) + _VARIABLE == COLUMNS

_ROW = np.dtype([("count", ">i2")] + [f for name, kind, _ in _FIXED for f in ((f"{name}_len", ">i4"), (name, kind))])
_NULL = b"\xff\xff\xff\xff"
assert _ROW.fields is not None
_OFFSET = {name: _ROW.fields[name][1] for name, _, _ in _FIXED}


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


# An enum's binary form is its label.
_LABELS = {p: _field(p.encode()) for p in ("jt808", "gt06", "h02", "nmea", "osmand", "mqtt")}


def encode(batch: PositionBatch) -> bytes:
    """The batch's rows in binary COPY format, header and trailer included."""
    n = len(batch)
    rows = np.zeros(n, dtype=_ROW)
    rows["count"] = len(COLUMNS)
    keep = np.ones((n, _ROW.itemsize), dtype=bool)
    for name, kind, null_when in _FIXED:
        values = getattr(batch, name)
        if name in ("fix_time", "receive_time"):
            values = values - PG_EPOCH_US
        rows[name] = values
        width = np.dtype(kind).itemsize
        if null_when is None:
            rows[f"{name}_len"] = width
            continue
        null = np.isnan(values) if null_when == "nan" else values < 0
        rows[f"{name}_len"] = np.where(null, -1, width)
        if null.any():
            start = _OFFSET[name]
            keep[null, start : start + width] = False  # a NULL field is its length (-1) alone
    fixed = rows.view(np.uint8).reshape(n, _ROW.itemsize)[keep]
    row_ends = np.cumsum(keep.sum(axis=1))
    tails = [
        (_LABELS.get(p) or _field(p.encode())) + (_NULL if e is None else _field(b"\x01" + json.dumps(e).encode()))
        for p, e in zip(batch.protocol, batch.extras, strict=True)
    ]
    tail_bytes = np.frombuffer(b"".join(tails), dtype=np.uint8)
    at = np.repeat(row_ends, [len(t) for t in tails])
    return HEADER + np.insert(fixed, at, tail_bytes).tobytes() + TRAILER
