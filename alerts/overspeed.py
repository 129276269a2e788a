"""Overspeed: faster than the limit for at least `min_s` seconds of fix time, per device.

An alert begins at the first fix over the limit and is raised once the speed has stayed over it for
`min_s` (a single fast fix from GPS noise raises nothing); the first fix at or under the limit
ends it. Only fixes newer than the device's last evaluated one count (a backfill is not evaluated
for overspeed: its speeds are history, shown in replay). Most fixes are under every limit: only
the fixes of devices over it (in this batch or at the end of the last), cost a Python step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Overspeed:
    device_id: int
    began_us: int  # the first fix over the limit
    at_us: int  # raised: when it had lasted min_s; ended: the first fix back under the limit
    ended: bool
    max_kmh: float
    limit_kmh: float


@dataclass(slots=True)
class _Run:
    since_us: int = -1  # first fix over the limit of the current run; -1: none
    raised: bool = False
    max_kmh: float = 0.0
    limit_kmh: float = 0.0


class OverspeedTracker:
    def __init__(self) -> None:
        self._runs: dict[int, _Run] = {}
        self._last: dict[int, int] = {}

    def feed(
        self,
        device_id: npt.NDArray[np.integer],
        fix_time_us: npt.NDArray[np.int64],
        speed_kmh: npt.NDArray[np.floating],
        limit_kmh: npt.NDArray[np.floating],
        min_s: float,
    ) -> list[Overspeed]:
        """Fixes with the limit that applies to each (NaN: none applies); what began, was raised or ended."""
        speed = np.asarray(speed_kmh, dtype=np.float64)
        limit = np.asarray(limit_kmh, dtype=np.float64)
        device_id = np.asarray(device_id)
        over = speed > limit  # NaN on either side: not over
        busy = np.fromiter(self._runs, dtype=np.int64, count=len(self._runs))
        # Every fix of a device that is over the limit in this batch or was at its end: a fix under the
        # limit in between must end the run.
        involved = np.union1d(busy, device_id[over])
        pick = np.flatnonzero(np.isin(device_id, involved))
        if not len(pick):
            self._advance(device_id, fix_time_us)
            return []
        pick = pick[np.lexsort((fix_time_us[pick], device_id[pick]))]
        min_us = round(min_s * 1e6)
        out: list[Overspeed] = []
        last = self._last
        for i in pick.tolist():
            did, t = int(device_id[i]), int(fix_time_us[i])
            if t <= last.get(did, -1):
                continue  # late: not evaluated
            run = self._runs.get(did)
            if over[i]:
                if run is None:
                    run = self._runs[did] = _Run(since_us=t)
                run.max_kmh = max(run.max_kmh, float(speed[i]))
                run.limit_kmh = float(limit[i])
                if not run.raised and t - run.since_us >= min_us:
                    run.raised = True
                    out.append(Overspeed(did, run.since_us, t, False, run.max_kmh, run.limit_kmh))
            elif run is not None:
                if run.raised:
                    out.append(Overspeed(did, run.since_us, t, True, run.max_kmh, run.limit_kmh))
                del self._runs[did]
        self._advance(device_id, fix_time_us)
        return out

    def _advance(self, device_id: npt.NDArray[np.integer], fix_time_us: npt.NDArray[np.int64]) -> None:
        """Remember each device's newest fix (what is older from now on is late)."""
        if not len(device_id):
            return
        order = np.lexsort((fix_time_us, device_id))
        ids = np.asarray(device_id)[order]
        newest = np.r_[ids[1:] != ids[:-1], True]
        last = self._last
        for did, t in zip(ids[newest].tolist(), np.asarray(fix_time_us)[order][newest].tolist(), strict=True):
            if t > last.get(did, -1):
                last[did] = t
