"""Stops, the trips between them, and mileage per day, from a device's clean fixes.

A stop: the device stays within `stop_radius_m` of the fix where it arrived for at least
`min_stop_s` (from that fix to the last one inside the circle). Fixes are taken in order, and a
stop ends at the last fix before the first one outside the circle. Two stops in a row whose centres
lie within `stop_radius_m` of each other, with no fix between them farther than twice that, are
one stop (fixes that drifted out of the circle while parked make no trip). A terminal that falls
silent while parked shows its stop only if it sends at least one fix after arriving that is still
inside the circle.

A trip: from the start of the track or a stop's departure fix to the next stop's arrival fix or the
end of the track. Its distance is the great-circle distance along its clean fixes; its odometer
distance is the terminal's own mileage at its last fix that reports one minus at its first (null
without two readings); its top speed is the highest reported speed (null when none is reported);
its average speed is distance over time.

Mileage per day: each step between consecutive clean fixes counts on the local day of the fix it
ends at; the odometer likewise, step by step between consecutive readings, so the days add up to
the range's total both ways.

`stops` and `trips` take the clean fixes (replay.clean) only, `daily` every fix and which are
excluded; times are microseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import numpy.typing as npt

from replay.geo import local_xy, steps_m
from store.tracks import Track

MIN_STOP_S = 180
STOP_RADIUS_M = 50.0
UTC_OFFSET_H = 8.0  # China Standard Time
_DAY_US = 86_400_000_000
_FIRST_REACH = 16  # fixes ahead measured at once for every possible arrival, doubled while needed


@dataclass(frozen=True, slots=True)
class Stop:
    first: int  # index of the arrival fix in the clean track
    last: int  # index of the departure fix (the last one inside the circle)
    start_us: int
    end_us: int
    lat: float  # the centre: mean of the stop's fixes
    lon: float

    @property
    def duration_s(self) -> float:
        return (self.end_us - self.start_us) / 1e6


@dataclass(frozen=True, slots=True)
class Trip:
    first: int
    last: int
    start_us: int
    end_us: int
    start_lat: float
    start_lon: float
    end_lat: float
    end_lon: float
    distance_km: float
    odometer_km: float | None
    max_speed_kmh: float | None
    avg_speed_kmh: float | None
    fixes: int

    @property
    def duration_s(self) -> float:
        return (self.end_us - self.start_us) / 1e6


@dataclass(frozen=True, slots=True)
class Day:
    date: date  # local date
    distance_km: float
    odometer_km: float | None  # None: fewer than two readings reach into the day
    fixes: int  # every fix of the day, excluded ones too
    excluded: int


def stops(track: Track, *, min_stop_s: float = MIN_STOP_S, stop_radius_m: float = STOP_RADIUS_M) -> list[Stop]:
    runs = stays(track, min_stop_s=min_stop_s, stop_radius_m=stop_radius_m)
    return _merge(track, [_stop(track, first, last) for first, last in runs], stop_radius_m)


def stays(track: Track, *, min_stop_s: float, stop_radius_m: float) -> list[tuple[int, int]]:
    """(arrival, departure) index of every stay in the circle of its arrival fix, before merging.

    The greedy walk (a stay starts at the first fix that can start one, the next search starts after
    it ends) needs, at each fix, where its circle is left; that is measured for all fixes at once,
    a few fixes ahead at first and further only for those still inside, so Python steps are one
    per stay found.
    """
    n = len(track)
    if n < 2:
        return []
    x, y = local_xy(track.lat, track.lon)
    r2 = stop_radius_m * stop_radius_m
    t = track.fix_time
    min_us = int(min_stop_s * 1_000_000)
    # Where each fix's circle is left: the first later fix outside it. Only fixes whose next fix is
    # inside can start a stay.
    step2 = np.diff(x) ** 2 + np.diff(y) ** 2
    near, far = np.flatnonzero(step2 <= r2), np.flatnonzero(step2 > r2)
    reach = np.full(n, -1, dtype=np.int64)  # -1: not known yet
    reach[far] = far + 1
    reach[n - 1] = n
    long_enough = np.zeros(n, dtype=bool)  # inside the circle for min_stop_s at least, end not known yet
    undecided, lo, width = near, 1, _FIRST_REACH
    while len(undecided):
        ahead = undecided[:, None] + np.arange(lo, lo + width)
        beyond_end = ahead >= n
        ahead = np.minimum(ahead, n - 1)
        dx, dy = x[ahead] - x[undecided, None], y[ahead] - y[undecided, None]
        out = beyond_end | (dx * dx + dy * dy > r2)
        found = out.any(axis=1)
        reach[undecided[found]] = np.minimum(undecided[found] + lo + out[found].argmax(axis=1), n)
        rest = undecided[~found]
        lasting = t[rest + lo + width - 1] - t[rest] >= min_us
        long_enough[rest[lasting]] = True
        undecided, lo, width = rest[~lasting], lo + width, width * 2
    known = reach >= 0
    starts_stop = long_enough.copy()
    starts_stop[known] = t[reach[known] - 1] - t[known] >= min_us
    candidates = np.flatnonzero(starts_stop)
    runs: list[tuple[int, int]] = []
    at = 0
    while True:
        k = int(np.searchsorted(candidates, at))
        if k == len(candidates):
            return runs
        first = int(candidates[k])
        end = int(reach[first]) if reach[first] >= 0 else _first_outside(x, y, first, r2)
        runs.append((first, end - 1))
        at = end


def trips(track: Track, found_stops: list[Stop]) -> list[Trip]:
    """The trips around `found_stops` (as `stops` gives them for the same track)."""
    n = len(track)
    bounds: list[tuple[int, int]] = []
    at = 0
    for s in found_stops:
        if s.first > at:
            bounds.append((at, s.first))
        at = s.last
    if at < n - 1:
        bounds.append((at, n - 1))
    along = np.concatenate(([0.0], np.cumsum(steps_m(track.lat, track.lon))))
    return [_trip(track, along, a, b) for a, b in bounds]


def daily(
    track: Track,
    excluded: npt.NDArray[np.bool_],
    *,
    start_us: int,
    end_us: int,
    utc_offset_h: float = UTC_OFFSET_H,
) -> list[Day]:
    """Every local day that [start_us, end_us) touches. `track` is every fix and `excluded` says which
    of them replay leaves out."""
    offset_us = round(utc_offset_h * 3_600_000_000)
    first_day = (start_us + offset_us) // _DAY_US
    days = int((end_us - 1 + offset_us) // _DAY_US - first_day + 1)
    day = (track.fix_time + offset_us) // _DAY_US - first_day
    fixes = np.bincount(day, minlength=days)
    dropped = np.bincount(day[excluded], minlength=days)
    clean = ~excluded
    clean_day, lat, lon = day[clean], track.lat[clean], track.lon[clean]
    distance = np.bincount(clean_day[1:], weights=steps_m(lat, lon), minlength=days)
    mileage = track.mileage_km[clean]
    read = ~np.isnan(mileage)
    reading_day = clean_day[read][1:]
    odometer = np.bincount(reading_day, weights=np.diff(mileage[read]), minlength=days)
    readings = np.bincount(reading_day, minlength=days)
    epoch = datetime(1970, 1, 1, tzinfo=UTC).date()
    return [
        Day(
            date=epoch + timedelta(days=int(first_day) + i),
            distance_km=float(distance[i]) / 1000,
            odometer_km=float(odometer[i]) if readings[i] else None,
            fixes=int(fixes[i]),
            excluded=int(dropped[i]),
        )
        for i in range(days)
    ]


def _first_outside(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], first: int, r2: float) -> int:
    """The first fix after `first` outside its circle (len(x) when none), in growing windows."""
    n, at, width = len(x), first + 1, 256
    while at < n:
        dx, dy = x[at : at + width] - x[first], y[at : at + width] - y[first]
        out = dx * dx + dy * dy > r2
        if out.any():
            return at + int(out.argmax())
        at, width = at + width, width * 2
    return n


def _stop(track: Track, first: int, last: int) -> Stop:
    return Stop(
        first=first,
        last=last,
        start_us=int(track.fix_time[first]),
        end_us=int(track.fix_time[last]),
        lat=float(track.lat[first : last + 1].mean()),
        lon=float(track.lon[first : last + 1].mean()),
    )


def _merge(track: Track, found: list[Stop], radius_m: float) -> list[Stop]:
    """One stop for two in a row at the same place with nothing but drift between them."""
    merged: list[Stop] = []
    for s in found:
        if merged and _drift(track, merged[-1], s, radius_m):
            merged[-1] = _stop(track, merged[-1].first, s.last)
        else:
            merged.append(s)
    return merged


def _drift(track: Track, a: Stop, b: Stop, radius_m: float) -> bool:
    """Whether b's centre is within radius_m of a's, and no fix between them beyond twice that."""
    lat = np.concatenate(([a.lat, b.lat], track.lat[a.last : b.first + 1]))
    lon = np.concatenate(([a.lon, b.lon], track.lon[a.last : b.first + 1]))
    x, y = local_xy(lat, lon)
    away = np.hypot(x - x[0], y - y[0])
    return bool(away[1] <= radius_m and away[2:].max() <= 2 * radius_m)


def _trip(track: Track, along: npt.NDArray[np.float64], a: int, b: int) -> Trip:
    mileage = track.mileage_km[a : b + 1]
    read = np.flatnonzero(~np.isnan(mileage))
    speeds = track.speed_kmh[a : b + 1]
    has_speed = ~np.isnan(speeds)
    distance_km = float(along[b] - along[a]) / 1000
    hours = (int(track.fix_time[b]) - int(track.fix_time[a])) / 3.6e9
    return Trip(
        first=a,
        last=b,
        start_us=int(track.fix_time[a]),
        end_us=int(track.fix_time[b]),
        start_lat=float(track.lat[a]),
        start_lon=float(track.lon[a]),
        end_lat=float(track.lat[b]),
        end_lon=float(track.lon[b]),
        distance_km=distance_km,
        odometer_km=float(mileage[read[-1]] - mileage[read[0]]) if len(read) >= 2 else None,
        max_speed_kmh=float(speeds[has_speed].max()) if has_speed.any() else None,
        avg_speed_kmh=distance_km / hours if hours > 0 else None,
        fixes=b - a + 1,
    )
