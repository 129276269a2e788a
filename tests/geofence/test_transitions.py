"""Enter/exit with hysteresis: confirmed changes only, no flapping on a boundary, late fixes kept apart."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.transitions import Transition, Transitions

S = 1_000_000  # microseconds in a second
T0 = 1_763_700_000 * S


def _feed(
    tr: Transitions, fixes: list[tuple[int, int, set[int]]], accuracy: list[float] | None = None
) -> list[Transition]:
    """fixes: (device, seconds after T0, zones the fix is inside)."""
    device = np.array([f[0] for f in fixes])
    times = np.array([T0 + f[1] * S for f in fixes], dtype=np.int64)
    acc = np.array(accuracy if accuracy is not None else [np.nan] * len(fixes))
    pairs = [(i, z) for i, f in enumerate(fixes) for z in sorted(f[2])]
    point = np.array([p for p, _ in pairs], dtype=np.intp)
    zone = np.array([z for _, z in pairs], dtype=np.int64)
    return tr.feed(device, times, acc, point, zone)


def test_enter_then_exit_confirmed_after_three_fixes() -> None:
    tr = Transitions(confirm_fixes=3, confirm_s=600)
    got = _feed(tr, [(1, s, {7} if 10 <= s < 20 else set()) for s in range(0, 30)])
    assert got == [
        Transition(1, 7, True, T0 + 10 * S, T0 + 12 * S),
        Transition(1, 7, False, T0 + 20 * S, T0 + 22 * S),
    ]
    assert tr.inside(1) == set()


def test_jitter_on_a_boundary_does_not_flap() -> None:
    tr = Transitions(confirm_fixes=3, confirm_s=600)
    # In, out, in, out ... never three in a row on the other side: nothing happens.
    assert _feed(tr, [(1, s, {7} if s % 2 else set()) for s in range(40)]) == []
    # Then inside for good (the last jitter fix, at 39 s, was inside: the stay began there), with one
    # stray fix outside later that must not cancel it.
    got = _feed(tr, [(1, 40 + s, set() if s == 5 else {7}) for s in range(10)])
    assert got == [Transition(1, 7, True, T0 + 39 * S, T0 + 41 * S)]
    assert _feed(tr, [(1, 50, set()), (1, 51, {7})]) == []  # one fix out and back: still inside
    assert tr.inside(1) == {7}


def test_dwell_confirms_with_sparse_fixes() -> None:
    tr = Transitions(confirm_fixes=5, confirm_s=60)
    got = _feed(tr, [(1, 0, set()), (1, 30, {3}), (1, 100, {3})])  # two fixes, but 70 s inside
    assert got == [Transition(1, 3, True, T0 + 30 * S, T0 + 100 * S)]


def test_inaccurate_fixes_are_not_used() -> None:
    tr = Transitions(confirm_fixes=2, confirm_s=600, max_accuracy_m=50)
    fixes = [(1, s, {4}) for s in range(4)]
    assert _feed(tr, fixes, accuracy=[500, 800, 300, 120]) == []
    assert _feed(tr, [(1, 10 + s, {4}) for s in range(2)], accuracy=[20, np.nan]) == [
        Transition(1, 4, True, T0 + 10 * S, T0 + 11 * S)
    ]


def test_devices_zones_and_order_within_a_batch() -> None:
    tr = Transitions(confirm_fixes=2, confirm_s=600)
    fixes = [(2, 3, {5, 6}), (1, 1, {5}), (2, 2, {5}), (1, 0, {5}), (2, 1, set())]  # shuffled
    got = _feed(tr, fixes)
    assert Transition(1, 5, True, T0 + 0 * S, T0 + 1 * S) in got
    assert Transition(2, 5, True, T0 + 2 * S, T0 + 3 * S) in got
    assert len(got) == 2  # zone 6 seen once for device 2: not confirmed yet
    assert tr.inside(2) == {5}


def test_backfill_comes_out_late_and_leaves_the_live_state_alone() -> None:
    tr = Transitions(confirm_fixes=2, confirm_s=600)
    assert _feed(tr, [(1, 1000 + s, {9}) for s in range(3)]) == [Transition(1, 9, True, T0 + 1000 * S, T0 + 1001 * S)]
    # Yesterday's fixes arrive now: in zone 8 for a while, then out. Reported late, live state unchanged.
    backfill = [(1, -86_400 + s, {8} if s < 5 else set()) for s in range(10)]
    got = _feed(tr, backfill)
    assert got == [
        Transition(1, 8, True, T0 - 86_400 * S, T0 + (-86_400 + 1) * S, late=True),
        Transition(1, 8, False, T0 + (-86_400 + 5) * S, T0 + (-86_400 + 6) * S, late=True),
    ]
    assert tr.inside(1) == {9}
    # The live sequence goes on from where it was: leaving zone 9 now is a live exit.
    assert _feed(tr, [(1, 1010, set()), (1, 1011, set())]) == [Transition(1, 9, False, T0 + 1010 * S, T0 + 1011 * S)]


@given(
    inside=st.lists(st.booleans(), min_size=1, max_size=60),
    cuts=st.lists(st.integers(1, 59), max_size=6),
    k=st.integers(1, 4),
)
def test_batches_split_anywhere_give_the_same_transitions(inside: list[bool], cuts: list[int], k: int) -> None:
    fixes = [(1, s, {7} if v else set()) for s, v in enumerate(inside)]
    whole = _feed(Transitions(confirm_fixes=k, confirm_s=10_000), fixes)
    split = Transitions(confirm_fixes=k, confirm_s=10_000)
    got: list[Transition] = []
    bounds = [0, *sorted({c for c in cuts if c < len(fixes)}), len(fixes)]
    for lo, hi in itertools.pairwise(bounds):
        got += _feed(split, fixes[lo:hi])
    assert got == whole
    if k == 1:  # no hysteresis: a transition at every change of side, starting from outside
        changes = [s for s, v in enumerate(inside) if v != (inside[s - 1] if s else False)]
        assert [t.began_us for t in whole] == [T0 + s * S for s in changes]


def test_a_backfill_spread_over_batches_is_one_late_sequence() -> None:
    tr = Transitions(confirm_fixes=3, confirm_s=600)
    _feed(tr, [(1, 1000, set())])
    got: list[Transition] = []
    for s in range(5):  # one old fix a batch, in order
        got += _feed(tr, [(1, s, {2})])
    assert got == [Transition(1, 2, True, T0 + 0 * S, T0 + 2 * S, late=True)]
    # A second backfill that jumps back to earlier times starts a sequence of its own.
    assert _feed(tr, [(1, -50, {2})]) == []
    assert tr.inside(1) == set()


# The same rules, evaluated one device, zone and fix at a time in Python: the reference for the arrays.


@dataclass(slots=True)
class _RefSide:
    """One device and zone: the side that counts, and a change of side being watched."""

    inside: bool = False
    pending_since_us: int = -1  # first fix on the other side; -1: none
    pending_fixes: int = 0


@dataclass(slots=True)
class _RefDevice:
    zones: dict[int, _RefSide] = field(default_factory=dict)
    last_us: int = -1  # newest fix evaluated
    late: _RefDevice | None = None  # the sequence of late fixes being evaluated, while they come in order


_REF_NONE: frozenset[int] = frozenset()


class _Reference:
    """The evaluation fix by fix, zone by zone, that the arrays replaced: what they must reproduce."""

    def __init__(self, *, confirm_fixes: int = 3, confirm_s: float = 30.0, max_accuracy_m: float = 100.0) -> None:
        if confirm_fixes < 1 or confirm_s <= 0:
            raise ValueError("confirm_fixes must be at least 1 and confirm_s positive")
        self.confirm_fixes = confirm_fixes
        self.confirm_us = round(confirm_s * 1e6)
        self.max_accuracy_m = max_accuracy_m
        self._devices: dict[int, _RefDevice] = {}

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
            device = self._devices.setdefault(did, _RefDevice())
            cut = 0
            while cut < len(rows) and times[cut] <= device.last_us:
                cut += 1
            if cut:
                # A backfill arrives oldest first, often over many batches: go on with its sequence while
                # its fixes keep coming in order, start a new one when they jump back.
                if device.late is None or times[0] <= device.late.last_us:
                    device.late = _RefDevice()
                out += self._walk(did, device.late, rows[:cut], times[:cut], zones_of, late=True)
                device.late.last_us = times[cut - 1]
            if cut < len(rows):
                if not self._steady(device, rows[cut:], zones_of):
                    out += self._walk(did, device, rows[cut:], times[cut:], zones_of, late=False)
                device.last_us = times[-1]
        return out

    @staticmethod
    def _steady(device: _RefDevice, rows: list[int], zones_of: dict[int, set[int]]) -> bool:
        """Whether every fix is in exactly the zones the device is settled inside, with no change pending:
        nothing to walk (most devices, most of the time)."""
        sides = device.zones  # only zones it is inside or might be entering are kept
        if any(not side.inside or side.pending_since_us >= 0 for side in sides.values()):
            return False
        return all(zones_of.get(r, _REF_NONE) == sides.keys() for r in rows)

    def _walk(
        self,
        did: int,
        device: _RefDevice,
        rows: list[int],
        times: list[int],
        zones_of: dict[int, set[int]],
        *,
        late: bool,
    ) -> list[Transition]:
        """One device's fixes in time order, zone by zone."""
        found = [zones_of.get(r, _REF_NONE) for r in rows]
        seen: set[int] = set().union(*found)
        out: list[Transition] = []
        for z in seen | device.zones.keys():
            side = device.zones.setdefault(z, _RefSide())
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


