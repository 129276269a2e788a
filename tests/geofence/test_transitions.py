"""Enter/exit with hysteresis: confirmed changes only, no flapping on a boundary, late fixes kept apart."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given
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
