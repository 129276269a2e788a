"""Synthetic tracks with known answers: stays and straight legs, in metres, at a fixed fix interval."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import h3.api.basic_int as h3
import numpy as np

from geofence.shapes import EARTH_RADIUS_M
from store.batch import PositionBatch, PositionRow, to_micros
from store.tracks import Track

LAT0, LON0 = 22.54, 114.05  # Futian, Shenzhen
M_PER_DEG = EARTH_RADIUS_M * math.pi / 180


@dataclass
class Builder:
    """A track that starts with one fix at `start`; each call adds fixes after the last one.

    North-south legs run along a meridian, so their great-circle length is exactly what was asked.
    Reported speed is the leg's speed (0 on a stay); the odometer advances by `odometer_factor`
    times the distance travelled.
    """

    start: datetime
    every_s: float = 30.0
    odometer_km: float = 1000.0
    odometer_factor: float = 1.0
    lat: list[float] = field(default_factory=lambda: [LAT0])
    lon: list[float] = field(default_factory=lambda: [LON0])
    seconds: list[float] = field(default_factory=lambda: [0.0])
    speed: list[float] = field(default_factory=lambda: [0.0])
    mileage: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mileage.append(self.odometer_km)

    def stay(self, seconds: float) -> Builder:
        return self.move(0.0, 0.0, seconds)

    def move(self, north_m: float, east_m: float, seconds: float) -> Builder:
        steps = round(seconds / self.every_s)
        step_m = math.hypot(north_m, east_m) / steps
        for _ in range(steps):
            self.lat.append(self.lat[-1] + north_m / steps / M_PER_DEG)
            self.lon.append(self.lon[-1] + east_m / steps / (M_PER_DEG * math.cos(math.radians(self.lat[-1]))))
            self.seconds.append(self.seconds[-1] + self.every_s)
            self.speed.append(step_m / self.every_s * 3.6)
            self.mileage.append(self.mileage[-1] + step_m * self.odometer_factor / 1000)
        return self

    @property
    def last(self) -> int:
        """Index of the newest fix."""
        return len(self.lat) - 1

    def times_us(self) -> np.ndarray:
        return to_micros(self.start) + np.round(np.array(self.seconds) * 1e6).astype(np.int64)

    def track(self) -> Track:
        return Track.from_columns(
            fix_time=self.times_us(),
            lat=self.lat,
            lon=self.lon,
            speed_kmh=self.speed,
            course=0.0,
            altitude_m=12.5,
            satellites=9,
            mileage_km=self.mileage,
        )

    def batch(self, device_id: int, *, received_after_s: float = 2.0) -> PositionBatch:
        """The fixes as reports of a device, for the position writer."""
        return PositionBatch.from_rows(
            [
                PositionRow(
                    device_id=device_id,
                    fix_time=self.start + timedelta(seconds=s),
                    receive_time=self.start + timedelta(seconds=s + received_after_s),
                    lat=lat,
                    lon=lon,
                    valid=True,
                    h3_cell=h3.latlng_to_cell(lat, lon, 9),
                    protocol="jt808",
                    speed_kmh=v,
                    course=0.0,
                    altitude_m=12.5,
                    satellites=9,
                    mileage_km=m,
                )
                for s, lat, lon, v, m in zip(self.seconds, self.lat, self.lon, self.speed, self.mileage, strict=True)
            ]
        )


def day_of_driving(start: datetime) -> tuple[Builder, dict[str, list[tuple[int, int]]]]:
    """Parked 10 min; 6 km north in 10 min; parked 5 min; 3 km east in 5 min, a 2-min pause (no
    stop), 3 km south in 5 min; parked 20 min. Fixes every 30 s; the odometer reads 2 % long.
    The indices (first, last) of the stops and trips it has."""
    b = Builder(start, odometer_factor=1.02)
    b.stay(600)
    a = (0, b.last)
    b.move(6000, 0, 600).stay(300)
    stop_b = (b.last - 10, b.last)
    b.move(0, 3000, 300).stay(120).move(-3000, 0, 300)
    arrival_d = b.last
    b.stay(1200)
    return b, {"stops": [a, stop_b, (arrival_d, b.last)], "trips": [(a[1], stop_b[0]), (stop_b[1], arrival_d)]}
