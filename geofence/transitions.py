"""Enter and exit of zones per device, with hysteresis, from batches of fixes and their zone memberships.

A device is outside every zone until fixes say otherwise. A change of side counts only once it
holds: `confirm_fixes` fixes in a row on the new side, or the new side kept for `confirm_s`
seconds of fix time, whichever comes first; a fix back on the old side in between cancels it, so
GPS jitter along a boundary does not flap. Fixes less accurate than `max_accuracy_m` are not used
(no accuracy reported: used). A transition carries the fix time it began (the first fix on the new
side) and the one that confirmed it.

Order: each device's fixes are evaluated in fix-time order. Fixes at or before the newest fix
already evaluated for that device (a 0x0704 blind-area backfill, a phone's queued reports) are
late: they never touch the live state, and are evaluated on their own, in order, from a device
outside every zone (a sequence that goes on across batches while they keep coming in order);
what they show comes out marked `late`, for the record, never as something happening now.

Live fixes are evaluated for every device and zone of a batch at once, in arrays (a batch holds
hundreds of devices, a city thousands of zones); late fixes, rare, are walked fix by fix.

State lives in memory; a restart starts every device outside again (the alert layer, which keeps
its open alerts in the database, does not raise twice what it already has open).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Transition:
    device_id: int
    zone_id: int
    entered: bool  # False: left the zone
    began_us: int  # fix time of the first fix on the new side
    confirmed_us: int  # fix time of the fix that made it count
    late: bool = False  # from fixes older than what had been evaluated already


_I64: TypeAlias = npt.NDArray[np.int64]
_Idx: TypeAlias = npt.NDArray[np.intp]
_Mask: TypeAlias = npt.NDArray[np.bool_]


@dataclass(slots=True)
class _Side:
    """One device and zone: the side that counts, and a change of side being watched."""

    inside: bool = False
    pending_since_us: int = -1  # first fix on the other side; -1: none
    pending_fixes: int = 0


@dataclass(slots=True)
class _Device:
    """A device's sequence of late fixes, while they come in order."""

    zones: dict[int, _Side] = field(default_factory=dict)
    last_us: int = -1  # newest fix evaluated


@dataclass(slots=True)
class _Sides:
    """The live `_Side`s as columns, a row per device and zone off the default (outside, nothing pending)."""

    device: _I64
    zone: _I64
    inside: _Mask
    since_us: _I64  # first fix on the other side; -1: none
    fixes: _I64

    @staticmethod
    def empty() -> _Sides:
        none = np.empty(0, np.int64)
        return _Sides(none, none, np.empty(0, np.bool_), none, none)

    def take(self, which: _Mask) -> _Sides:
        return _Sides(self.device[which], self.zone[which], self.inside[which], self.since_us[which], self.fixes[which])

    def __add__(self, other: _Sides) -> _Sides:
        return _Sides(
            np.concatenate([self.device, other.device]),
            np.concatenate([self.zone, other.zone]),
            np.concatenate([self.inside, other.inside]),
            np.concatenate([self.since_us, other.since_us]),
            np.concatenate([self.fixes, other.fixes]),
        )


_NONE: frozenset[int] = frozenset()


