"""PositionColumns: many decoded positions in numpy columns, the form bulk decoders emit.

The same normalized fields as `messages.Position`, one array per field; missing optional values
are NaN (floats) or -1 (satellites). `positions()` expands them into Position objects, which is
how the tests prove that a columnar decoder says exactly what the per-frame decoder says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from protocols.messages import Position

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class PositionColumns:
    protocol: str
    devices: list[str]  # distinct device ids; `device` indexes into it
    device: npt.NDArray[np.int32]
    msg_id: npt.NDArray[np.int32]
    serial: npt.NDArray[np.int32]
    version: npt.NDArray[np.int16]
    time_us: npt.NDArray[np.int64]  # fix time, microseconds since the Unix epoch, UTC
    lat: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]
    valid: npt.NDArray[np.bool_]
    speed_kmh: npt.NDArray[np.float64]
    course: npt.NDArray[np.float64]
    altitude_m: npt.NDArray[np.float64]
    satellites: npt.NDArray[np.int16]
    alarm: npt.NDArray[np.int64]
    status: npt.NDArray[np.int64]
    mileage_km: npt.NDArray[np.float64]
    backfill: npt.NDArray[np.bool_]
    extras: dict[int, dict[str, Any]] = field(default_factory=dict)  # sparse: row -> extras

    def __len__(self) -> int:
        return len(self.time_us)

    def positions(self, alarm_flags: Any = None, status_flags: Any = None) -> list[Position]:
        """The rows as Position objects (named flags computed by the given protocol functions)."""
        out = []
        for i in range(len(self)):
            alarm = int(self.alarm[i])
            status = int(self.status[i])
            sats = int(self.satellites[i])
            out.append(
                Position(
                    protocol=self.protocol,
                    device=self.devices[self.device[i]],
                    msg_id=int(self.msg_id[i]),
                    serial=int(self.serial[i]),
                    version=int(self.version[i]),
                    time=_EPOCH + timedelta(microseconds=int(self.time_us[i])),
                    lat=float(self.lat[i]),
                    lon=float(self.lon[i]),
                    valid=bool(self.valid[i]),
                    speed_kmh=_opt(self.speed_kmh[i]),
                    course=_opt(self.course[i]),
                    altitude_m=_opt(self.altitude_m[i]),
                    satellites=sats if sats >= 0 else None,
                    alarm=alarm,
                    status=status,
                    alarms=alarm_flags(alarm) if alarm_flags else frozenset(),
                    flags=status_flags(status) if status_flags else frozenset(),
                    mileage_km=_opt(self.mileage_km[i]),
                    backfill=bool(self.backfill[i]),
                    extras=dict(self.extras.get(i, {})),
                )
            )
        return out

    def take(self, index: npt.NDArray[np.intp] | slice) -> PositionColumns:
        """A subset of the rows (same distinct-device list)."""
        rows = np.arange(len(self))[index]
        extras = {}
        if self.extras:
            new_row = {old: new for new, old in enumerate(rows.tolist())}
            extras = {new_row[old]: e for old, e in self.extras.items() if old in new_row}
        return PositionColumns(
            protocol=self.protocol,
            devices=self.devices,
            device=self.device[index],
            msg_id=self.msg_id[index],
            serial=self.serial[index],
            version=self.version[index],
            time_us=self.time_us[index],
            lat=self.lat[index],
            lon=self.lon[index],
            valid=self.valid[index],
            speed_kmh=self.speed_kmh[index],
            course=self.course[index],
            altitude_m=self.altitude_m[index],
            satellites=self.satellites[index],
            alarm=self.alarm[index],
            status=self.status[index],
            mileage_km=self.mileage_km[index],
            backfill=self.backfill[index],
            extras=extras,
        )


def _opt(v: float) -> float | None:
    return None if v != v else float(v)
