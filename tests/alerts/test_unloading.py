"""Unloading found in the load state bits: from loaded to empty outside the sites, across batches, late fixes apart."""

from __future__ import annotations

import numpy as np

from alerts.unloading import LOAD_SHIFT, Unload, UnloadTracker

S = 1_000_000
T0 = 1_763_700_000 * S
FULL, HALF, EMPTY = 3, 1, 0


def _feed(tr: UnloadTracker, fixes: list[tuple[int, int, int, bool]], applies: bool = True) -> list[Unload]:
    """fixes: (device, second, load, allowed there)."""
    device = np.array([f[0] for f in fixes], dtype=np.int32)
    times = np.array([T0 + f[1] * S for f in fixes], dtype=np.int64)
    status = np.array([(f[2] << LOAD_SHIFT) | 0b11 for f in fixes], dtype=np.int64)  # other bits set too
    allowed = np.array([f[3] for f in fixes])
    return tr.feed(device, times, status, allowed, np.full(len(fixes), applies))


def test_loaded_to_empty_outside_a_site_across_batches_and_devices() -> None:
    tr = UnloadTracker()
    assert _feed(tr, [(1, 0, FULL, False), (2, 0, HALF, False), (1, 10, FULL, False)]) == []
    got = _feed(tr, [(2, 10, EMPTY, False), (1, 20, EMPTY, False), (1, 30, EMPTY, False)])
    assert got == [Unload(1, T0 + 10 * S, T0 + 20 * S, 1, FULL), Unload(2, T0, T0 + 10 * S, 0, HALF)]
    assert tr.reporting == {1, 2}


def test_unloading_in_a_site_late_fixes_and_trucks_the_rule_does_not_apply_to() -> None:
    tr = UnloadTracker()
    assert _feed(tr, [(1, 0, FULL, True), (1, 10, EMPTY, True), (1, 20, FULL, False), (1, 30, EMPTY, True)]) == []
    assert _feed(tr, [(1, 40, FULL, False)]) == []
    assert _feed(tr, [(1, 5, EMPTY, False)]) == []  # older than what was evaluated: history, not now
    assert [u.empty_us for u in _feed(tr, [(1, 50, EMPTY, False)])] == [T0 + 50 * S]
    assert _feed(tr, [(3, 0, FULL, False), (3, 10, EMPTY, False)], applies=False) == []
    assert 3 not in tr.reporting
    # A terminal that never reports a load says "empty" all the time: no unloading, and it is not a reporter.
    assert _feed(tr, [(4, 0, EMPTY, False), (4, 10, EMPTY, False)]) == [] and 4 not in tr.reporting
