"""One person's shift judged from their phone's fixes, as of a moment (sans-I/O, numpy).

- Check-in: the first fix inside the duty grid from `checkin_window_min` before the start, before the end.
  `on_time` up to start + `grace_min`, `late` up to start + `absent_after_min`, `absent` after that or
  with none once start + `absent_after_min` has passed (before that, without one: `not_started` up to
  the grace, then `late`).
- Check-out, once the shift has ended: the last fix inside the grid after the check-in, up to
  `checkin_window_min` after the end; `early_leave` when it is before end - `grace_min`.
- Accepted phone check-ins and check-outs (attendance.checkin) count as fixes inside the grid.
- Between the later of start and check-in and the earlier of end and now, each fix stands for the time
  until the next one: a gap longer than `offline_min` is offline (where the person was is unknown
  then); other time counts on post or off post by where the fix was. Off post longer than
  `off_post_min` is an off-post spell (脱岗); no fix farther than `stationary_radius_m` from the first
  of a stay for longer than `stationary_min` is a stationary spell (an offline gap ends a stay).
- A spell that lasts until now, while the shift goes on, is ongoing; its `end` is then now.
- `on_duty` is added while the shift goes on for a person who has checked in.

Shifts on leave, holiday or cancelled are their status and nothing more. Without a grid nothing is inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from attendance.model import PlannedShift
from attendance.params import Params
from geofence.shapes import Shape, haversine_m

MIN_US = 60_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SOURCES = ("fix", "checkin", "checkout")  # what a sample is; a check-in/out is an accepted phone event

_Times = npt.NDArray[np.int64]
_Floats = npt.NDArray[np.float64]


class PhoneMark(NamedTuple):
    """An accepted phone check-in or check-out."""

    at_us: int
    lat: float
    lon: float
    kind: str  # "checkin" | "checkout"


@dataclass(frozen=True, slots=True)
class Mark:
    """A check-in or check-out: when, where, and whether a fix or a phone event showed it."""

    at: datetime
    lat: float
    lon: float
    source: str  # "fix" | "checkin" | "checkout"


@dataclass(frozen=True, slots=True)
class Spell:
    start: datetime
    end: datetime  # while ongoing: the moment of evaluation
    ongoing: bool
    lat: float  # where it began (offline: where the phone was last seen)
    lon: float

    @property
    def minutes(self) -> float:
        return (self.end - self.start) / timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class DayRecord:
    shift: PlannedShift
    as_of: datetime
    check_in: Mark | None
    check_out: Mark | None
    minutes_on_post: float
    statuses: tuple[str, ...]
    off_post: tuple[Spell, ...] = ()
    stationary: tuple[Spell, ...] = ()
    offline: tuple[Spell, ...] = ()


def to_us(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def to_time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


class _Samples(NamedTuple):
    t: _Times
    lat: _Floats
    lon: _Floats
    inside: npt.NDArray[np.bool_]
    source: npt.NDArray[np.int8]


def derive(
    shift: PlannedShift,
    grid: Shape | None,
    fix_time_us: _Times,
    lat: _Floats,
    lon: _Floats,
    now_us: int,
    params: Params,
    checkins: Sequence[PhoneMark] = (),
) -> DayRecord:
    """The shift as of `now_us`, from the phone's fixes (any order, any span) and accepted phone events."""
    as_of = to_time(now_us)
    if shift.status != "planned":
        return DayRecord(shift, as_of, None, None, 0.0, (shift.status,))
    start, end = to_us(shift.start), to_us(shift.end)
    window = shift.checkin_window_min * MIN_US
    s = _samples(grid, fix_time_us, lat, lon, checkins, start - window, min(end + window, now_us))

    first = np.flatnonzero(s.inside & (s.t < end))
    if not len(first):
        return DayRecord(shift, as_of, None, None, 0.0, (_arrival(start, None, now_us, shift),))
    check_in, ci_us = _mark(s, int(first[0])), int(s.t[first[0]])
    statuses = [_arrival(start, ci_us, now_us, shift)]
    check_out = None
    if now_us >= end:
        co = int(np.flatnonzero(s.inside)[-1])
        check_out = _mark(s, co)
        if int(s.t[co]) < end - shift.grace_min * MIN_US:
            statuses.append("early_leave")
    if start <= now_us < end:
        statuses.append("on_duty")
    a, b = max(start, ci_us), min(end, now_us)
    if a >= b:
        return DayRecord(shift, as_of, check_in, check_out, 0.0, tuple(statuses))
    return _during(shift, as_of, check_in, check_out, tuple(statuses), s, a, b, now_us < end, params)


