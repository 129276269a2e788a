"""Runs of a condition over a device's fixes (over the speed limit, an alarm bit set) lasting `min_s`.

A run begins at the first fix where the condition holds and is raised once it has held for `min_s`
seconds of fix time (a single fast fix from GPS noise raises no overspeed); the first fix where it
no longer holds ends it. Only fixes newer than the device's last evaluated one count (a backfill
is history, shown in replay); what was evaluated is a `FixClock`, which the rules of one engine share.
Most fixes meet no condition: only the fixes of devices where it holds (in this batch or at the end of
the last) are looked at, in array operations; a Python step is spent per run reported, never per fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

_T = TypeVar("_T", bound=np.generic)


@dataclass(frozen=True, slots=True)
class Run:
    device_id: int
    began_us: int  # the first fix where the condition held
    at_us: int  # raised: when it had lasted min_s; ended: the first fix where it no longer held
    ended: bool
    peak: float  # the largest value seen in the run (the speed, the alarm word)
    limit: float  # the limit of the last fix in the run (overspeed)
    row: int  # the batch row of the fix at `at_us` (where it was seen)


class _Open:
    """The run open at the end of the last batch, per device: arrays indexed by device id, as in `FixClock`."""

    def __init__(self) -> None:
        self.going = np.zeros(0, dtype=bool)  # a run is open
        self.since_us = np.zeros(0, dtype=np.int64)  # its first fix
        self.raised = np.zeros(0, dtype=bool)  # and raised (never without a run)
        self.peak = np.zeros(0)
        self.limit = np.zeros(0)

    def fit(self, size: int) -> None:
        """Room for device ids below `size`."""
        if size > len(self.going):
            size = max(size, 2 * len(self.going), 1024)
            self.going = _grown(self.going, size)
            self.since_us = _grown(self.since_us, size)
            self.raised = _grown(self.raised, size)
            self.peak = _grown(self.peak, size)
            self.limit = _grown(self.limit, size)


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
        self._open = _Open()
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
        device_id = np.asarray(device_id)
        fix_time_us = np.asarray(fix_time_us, dtype=np.int64)
        over = np.asarray(holds, dtype=bool)
        fresh = self.clock.fresh(device_id, fix_time_us)
        self._advanced(device_id, fix_time_us)
        was = self._open
        was.fit(len(self.clock._newest))  # the clock has just made room for every id of the batch
        # The fresh fixes of every device where the condition holds in this batch or held at the end of the
        # last: a fix where it does not in between must end the run. Late fixes are not evaluated at all.
        involved = was.going.copy()
        involved[device_id[over & fresh]] = True
        fresh &= involved[device_id]
        pick = fresh.nonzero()[0]
        if not len(pick):
            return []
        pick = pick[np.lexsort((fix_time_us[pick], device_id[pick]))]  # by device, then fix time
        d, t, h = device_id[pick], fix_time_us[pick], over[pick]
        n = len(pick)
        edge = np.empty(n + 1, dtype=bool)  # [k]: fix k is its device's first, [k + 1]: its last
        edge[0] = edge[n] = True
        np.not_equal(d[1:], d[:-1], out=edge[1:n])
        first_of_device, last_of_device = edge[:n], edge[1:]
        # A run in this batch: a device's fixes from one where the condition holds after one where it did not
        # (or the device's first) to its last one before a fix where it does not (or the device's last).
        padded = np.zeros(n + 2, dtype=bool)
        padded[1:-1] = h
        starts = h & (first_of_device | ~padded[:-2])
        begins, lasts = starts.nonzero()[0], (h & (last_of_device | ~padded[2:])).nonzero()[0]
        closed = ~last_of_device[lasts]  # ended by the device's next fix
        # The run open at the end of the last batch goes on if its device's first fix here holds, else ends there.
        run_dev = d[begins]
        on = first_of_device[begins] & was.going[run_dev]
        since = np.where(on, was.since_us[run_dev], t[begins])
        raised = on & was.raised[run_dev]
        peak = np.where(on, was.peak[run_dev], 0.0)  # a new run's peak starts at 0, as it always has
        cut_at = (first_of_device & ~h & was.raised[d]).nonzero()[0]  # only a raised run is reported ended
        cut = d[cut_at]
        # Raised at the first fix of the run that has lasted min_s (times only grow within a run). Most runs
        # go on from batch to batch long after they were raised: then there is nothing to look for.
        at = raising = np.empty(0, dtype=np.intp)
        if not raised.all():
            held = h.nonzero()[0]
            run_of = begins.searchsorted(held, side="right") - 1  # the run each fix where it holds is in
            lasted = (t[held] - since[run_of] >= round(min_s * 1e6)) & ~raised[run_of]
            lasted[1:] &= ~lasted[:-1] | starts[held[1:]]  # only the first in its run
            at, raising = held[lasted], run_of[lasted]
        # Peaks: NaN (no value, or the condition does not hold) is ignored, as by Python's max(peak, value).
        v = np.where(h, np.asarray(value)[pick], np.nan)
        lim = np.asarray(limit, dtype=np.float64)[pick]
        peak_at_raise = peak[raising]
        if len(at):  # the largest value from the run's first fix here to the one where it is raised
            bounds = np.empty(2 * len(at), dtype=np.intp)
            bounds[0::2], bounds[1::2] = begins[raising], at  # [at] alone: reduceat's bounds stay in the array
            peak_at_raise = np.fmax(np.fmax(peak_at_raise, np.fmax.reduceat(v, bounds)[0::2]), v[at])
        peak = np.fmax(peak, np.fmax.reduceat(v, begins))  # up to the next run: nothing holds in between
        raised[raising] = True
        ends = closed & raised
        # Raised, ended in this batch, ended at the device's first fix; reported in the order they happened.
        where = np.concatenate((at, lasts[ends] + 1, cut_at))
        out: list[Run] = []
        if len(where):
            order = where.argsort()
            where = where[order]
            out = list(
                map(
                    Run,
                    d[where].tolist(),
                    np.concatenate((since[raising], since[ends], was.since_us[cut]))[order].tolist(),
                    t[where].tolist(),
                    (order >= len(at)).tolist(),
                    np.concatenate((peak_at_raise, peak[ends], was.peak[cut]))[order].tolist(),
                    np.concatenate((lim[at], lim[lasts[ends]], was.limit[cut]))[order].tolist(),
                    pick[where].tolist(),
                )
            )
        # Open now: the runs of devices without a fresh fix here, and those still going at a device's last fix.
        was.going[d] = was.raised[d] = False
        going = ~closed
        now = d[lasts[going]]
        was.going[now], was.since_us[now], was.raised[now] = True, since[going], raised[going]
        was.peak[now], was.limit[now] = peak[going], lim[lasts[going]]
        return out

    def _advanced(self, device_id: npt.NDArray[np.integer], fix_time_us: npt.NDArray[np.int64]) -> None:
        if self._own:
            self.clock.advance(device_id, fix_time_us)


def _grown(a: npt.NDArray[_T], size: int) -> npt.NDArray[_T]:
    grown = np.zeros(size, dtype=a.dtype)
    grown[: len(a)] = a
    return grown
