"""LiveState: newest fixes only, last seen, status per kind, versions, selection, counts, the LIVE rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from geofence import crs
from geofence.shapes import Circle, Polygon
from store.batch import PositionBatch, PositionRow
from store.live_state import CatalogDevice
from tracking.live import NEVER, OFFLINE, ONLINE, LiveState

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
S = 1_000_000


def _state(**kw: object) -> LiveState:
    """Devices 10 (muck, unit 1), 11 (sanitation, unit 1), 12 (inspector, unit 2), 13 (enforcement, no unit)."""
    live = LiveState(**kw)  # type: ignore[arg-type]
    live.set_device(10, "u10", "muck", 1, "Muck 10", "粤B10", True)
    live.set_device(11, "u11", "sanitation", 1, "Sweeper 11", None, True)
    live.set_device(12, "u12", "inspector", 2, "Inspector Li", None, True)
    live.set_device(13, "u13", "enforcement", None, "Patrol 13", "粤B13", True)
    return live


def _apply(live: LiveState, rows: Sequence[tuple[float, ...]]) -> int:
    """rows: device, fix time, lat, lon, speed, receive time."""
    a = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return live.apply(
        a[:, 0].astype(np.int32),
        a[:, 1].astype(np.int64),
        a[:, 2],
        a[:, 3],
        a[:, 4].astype(np.float32),
        np.full(len(a), 90, dtype=np.float32),
        a[:, 5].astype(np.int64),
    )


def _slot(live: LiveState, device_id: int) -> int:
    slot = live.slot(device_id)
    assert slot is not None
    return slot


def _col(live: LiveState, name: str, device_id: int) -> Any:
    return live.column(name)[_slot(live, device_id)].item()


def test_late_fix_never_moves_back_but_last_seen_advances() -> None:
    live = _state()
    assert _apply(live, [(10, T0 + 60 * S, 22.5, 114.0, 30, T0 + 61 * S)]) == 1
    assert _apply(live, [(10, T0 + 10 * S, 22.9, 114.9, 5, T0 + 90 * S)]) == 0  # backfill, received later
    assert (_col(live, "lat", 10), _col(live, "fix_time_us", 10), _col(live, "speed_kmh", 10)) == (
        22.5,
        T0 + 60 * S,
        30,
    )
    assert _col(live, "last_seen_us", 10) == T0 + 90 * S
    assert _apply(live, [(10, T0 + 60 * S, 23.0, 115.0, 1, T0 + 95 * S)]) == 0  # a resend of the same fix
    assert _col(live, "lat", 10) == 22.5
    assert _apply(live, [(10, T0 + 61 * S, 22.6, 114.1, 1, T0 + 80 * S)]) == 1  # newer fix, older receive time
    assert (_col(live, "lat", 10), _col(live, "last_seen_us", 10)) == (22.6, T0 + 95 * S)


def test_newest_fix_of_a_batch_wins_whatever_the_order() -> None:
    live = _state()
    rows = [
        (11, T0 + 30 * S, 22.3, 114.3, 3, T0 + 40 * S),
        (10, T0 + 20 * S, 22.2, 114.2, 2, T0 + 33 * S),
        (11, T0 + 50 * S, 22.5, 114.5, 5, T0 + 35 * S),  # newest of 11
        (10, T0 + 40 * S, 22.4, 114.4, 4, T0 + 31 * S),  # newest of 10
        (11, T0 + 10 * S, 22.1, 114.1, 1, T0 + 36 * S),
        (10, T0 + 5 * S, 22.0, 114.0, 0, T0 + 32 * S),
    ]
    assert _apply(live, rows) == 2
    assert (_col(live, "lat", 10), _col(live, "lon", 10), _col(live, "speed_kmh", 10)) == (22.4, 114.4, 4)
    assert (_col(live, "lat", 11), _col(live, "fix_time_us", 11)) == (22.5, T0 + 50 * S)
    assert (_col(live, "last_seen_us", 10), _col(live, "last_seen_us", 11)) == (T0 + 33 * S, T0 + 40 * S)


def test_unknown_devices_are_ignored_and_counted() -> None:
    live = _state()
    assert _apply(live, [(99, T0, 1, 1, 1, T0), (10, T0, 22.5, 114, 1, T0), (98, T0, 1, 1, 1, T0)]) == 1
    assert live.unknown_fixes == 2
    assert _apply(live, [(97, T0, 1, 1, 1, T0)]) == 0
    assert live.unknown_fixes == 3
    assert live.slot(99) is None and len(live) == 4


def test_matches_a_row_by_row_model() -> None:
    rng = np.random.default_rng(11)
    live = LiveState(capacity=2)  # grows by doubling on the way
    ids = rng.permutation(np.arange(1000, 1300))
    for i in ids.tolist():
        live.set_device(i, f"u{i}", "other", None, "", None, True)
    model: dict[int, tuple[int, float, int]] = {}
    for _ in range(20):
        n = 500
        dev = rng.choice(np.r_[ids, [5, 6]], n).astype(np.int32)  # 5 and 6 are unknown
        fix = T0 + rng.integers(0, 10_000, n) * S
        recv = T0 + rng.integers(0, 10_000, n) * S
        lat = rng.uniform(22, 23, n)
        live.apply(dev, fix, lat, lat + 91.5, np.zeros(n, np.float32), np.zeros(n, np.float32), recv)
        for d, f, la, r in zip(dev.tolist(), fix.tolist(), lat.tolist(), recv.tolist(), strict=True):
            if d in (5, 6):
                continue
            old = model.get(d, (-1, np.nan, -1))
            model[d] = (f, la, max(r, old[2])) if f > old[0] else (old[0], old[1], max(r, old[2]))
    for d, (f, la, r) in model.items():
        assert (_col(live, "fix_time_us", d), _col(live, "lat", d), _col(live, "last_seen_us", d)) == (f, la, r)
    assert live.column("device_id").tolist() == ids.tolist()  # slots in the order devices were added


def test_apply_batch() -> None:
    live = _state()
    t = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    batch = PositionBatch.from_rows(
        [
            PositionRow(10, t, t, 22.5, 114.0, True, 0, "jt808", speed_kmh=12.3, course=45),
            PositionRow(12, t, t, 22.6, 114.1, True, 0, "mqtt"),
        ]
    )
    assert live.apply_batch(batch) == 2
    rows = {r["id"]: r for r in live.rows(np.arange(len(live)), T0 + 61 * S)}
    assert (rows[10]["lat"], rows[10]["speed_kmh"], rows[10]["course"]) == (22.5, 12.3, 45.0)
    assert (rows[12]["lat"], rows[12]["speed_kmh"], rows[12]["course"]) == (22.6, None, None)
    assert rows[10]["time"] == rows[10]["last_seen"] == "2026-01-01T00:01:00Z"


def test_status_by_kind_and_sweep() -> None:
    live = _state(timeouts_s={"enforcement": 60})
    _apply(live, [(d, T0, 22.5, 114.0, 0, T0) for d in (10, 11, 12, 13)])
    order = [_slot(live, d) for d in (10, 11, 12, 13)]  # muck, sanitation, inspector, enforcement

    def status(now: int) -> list[int]:
        return live.status(now)[order].tolist()

    assert status(T0 + 60 * S) == [ONLINE] * 4
    assert status(T0 + 61 * S) == [ONLINE, ONLINE, ONLINE, OFFLINE]
    assert status(T0 + 300 * S) == [ONLINE, ONLINE, ONLINE, OFFLINE]
    assert status(T0 + 301 * S) == [OFFLINE, OFFLINE, ONLINE, OFFLINE]
    assert status(T0 + 601 * S) == [OFFLINE] * 4

    assert sorted(live.sweep(T0 + 10 * S).tolist()) == sorted(order)  # never -> online
    v = live.current_version
    assert live.sweep(T0 + 20 * S).tolist() == []
    assert live.current_version == v  # nothing changed, nothing bumped
    assert live.sweep(T0 + 400 * S).tolist() == sorted(order[:2] + order[3:])
    assert sorted(live.changed_since(v).tolist()) == sorted(order[:2] + order[3:])
    live.touch(10, T0 + 401 * S)
    assert live.sweep(T0 + 402 * S).tolist() == [order[0]]  # offline -> online again
    assert live.sweep(T0 + 402 * S).tolist() == []

    fresh = _state()
    assert (fresh.status(T0) == NEVER).all()
    assert fresh.sweep(T0).tolist() == []  # never seen and still never seen: no change
    with pytest.raises(ValueError, match="unknown kinds: boat"):
        LiveState(timeouts_s={"boat": 5})


def test_heartbeats() -> None:
    live = _state()
    v0 = live.current_version
    assert live.touch(12, T0) is True  # never -> online
    assert live.current_version == v0 + 1 and live.changed_since(v0).tolist() == [_slot(live, 12)]
    assert live.touch(12, T0 + 100 * S) is False  # still online: no version bump
    assert live.current_version == v0 + 1
    assert _col(live, "last_seen_us", 12) == T0 + 100 * S
    assert _col(live, "fix_time_us", 12) == -1 and np.isnan(_col(live, "lat", 12))  # no position from a heartbeat
    assert live.touch(12, T0 + 50 * S) is False and _col(live, "last_seen_us", 12) == T0 + 100 * S
    assert live.touch(12, T0 + 800 * S) is True  # it had gone offline (600 s for inspectors)
    assert live.touch(99, T0) is False

    ids = np.array([10, 11, 10, 99], dtype=np.int32)
    assert live.touch_many(ids, np.array([T0, T0 + 5 * S, T0 + 9 * S, T0], dtype=np.int64)) == 2
    assert (_col(live, "last_seen_us", 10), _col(live, "last_seen_us", 11)) == (T0 + 9 * S, T0 + 5 * S)
    assert live.touch_many(np.array([10, 11, 13], dtype=np.int32), T0 + 10 * S) == 1


def test_versions_and_changed_since() -> None:
    live = _state()
    v0 = live.current_version
    assert live.changed_since(0).tolist() == [0, 1, 2, 3]
    assert live.changed_since(v0).tolist() == []
    _apply(live, [(10, T0, 22.5, 114, 1, T0), (11, T0, 22.5, 114, 1, T0), (10, T0 + S, 22.6, 114, 1, T0)])
    assert live.current_version == v0 + 1  # one bump per apply
    v1 = live.current_version
    _apply(live, [(11, T0 + S, 22.7, 114, 1, T0 + S)])
    assert live.changed_since(v0).tolist() == [_slot(live, 10), _slot(live, 11)]
    assert live.changed_since(v1).tolist() == [_slot(live, 11)]
    v2 = live.current_version
    _apply(live, [(11, T0, 22.0, 114, 1, T0 + 2 * S)])  # late: nothing to push
    assert live.changed_since(v2).tolist() == [] and live.current_version == v2

    # A description changes: pushed; the same description again: not.
    live.set_device(13, "u13", "enforcement", None, "Patrol 13", "粤B13", True)
    assert live.current_version == v2
    live.set_device(13, "u13", "enforcement", 2, "Patrol 13", "粤B13", True)
    assert live.changed_since(v2).tolist() == [_slot(live, 13)]


def test_disabled_devices_are_hidden() -> None:
    live = _state()
    _apply(live, [(d, T0, 22.5, 114.0, 10, T0) for d in (10, 11, 12, 13)])
    v = live.current_version
    live.set_device(11, "u11", "sanitation", 1, "Sweeper 11", None, False)
    everything = Circle(22.5, 114.0, 1000)
    assert _slot(live, 11) not in live.select(everything).tolist()
    assert live.changed_since(0).tolist() == [_slot(live, d) for d in (10, 12, 13)]
    assert live.changed_since(v).tolist() == []
    assert live.counts(T0)["total"] == {"online": 3, "offline": 0, "never": 0}
    assert _slot(live, 11) not in np.flatnonzero(live.mask()).tolist()
    _apply(live, [(11, T0 + S, 22.505, 114.0, 10, T0 + S)])  # still tracked while hidden
    live.set_device(11, "u11", "sanitation", 1, "Sweeper 11", None, True)
    assert _slot(live, 11) in live.select(everything).tolist() and _col(live, "lat", 11) == 22.505
    live.set_device(50, "u50", "other", None, "", None, False)
    assert live.counts(T0)["total"]["never"] == 0


def _spread(live: LiveState) -> None:
    """Devices 100.. on a grid around (22.5, 114.0), kinds and units cycling; 10-13 stay without a fix."""
    k = 0
    kinds = ["sanitation", "muck", "enforcement", "inspector", "other"]
    rows = []
    for i in range(-5, 6):
        for j in range(-5, 6):
            d = 100 + k
            live.set_device(d, f"g{d}", kinds[k % 5], 1 + k % 3, "", None, True)
            rows.append((d, T0, 22.5 + i * 0.01, 114.0 + j * 0.01, 20 if k % 2 else 0, T0))
            k += 1
    _apply(live, rows)


def test_mask_and_select() -> None:
    live = _state()
    _spread(live)
    device = live.column("device_id")
    circle = Circle(22.5, 114.0, 1300)  # the centre and its 4 neighbours (1.0-1.1 km), not the diagonals (1.5 km)
    inside = device[live.select(circle)].tolist()
    assert len(inside) == 5 and 100 + 60 in inside  # k = 60 is the centre (i = j = 0)
    units_1_2 = live.mask(unit_ids=[1, 2])
    in_units = device[live.select(circle, units_1_2)]
    assert len(in_units) < 5 and all((d - 100) % 3 in (0, 1) for d in in_units.tolist())
    muck = live.select(circle, live.mask(kinds=["muck"]))
    assert all(live.column("kind")[muck] == 1)
    assert live.select(circle, live.mask(unit_ids=[])).tolist() == []
    assert live.select(circle, live.mask(unit_ids=[404])).tolist() == []

    square = Polygon.from_geojson(
        {
            "type": "Polygon",
            "coordinates": [
                [[113.985, 22.485], [114.015, 22.485], [114.015, 22.515], [113.985, 22.515], [113.985, 22.485]]
            ],
        }
    )
    assert len(live.select(square)) == 9
    hole = [[113.995, 22.495], [114.005, 22.495], [114.005, 22.505], [113.995, 22.505], [113.995, 22.495]]
    with_hole = Polygon.from_geojson({"type": "Polygon", "coordinates": [*square_rings(square), hole]})
    assert len(live.select(with_hole)) == 8 and 160 not in device[live.select(with_hole)].tolist()

    box = live.mask(bbox=(113.985, 22.485, 114.015, 22.515))
    assert box.sum() == 9
    assert (box & live.mask(kinds=["muck", "other"], unit_ids=[1])).sum() == len(
        [d for d in device[box].tolist() if (d - 100) % 5 in (1, 4) and (d - 100) % 3 == 0]
    )
    assert not live.mask(bbox=(-180, -90, 180, 90))[[_slot(live, d) for d in (10, 11, 12, 13)]].any()  # no position
    with pytest.raises(ValueError, match="'truck'"):
        live.mask(kinds=["truck"])


def square_rings(poly: Polygon) -> list[list[list[float]]]:
    return [ring.tolist() for ring in poly.rings]


def test_counts() -> None:
    live = _state()
    _spread(live)  # 121 devices online at T0, units 1, 2, 3
    live.touch(12, T0 - 1000 * S)  # inspector 12 (unit 2): offline
    _apply(live, [(10, T0, 22.5, 114.0, 0, T0)])  # muck 10 (unit 1): online; 11 and 13 never seen
    c = live.counts(T0)
    assert c["total"] == {"online": 122, "offline": 1, "never": 2}
    assert c["by_kind"]["inspector"] == {"online": 24, "offline": 1, "never": 0}
    assert c["by_kind"]["enforcement"] == {"online": 24, "offline": 0, "never": 1}  # 13, without a unit
    assert c["by_kind"]["muck"] == {"online": 25, "offline": 0, "never": 0}
    assert c["by_unit"] == {
        1: {"online": 42, "offline": 0, "never": 1},
        2: {"online": 40, "offline": 1, "never": 0},
        3: {"online": 40, "offline": 0, "never": 0},
    }
    c2 = live.counts(T0, unit_ids=[2])
    assert c2["total"] == {"online": 40, "offline": 1, "never": 0}
    assert set(c2["by_unit"]) == {2} and sum(v["online"] for v in c2["by_kind"].values()) == 40
    later = live.counts(T0 + 400 * S)  # vehicles time out after 300 s, inspectors after 600 s
    assert later["total"] == {"online": 24, "offline": 99, "never": 2}


def test_rows_shape() -> None:
    live = _state()
    live.apply(
        np.array([10], dtype=np.int32),
        np.array([T0 + 5 * S], dtype=np.int64),
        np.array([22.54321]),
        np.array([114.05]),
        np.array([12.3], dtype=np.float32),
        np.array([271.5], dtype=np.float32),
        np.array([T0 + 6 * S + 250_000], dtype=np.int64),
    )
    live.touch(12, T0)
    rows = live.rows([_slot(live, 10), _slot(live, 13), _slot(live, 12)], T0 + 10 * S)
    assert rows[0] == {
        "id": 10,
        "uid": "u10",
        "kind": "muck",
        "name": "Muck 10",
        "plate": "粤B10",
        "unit_id": 1,
        "lat": 22.54321,
        "lon": 114.05,
        "time": "2026-01-01T00:00:05Z",
        "speed_kmh": 12.3,
        "course": 271.5,
        "moving": True,
        "status": "online",
        "last_seen": "2026-01-01T00:00:06.250000Z",
    }
    assert rows[1] == {
        "id": 13,
        "uid": "u13",
        "kind": "enforcement",
        "name": "Patrol 13",
        "plate": "粤B13",
        "unit_id": None,
        "lat": None,
        "lon": None,
        "time": None,
        "speed_kmh": None,
        "course": None,
        "moving": False,
        "status": "never",
        "last_seen": None,
    }
    assert (rows[2]["status"], rows[2]["lat"], rows[2]["last_seen"]) == ("online", None, "2026-01-01T00:00:00Z")
    later = live.rows([_slot(live, 10)], T0 + 400 * S)[0]
    assert (later["status"], later["moving"], later["lat"]) == ("offline", False, 22.54321)
    assert live.rows([], T0) == []
    gcj = live.rows([_slot(live, 10), _slot(live, 13)], T0, "gcj02")
    assert (gcj[0]["lat"], gcj[0]["lon"]) == crs.wgs84_to_gcj02(22.54321, 114.05)
    assert gcj[1]["lat"] is None and {k: v for k, v in gcj[0].items() if k not in ("lat", "lon")} == {
        k: v for k, v in live.rows([_slot(live, 10)], T0)[0].items() if k not in ("lat", "lon")
    }
    slow = LiveState(moving_kmh=15)
    slow.set_device(1, "a", "muck", None, "", None, True)
    slow.apply_batch(
        PositionBatch.from_rows(
            [
                PositionRow(
                    1,
                    datetime(2026, 1, 1, tzinfo=UTC),
                    datetime(2026, 1, 1, tzinfo=UTC),
                    1.0,
                    2.0,
                    True,
                    0,
                    "jt808",
                    speed_kmh=12.3,
                )
            ]
        )
    )
    assert slow.rows([0], T0)[0]["moving"] is False and not slow.moving(T0).any()
    assert live.moving(T0 + 10 * S).tolist() == [True, False, False, False]


def test_load_and_snapshot() -> None:
    live = _state()
    _apply(live, [(10, T0, 22.5, 114.0, 7, T0 + S), (11, T0 + S, 22.6, 114.1, 0, T0 + 2 * S)])
    live.touch(12, T0 + 3 * S)
    snap = live.snapshot_for_save()
    assert set(snap) == {"device_id", "fix_time_us", "lat", "lon", "speed_kmh", "course", "last_seen_us"}
    snap["lat"][0] = 0.0  # a copy: the live state is not touched
    assert _col(live, "lat", 10) == 22.5
    snap = live.snapshot_for_save()

    catalog = [
        CatalogDevice(13, "u13", "enforcement", "Patrol 13", "粤B13", None, "jt808", True),
        CatalogDevice(11, "u11", "sanitation", "Sweeper 11", None, 1, None, True),
        CatalogDevice(10, "u10", "muck", "Muck 10", "粤B10", 1, "gt06", True),
        CatalogDevice(12, "u12", "inspector", "Inspector Li", None, 2, "mqtt", False),
    ]
    saved = {k: np.r_[v, v[:1]] for k, v in snap.items()}
    saved["device_id"][-1] = 77  # a saved device no longer in the catalog
    restored = LiveState()
    restored.load(catalog, saved)
    assert len(restored) == 4
    now = T0 + 10 * S
    by_id = {r["id"]: r for r in restored.rows(np.arange(4), now)}
    assert by_id == {r["id"]: r for r in live.rows(np.arange(4), now)}
    assert restored.changed_since(0).tolist() == [_slot(restored, d) for d in (13, 11, 10)]  # 12 is disabled
    again = restored.snapshot_for_save()
    order = np.argsort(again["device_id"])
    for k in snap:
        np.testing.assert_array_equal(again[k][order], snap[k])
    v = restored.current_version
    restored.load(catalog[:2], saved)  # a reload: versions go on from where they were
    assert restored.changed_since(v).tolist() == [0, 1] and restored.current_version == v + 1
    restored.load([], {k: v[:0] for k, v in snap.items()})
    assert len(restored) == 0 and restored.select(Circle(22.5, 114.0, 5000)).tolist() == []
