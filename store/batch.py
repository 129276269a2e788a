"""PositionBatch: the columnar batch of reports that ingest builds and every consumer reads.

One type, defined once: store writes it with COPY, tracking and geofencing read its columns.
Missing optional values are NaN in float columns and -1 in `satellites`; they become NULL in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class PositionBatch:
    device_id: npt.NDArray[np.int32]
    fix_time: npt.NDArray[np.int64]  # microseconds since the Unix epoch, UTC
    receive_time: npt.NDArray[np.int64]
    lat: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]
    speed_kmh: npt.NDArray[np.float32]
    course: npt.NDArray[np.float32]
    altitude_m: npt.NDArray[np.float32]
    accuracy_m: npt.NDArray[np.float32]
    satellites: npt.NDArray[np.int16]
    valid: npt.NDArray[np.bool_]
    status: npt.NDArray[np.int64]
    alarm: npt.NDArray[np.int64]
    mileage_km: npt.NDArray[np.float64]
    h3_cell: npt.NDArray[np.int64]
    protocol: list[str]
    extras: list[dict[str, Any] | None]

    def __len__(self) -> int:
        return len(self.device_id)

    @classmethod
    def from_rows(cls, rows: Sequence[PositionRow]) -> PositionBatch:
        def col(name: str, dtype: Any, missing: Any = None) -> Any:
            values = [getattr(r, name) for r in rows]
            if missing is not None:
                values = [missing if v is None else v for v in values]
            return np.array(values, dtype=dtype)

        return cls(
            device_id=col("device_id", np.int32),
            fix_time=np.array([to_micros(r.fix_time) for r in rows], dtype=np.int64),
            receive_time=np.array([to_micros(r.receive_time) for r in rows], dtype=np.int64),
            lat=col("lat", np.float64),
            lon=col("lon", np.float64),
            speed_kmh=col("speed_kmh", np.float32, np.nan),
            course=col("course", np.float32, np.nan),
            altitude_m=col("altitude_m", np.float32, np.nan),
            accuracy_m=col("accuracy_m", np.float32, np.nan),
            satellites=col("satellites", np.int16, -1),
            valid=col("valid", np.bool_),
            status=col("status", np.int64),
            alarm=col("alarm", np.int64),
            mileage_km=col("mileage_km", np.float64, np.nan),
            h3_cell=col("h3_cell", np.int64),
            protocol=[r.protocol for r in rows],
            extras=[r.extras or None for r in rows],
        )

    def take(self, index: slice) -> PositionBatch:
        """Some of the rows (numpy columns are views)."""
        return PositionBatch(**{name: getattr(self, name)[index] for name in COLUMNS})

    @classmethod
    def concat(cls, batches: Sequence[PositionBatch]) -> PositionBatch:
        if len(batches) == 1:
            return batches[0]
        fields: dict[str, Any] = {}
        for name in COLUMNS:
            parts = [getattr(b, name) for b in batches]
            fields[name] = list(chain.from_iterable(parts)) if isinstance(parts[0], list) else np.concatenate(parts)
        return cls(**fields)


COLUMNS = (
    "device_id",
    "fix_time",
    "receive_time",
    "lat",
    "lon",
    "speed_kmh",
    "course",
    "altitude_m",
    "accuracy_m",
    "satellites",
    "valid",
    "status",
    "alarm",
    "mileage_km",
    "h3_cell",
    "protocol",
    "extras",
)


@dataclass(slots=True)
class PositionRow:
    """One report on its way into a batch (built by ingest from a decoded Position)."""

    device_id: int
    fix_time: datetime
    receive_time: datetime
    lat: float
    lon: float
    valid: bool
    h3_cell: int
    protocol: str
    speed_kmh: float | None = None
    course: float | None = None
    altitude_m: float | None = None
    accuracy_m: float | None = None
    satellites: int | None = None
    status: int = 0
    alarm: int = 0
    mileage_km: float | None = None
    extras: dict[str, Any] | None = None


def to_micros(t: datetime) -> int:
    delta = t - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
