"""From a decoded Position to a row to store: checks that keep impossible fixes out of the database."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import h3.api.basic_int as h3
import numpy as np
import numpy.typing as npt

from protocols.messages import Position
from store.batch import PositionRow, to_micros

EARLIEST = datetime.fromisoformat("2000-01-01T00:00:00+00:00")


class BadFix(ValueError):
    pass


def to_row(
    pos: Position, device_id: int, received: datetime, *, h3_resolution: int, max_future: timedelta
) -> PositionRow:
    """The row for a fix, or BadFix naming why it cannot be stored."""
    lat, lon = pos.lat, pos.lon
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise BadFix(f"coordinates out of range: {lat}, {lon}")
    if pos.time < EARLIEST:
        raise BadFix(f"fix time {pos.time.isoformat()} is before 2000")
    if pos.time > received + max_future:
        raise BadFix(f"fix time {pos.time.isoformat()} is ahead of the server clock {received.isoformat()}")
    extras = dict(pos.extras)
    if pos.backfill:
        extras["backfill"] = True
    return PositionRow(
        device_id=device_id,
        fix_time=pos.time,
        receive_time=received,
        lat=lat,
        lon=lon,
        valid=pos.valid,
        h3_cell=h3.latlng_to_cell(lat, lon, h3_resolution),
        protocol=pos.protocol,
        speed_kmh=_finite(pos.speed_kmh),
        course=_finite(pos.course),
        altitude_m=_finite(pos.altitude_m),
        accuracy_m=_finite(pos.accuracy_m),
        satellites=pos.satellites,
        status=pos.status,
        alarm=pos.alarm,
        mileage_km=_finite(pos.mileage_km),
        extras=extras or None,
    )


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


EARLIEST_US = to_micros(EARLIEST)


def fixes_ok(
    lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64], time_us: npt.NDArray[np.int64], *, latest_us: int
) -> npt.NDArray[np.bool_]:
    """`to_row`'s checks for many fixes at once: which could be stored (the others go through
    `to_row`, which says why not)."""
    return (
        (np.abs(lat) <= 90) & (np.abs(lon) <= 180) & (time_us >= EARLIEST_US) & (time_us <= latest_us)
    )  # NaN compares false, so non-finite coordinates are refused too


def h3_cells(lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64], resolution: int) -> npt.NDArray[np.int64]:
    cell = h3.latlng_to_cell
    return np.fromiter(
        (cell(a, b, resolution) for a, b in zip(lat.tolist(), lon.tolist(), strict=True)), np.int64, len(lat)
    )