class Transitions:
    def __init__(self, *, confirm_fixes: int = 3, confirm_s: float = 30.0, max_accuracy_m: float = 100.0) -> None:
        if confirm_fixes < 1 or confirm_s <= 0:
            raise ValueError("confirm_fixes must be at least 1 and confirm_s positive")
        self.confirm_fixes = confirm_fixes
        self.confirm_us = round(confirm_s * 1e6)
        self.max_accuracy_m = max_accuracy_m
        self._known: _I64 = np.empty(0, np.int64)  # devices with fixes evaluated, sorted
        self._last_us: _I64 = np.empty(0, np.int64)  # the newest of them, per device
        self._sides = _Sides.empty()
        self._late: dict[int, _Device] = {}

    def inside(self, device_id: int) -> set[int]:
        """The zones a device counts as inside now."""
        s = self._sides
        return set(s.zone[(s.device == device_id) & s.inside].tolist())

    def feed(
        self,
        device_id: npt.NDArray[np.integer],
        fix_time_us: npt.NDArray[np.int64],
        accuracy_m: npt.NDArray[np.floating],
        point: npt.NDArray[np.intp],
        zone: npt.NDArray[np.int64],
    ) -> list[Transition]:
        """A batch of fixes (any order, any devices) and the (fix index, zone id) pairs of the zones each
        fix is inside (`ZoneIndex.containing`); the transitions they make, in fix-time order per device."""
        device_id = np.asarray(device_id)
        fix_time_us = np.asarray(fix_time_us)
        usable = ~(np.asarray(accuracy_m, dtype=np.float64) > self.max_accuracy_m)  # NaN: no accuracy given
        order = np.lexsort((fix_time_us, device_id))
        order = order[usable[order]]
        if not len(order):
            return []
        ids = device_id[order].astype(np.int64)
        times = fix_time_us[order].astype(np.int64)
        point, zone = np.asarray(point, np.intp), np.asarray(zone, np.int64)
        late = times <= self._newest(ids)  # each device's late fixes come first in `order`
        fresh = ~late
        live = self._evaluate(ids[fresh], times[fresh], order[fresh], len(device_id), point, zone)
        if not late.any():
            return live
        out = self._walk_late(ids[late], times[late], order[late], point, zone) + live
        out.sort(key=lambda tr: (tr.device_id, not tr.late))  # a device's late transitions before its live ones
        return out

    def _newest(self, ids: _I64) -> _I64:
        """The newest fix evaluated of each fix's device; -1: none."""
        if not len(self._known):
            return np.full(len(ids), -1, np.int64)
        slot = np.minimum(np.searchsorted(self._known, ids), len(self._known) - 1)
        return np.where(self._known[slot] == ids, self._last_us[slot], -1)

    def _advance(self, devices: _I64, last_us: _I64) -> None:
        """Devices (sorted) with their newest fix evaluated now."""
        slot = np.searchsorted(self._known, devices)
        have = slot < len(self._known)
        have[have] = self._known[slot[have]] == devices[have]
        self._last_us[slot[have]] = last_us[have]
        if not have.all():
            known = np.concatenate([self._known, devices[~have]])
            by = np.argsort(known, kind="stable")
            self._known, self._last_us = known[by], np.concatenate([self._last_us, last_us[~have]])[by]

    def _evaluate(self, ids: _I64, times: _I64, rows: _Idx, n: int, point: _Idx, zone: _I64) -> list[Transition]:
        """Live fixes (by device, in time order; `rows` of a batch of n) against the state: every device
        and zone they show or that is off the default, at once."""
        if not len(ids):
            return []
        new_device = _firsts(ids)
        first = np.flatnonzero(new_device)  # each device's first fix and last
        last = _lasts(first, len(ids))
        devices = ids[first]
        fix_device = np.cumsum(new_device) - 1  # a device by its place in `devices`
        at = np.full(n, -1, np.intp)
        at[rows] = np.arange(len(rows))
        fix = at[point]
        seen = fix >= 0
        fix = fix[seen]  # the fixes (by place in `rows`) of the zones they are in, zone[seen]
        sides = self._sides
        slot = np.minimum(np.searchsorted(devices, sides.device), len(devices) - 1)
        held = devices[slot] == sides.device
        before = sides.take(held)
        self._advance(devices, times[last])
        zones = np.concatenate([zone[seen], before.zone])
        if not len(zones):
            return []
        # the (device, zone) pairs to evaluate, those the fixes show and those off the default, as one number:
        # the device's place times the span of zone ids, plus the zone's place in it
        lo = int(zones.min())
        span = int(zones.max()) - lo + 1
        zone_ids: _I64 | None = None
        if len(devices) * span < 2**63:
            zone_no = zones - lo
        else:  # ids too far apart for that: the zones numbered
            zone_ids = np.unique(zones)
            zone_no, span = np.searchsorted(zone_ids, zones), len(zone_ids)
        key = np.concatenate([fix_device[fix], slot[held]]) * span + zone_no
        by = np.argsort(key)
        new_pair = _firsts(key[by])
        pair_of = np.empty(len(by), np.intp)  # each seen and held one's pair
        pair_of[by] = np.cumsum(new_pair) - 1
        pair_device, zone_no = np.divmod(key[by][new_pair], span)
        pair_zone = zone_no + lo if zone_ids is None else zone_ids[zone_no]
        # each pair's sequence: its device's fixes in time order, inside the zone or not; one after another
        length = (last - first + 1)[pair_device]
        offset = np.cumsum(length) - length
        t = times[np.arange(offset[-1] + length[-1]) + np.repeat(first[pair_device] - offset, length)]
        observed = np.zeros(len(t), np.bool_)
        observed[offset[pair_of[: len(fix)]] + fix - first[fix_device[fix]]] = True
        side = np.zeros(len(pair_device), np.bool_)
        since = np.full(len(pair_device), -1, np.int64)
        fixes = np.zeros(len(pair_device), np.int64)
        h = pair_of[len(fix) :]
        side[h], since[h], fixes[h] = before.inside, before.since_us, before.fixes
        confirmed, began = _hysteresis(observed, t, offset, side, since, fixes, self.confirm_fixes, self.confirm_us)
        keep = side | (since >= 0)
        after = _Sides(devices[pair_device[keep]], pair_zone[keep], side[keep], since[keep], fixes[keep])
        self._sides = sides.take(~held) + after
        # per device by confirming fix time, then zone (pairs are laid out by zone), then sequence order
        pair = np.searchsorted(offset, confirmed, "right") - 1
        by = np.lexsort((confirmed, t[confirmed], pair_device[pair]))
        confirmed, pair = confirmed[by], pair[by]
        return list(
            map(
                Transition,
                devices[pair_device[pair]].tolist(),
                pair_zone[pair].tolist(),
                observed[confirmed].tolist(),
                began[by].tolist(),
                t[confirmed].tolist(),
            )
        )

    def _walk_late(self, ids: _I64, times: _I64, rows: _Idx, point: _Idx, zone: _I64) -> list[Transition]:
        """Late fixes (by device, in time order), each device's in its sequence of late fixes."""
        zones_of: dict[int, set[int]] = defaultdict(set)
        mine = np.isin(point, rows)
        for i, z in zip(point[mine].tolist(), zone[mine].tolist(), strict=True):
            zones_of[i].add(z)
        out: list[Transition] = []
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        ends = np.r_[starts[1:], len(ids)]
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
            did = int(ids[lo])
            seq_rows, seq_times = rows[lo:hi].tolist(), times[lo:hi].tolist()
            # A backfill arrives oldest first, often over many batches: go on with its sequence while
            # its fixes keep coming in order, start a new one when they jump back.
            seq = self._late.get(did)
            if seq is None or seq_times[0] <= seq.last_us:
                seq = self._late[did] = _Device()
            out += self._walk(did, seq, seq_rows, seq_times, zones_of)
            seq.last_us = seq_times[-1]
        return out

    def _walk(
        self, did: int, device: _Device, rows: list[int], times: list[int], zones_of: dict[int, set[int]]
    ) -> list[Transition]:
        """One device's late fixes in time order, zone by zone."""
        found = [zones_of.get(r, _NONE) for r in rows]
        seen: set[int] = set().union(*found)
        out: list[Transition] = []
        for z in seen | device.zones.keys():
            side = device.zones.setdefault(z, _Side())
            observed = [z in f for f in found]
            if side.pending_since_us < 0 and (all(observed) if side.inside else not any(observed)):
                if not side.inside:
                    del device.zones[z]
                continue  # on the side it was, all along: the common case
            for was_inside, t in zip(observed, times, strict=True):
                if was_inside == side.inside:
                    side.pending_since_us, side.pending_fixes = -1, 0
                    continue
                if side.pending_since_us < 0:
                    side.pending_since_us = t
                side.pending_fixes += 1
                if side.pending_fixes >= self.confirm_fixes or t - side.pending_since_us >= self.confirm_us:
                    out.append(Transition(did, z, was_inside, side.pending_since_us, t, late=True))
                    side.inside = was_inside
                    side.pending_since_us, side.pending_fixes = -1, 0
            if not side.inside and side.pending_since_us < 0:
                del device.zones[z]  # outside with nothing pending: the default, kept by nobody
        if len(out) > 1:
            out.sort(key=lambda tr: (tr.confirmed_us, tr.zone_id))
        return out

    def forget(self, device_ids: Iterable[int]) -> None:
        gone = np.fromiter(device_ids, np.int64)
        keep = ~np.isin(self._known, gone)
        self._known, self._last_us = self._known[keep], self._last_us[keep]
        self._sides = self._sides.take(~np.isin(self._sides.device, gone))
        for did in gone.tolist():
            self._late.pop(did, None)


