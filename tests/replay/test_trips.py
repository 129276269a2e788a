"""Stops, trips and mileage of synthetic tracks whose answers are known."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import numpy as np
import pytest

from replay.geo import local_xy
from replay.trips import daily, stays, stops, trips
from store.batch import to_micros
from store.tracks import Track
from tests.replay.synthetic import LAT0, LON0, M_PER_DEG, Builder, day_of_driving

START = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)  # 08:00 in Shenzhen


def test_the_stops_and_trips_of_a_known_day() -> None:
    b, known = day_of_driving(START)
    track = b.track()
    found = stops(track)
    assert [(s.first, s.last) for s in found] == known["stops"]
    assert [s.duration_s for s in found] == [600, 300, 1200]
    assert found[0].lat == pytest.approx(LAT0) and found[0].lon == pytest.approx(LON0)
    assert found[1].lat == pytest.approx(LAT0 + 6000 / M_PER_DEG)
    journeys = trips(track, found)
    assert [(t.first, t.last) for t in journeys] == known["trips"]
    first, second = journeys
    assert first.distance_km == pytest.approx(6.0, rel=1e-9)
    assert second.distance_km == pytest.approx(6.0, rel=1e-6)  # 3 km east, a pause, 3 km south
    assert first.odometer_km == pytest.approx(6.12) and second.odometer_km == pytest.approx(6.12)
    assert (first.duration_s, second.duration_s) == (600, 720)
    assert first.avg_speed_kmh == pytest.approx(36.0) and second.avg_speed_kmh == pytest.approx(30.0)
    assert first.max_speed_kmh == pytest.approx(36.0) and first.fixes == 21
    assert first.start_us == to_micros(START) + 600_000_000


def test_a_track_without_stops_is_one_trip_and_the_ends_are_trips_too() -> None:
    b = Builder(START).move(3000, 0, 300)
    track = b.track()
    assert stops(track) == []
    assert [(t.first, t.last) for t in trips(track, [])] == [(0, 10)]
    b.stay(600).move(0, 1500, 150)
    track = b.track()
    found = stops(track)
    assert [(s.first, s.last) for s in found] == [(10, 30)]
    assert [(t.first, t.last) for t in trips(track, found)] == [(0, 10), (30, 35)]


def test_min_stop_s_and_the_radius_decide() -> None:
    b = Builder(START).move(3000, 0, 300).stay(240).move(3000, 0, 300)
    track = b.track()
    assert len(stops(track)) == 1
    assert stops(track, min_stop_s=241) == []
    # Creeping at 60 m a minute: within 50 m of a fix for a minute at most, within 200 m for three.
    slow = Builder(START, every_s=60).move(1200, 0, 1200).track()
    assert stops(slow) == []
    assert [(s.first, s.last) for s in stops(slow, stop_radius_m=200)] == [(0, 3), (4, 7), (8, 11), (12, 15), (16, 19)]


def test_a_fix_that_drifts_out_while_parked_makes_no_trip() -> None:
    b = Builder(START).move(3000, 0, 300).stay(1200).move(3000, 0, 300)
    track = b.track()
    track.lon[20] += 70 / (M_PER_DEG * math.cos(math.radians(LAT0)))  # 70 m east for one fix, mid-stop
    assert len(stays(track, min_stop_s=180, stop_radius_m=50)) == 2
    found = stops(track)
    assert [(s.first, s.last) for s in found] == [(10, 50)]
    assert len(trips(track, found)) == 2


def test_coming_back_to_the_same_place_is_a_trip_between_two_stops() -> None:
    b = Builder(START).stay(600).move(3000, 0, 300).move(-3000, 0, 300).stay(600)
    found = stops(b.track())
    assert [(s.first, s.last) for s in found] == [(0, 20), (40, 60)]
    assert [t.distance_km for t in trips(b.track(), found)] == [pytest.approx(6.0)]


def test_a_missing_odometer_and_missing_speeds_are_null() -> None:
    b = Builder(START).move(3000, 0, 300)
    track = b.track()
    track.mileage_km[:] = np.nan
    track.speed_kmh[:] = np.nan
    trip = trips(track, [])[0]
    assert trip.odometer_km is None and trip.max_speed_kmh is None
    track.mileage_km[[3, 7]] = [500.0, 501.25]
    assert trips(track, [])[0].odometer_km == pytest.approx(1.25)


def _reference_stays(track: Track, min_stop_s: float, radius: float) -> list[tuple[int, int]]:
    """The greedy walk, fix by fix."""
    x, y = local_xy(track.lat, track.lon)
    out, i, n = [], 0, len(track)
    while i < n:
        j = i + 1
        while j < n and math.hypot(x[j] - x[i], y[j] - y[i]) <= radius:
            j += 1
        if track.fix_time[j - 1] - track.fix_time[i] >= min_stop_s * 1e6:
            out.append((i, j - 1))
            i = j
        else:
            i += 1
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("every_s", [1.0, 30.0])
def test_stays_are_the_greedy_walk(seed: int, every_s: float) -> None:
    rng = np.random.default_rng(seed)
    b = Builder(START, every_s=every_s)
    for _ in range(12):
        if rng.random() < 0.5:
            b.stay(float(rng.integers(1, 40)) * 30)
        else:
            b.move(float(rng.normal(0, 800)), float(rng.normal(0, 800)), float(rng.integers(1, 20)) * 30)
    track = b.track()
    track.lat[:] += rng.normal(0, 8, len(track)) / M_PER_DEG  # GPS noise of a few metres
    track.lon[:] += rng.normal(0, 8, len(track)) / M_PER_DEG
    assert stays(track, min_stop_s=180, stop_radius_m=50) == _reference_stays(track, 180, 50)


def test_mileage_per_local_day_both_ways() -> None:
    # 23:50 to 00:10 Shenzhen time, 36 km/h north, the odometer 2 % long.
    start = datetime(2026, 11, 20, 15, 50, tzinfo=UTC)
    track = Builder(start, odometer_factor=1.02).move(12_000, 0, 1200).track()
    excluded = np.zeros(len(track), dtype=bool)
    day_us = 86_400_000_000
    begin = to_micros(datetime(2026, 11, 20, 16, tzinfo=UTC)) - day_us
    days = daily(track, excluded, start_us=begin, end_us=begin + 2 * day_us)
    assert [d.date for d in days] == [date(2026, 11, 20), date(2026, 11, 21)]
    # 23:50:00 ... 23:59:30, then 00:00:00 ... 00:10:00; the step that ends at midnight counts on the new day.
    assert [d.fixes for d in days] == [20, 21]
    assert [d.distance_km for d in days] == [pytest.approx(5.7), pytest.approx(6.3)]
    assert [d.odometer_km for d in days] == [pytest.approx(5.7 * 1.02), pytest.approx(6.3 * 1.02)]
    utc_days = daily(track, excluded, start_us=begin, end_us=begin + 2 * day_us, utc_offset_h=0)
    assert [d.date for d in utc_days] == [date(2026, 11, 19), date(2026, 11, 20), date(2026, 11, 21)]
    assert [d.distance_km for d in utc_days] == [0.0, pytest.approx(12.0), 0.0]
    assert [d.odometer_km for d in utc_days] == [None, pytest.approx(12.24), None]


def test_excluded_fixes_count_for_no_distance_but_are_counted() -> None:
    track = Builder(START).move(3000, 0, 300).track()
    excluded = np.zeros(len(track), dtype=bool)
    track.lat[4] += 0.5
    excluded[4] = True
    day = daily(track, excluded, start_us=to_micros(START), end_us=to_micros(START) + 3_600_000_000)
    assert len(day) == 1
    assert day[0].distance_km == pytest.approx(3.0)
    assert (day[0].fixes, day[0].excluded) == (11, 1)
    assert day[0].odometer_km == pytest.approx(3.0)
