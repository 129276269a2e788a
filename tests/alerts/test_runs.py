"""Runs of a condition (here: over a speed limit): raised only after min_s, ended by the first fix without it."""

from __future__ import annotations

import numpy as np

from alerts.runs import FixClock, Run, RunTracker

S = 1_000_000
T0 = 1_763_700_000 * S


def _feed(tracker: RunTracker, fixes: list[tuple[int, int, float]], limit: float = 60, min_s: float = 20) -> list[Run]:
    device = np.array([f[0] for f in fixes])
    times = np.array([T0 + f[1] * S for f in fixes], dtype=np.int64)
    speed = np.array([f[2] for f in fixes])
    limits = np.full(len(fixes), limit)
    return tracker.feed(device, times, speed > limits, speed, limits, min_s)


def test_a_run_over_the_limit_is_raised_after_min_s_and_ended_under_it() -> None:
    tr = RunTracker()
    assert _feed(tr, [(1, s, 50) for s in range(0, 30, 10)]) == []
    got = _feed(tr, [(1, 30 + s, 75 + s / 10) for s in range(0, 40, 10)])  # 30 s .. 60 s over the limit
    assert got == [Run(1, T0 + 30 * S, T0 + 50 * S, False, 77.0, 60.0, 2)]  # row 2 of that batch: where
    assert _feed(tr, [(1, 70, 59)]) == [Run(1, T0 + 30 * S, T0 + 70 * S, True, 78.0, 60.0, 0)]


def test_a_short_burst_and_noise_raise_nothing() -> None:
    tr = RunTracker()
    assert _feed(tr, [(1, 0, 90), (1, 10, 40), (1, 20, 95), (1, 25, 30)]) == []
    assert _feed(tr, [(2, 0, np.nan), (2, 100, 80)], limit=np.nan) == []  # no speed, or no limit: nothing


def test_late_fixes_and_other_devices() -> None:
    tr = RunTracker()
    _feed(tr, [(1, 100, 40)])
    assert _feed(tr, [(1, s, 99) for s in range(0, 60, 10)]) == []  # yesterday's speeds: history only
    got = _feed(tr, [(2, s, 99) for s in range(0, 30, 10)] + [(3, 0, 10)])
    assert [(o.device_id, o.ended) for o in got] == [(2, False)]


def test_trackers_sharing_a_clock_judge_late_fixes_alike() -> None:
    clock = FixClock()
    fast, alarm = RunTracker(clock), RunTracker(clock)
    device = np.array([5, 70_000])  # an id past the clock's first size: it grows
    times = np.array([T0 + 100 * S, T0 + 100 * S], dtype=np.int64)
    assert clock.fresh(device, times).tolist() == [True, True]
    for tracker in (fast, alarm):
        tracker.feed(device, times, np.array([False, False]), np.zeros(2), np.zeros(2), 0)
    assert clock.fresh(device, times).tolist() == [True, True]  # trackers with a shared clock do not advance it
    clock.advance(device, times)
    earlier = times - 50 * S
    assert clock.fresh(device, earlier).tolist() == [False, False]
    for tracker in (fast, alarm):  # yesterday's alarm: history, no run
        assert tracker.feed(device, earlier, np.array([True, True]), np.ones(2), np.zeros(2), 0) == []