_DEVICES = (1, 2, 3, 70_000)
_fix = st.tuples(
    st.sampled_from(_DEVICES),
    st.integers(-30, 20),  # seconds around the batch's clock: overlaps earlier batches (late), repeats times
    st.frozensets(st.sampled_from([1, 2, 3, 2**62]), max_size=2),  # 2**62: zone ids too far apart to key pairs by
    st.sampled_from([np.nan, 5.0, 50.0, 500.0]),  # 500 m: not used
)
_batch = st.tuples(st.integers(0, 40), st.lists(_fix, max_size=14), st.lists(st.sampled_from(_DEVICES), max_size=1))


@settings(max_examples=400, deadline=None)
@given(
    batches=st.lists(_batch, min_size=1, max_size=6),
    k=st.sampled_from([1, 2, 3]),
    confirm_s=st.sampled_from([10, 30]),
    data=st.data(),
)
def test_same_transitions_as_the_evaluation_fix_by_fix(
    batches: list[tuple[int, list[tuple[int, int, frozenset[int], float]], list[int]]],
    k: int,
    confirm_s: int,
    data: st.DataObject,
) -> None:
    tr = Transitions(confirm_fixes=k, confirm_s=confirm_s, max_accuracy_m=50)
    ref = _Reference(confirm_fixes=k, confirm_s=confirm_s, max_accuracy_m=50)
    clock = 0
    for advance, fixes, forgotten in batches:
        clock += advance
        device = np.array([f[0] for f in fixes], dtype=np.int32)
        times = np.array([T0 + (clock + f[1]) * S for f in fixes], dtype=np.int64)
        acc = np.array([f[3] for f in fixes], dtype=np.float64)
        pairs = data.draw(st.permutations([(i, z) for i, f in enumerate(fixes) for z in sorted(f[2])]))
        point = np.array([p for p, _ in pairs], dtype=np.intp)
        zone = np.array([z for _, z in pairs], dtype=np.int64)
        assert tr.feed(device, times, acc, point, zone) == ref.feed(device, times, acc, point, zone)
        for d in _DEVICES:
            assert tr.inside(d) == ref.inside(d)
        tr.forget(forgotten)
        ref.forget(forgotten)
