"""Which processor should own each partition: the same answer everywhere, shares that move little."""

from __future__ import annotations

from collections import Counter

from distributed.leases import owner


def test_every_processor_computes_the_same_owner_whatever_the_order_it_lists_them() -> None:
    nodes = ["p1", "p2", "p3"]
    assert [owner(p, nodes) for p in range(64)] == [owner(p, list(reversed(nodes))) for p in range(64)]
    assert owner(3, []) is None


def test_partitions_spread_and_a_newcomer_takes_only_its_own_share() -> None:
    before = {p: owner(p, ["p1", "p2", "p3"]) for p in range(256)}
    assert min(Counter(before.values()).values()) > 256 // 3 * 0.7  # roughly even
    after = {p: owner(p, ["p1", "p2", "p3", "p4"]) for p in range(256)}
    moved = [p for p in before if before[p] != after[p]]
    assert all(after[p] == "p4" for p in moved)  # nothing moves between the old ones
    assert 256 // 4 * 0.6 < len(moved) < 256 // 4 * 1.4
    gone = {p: owner(p, ["p1", "p3"]) for p in range(256)}  # p2 died: only its partitions move
    assert all(gone[p] == before[p] for p in before if before[p] != "p2")