def _firsts(a: npt.NDArray[np.integer] | _Mask) -> _Mask:
    """Whether each value differs from the one before: the first of each run of equal values."""
    new = np.empty(len(a), np.bool_)
    new[:1] = True
    np.not_equal(a[1:], a[:-1], out=new[1:])
    return new


def _lasts(firsts: _Idx, n: int) -> _Idx:
    """The last index of each of the consecutive ranges of 0..n-1 that begin at `firsts`."""
    last = np.empty_like(firsts)
    last[:-1] = firsts[1:] - 1
    last[-1:] = n - 1
    return last


def _hysteresis(
    observed: _Mask, t: _I64, offset: _Idx, side: _Mask, since: _I64, fixes: _I64, confirm_fixes: int, confirm_us: int
) -> tuple[_Idx, _I64]:
    """The change-of-side rule over many sequences at once: each sequence's fixes, observed inside or not, at fix
    times t, laid one after another from `offset`, each with the side that counts and the change pending
    (since, fixes) before it, which are brought up to its end in place. Returns the fixes that confirmed a
    change (into `observed`) and the fix time each change began.

    A sequence is cut into runs of fixes on one side. A run on the other side than the one that counts is
    a change from its first fix (a first run joins the change already pending); it holds at the run's
    `confirm_fixes`-th fix or once it has lasted `confirm_us`, and the side becomes the run's. A run that
    does not hold leaves the side as it was: the next run is on that side, the one after on the other
    again. So whether a run is against the side follows from how many runs there have been since the last
    run long enough to hold, whichever side that one was on (the run after it is against the side either way).
    """
    n = len(observed)
    new_seq = np.zeros(n, np.bool_)
    new_seq[offset] = True
    new_run = _firsts(observed) | new_seq
    start = np.flatnonzero(new_run)  # each run's first fix
    run = np.cumsum(new_run) - 1  # each fix's run
    seq = np.cumsum(new_seq[start]) - 1  # each run's sequence
    first_run = run[offset]  # each sequence's
    last_fix = _lasts(offset, n)
    last_run = run[last_fix]
    against = observed[offset] != side  # the first run
    carry = against & (since >= 0)
    run_since = t[start]
    run_fixes = np.zeros(len(start), np.int64)  # fixes of the change before the run's
    run_since[first_run[carry]] = since[carry]
    run_fixes[first_run[carry]] = fixes[carry]
    # whether a run would hold by each fix: from some fix on to the run's end
    holds = (np.arange(n) + (run_fixes - start + 1)[run] >= confirm_fixes) | (t - run_since[run] >= confirm_us)
    long_enough = holds[_lasts(start, n)]
    runs = np.arange(len(start))
    last_long = np.empty(len(start), np.intp)  # before each run
    last_long[0] = -1
    np.maximum.accumulate(np.where(long_enough, runs, -1)[:-1], out=last_long[1:])
    since_long = last_long >= first_run[seq]
    gap = np.where(since_long, runs - last_long - 1, runs - first_run[seq])
    judged = (gap % 2 == 0) == (since_long | against[seq])
    change = judged & long_enough
    first_holds = holds.copy()
    first_holds[1:] &= new_run[1:] | ~holds[:-1]
    confirmed = np.flatnonzero(first_holds & change[run])
    pending = judged[last_run] & ~long_enough[last_run]
    side[:] = observed[last_fix] ^ pending  # the last run's side, unless it is a change still pending
    since[:] = np.where(pending, run_since[last_run], -1)
    fixes[:] = np.where(pending, run_fixes[last_run] + last_fix + 1 - start[last_run], 0)
    return confirmed, run_since[run[confirmed]]
