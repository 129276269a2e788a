"""Runs of a condition over a device's fixes (over the speed limit, an alarm bit set) lasting `min_s`.

A run begins at the first fix where the condition holds and is raised once it has held for `min_s`
seconds of fix time (a single fast fix from GPS noise raises no overspeed); the first fix where it
no longer holds ends it. Only fixes newer than the device's last evaluated one count (a backfill
is history, shown in replay); what was evaluated is a `FixClock`, which the rules of one engine share.
Most fixes meet no condition: only the fixes of devices where it holds (in this batch or at the end of
the last) cost a Python step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Run:
    device_id: int
    began_us: int  # the first fix where the condition held
    at_us: int  # raised: when it had lasted min_s; ended: the first fix where it no longer held
    ended: bool
    peak: float  # the largest value seen in the run (the speed, the alarm word)
    limit: float  # the limit of the last fix in the run (overspeed)
    row: int  # the batch row of the fix at `at_us` (where it was seen)


@dataclass(slots=True)
class _Run:
    since_us: int = -1  # first fix of the current run; -1: none
    raised: bool = False
    peak: float = 0.0
    limit: float = 0.0


class FixClock:
    """Each device's newest evaluated fix time, in an array indexed by device id (ids are the devices
    table's serial numbers): which fixes of a batch are late, for every rule at once."""

    def __init__(self) -> None:
        self._newest = np.full(1024, -1, dtype=np.int64)

    def _slots(self, device_id: npt.NDArray[np.integer]) -> npt.NDArray[np.intp]:
        ids = np.asarray(device_id, dtype=np.intp)
        if len(ids) and int(ids.max()) >= len(self._newest):
            grown = np.full(max(int(ids.max()) + 1, 2 * len(self._newest)), -1, dtype=np.int64)
            grown[: len(self._newest)] = self._newest
            self._newest = grown
        return ids

    def fresh(self, device_id: npt.NDArray[np.integer], fix_time_us: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Per fix: newer than every fix of its device evaluated before this batch."""
        slots = self._slots(device_id)  # first: it may grow the array
        return np.asarray(fix_time_us) > self._newest[slots]

    def advance(self, device_id: npt.NDArray[np.integer], fix_time_us: npt.NDArray[np.int64]) -> None:
        """The batch is evaluated: what is older than its fixes is late from now on."""
        slots = self._slots(device_id)
        np.maximum.at(self._newest, slots, np.asarray(fix_time_us, dtype=np.int64))


class RunTracker:
    def __init__(self, clock: FixClock | None = None) -> None:
        """`clock`: shared with other trackers and advanced by their owner once per batch; without one the
        tracker keeps and advances its own."""
        self._runs: dict[int, _Run] = {}
        self._own = clock is None
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
        """Fixes, whether the condition holds at each, a value and a limit to report; what was raised or ended."""
        value = np.asarray(value, dtype=np.float64)
        limit = np.asarray(limit, dtype=np.float64)
        device_id = np.asarray(device_id)
        over = np.asarray(holds, dtype=bool)
        fresh = self.clock.fresh(device_id, fix_time_us)
        busy = np.fromiter(self._runs, dtype=np.int64, count=len(self._runs))
        # Every fix of a device that is over the limit in this batch or was at its end: a fix under the
        # limit in between must end the run.
        involved = np.union1d(busy, device_id[over])
        pick = np.flatnonzero(np.isin(device_id, involved))
        if not len(pick):
            self._advanced(device_id, fix_time_us)
            return []
        pick = pick[np.lexsort((fix_time_us[pick], device_id[pick]))]
        min_us = round(min_s * 1e6)
        out: list[Run] = []
        for i in pick.tolist():
            did, t = int(device_id[i]), int(fix_time_us[i])
            if not fresh[i]:
                continue  # late: not evaluated
            run = self._runs.get(did)
            if over[i]:
                if run is None:
                    run = self._runs[did] = _Run(since_us=t)
                run.peak = max(run.peak, float(value[i]))
                run.limit = float(limit[i])
                if not run.raised and t - run.since_us >= min_us:
                    run.raised = True
                    out.append(Run(did, run.since_us, t, False, run.peak, run.limit, i))
            elif run is not None:
                if run.raised:
                    out.append(Run(did, run.since_us, t, True, run.peak, run.limit, i))
                del self._runs[did]
        self._advanced(device_id, fix_time_us)
        return out

    def _advanced(self, device_id: npt.NDArray[np.integer], fix_time_us: npt.NDArray[np.int64]) -> None:
        if self._own:
            self.clock.advance(device_id, fix_time_us)
