"""The plan of one local day: weekly patterns, overrides, holidays and leave expanded into shifts.

Sans-I/O: the store reads a `Roster`; `expand` turns it into `PlannedShift` values. The rules:

- A person's regular shifts come from their own patterns that are valid on the day and list its
  weekday; on a day none of them covers, from their team's (the patterns of their unit and team).
- An override `replace` turns the day's regular shifts into one, with the override's start, end and
  grid where it gives them, else the earliest regular shift's (without a regular shift it needs all
  three); `cancel` marks the regular shifts cancelled; `extra` adds a shift besides them.
- A holiday for every unit, or for the person's unit or a unit above it, marks the regular shifts
  (replaced ones too) holiday; extra shifts stand (holiday duty is planned as extras).
- Leave covering the day marks every shift still planned as leave.

Times are local wall-clock times in the configured zone: a shift whose end is at or before its start
ends on the next day, and its UTC span follows the zone's offset at each end (a night shift over a
daylight saving change is an hour shorter or longer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from attendance.model import PlannedShift

DEFAULT_GRACE_MIN = 5
DEFAULT_CHECKIN_WINDOW_MIN = 30
DEFAULT_ABSENT_AFTER_MIN = 60
OVERRIDE_KINDS = ("replace", "cancel", "extra")


@dataclass(frozen=True, slots=True)
class Person:
    id: int
    code: str
    name: str
    org_unit_id: int | None
    team: str | None
    device_id: int | None


@dataclass(frozen=True, slots=True)
class Pattern:
    """A weekly schedule of one person (`staff_id`) or of a team (`org_unit_id` and `team`)."""

    id: int
    staff_id: int | None
    org_unit_id: int | None
    team: str | None
    weekdays: frozenset[int]  # ISO: 1 Monday .. 7 Sunday, of the day the shift starts
    start: time
    end: time
    zone_id: int
    valid_from: date
    valid_until: date | None = None
    grace_min: int = DEFAULT_GRACE_MIN
    checkin_window_min: int = DEFAULT_CHECKIN_WINDOW_MIN
    absent_after_min: int = DEFAULT_ABSENT_AFTER_MIN

    def covers(self, day: date) -> bool:
        return (
            day.isoweekday() in self.weekdays
            and self.valid_from <= day
            and (self.valid_until is None or day <= self.valid_until)
        )


@dataclass(frozen=True, slots=True)
class Override:
    staff_id: int
    day: date
    kind: str  # one of OVERRIDE_KINDS
    start: time | None = None
    end: time | None = None
    zone_id: int | None = None


@dataclass(frozen=True, slots=True)
class Holiday:
    day: date
    org_unit_id: int | None  # None: every unit; else that unit and the units below it
    name: str = ""


@dataclass(frozen=True, slots=True)
class Leave:
    staff_id: int
    first_day: date
    last_day: date  # inclusive
    kind: str


@dataclass(frozen=True, slots=True)
class Roster:
    """Everything the plan of some days depends on (the store may pass more than those days need)."""

    people: Sequence[Person]  # the enabled ones to plan for
    patterns: Sequence[Pattern] = ()
    overrides: Sequence[Override] = ()
    holidays: Sequence[Holiday] = ()
    leave: Sequence[Leave] = ()
    unit_parents: Mapping[int, int | None] = field(default_factory=dict)  # unit id -> parent id


@dataclass(frozen=True, slots=True)
class _Shift:
    start: time
    end: time
    zone_id: int
    grace_min: int = DEFAULT_GRACE_MIN
    checkin_window_min: int = DEFAULT_CHECKIN_WINDOW_MIN
    absent_after_min: int = DEFAULT_ABSENT_AFTER_MIN


def span(day: date, start: time, end: time, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC start and end of a shift from `start` to `end` local time beginning on `day` (an end at or
    before the start is on the next day). A local time that a daylight saving change skips is read with
    the offset before the change (02:30 becomes 03:30 summer time); one it repeats, as the first of the two."""
    first = datetime.combine(day, start, tzinfo=tz)
    last = datetime.combine(day + timedelta(days=1) if end <= start else day, end, tzinfo=tz)
    return first.astimezone(UTC), last.astimezone(UTC)


