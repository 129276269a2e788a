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

State lives in memory; a restart starts every device outside again (the alert layer, which keeps
its open alerts in the database, does not raise twice what it already has open).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

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


@dataclass(slots=True)
class _Side:
    """One device and zone: the side that counts, and a change of side being watched."""

    inside: bool = False
    pending_since_us: int = -1  # first fix on the other side; -1: none
    pending_fixes: int = 0


@dataclass(slots=True)
class _Device:
    zones: dict[int, _Side] = field(default_factory=dict)
    last_us: int = -1  # newest fix evaluated
    late: _Device | None = None  # the sequence of late fixes being evaluated, while they come in order


_NONE: frozenset[int] = frozenset()


class Transitions:
    def __init__(self, *, confirm_fixes: int = 3, confirm_s: float = 30.0, max_accuracy_m: float = 100.0) -> None:
        if confirm_fixes < 1 or confirm_s <= 0:
            raise ValueError("confirm_fixes must be at least 1 and confirm_s positive")
        self.confirm_fixes = confirm_fixes
        self.confirm_us = round(confirm_s * 1e6)
        self.max_accuracy_m = max_accuracy_m
        self._devices: dict[int, _Device] = {}

    def inside(self, device_id: int) -> set[int]:
        """The zones a device counts as inside now."""
        d = self._devices.get(device_id)
        return set() if d is None else {z for z, side in d.zones.items() if side.inside}

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
        zones_of: dict[int, set[int]] = defaultdict(set)
        for i, z in zip(np.asarray(point).tolist(), np.asarray(zone).tolist(), strict=True):
            zones_of[i].add(z)
        order = np.lexsort((fix_time_us, device_id))
        order = order[usable[order]]
        out: list[Transition] = []
        if not len(order):
            return out
        ids = device_id[order]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
            rows = order[lo:hi].tolist()
            did = int(ids[lo])
            times = fix_time_us[rows].tolist()
            device = self._devices.setdefault(did, _Device())
            cut = 0
            while cut < len(rows) and times[cut] <= device.last_us:
                cut += 1
            if cut:
                # A backfill arrives oldest first, often over many batches: go on with its sequence while
                # its fixes keep coming in order, start a new one when they jump back.
                if device.late is None or times[0] <= device.late.last_us:
                    device.late = _Device()
                out += self._walk(did, device.late, rows[:cut], times[:cut], zones_of, late=True)
                device.late.last_us = times[cut - 1]
            if cut < len(rows):
                if not self._steady(device, rows[cut:], zones_of):
                    out += self._walk(did, device, rows[cut:], times[cut:], zones_of, late=False)
                device.last_us = times[-1]
        return out

    @staticmethod
    def _steady(device: _Device, rows: list[int], zones_of: dict[int, set[int]]) -> bool:
        """Whether every fix is in exactly the zones the device is settled inside, with no change pending:
        nothing to walk (most devices, most of the time)."""
        sides = device.zones  # only zones it is inside or might be entering are kept
        if any(not side.inside or side.pending_since_us >= 0 for side in sides.values()):
            return False
        return all(zones_of.get(r, _NONE) == sides.keys() for r in rows)

    def _walk(
        self,
        did: int,
        device: _Device,
        rows: list[int],
        times: list[int],
        zones_of: dict[int, set[int]],
        *,
        late: bool,
    ) -> list[Transition]:
        """One device's fixes in time order, zone by zone."""
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
                    out.append(Transition(did, z, was_inside, side.pending_since_us, t, late))
                    side.inside = was_inside
                    side.pending_since_us, side.pending_fixes = -1, 0
            if not side.inside and side.pending_since_us < 0:
                del device.zones[z]  # outside with nothing pending: the default, kept by nobody
        if len(out) > 1:
            out.sort(key=lambda tr: (tr.confirmed_us, tr.zone_id))
        return out

    def forget(self, device_ids: Iterable[int]) -> None:
        for did in device_ids:
            self._devices.pop(did, None)
