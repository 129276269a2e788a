"""Runs of a condition (here: over a speed limit): raised only after min_s, ended by the first fix without it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.runs import FixClock, Run, RunTracker

S = 1_000_000
T0 = 1_763_700_000 * S


def _feed(
    tracker: RunTracker, fixes: Sequence[tuple[int, int, float]], limit: float = 60, min_s: float = 20
) -> list[Run]:
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


@dataclass(slots=True)
class _RefRun:
    since_us: int = -1
    raised: bool = False
    peak: float = 0.0
    limit: float = 0.0


class _Reference:
    """The tracker as first written, a Python step per fix: what RunTracker must answer alike."""

    def __init__(self, clock: FixClock | None = None) -> None:
        self.runs: dict[int, _RefRun] = {}
        self.own = clock is None
        self.clock = clock or FixClock()

    def feed(
        self,
        device_id: npt.NDArray[np.integer],
        fix_time_us: npt.NDArray[np.int64],
        holds: npt.NDArray[np.bool_],
        value: npt.NDArray[np.floating],
        limit: npt.NDArray[np.floating],
        min_s: float,
    ) -> list[Run]:
        value = np.asarray(value, dtype=np.float64)
        limit = np.asarray(limit, dtype=np.float64)
        device_id = np.asarray(device_id)
        over = np.asarray(holds, dtype=bool)
        fresh = self.clock.fresh(device_id, fix_time_us)
        busy = np.fromiter(self.runs, dtype=np.int64, count=len(self.runs))
        involved = np.union1d(busy, device_id[over])
        pick = np.flatnonzero(np.isin(device_id, involved))
        pick = pick[np.lexsort((fix_time_us[pick], device_id[pick]))]
        min_us = round(min_s * 1e6)
        out: list[Run] = []
        for i in pick.tolist():
            did, t = int(device_id[i]), int(fix_time_us[i])
            if not fresh[i]:
                continue
            run = self.runs.get(did)
            if over[i]:
                if run is None:
                    run = self.runs[did] = _RefRun(since_us=t)
                run.peak = max(run.peak, float(value[i]))
                run.limit = float(limit[i])
                if not run.raised and t - run.since_us >= min_us:
                    run.raised = True
                    out.append(Run(did, run.since_us, t, False, run.peak, run.limit, i))
            elif run is not None:
                if run.raised:
                    out.append(Run(did, run.since_us, t, True, run.peak, run.limit, i))
                del self.runs[did]
        if self.own:
            self.clock.advance(device_id, fix_time_us)
        return out


def _open_runs(tr: RunTracker) -> str:
    """The runs a tracker keeps open, as (device, since, raised, peak, limit), in a form where NaN equals NaN."""
    o = tr._open
    return repr(
        [
            (d, int(o.since_us[d]), bool(o.raised[d]), float(o.peak[d]), float(o.limit[d]))
            for d in o.going.nonzero()[0].tolist()
        ]
    )


_DEVICES = (1, 2, 7, 1500)  # 1500: past the first size of the clock's and the tracker's arrays
_FIX = st.tuples(
    st.integers(0, len(_DEVICES) - 1),
    st.integers(-20, 40),  # seconds after the batch's start: batches overlap, so fixes come late and twice
    st.integers(0, 2),  # the condition holds at 1 and 2
    st.one_of(st.integers(-5, 120), st.just(None)),  # the value (None: no value, NaN)
    st.sampled_from([50.0, 60.0, None]),  # the limit (None: no limit, NaN)
)


@settings(max_examples=300)
@given(
    batches=st.lists(st.tuples(st.lists(_FIX, max_size=25), st.booleans()), min_size=1, max_size=6),
    min_s=st.sampled_from([0, 10, 30]),
    shared=st.booleans(),
    whole_values=st.booleans(),
)
def test_the_same_runs_as_a_step_per_fix(
    batches: list[tuple[list[tuple[int, int, int, int | None, float | None]], bool]],
    min_s: int,
    shared: bool,
    whole_values: bool,
) -> None:
    """Random batches over several devices with late and repeated fix times, on a clock of the tracker's own or
    one shared (which its owner may not advance after a batch): the runs reported and the runs kept open
    are those of a Python step per fix."""
    clocks = (FixClock(), FixClock()) if shared else (None, None)
    tracker, reference = RunTracker(clocks[0]), _Reference(clocks[1])
    for b, (fixes, advance) in enumerate(batches):
        device = np.array([_DEVICES[f[0]] for f in fixes], dtype=np.int32)
        times = np.array([T0 + (15 * b + f[1]) * S for f in fixes], dtype=np.int64)
        holds = np.array([f[2] > 0 for f in fixes], dtype=bool)
        value: npt.NDArray[Any] = (
            np.array([f[3] or 0 for f in fixes], dtype=np.int64)  # an alarm word
            if whole_values
            else np.array([np.nan if f[3] is None else f[3] for f in fixes], dtype=np.float64)
        )
        limit = np.array([np.nan if f[4] is None else f[4] for f in fixes], dtype=np.float64)
        got = tracker.feed(device, times, holds, value, limit, min_s)
        want = reference.feed(device, times, holds, value, limit, min_s)
        assert repr(got) == repr(want)  # repr: Python ints and floats alike, NaN equal to NaN
        assert _open_runs(tracker) == repr(
            [(d, r.since_us, r.raised, r.peak, r.limit) for d, r in sorted(reference.runs.items())]
        )
        if shared and advance:
            for clock in clocks:
                assert clock is not None
                clock.advance(device, times)