def units_up(unit_id: int | None, parents: Mapping[int, int | None]) -> set[int]:
    """The unit and every unit above it."""
    found: set[int] = set()
    while unit_id is not None and unit_id not in found:  # the seen check ends a cycle an import made
        found.add(unit_id)
        unit_id = parents.get(unit_id)
    return found


def _regular(own: list[Pattern], team: list[Pattern], change: Override | None) -> list[_Shift]:
    patterns = sorted(own or team, key=lambda p: (p.start, p.id))
    shifts = [
        _Shift(p.start, p.end, p.zone_id, p.grace_min, p.checkin_window_min, p.absent_after_min) for p in patterns
    ]
    if change is None or change.kind != "replace":
        return shifts
    if not shifts:  # nothing to take what the override leaves out from
        if change.start is None or change.end is None or change.zone_id is None:
            return []
        return [_Shift(change.start, change.end, change.zone_id)]
    first = shifts[0]
    return [
        replace(
            first,
            start=first.start if change.start is None else change.start,
            end=first.end if change.end is None else change.end,
            zone_id=first.zone_id if change.zone_id is None else change.zone_id,
        )
    ]


def expand(day: date, tz: ZoneInfo, roster: Roster) -> list[PlannedShift]:
    """Every shift of the roster's people that starts on the local `day`, by start time then person code."""
    own: dict[int, list[Pattern]] = {}
    teams: dict[tuple[int, str | None], list[Pattern]] = {}
    for p in roster.patterns:
        if not p.covers(day):
            continue
        if p.staff_id is not None:
            own.setdefault(p.staff_id, []).append(p)
        elif p.org_unit_id is not None and p.team is not None:
            teams.setdefault((p.org_unit_id, p.team), []).append(p)
    changes: dict[int, Override] = {}
    extras: dict[int, list[Override]] = {}
    for o in roster.overrides:
        if o.day != day:
            continue
        if o.kind == "extra":
            extras.setdefault(o.staff_id, []).append(o)
        elif o.kind == "cancel" or o.staff_id not in changes:  # a cancel wins over a replace
            changes[o.staff_id] = o
    holiday_units = {h.org_unit_id for h in roster.holidays if h.day == day}
    leave_kind: dict[int, str] = {}
    for lv in sorted(roster.leave, key=lambda lv: lv.first_day):
        if lv.first_day <= day <= lv.last_day:
            leave_kind.setdefault(lv.staff_id, lv.kind)

    out: list[PlannedShift] = []
    for person in roster.people:
        team = teams.get((person.org_unit_id, person.team), []) if person.org_unit_id is not None else []
        change = changes.get(person.id)
        if change is not None and change.kind == "cancel":
            regular_status = "cancelled"
        elif None in holiday_units or holiday_units & units_up(person.org_unit_id, roster.unit_parents):
            regular_status = "holiday"
        else:
            regular_status = "planned"
        on_leave = leave_kind.get(person.id)
        planned = [(s, regular_status) for s in _regular(own.get(person.id, []), team, change)]
        planned += [
            (_Shift(o.start, o.end, o.zone_id), "planned")
            for o in extras.get(person.id, [])
            if o.start is not None and o.end is not None and o.zone_id is not None
        ]
        for shift, status in planned:
            start, end = span(day, shift.start, shift.end, tz)
            if end <= start:  # wholly inside the hour a daylight saving change skips: no time to work
                continue
            if status == "planned" and on_leave is not None:
                status = "leave"
            out.append(
                PlannedShift(
                    person_id=person.id,
                    person_code=person.code,
                    person_name=person.name,
                    org_unit_id=person.org_unit_id,
                    device_id=person.device_id,
                    day=day,
                    start=start,
                    end=end,
                    zone_id=shift.zone_id,
                    grace_min=shift.grace_min,
                    checkin_window_min=shift.checkin_window_min,
                    absent_after_min=shift.absent_after_min,
                    status=status,
                    leave_kind=on_leave if status == "leave" else None,
                )
            )
    out.sort(key=lambda s: (s.start, s.person_code, s.end))
    return out


def days(first: date, last: date) -> list[date]:
    """The local days from first to last, inclusive."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
