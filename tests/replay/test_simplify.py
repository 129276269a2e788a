"""Douglas-Peucker by tolerance and by point count: the same points as the textbook recursion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from replay.geo import local_xy
from replay.simplify import importance, simplify, turns
from tests.replay.synthetic import LAT0, LON0, M_PER_DEG


def _latlon(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Metres east and north of the reference point as degrees."""
    return LAT0 + y / M_PER_DEG, LON0 + x / (M_PER_DEG * math.cos(math.radians(LAT0)))


def _city_drive(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    heading = np.cumsum(rng.normal(0, 0.5, n))
    step = np.abs(rng.normal(200, 120, n)) * (rng.random(n) > 0.2)
    return _latlon(np.cumsum(np.cos(heading) * step), np.cumsum(np.sin(heading) * step))


def _segment_distance(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    dx, dy = bx - ax, by - ay
    len2 = dx * dx + dy * dy
    t = 0.0 if len2 == 0 else min(1.0, max(0.0, ((px - ax) * dx + (py - ay) * dy) / len2))
    return math.hypot(px - ax - t * dx, py - ay - t * dy)


def _textbook(x: list[float], y: list[float], tolerance: float) -> set[int]:
    """Recursive Douglas-Peucker, one point at a time."""
    kept = {0, len(x) - 1}
    pending = [(0, len(x) - 1)]
    while pending:
        a, b = pending.pop()
        best, at = -1.0, -1
        for i in range(a + 1, b):
            d = _segment_distance(x[i], y[i], x[a], y[a], x[b], y[b])
            if d > best:
                best, at = d, i
        if at > 0 and best > tolerance:
            kept.add(at)
            pending += [(a, at), (at, b)]
    return kept


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tolerance", [0.5, 5.0, 40.0, 300.0])
def test_tolerance_keeps_what_the_textbook_recursion_keeps(seed: int, tolerance: float) -> None:
    lat, lon = _city_drive(600, seed)
    x, y = local_xy(lat, lon)
    expected = _textbook(x.tolist(), y.tolist(), tolerance)
    assert set(simplify(lat, lon, tolerance_m=tolerance).tolist()) == expected


@pytest.mark.parametrize("points", [2, 10, 77, 250])
def test_a_point_count_is_the_tolerance_that_yields_it(points: int) -> None:
    lat, lon = _city_drive(1000, 7)
    kept = simplify(lat, lon, points=points)
    assert len(kept) == points and kept[0] == 0 and kept[-1] == 999
    assert (np.diff(kept) > 0).all()
    x, y = local_xy(lat, lon)
    ranked = np.sort(importance(x, y))[::-1]
    tolerance = (ranked[points - 1] + ranked[points]) / 2  # between the last kept and the first left out
    assert set(kept.tolist()) == _textbook(x.tolist(), y.tolist(), tolerance)


def test_a_straight_line_is_its_two_ends_and_a_corner_is_kept() -> None:
    lat, lon = _latlon(np.zeros(50), np.arange(50) * 30.0)
    assert simplify(lat, lon, tolerance_m=1).tolist() == [0, 49]
    x = np.concatenate((np.zeros(20), np.arange(1, 21) * 30.0))
    y = np.concatenate((np.arange(20) * 30.0, np.full(20, 19 * 30.0)))
    assert simplify(*_latlon(x, y), tolerance_m=1).tolist() == [0, 19, 39]
    assert simplify(*_latlon(x, y), points=3).tolist() == [0, 19, 39]


def test_kept_points_stay_and_may_exceed_the_count() -> None:
    lat, lon = _latlon(np.zeros(100), np.arange(100) * 30.0)
    keep = np.zeros(100, dtype=bool)
    keep[[10, 20, 30, 40]] = True
    assert simplify(lat, lon, tolerance_m=1, keep=keep).tolist() == [0, 10, 20, 30, 40, 99]
    assert simplify(lat, lon, points=3, keep=keep).tolist() == [0, 10, 20, 30, 40, 99]
    assert len(simplify(lat, lon, points=500, keep=keep)) == 100


def test_identical_points_and_tiny_tracks() -> None:
    lat, lon = np.full(5000, LAT0), np.full(5000, LON0)
    assert simplify(lat, lon, tolerance_m=0.5).tolist() == [0, 4999]
    assert len(simplify(lat, lon, points=100)) == 100
    assert simplify(lat[:1], lon[:1], tolerance_m=1).tolist() == [0]
    assert simplify(lat[:0], lon[:0], points=10).tolist() == []
    with pytest.raises(ValueError):
        simplify(lat, lon)


def test_turns_are_sharp_heading_changes_between_real_legs() -> None:
    # A square, 300 m a side, a fix every 100 m: the three inner corners turn by 90 degrees.
    side = np.arange(0, 300, 100.0)
    x = np.concatenate((side, np.full(3, 300.0), 300 - side, np.zeros(2)))
    y = np.concatenate((np.zeros(3), side, np.full(3, 300.0), 300 - side[:2]))
    found = np.flatnonzero(turns(*_latlon(x, y)))
    assert found.tolist() == [3, 6, 9]
    jitter = np.random.default_rng(1).normal(0, 3, (2, 200))  # parked: legs of a few metres
    assert not turns(*_latlon(jitter[0], jitter[1])).any()