def _arrival(start: int, ci_us: int | None, now_us: int, shift: PlannedShift) -> str:
    grace, absent = start + shift.grace_min * MIN_US, start + shift.absent_after_min * MIN_US
    if ci_us is not None:
        return "on_time" if ci_us <= grace else "late" if ci_us <= absent else "absent"
    return "absent" if now_us >= absent else "late" if now_us > grace else "not_started"


def _samples(
    grid: Shape | None,
    fix_time_us: _Times,
    lat: _Floats,
    lon: _Floats,
    checkins: Sequence[PhoneMark],
    since: int,
    until: int,
) -> _Samples:
    """Fixes and phone events from `since` to `until` (both included), in time order."""
    t = np.asarray(fix_time_us, dtype=np.int64)
    keep = (t >= since) & (t <= until)
    t, la, lo = t[keep], np.asarray(lat, dtype=np.float64)[keep], np.asarray(lon, dtype=np.float64)[keep]
    inside = grid.contains(la, lo) if grid is not None and len(t) else np.zeros(len(t), dtype=bool)
    # Phone events first: at the same time as a fix (an accepted event is stored as a fix too), they name it.
    marks = [m for m in checkins if since <= m.at_us <= until]
    source = np.concatenate([np.array([_SOURCES.index(m.kind) for m in marks], np.int8), np.zeros(len(t), np.int8)])
    t = np.concatenate([np.array([m.at_us for m in marks], dtype=np.int64), t])
    la = np.concatenate([np.array([m.lat for m in marks], dtype=np.float64), la])
    lo = np.concatenate([np.array([m.lon for m in marks], dtype=np.float64), lo])
    inside = np.concatenate([np.ones(len(marks), dtype=bool), inside])
    order = np.argsort(t, kind="stable")
    return _Samples(t[order], la[order], lo[order], inside[order], source[order])


def _mark(s: _Samples, i: int) -> Mark:
    return Mark(to_time(int(s.t[i])), float(s.lat[i]), float(s.lon[i]), _SOURCES[int(s.source[i])])


def _during(
    shift: PlannedShift,
    as_of: datetime,
    check_in: Mark,
    check_out: Mark | None,
    statuses: tuple[str, ...],
    s: _Samples,
    a: int,
    b: int,
    live: bool,
    params: Params,
) -> DayRecord:
    """Time on post and the spells between `a` (the later of start and check-in) and `b` (the earlier of
    end and now); `live`: `b` is now and the shift goes on."""
    k0 = int(np.searchsorted(s.t, a, side="right")) - 1  # the fix in force at `a` (the check-in at the latest)
    k1 = int(np.searchsorted(s.t, b, side="left"))  # fixes before `b`
    begins = np.concatenate([[a], s.t[k0 + 1 : k1]]).astype(np.int64)
    ends = np.concatenate([begins[1:], [b]]).astype(np.int64)
    inside, la, lo = s.inside[k0:k1], s.lat[k0:k1], s.lon[k0:k1]
    length = ends - begins
    offline = length > params.offline_min * MIN_US

    def spell(i: int, until: int) -> Spell:
        """From the start of segment i to `until`, where fix i was."""
        return Spell(to_time(int(begins[i])), to_time(until), live and until == b, float(la[i]), float(lo[i]))

    off_post = [
        spell(i, int(ends[j]))
        for i, j in _runs(~inside & ~offline)
        if ends[j] - begins[i] > params.off_post_min * MIN_US
    ]
    gaps = [spell(i, int(ends[i])) for i in np.flatnonzero(offline).tolist()]
    stationary = []
    for i, j in _runs(~offline):
        for anchor, leaves in _stays(la[i : j + 1], lo[i : j + 1], params.stationary_radius_m):
            until = int(begins[i + leaves]) if i + leaves <= j else int(ends[j])
            if until - begins[i + anchor] > params.stationary_min * MIN_US:
                stationary.append(spell(i + anchor, until))
    on_post = float(length[inside & ~offline].sum()) / MIN_US
    return DayRecord(shift, as_of, check_in, check_out, on_post, statuses, tuple(off_post), tuple(stationary),
                     tuple(gaps))  # fmt: skip


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _stays(lat: _Floats, lon: _Floats, radius_m: float) -> list[tuple[int, int]]:
    """Each stay as (its first fix, the first fix farther than the radius from it, or the number of fixes);
    the next stay begins at that fix. The look-ahead grows in chunks: a walk costs a few distances a fix."""
    out = []
    i, n = 0, len(lat)
    while i < n:
        j, step = i + 1, 16
        leaves = n
        while j < n:
            far = np.flatnonzero(haversine_m(lat[i], lon[i], lat[j : j + step], lon[j : j + step]) > radius_m)
            if len(far):
                leaves = j + int(far[0])
                break
            j, step = j + step, step * 2
        out.append((i, leaves))
        i = leaves
    return out
