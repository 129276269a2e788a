"""The live state of the fleet: the latest position and the last-seen time of every device, in numpy columns.

Each device has a slot (an index into every column). Everything that runs per batch or per request
(apply, status, select, counts, changed_since) works on whole columns, so 100,000 devices cost
about a millisecond on the event loop rather than a Python step each.

Versions make the WebSocket cheap: every change bumps one global counter and stamps the changed
slots with it; a client remembers the version it was last sent and asks what changed since,
which also coalesces any number of updates of one device into one row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from geofence import crs
from geofence.shapes import Shape
from store.batch import PositionBatch
from store.devices import KINDS
from store.live_state import CatalogDevice

NEVER, ONLINE, OFFLINE = 0, 1, 2
STATUS_NAMES = ("never", "online", "offline")
KIND_CODES = {k: i for i, k in enumerate(KINDS)}
DEFAULT_TIMEOUTS_S = {"sanitation": 300.0, "muck": 300.0, "enforcement": 300.0, "inspector": 600.0, "other": 300.0}

Slots = npt.NDArray[np.intp]
_Arr = npt.NDArray[Any]

# Every per-slot column: dtype and the value of a new slot. unit_ix is a dense index of unit_id
# (0: no unit) so that unit filters and counts are a table look-up and a bincount.
_COLUMNS: dict[str, tuple[Any, Any]] = {
    "device_id": (np.int32, 0),
    "kind": (np.int8, KIND_CODES["other"]),
    "unit_id": (np.int32, -1),
    "unit_ix": (np.int32, 0),
    "visible": (np.bool_, False),
    "fix_time_us": (np.int64, -1),
    "lat": (np.float64, np.nan),
    "lon": (np.float64, np.nan),
    "speed_kmh": (np.float32, np.nan),
    "course": (np.float32, np.nan),
    "last_seen_us": (np.int64, -1),
    "version": (np.int64, 0),
    "swept": (np.int8, NEVER),  # the status at the last sweep
}
_POSITION = ("fix_time_us", "lat", "lon", "speed_kmh", "course")


class LiveState:
    def __init__(
        self, timeouts_s: Mapping[str, float] | None = None, *, moving_kmh: float = 3.0, capacity: int = 1024
    ) -> None:
        """`timeouts_s`: per kind, how long after it was last seen a device counts as offline (missing kinds
        keep DEFAULT_TIMEOUTS_S). `moving_kmh`: the speed from which an online device counts as moving."""
        timeouts = {**DEFAULT_TIMEOUTS_S, **(timeouts_s or {})}
        unknown = set(timeouts) - set(KINDS)
        if unknown:
            raise ValueError(f"timeouts for unknown kinds: {', '.join(sorted(unknown))}")
        self._timeout_us = np.array([round(timeouts[k] * 1e6) for k in KINDS], dtype=np.int64)
        self.moving_kmh = moving_kmh
        self._reset(capacity)

    def _reset(self, capacity: int) -> None:
        self._n = 0
        self._c: dict[str, _Arr] = {name: np.empty(max(capacity, 1), dtype=dt) for name, (dt, _) in _COLUMNS.items()}
        self._slot_of: dict[int, int] = {}
        self._uid: list[str] = []
        self._name: list[str] = []
        self._plate: list[str | None] = []
        self._unit_ix: dict[int, int] = {}
        self._units: list[int] = [-1]  # unit id by dense index; index 0 is "no unit"
        self._version = 0
        # Sorted device ids and their slots, for vectorized id -> slot; rebuilt after devices are added.
        self._sorted_ids: _Arr = np.empty(0, dtype=np.int32)
        self._sorted_slots: Slots = np.empty(0, dtype=np.intp)
        self._index_stale = False
        self.unknown_fixes = 0  # fixes of devices that were never set_device'd, ignored

    # -- devices ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n

    @property
    def current_version(self) -> int:
        return self._version

    def column(self, name: str) -> _Arr:
        """A read-only view of one column over the used slots (names as in _COLUMNS)."""
        view = self._c[name][: self._n]
        view.flags.writeable = False
        return view

    def device_info(self, device_ids: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Kind code (index in KINDS) and unit id of each device; -1 for an unknown device or no unit."""
        slots = self._lookup(np.asarray(device_ids))
        known = slots >= 0
        at = np.where(known, slots, 0)
        kind = np.where(known, self._c["kind"][at], -1).astype(np.int64)
        unit = np.where(known, self._c["unit_id"][at], -1).astype(np.int64)
        return kind, unit

    def slot(self, device_id: int) -> int | None:
        return self._slot_of.get(device_id)

    def set_device(
        self, device_id: int, uid: str, kind: str, unit_id: int | None, name: str, plate: str | None, enabled: bool
    ) -> int:
        """Add or change a device; a disabled one is hidden (kept, but left out of every answer). Its slot."""
        if kind not in KIND_CODES:
            raise ValueError(f"unknown device kind {kind!r}")
        slot = self._slot_of.get(device_id)
        if slot is None:
            slot = int(self._new_slots(np.array([device_id], dtype=np.int32))[0])
        c = self._c
        described = (KIND_CODES[kind], -1 if unit_id is None else unit_id, enabled, uid, name, plate)
        if described != self._described(slot) or c["version"][slot] == 0:  # changed, or new
            c["kind"][slot], c["unit_id"][slot], c["visible"][slot] = described[:3]
            c["unit_ix"][slot] = 0 if unit_id is None else self._unit_index(unit_id)
            self._uid[slot], self._name[slot], self._plate[slot] = uid, name, plate
            self._bump(np.array([slot]))
        return slot

    def _described(self, slot: int) -> tuple[Any, ...]:
        c = self._c
        return (
            int(c["kind"][slot]),
            int(c["unit_id"][slot]),
            bool(c["visible"][slot]),
            self._uid[slot],
            self._name[slot],
            self._plate[slot],
        )

    def _unit_index(self, unit_id: int) -> int:
        ix = self._unit_ix.get(unit_id)
        if ix is None:
            ix = self._unit_ix[unit_id] = len(self._units)
            self._units.append(unit_id)
        return ix

    def _new_slots(self, device_ids: npt.NDArray[np.int32]) -> Slots:
        n, k = self._n, len(device_ids)
        capacity = len(self._c["device_id"])
        if n + k > capacity:
            while capacity < n + k:
                capacity *= 2
            for name, col in self._c.items():
                grown = np.empty(capacity, dtype=col.dtype)
                grown[:n] = col[:n]
                self._c[name] = grown
        slots = np.arange(n, n + k)
        for name, (_, default) in _COLUMNS.items():
            self._c[name][n : n + k] = default
        self._c["device_id"][n : n + k] = device_ids
        self._slot_of.update(zip(device_ids.tolist(), slots.tolist(), strict=True))
        self._uid += [""] * k
        self._name += [""] * k
        self._plate += [None] * k
        self._n = n + k
        self._index_stale = True
        return slots

    def _lookup(self, device_ids: npt.NDArray[Any]) -> Slots:
        """Slots of the given device ids, -1 for ids that are not devices here."""
        if self._index_stale:
            ids = self._c["device_id"][: self._n]
            self._sorted_slots = np.argsort(ids, kind="stable")  # ids mostly arrive in order: timsort is quick
            self._sorted_ids = ids[self._sorted_slots]
            self._index_stale = False
        if not len(self._sorted_ids):
            return np.full(len(device_ids), -1, dtype=np.intp)
        pos = np.minimum(np.searchsorted(self._sorted_ids, device_ids), len(self._sorted_ids) - 1)
        return np.where(self._sorted_ids[pos] == device_ids, self._sorted_slots[pos], -1)

    def _bump(self, slots: Slots) -> None:
        if len(slots):
            self._version += 1
            self._c["version"][slots] = self._version

    # -- updates ---------------------------------------------------------------------------------

    def apply(
        self,
        device_id: npt.NDArray[np.int32],
        fix_time_us: npt.NDArray[np.int64],
        lat: npt.NDArray[np.float64],
        lon: npt.NDArray[np.float64],
        speed_kmh: npt.NDArray[np.floating[Any]],
        course: npt.NDArray[np.floating[Any]],
        receive_time_us: npt.NDArray[np.int64],
    ) -> int:
        """Take the fixes of a committed batch; the number of devices whose live row changed.

        Per device only its newest fix counts, and only when it is newer than the stored one: late and
        backfilled fixes never move a device backwards. last_seen advances to the newest receive time
        either way. Fixes of unknown devices are ignored and counted in `unknown_fixes`.
        """
        slots = self._lookup(np.asarray(device_id))
        known = slots >= 0
        columns = [np.asarray(v)[known] for v in (fix_time_us, lat, lon, speed_kmh, course, receive_time_us)]
        self.unknown_fixes += len(known) - len(columns[0])
        slots = slots[known]
        if not len(slots):
            return 0
        fix_time_us, receive_time_us = columns[0], columns[-1]
        # Group the rows by slot, each group ordered by fix time: its last row is the device's newest fix.
        order = np.lexsort((fix_time_us, slots))
        grouped = slots[order]
        starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
        ends = np.r_[starts[1:], len(order)] - 1
        device_slots, newest = grouped[starts], order[ends]

        c = self._c
        newer = fix_time_us[newest] > c["fix_time_us"][device_slots]
        moved, rows = device_slots[newer], newest[newer]
        for name, values in zip(_POSITION, columns[:-1], strict=True):
            c[name][moved] = values[rows]
        came_online = self._see(device_slots, np.maximum.reduceat(receive_time_us[order], starts))
        changed = np.union1d(moved, came_online)
        self._bump(changed)
        return len(changed)

    def apply_batch(self, batch: PositionBatch) -> int:
        return self.apply(
            batch.device_id,
            batch.fix_time,
            batch.lat,
            batch.lon,
            batch.speed_kmh,
            batch.course,
            batch.receive_time,
        )

    def _see(self, slots: Slots, t_us: npt.NDArray[np.int64]) -> Slots:
        """Advance last_seen of distinct slots; the slots that were not online at that moment before."""
        c = self._c
        before = c["last_seen_us"][slots]
        timeout = self._timeout_us[c["kind"][slots]]
        was_online = (before >= 0) & (t_us - before <= timeout)
        c["last_seen_us"][slots] = np.maximum(before, t_us)
        return slots[(t_us > before) & ~was_online]

    def touch(self, device_id: int, t_us: int) -> bool:
        """A heartbeat (or any sign of life without a fix); whether the device came online by it."""
        return self.touch_many(np.array([device_id], dtype=np.int32), t_us) > 0

    def touch_many(self, device_ids: npt.NDArray[Any], t_us: int | npt.NDArray[np.int64]) -> int:
        """Heartbeats of many devices (one time for all, or one each); how many came online by them."""
        ids = np.asarray(device_ids)
        times = np.broadcast_to(np.asarray(t_us, dtype=np.int64), ids.shape)
        slots = self._lookup(ids)
        known = slots >= 0
        slots, times = slots[known], times[known]
        if not len(slots):
            return 0
        distinct, inverse = np.unique(slots, return_inverse=True)
        newest = np.full(len(distinct), -1, dtype=np.int64)
        np.maximum.at(newest, inverse, times)
        came_online = self._see(distinct, newest)
        self._bump(came_online)
        return len(came_online)

    # -- status ----------------------------------------------------------------------------------

    def _status_of(self, slots: Slots | slice, now_us: int) -> npt.NDArray[np.int8]:
        c = self._c
        seen = c["last_seen_us"][slots]
        online = (seen >= 0) & (now_us - seen <= self._timeout_us[c["kind"][slots]])
        return np.where(online, np.int8(ONLINE), np.where(seen < 0, np.int8(NEVER), np.int8(OFFLINE)))

    def status(self, now_us: int) -> npt.NDArray[np.int8]:
        """Per slot: NEVER (0, never seen), ONLINE (1, seen within its kind's timeout) or OFFLINE (2)."""
        return self._status_of(slice(0, self._n), now_us)

    def moving(self, now_us: int) -> npt.NDArray[np.bool_]:
        """Per slot: online and at or above the moving speed (an unknown speed is not moving)."""
        return (self._c["speed_kmh"][: self._n] >= self.moving_kmh) & (self.status(now_us) == ONLINE)

    def sweep(self, now_us: int) -> Slots:
        """The visible slots whose status changed since the last sweep (their version is bumped): run it
        every few seconds so that devices going silent turn offline for the WebSocket clients. A device
        that came online by a fix or heartbeat since was bumped then already, and shows up here again."""
        status = self.status(now_us)
        swept = self._c["swept"][: self._n]
        changed = np.flatnonzero((status != swept) & self._c["visible"][: self._n])
        swept[:] = status
        self._bump(changed)
        return changed

    def changed_since(self, version: int) -> Slots:
        """The visible slots changed after `version` (a value of current_version taken earlier)."""
        n = self._n
        return np.flatnonzero((self._c["version"][:n] > version) & self._c["visible"][:n])

    # -- selection -------------------------------------------------------------------------------

    def mask(
        self,
        kinds: Iterable[str] | None = None,
        unit_ids: Iterable[int] | None = None,
        bbox: tuple[float, float, float, float] | None = None,
        slots: Slots | None = None,
    ) -> npt.NDArray[np.bool_]:
        """Per slot: visible, of one of `kinds`, in one of `unit_ids` (e.g. a user's subtree; a device with no
        unit is in none) and inside `bbox` = (min_lon, min_lat, max_lon, max_lat) (a device without a
        position is outside every box). None: no condition. With `slots`, for those slots only (the answer
        is aligned with them): filtering what changed_since returns costs only as much as it returned."""
        at: Slots | slice = slice(0, self._n) if slots is None else slots
        c = self._c
        keep = c["visible"][at].copy()
        if kinds is not None:
            allowed_kinds = np.zeros(len(KINDS), dtype=np.bool_)
            for k in kinds:
                if k not in KIND_CODES:
                    raise ValueError(f"unknown device kind {k!r}")
                allowed_kinds[KIND_CODES[k]] = True
            keep &= allowed_kinds[c["kind"][at]]
        if unit_ids is not None:
            allowed_units = np.zeros(len(self._units), dtype=np.bool_)
            for u in unit_ids:
                ix = self._unit_ix.get(u)
                if ix is not None:
                    allowed_units[ix] = True
            keep &= allowed_units[c["unit_ix"][at]]
        if bbox is not None:
            min_lon, min_lat, max_lon, max_lat = bbox
            lat, lon = c["lat"][at], c["lon"][at]
            keep &= (lat >= min_lat) & (lat <= max_lat) & (lon >= min_lon) & (lon <= max_lon)
        return keep

    def select(self, shape: Shape, base_mask: npt.NDArray[np.bool_] | None = None) -> Slots:
        """Visible slots whose position is inside `shape` (and in `base_mask`), in slot order."""
        n, c = self._n, self._c
        lat, lon = c["lat"][:n], c["lon"][:n]
        min_lat, min_lon, max_lat, max_lon = shape.bbox()
        candidates = (lat >= min_lat) & (lat <= max_lat) & (lon >= min_lon) & (lon <= max_lon) & c["visible"][:n]
        if base_mask is not None:
            candidates &= base_mask
        idx = np.flatnonzero(candidates)
        return idx[shape.contains(lat[idx], lon[idx])]

    def counts(self, now_us: int, unit_ids: Iterable[int] | None = None) -> dict[str, Any]:
        """Online/offline/never counts of the visible devices (of `unit_ids` only, if given):
        {"total": COUNTS, "by_kind": {kind: COUNTS}, "by_unit": {unit_id: COUNTS}}, COUNTS being
        {"online": n, "offline": n, "never": n}. by_unit has each unit's own devices, only units with
        devices; devices without a unit are in total and by_kind only."""
        keep = self.mask(unit_ids=unit_ids)
        status = self.status(now_us)[keep].astype(np.intp)
        kind = self._c["kind"][: self._n][keep].astype(np.intp)
        unit = self._c["unit_ix"][: self._n][keep].astype(np.intp)
        by_kind = np.bincount(kind * 3 + status, minlength=3 * len(KINDS)).reshape(-1, 3)
        by_unit = np.bincount(unit * 3 + status, minlength=3 * len(self._units)).reshape(-1, 3)
        used = np.flatnonzero(by_unit[1:].sum(axis=1)) + 1
        return {
            "total": _counts(by_kind.sum(axis=0)),
            "by_kind": {k: _counts(by_kind[i]) for i, k in enumerate(KINDS)},
            "by_unit": {self._units[ix]: _counts(by_unit[ix]) for ix in used.tolist()},
        }

    # -- output ----------------------------------------------------------------------------------

    def rows(self, slots: Slots | Sequence[int], now_us: int, crs_name: str = "wgs84") -> list[dict[str, Any]]:
        """The LIVE rows of the API for the given slots, in that order, coordinates in `crs_name`."""
        s = np.asarray(slots, dtype=np.intp)
        c = self._c
        lat, lon = crs.convert(c["lat"][s], c["lon"][s], "wgs84", crs_name)
        status = self._status_of(s, now_us)
        speed = c["speed_kmh"][s]
        has_fix = c["fix_time_us"][s] >= 0
        unit_id = c["unit_id"][s]
        at = s.tolist()
        columns = {
            "id": c["device_id"][s].tolist(),
            "uid": [self._uid[i] for i in at],
            "kind": [KINDS[k] for k in c["kind"][s].tolist()],
            "name": [self._name[i] for i in at],
            "plate": [self._plate[i] for i in at],
            "unit_id": _nullable(unit_id, unit_id >= 0),
            "lat": _nullable(lat, has_fix),
            "lon": _nullable(lon, has_fix),
            "time": _iso(c["fix_time_us"][s]),
            "speed_kmh": _nullable(_round(speed), has_fix & ~np.isnan(speed)),
            "course": _nullable(_round(c["course"][s]), has_fix & ~np.isnan(c["course"][s])),
            "moving": ((speed >= self.moving_kmh) & (status == ONLINE)).tolist(),
            "status": [STATUS_NAMES[v] for v in status.tolist()],
            "last_seen": _iso(c["last_seen_us"][s]),
        }
        names = list(columns)
        return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]

    # -- persistence -----------------------------------------------------------------------------

    def load(self, catalog: Sequence[CatalogDevice], latest: Mapping[str, _Arr]) -> None:
        """Replace the whole state by the device catalog and a saved state (store.live_state's device_catalog
        and load_latest). Saved rows of devices not in the catalog are dropped. Versions keep counting up
        and every slot gets a new one, so changed_since(any earlier version) is everything."""
        version = self._version
        self._reset(max(1024, len(catalog)))
        self._version = version
        ids = np.array([d.id for d in catalog], dtype=np.int32)
        if len(np.unique(ids)) != len(ids):
            raise ValueError("the catalog has a device id more than once")
        slots = self._new_slots(ids)
        c = self._c
        c["kind"][slots] = [KIND_CODES[d.kind] for d in catalog]
        units = [-1 if d.org_unit_id is None else d.org_unit_id for d in catalog]
        c["unit_id"][slots] = units
        c["unit_ix"][slots] = [0 if u < 0 else self._unit_index(u) for u in units]
        c["visible"][slots] = [d.enabled for d in catalog]
        self._uid = [d.uid for d in catalog]
        self._name = [d.name for d in catalog]
        self._plate = [d.plate for d in catalog]
        saved = self._lookup(np.asarray(latest["device_id"]))
        found = saved >= 0
        for name in (*_POSITION, "last_seen_us"):
            c[name][saved[found]] = np.asarray(latest[name])[found]
        self._bump(slots)

    def snapshot_for_save(self) -> dict[str, _Arr]:
        """Copies of the columns store.live_state.save_latest takes, as its keyword arguments."""
        n = self._n
        return {name: self._c[name][:n].copy() for name in ("device_id", *_POSITION, "last_seen_us")}


def _counts(row: npt.NDArray[np.int64]) -> dict[str, int]:
    return {STATUS_NAMES[i]: int(row[i]) for i in (ONLINE, OFFLINE, NEVER)}


def _nullable(values: _Arr, present: npt.NDArray[np.bool_]) -> list[Any]:
    out: list[Any] = values.tolist()
    for i in np.flatnonzero(~present).tolist():
        out[i] = None
    return out


def _round(values: _Arr) -> _Arr:
    """float32 columns as the decimals they were sent as (12.3, not 12.300000190734863)."""
    return np.round(values.astype(np.float64), 2)


def _iso(us: npt.NDArray[np.int64]) -> list[str | None]:
    """ISO 8601 UTC with a Z, to the microsecond only when there are any, as datetime.isoformat() does."""
    t = us.astype("datetime64[us]")
    text = np.where(us % 1_000_000 == 0, np.datetime_as_string(t, unit="s"), np.datetime_as_string(t, unit="us"))
    return _nullable(np.char.add(text, "Z"), us >= 0)
