"""What gateways and processors send each other: report batches by partition, alert changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import numpy as np
import pytest

from distributed import wire
from store.alerts import Alert
from store.batch import COLUMNS, PositionBatch, PositionRow

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def _batch(n: int) -> PositionBatch:
    rows = [
        PositionRow(
            device_id=(i * 7) % 23, fix_time=T0 + timedelta(seconds=i), receive_time=T0, lat=22.5 + i / 1e4,
            lon=114.0, valid=i % 5 != 0, h3_cell=600000000000000000 + i, protocol="jt808" if i % 3 else "gt06",
            speed_kmh=None if i % 4 == 0 else float(i), satellites=None if i % 6 == 0 else 9, status=1 << (i % 32),
            alarm=i % 2, extras={"io": i} if i % 10 == 0 else None,
        )
        for i in range(n)
    ]  # fmt: skip
    return PositionBatch.from_rows(rows)


def _rows(batch: PositionBatch, rows: np.ndarray) -> PositionBatch:
    def take(column: Any) -> Any:
        return [column[i] for i in rows] if isinstance(column, list) else column[rows]

    return PositionBatch(**{name: take(getattr(batch, name)) for name in COLUMNS})


def _same(a: PositionBatch, b: PositionBatch) -> bool:
    for name in COLUMNS:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, list):
            if x != y:
                return False
        elif x.dtype != y.dtype or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
            return False
    return True


def test_a_batch_comes_back_column_for_column() -> None:
    batch = _batch(200)
    back = wire.decode_batch(wire.encode_batch(batch))
    assert _same(back, batch)
    assert back.device_id.flags.writeable  # the processor's code may write into its columns
    assert np.isnan(back.speed_kmh[0]) and back.satellites[0] == -1 and back.extras[10] == {"io": 10}


def test_split_sends_each_row_to_its_devices_partition_in_order() -> None:
    batch = _batch(300)
    parts = wire.split(batch, 4)
    assert sorted(p for p, _ in parts) == [0, 1, 2, 3]
    for partition, part in parts:
        assert (part.device_id % 4 == partition).all()
        mine = np.flatnonzero(batch.device_id % 4 == partition)  # the batch's rows of it, in their order
        assert _same(part, _rows(batch, mine))
    assert sum(len(p) for _, p in parts) == len(batch)
    one = replace(batch, device_id=np.full(len(batch), 8, dtype=np.int32))
    assert [(p, b is one) for p, b in wire.split(one, 4)] == [(0, True)]  # one partition: the batch as it is


def test_what_is_not_a_batch_is_refused_with_a_reason() -> None:
    good = msgpack.unpackb(wire.encode_batch(_batch(3)))
    short = {**good, "n": 4}
    for data, reason in [
        (b"\x00\xff garbage", "undecodable"),
        (msgpack.packb({"v": 99}), "version"),
        (msgpack.packb(short), "3 values for 4 rows"),
        (msgpack.packb({**good, "c": {}}), "undecodable"),
    ]:
        with pytest.raises(wire.WireError, match=reason):
            wire.decode_batch(data)


def test_an_alert_change_comes_back_whole() -> None:
    alert = Alert(
        7, T0, T0 + timedelta(minutes=3), 12, "13800000001", 4, 2, "超速 overspeed", None, "overspeed", 2,
        "acknowledged", False, {"max_kmh": 71.5, "lat": 22.5}, T0, "dispatcher", T0 + timedelta(minutes=5), "ok", None,
    )  # fmt: skip
    assert wire.decode_alert(wire.encode_alert(alert)) == alert
    with pytest.raises(wire.WireError):
        wire.decode_alert(msgpack.packb([1, 2]))


def test_partition_subjects() -> None:
    assert wire.subject(5) == "telematics.pos.5"
