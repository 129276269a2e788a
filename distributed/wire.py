"""What gateways and processors say to each other over NATS, as bytes (sans-I/O: no connection here).

- A batch of normalized reports (`PositionBatch`), one message per partition per gateway batch, on
  `telematics.pos.<partition>` in the JetStream stream `POSITIONS`: msgpack of the columns as raw
  little-endian arrays, so a processor gets numpy columns back without a Python object per report.
- Partitions: a device's reports always go to the partition `device_id % partitions`, so one
  processor at a time holds a device's live state, zone transitions and rule runs.
- Live traffic that needs no durability (core NATS): committed batches for the API processes' live
  maps (`telematics.live`), devices heard without a fix (`telematics.seen`), alert changes
  (`telematics.alerts`).
"""

from __future__ import annotations

from dataclasses import astuple
from datetime import datetime
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt

from store.alerts import Alert
from store.batch import COLUMNS, PositionBatch

STREAM = "POSITIONS"
SUBJECT_PREFIX = "telematics.pos"
LIVE_SUBJECT = "telematics.live"
SEEN_SUBJECT = "telematics.seen"
ALERTS_SUBJECT = "telematics.alerts"
VERSION = 1
_LISTS = ("protocol", "extras")


class WireError(ValueError):
    """A message that is not one of ours (or of a newer version)."""


def subject(partition: int) -> str:
    return f"{SUBJECT_PREFIX}.{partition}"


def split(batch: PositionBatch, count: int) -> list[tuple[int, PositionBatch]]:
    """The batch's rows by partition, in their order within each: (partition, rows)."""
    part = np.asarray(batch.device_id, dtype=np.int64) % count
    if len(part) and (part == part[0]).all():
        return [(int(part[0]), batch)]
    order = np.argsort(part, kind="stable")
    cuts = np.flatnonzero(np.diff(part[order])) + 1
    # The list columns as object arrays once, so each part takes its rows by fancy indexing, not row by row.
    lists = {name: _objects(getattr(batch, name)) for name in _LISTS}
    out = []
    for rows in np.split(order, cuts):
        if len(rows):
            fields = {name: lists[name][rows].tolist() if name in _LISTS else getattr(batch, name)[rows]
                      for name in COLUMNS}  # fmt: skip
            out.append((int(part[rows[0]]), PositionBatch(**fields)))
    return out


def _objects(values: list[Any]) -> npt.NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)  # filled, not np.array(values): dicts and strings stay as they are
    out[:] = values
    return out


def encode_batch(batch: PositionBatch) -> bytes:
    columns: dict[str, Any] = {}
    for name in COLUMNS:
        column = getattr(batch, name)
        if name in _LISTS:
            columns[name] = list(column)
        else:  # the raw bytes with their dtype string, which says the byte order
            array = np.ascontiguousarray(column)
            columns[name] = (array.dtype.str, array.tobytes())
    out: bytes = msgpack.packb({"v": VERSION, "n": len(batch), "c": columns}, use_bin_type=True)
    return out


def decode_batch(data: bytes) -> PositionBatch:
    try:
        message = msgpack.unpackb(data, raw=False, strict_map_key=False)
        if not isinstance(message, dict) or message.get("v") != VERSION:
            raise WireError(f"not a version {VERSION} batch")
        n, columns = int(message["n"]), message["c"]
        fields: dict[str, Any] = {}
        for name in COLUMNS:
            value = columns[name]
            if name in _LISTS:
                fields[name] = list(value)
            else:
                dtype, raw = value
                sent = np.dtype(dtype)  # a copy in this machine's byte order (frombuffer's view is read-only)
                fields[name] = np.frombuffer(raw, dtype=sent).astype(sent.newbyteorder("="))
            if len(fields[name]) != n:
                raise WireError(f"column {name}: {len(fields[name])} values for {n} rows")
    except WireError:
        raise
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as e:
        raise WireError(f"undecodable batch: {e}") from e
    return PositionBatch(**fields)


_ALERT_TIMES = {"started_at", "ended_at", "raised_at", "ack_at", "closed_at"}
_ALERT_FIELDS = Alert.__dataclass_fields__


def encode_alert(alert: Alert) -> bytes:
    values = [v.isoformat() if isinstance(v, datetime) else v for v in astuple(alert)]
    out: bytes = msgpack.packb(values, use_bin_type=True)
    return out


def decode_alert(data: bytes) -> Alert:
    try:
        values = msgpack.unpackb(data, raw=False)
        if not isinstance(values, list) or len(values) != len(_ALERT_FIELDS):
            raise WireError("not an alert")
        named = dict(zip(_ALERT_FIELDS, values, strict=True))
        for name in _ALERT_TIMES:
            if named[name] is not None:
                named[name] = datetime.fromisoformat(named[name])
        return Alert(**named)
    except WireError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise WireError(f"undecodable alert: {e}") from e
