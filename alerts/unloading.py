"""Unloading seen in the load state that JT/T 808 terminals report (status bits 8-9): from loaded to empty.

Bits 8-9 of the status word: 00 empty, 01 half loaded, 11 fully loaded. A truck whose terminal has
never reported a load is not judged by it (its bits say "empty" all the time); the dumping rule
judges it by its stops instead, so this also remembers which devices report a load at all.
An unload counts where neither the last loaded fix nor the first empty one lies in a site where
unloading is allowed. Late fixes (older than the device's newest evaluated one) are history only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

LOAD_SHIFT = 8  # status bits 8-9


def load_state(status: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return (np.asarray(status, dtype=np.int64) >> LOAD_SHIFT) & 3


@dataclass(frozen=True, slots=True)
class Unload:
    device_id: int
    loaded_us: int  # the last fix with a load
    empty_us: int  # the first fix without one
    row: int  # the batch row of the first empty fix (where it was seen)
    load_before: int  # 1 half, 3 full (2 is reserved by the standard)


class UnloadTracker:
    def __init__(self) -> None:
        self.reporting: set[int] = set()  # devices that have reported a load at least once
        self._last: dict[int, tuple[int, int, bool]] = {}  # device -> (newest fix, its load, allowed there)

    def reports_load(self, device_id: npt.NDArray[np.integer]) -> npt.NDArray[np.bool_]:
        if not self.reporting:
            return np.zeros(len(device_id), dtype=bool)
        return np.isin(device_id, np.fromiter(self.reporting, dtype=np.int64, count=len(self.reporting)))

    def feed(
        self,
        device_id: npt.NDArray[np.integer],
        fix_time_us: npt.NDArray[np.int64],
        status: npt.NDArray[np.int64],
        allowed: npt.NDArray[np.bool_],
        applies: npt.NDArray[np.bool_],
    ) -> list[Unload]:
        """The fixes of a batch, whether unloading is allowed where each lies, whether the rule applies."""
        load = load_state(status)
        new = np.unique(np.asarray(device_id)[applies & (load != 0)]).tolist()
        self.reporting.update(new)
        pick = np.flatnonzero(applies & self.reports_load(device_id))
        if not len(pick):
            return []
        pick = pick[np.lexsort((fix_time_us[pick], device_id[pick]))]
        ids = np.asarray(device_id)[pick].astype(np.int64)
        times = np.asarray(fix_time_us)[pick]
        devices, counts = np.unique(ids, return_counts=True)
        known = [self._last.get(d, (-1, 0, True)) for d in devices.tolist()]
        keep = times > np.repeat([k[0] for k in known], counts)  # late fixes are history only
        pick, ids, times = pick[keep], ids[keep], times[keep]
        if not len(pick):
            return []
        loads, ok = load[pick], np.asarray(allowed)[pick]
        remembered = dict(zip(devices.tolist(), known, strict=True))
        first = np.r_[True, ids[1:] != ids[:-1]]
        # What came before each fix: the previous fix of the batch, or what is remembered of the device.
        p_time, p_load, p_ok = np.r_[-1, times[:-1]], np.r_[0, loads[:-1]], np.r_[True, ok[:-1]]
        for j in np.flatnonzero(first).tolist():
            p_time[j], p_load[j], p_ok[j] = remembered[int(ids[j])]
        drop = (p_load != 0) & (loads == 0) & ~p_ok & ~ok & (p_time >= 0)
        out = [
            Unload(int(ids[j]), int(p_time[j]), int(times[j]), int(pick[j]), int(p_load[j]))
            for j in np.flatnonzero(drop).tolist()
        ]
        last = np.r_[ids[1:] != ids[:-1], True]
        for d, t, ld, a in zip(
            ids[last].tolist(), times[last].tolist(), loads[last].tolist(), ok[last].tolist(), strict=True
        ):
            self._last[d] = (t, ld, a)
        return out
