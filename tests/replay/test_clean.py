"""Bad fixes are flagged with their reason, and only they: invalid, zero, future and jump."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from replay.clean import CLEAN, FUTURE, INVALID, JUMP, REASONS, ZERO, counts, reasons
from replay.geo import steps_m
from store.batch import to_micros
from tests.replay.synthetic import M_PER_DEG, Builder

START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
NOW = to_micros(START) + 86_400_000_000


def _drive(fixes: int = 20) -> Builder:
    """Northward at 36 km/h, a fix every 30 s."""
    return Builder(START).move(300 * (fixes - 1), 0, 30 * (fixes - 1))


def test_a_clean_track_has_no_flags() -> None:
    track = _drive().track()
    assert (reasons(track, NOW) == CLEAN).all()


def test_invalid_zero_and_future_fixes_are_flagged_first_reason_winning() -> None:
    track = _drive(8).track()
    track.valid[1] = False
    track.lat[2] = 0.0
    track.lon[3] = 0.0
    track.valid[3] = False  # invalid and zero: invalid comes first
    track.receive_time[4] = track.fix_time[4] - 301_000_000  # fixed 5 min 1 s after it was received
    codes = reasons(track, NOW)
    assert codes.tolist() == [CLEAN, INVALID, ZERO, INVALID, FUTURE, CLEAN, CLEAN, CLEAN]
    assert counts(codes) == {"invalid": 2, "zero": 1, "future": 1, "jump": 0}


def test_a_fix_ahead_of_now_is_future_even_when_received_with_it() -> None:
    track = _drive(3).track()
    now = int(track.fix_time[1]) - 301_000_000
    assert reasons(track, now).tolist() == [CLEAN, FUTURE, FUTURE]
    assert reasons(track, int(track.fix_time[2]) - 299_000_000).tolist() == [CLEAN, CLEAN, CLEAN]


def test_one_outlier_is_a_jump_and_the_track_goes_on_after_it() -> None:
    track = _drive().track()
    track.lat[7] += 10_000 / M_PER_DEG  # 10 km off for one fix: 1,200 km/h there and back
    codes = reasons(track, NOW)
    assert np.flatnonzero(codes).tolist() == [7]
    assert REASONS[codes[7]] == "jump"


def test_a_run_of_outliers_is_excluded_whole() -> None:
    track = _drive().track()
    track.lon[5:9] += 0.1  # about 10 km east for four fixes, which agree with each other
    codes = reasons(track, NOW)
    assert np.flatnonzero(codes == JUMP).tolist() == [5, 6, 7, 8]


def test_a_first_fix_that_disagrees_with_the_next_two_is_the_outlier() -> None:
    track = _drive().track()
    track.lat[0] += 0.2
    assert np.flatnonzero(reasons(track, NOW)).tolist() == [0]


def test_an_outlier_second_fix_leaves_the_first_as_reference() -> None:
    track = _drive().track()
    track.lat[1] += 0.2
    assert np.flatnonzero(reasons(track, NOW)).tolist() == [1]


def test_fast_but_possible_and_gaps_are_not_jumps() -> None:
    b = Builder(START).move(200 / 3.6 * 300, 0, 300)  # 200 km/h for 5 min: possible
    b.stay(3600).move(100_000, 0, 30)  # after an hour parked, 100 km in 30 s: not
    track = b.track()
    codes = reasons(track, NOW)
    assert codes[-1] == JUMP and not codes[:-1].any()
    track.fix_time[-1] += 3_600_000_000  # the same step an hour later: 100 km/h
    track.receive_time[-1] = track.fix_time[-1]
    assert not reasons(track, NOW).any()


def test_jumps_are_judged_among_fixes_not_excluded_otherwise() -> None:
    track = _drive().track()
    track.lat[6] = 0.0  # a zero fix is not the reference for the next one
    codes = reasons(track, NOW)
    assert np.flatnonzero(codes).tolist() == [6] and codes[6] == ZERO


@pytest.mark.parametrize("seed", range(5))
def test_distance_over_clean_fixes_ignores_the_outliers(seed: int) -> None:
    rng = np.random.default_rng(seed)
    track = _drive(60).track()
    bad = np.sort(rng.choice(np.arange(1, 59), size=5, replace=False))
    track.lat[bad] += rng.uniform(0.05, 0.5, size=5)
    codes = reasons(track, NOW)
    assert np.flatnonzero(codes).tolist() == bad.tolist()
    good = codes == CLEAN
    assert steps_m(track.lat[good], track.lon[good]).sum() == pytest.approx(300 * 59, rel=1e-9)
