"""The plan of a day from patterns, overrides, holidays and leave: pure, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from attendance.model import PlannedShift
from attendance.plan import Holiday, Leave, Override, Pattern, Person, Roster, expand, span

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = date(2026, 11, 23)
SATURDAY = date(2026, 11, 21)
GRID, OTHER_GRID = 501, 502

# Units: city 1 -> district 10 -> team unit 11; city 1 -> district 20.
PARENTS: dict[int, int | None] = {1: None, 10: 1, 11: 10, 20: 1}
ZHANG = Person(1, "S001", "张三", 10, "A", 900)
LI = Person(2, "S002", "李四", 10, "A", None)
WANG = Person(3, "S003", "王五", 20, "A", 902)  # team A of another unit
ZHAO = Person(4, "S004", "赵六", 11, None, 903)


def _utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def _pattern(
    pid: int,
    start: time,
    end: time,
    *,
    staff: int | None = None,
    unit: int | None = None,
    team: str | None = None,
    weekdays: tuple[int, ...] = (1, 2, 3, 4, 5),
    zone: int = GRID,
    valid_from: date = date(2026, 1, 1),
    valid_until: date | None = None,
    grace: int = 5,
) -> Pattern:
    return Pattern(
        pid, staff, unit, team, frozenset(weekdays), start, end, zone, valid_from, valid_until, grace_min=grace
    )


def _one(shifts: list[PlannedShift], person: Person) -> PlannedShift:
    mine = [s for s in shifts if s.person_id == person.id]
    assert len(mine) == 1, mine
    return mine[0]


def _moved(o: Override, day: date) -> Override:
    return Override(o.staff_id, day, o.kind, o.start, o.end, o.zone_id)


def test_weekday_schedule_in_local_time() -> None:
    roster = Roster(
        [ZHANG],
        [_pattern(1, time(8), time(17), staff=ZHANG.id, valid_until=date(2026, 12, 31), grace=7)],
        unit_parents=PARENTS,
    )
    (shift,) = expand(MONDAY, SHANGHAI, roster)
    assert shift == PlannedShift(
        person_id=1,
        person_code="S001",
        person_name="张三",
        org_unit_id=10,
        device_id=900,
        day=MONDAY,
        start=_utc(2026, 11, 23, 0),  # 08:00 in UTC+8
        end=_utc(2026, 11, 23, 9),
        zone_id=GRID,
        grace_min=7,
        checkin_window_min=30,
        absent_after_min=60,
        status="planned",
        leave_kind=None,
    )
    assert expand(SATURDAY, SHANGHAI, roster) == []  # not a listed weekday
    assert expand(date(2025, 12, 29), SHANGHAI, roster) == []  # a Monday before valid_from
    assert expand(date(2027, 1, 4), SHANGHAI, roster) == []  # a Monday after valid_until
    assert [s.day for s in expand(date(2026, 12, 31), SHANGHAI, roster)] == [date(2026, 12, 31)]  # last valid day


def test_team_pattern_and_a_persons_own_pattern_first() -> None:
    team = _pattern(1, time(7), time(15), unit=10, team="A", weekdays=(1, 2, 3, 4, 5, 6, 7))
    own = _pattern(2, time(9), time(18), staff=LI.id, weekdays=(1,), zone=OTHER_GRID)
    roster = Roster([ZHANG, LI, WANG, ZHAO], [team, own], unit_parents=PARENTS)

    monday = expand(MONDAY, SHANGHAI, roster)
    assert [(s.person_code, s.start.hour, s.zone_id) for s in monday] == [
        ("S001", 23, GRID),  # 07:00 local is 23:00Z the day before
        ("S002", 1, OTHER_GRID),  # Li's own Monday pattern instead of the team's
    ]
    assert monday[0].start == _utc(2026, 11, 22, 23)
    # Tuesday: Li's own pattern does not cover it, so the team's applies. Wang's team A is another
    # unit's; Zhao has no team.
    tuesday = expand(MONDAY + timedelta(days=1), SHANGHAI, roster)
    assert [(s.person_code, s.zone_id) for s in tuesday] == [("S001", GRID), ("S002", GRID)]


def test_replace_override() -> None:
    pattern = _pattern(1, time(8), time(17), staff=ZHANG.id, grace=10)
    zone_only = Override(ZHANG.id, MONDAY, "replace", zone_id=OTHER_GRID)
    shift = _one(expand(MONDAY, SHANGHAI, Roster([ZHANG], [pattern], [zone_only])), ZHANG)
    assert (shift.start, shift.end, shift.zone_id, shift.grace_min) == (
        _utc(2026, 11, 23, 0),
        _utc(2026, 11, 23, 9),
        OTHER_GRID,
        10,  # the pattern's timings stay
    )
    later = Override(ZHANG.id, MONDAY, "replace", start=time(10), end=time(19))
    shift = _one(expand(MONDAY, SHANGHAI, Roster([ZHANG], [pattern], [later])), ZHANG)
    assert (shift.start, shift.end, shift.zone_id) == (_utc(2026, 11, 23, 2), _utc(2026, 11, 23, 11), GRID)
    # Only on its day.
    assert _one(expand(MONDAY + timedelta(days=1), SHANGHAI, Roster([ZHANG], [pattern], [later])), ZHANG).start == (
        _utc(2026, 11, 24, 0)
    )
    # Without a regular shift a replace needs start, end and grid.
    full = Override(ZHANG.id, SATURDAY, "replace", start=time(9), end=time(12), zone_id=OTHER_GRID)
    shift = _one(expand(SATURDAY, SHANGHAI, Roster([ZHANG], [pattern], [full])), ZHANG)
    assert (shift.start, shift.zone_id, shift.grace_min, shift.status) == (
        _utc(2026, 11, 21, 1),
        OTHER_GRID,
        5,
        "planned",
    )
    partial = Override(ZHANG.id, SATURDAY, "replace", start=time(9))
    assert expand(SATURDAY, SHANGHAI, Roster([ZHANG], [pattern], [partial])) == []


def test_cancel_and_extra() -> None:
    pattern = _pattern(1, time(8), time(17), staff=ZHANG.id)
    cancel = Override(ZHANG.id, MONDAY, "cancel")
    extra = Override(ZHANG.id, MONDAY, "extra", start=time(19), end=time(21), zone_id=OTHER_GRID)
    shifts = expand(MONDAY, SHANGHAI, Roster([ZHANG, LI], [pattern], [cancel, extra]))
    assert [(s.status, s.zone_id, s.start) for s in shifts] == [
        ("cancelled", GRID, _utc(2026, 11, 23, 0)),  # still listed, so a report can say why there was no duty
        ("planned", OTHER_GRID, _utc(2026, 11, 23, 11)),
    ]
    # An extra shift on a day without any pattern.
    (only,) = expand(SATURDAY, SHANGHAI, Roster([ZHANG], [pattern], [_moved(extra, SATURDAY)]))
    assert (only.day, only.status, only.grace_min) == (SATURDAY, "planned", 5)


def test_holiday_for_one_unit_and_below() -> None:
    every_day = (1, 2, 3, 4, 5, 6, 7)
    patterns = [
        _pattern(1, time(8), time(17), staff=ZHANG.id, weekdays=every_day),
        _pattern(2, time(8), time(17), staff=WANG.id, weekdays=every_day),
        _pattern(3, time(8), time(17), staff=ZHAO.id, weekdays=every_day),
    ]
    district_10 = Holiday(MONDAY, 10, "区级调休")
    extra = Override(ZHANG.id, MONDAY, "extra", start=time(18), end=time(20), zone_id=GRID)
    shifts = expand(MONDAY, SHANGHAI, Roster([ZHANG, WANG, ZHAO], patterns, [extra], [district_10], (), PARENTS))
    assert [(s.person_code, s.status) for s in shifts] == [
        ("S001", "holiday"),
        ("S003", "planned"),  # district 20: not on holiday
        ("S004", "holiday"),  # unit 11 is below district 10
        ("S001", "planned"),  # holiday duty, planned as an extra
    ]
    everyone = Holiday(MONDAY, None, "元旦")
    shifts = expand(MONDAY, SHANGHAI, Roster([ZHANG, WANG, ZHAO], patterns, (), [everyone], (), PARENTS))
    assert {s.status for s in shifts} == {"holiday"}
    # The next day is no holiday.
    shifts = expand(MONDAY + timedelta(days=1), SHANGHAI, Roster([ZHANG], patterns, (), [district_10], (), PARENTS))
    assert [s.status for s in shifts] == ["planned"]


def test_leave() -> None:
    pattern = _pattern(1, time(8), time(17), staff=ZHANG.id)
    pattern_li = _pattern(2, time(8), time(17), staff=LI.id)
    sick = Leave(ZHANG.id, MONDAY, MONDAY + timedelta(days=2), "sick")
    roster = Roster([ZHANG, LI], [pattern, pattern_li], leave=[sick])
    monday = expand(MONDAY, SHANGHAI, roster)
    assert [(s.person_code, s.status, s.leave_kind) for s in monday] == [
        ("S001", "leave", "sick"),
        ("S002", "planned", None),
    ]
    assert _one(expand(MONDAY + timedelta(days=2), SHANGHAI, roster), ZHANG).status == "leave"  # last day inclusive
    assert _one(expand(MONDAY + timedelta(days=3), SHANGHAI, roster), ZHANG).status == "planned"
    cancelled = Roster([ZHANG], [pattern], [Override(ZHANG.id, MONDAY, "cancel")], leave=[sick])
    assert [(s.status, s.leave_kind) for s in expand(MONDAY, SHANGHAI, cancelled)] == [("cancelled", None)]


def test_night_shift_crosses_midnight() -> None:
    night = _pattern(1, time(22), time(6), staff=ZHANG.id, weekdays=(6,))
    roster = Roster([ZHANG], [night])
    (shift,) = expand(SATURDAY, SHANGHAI, roster)
    # 22:00 on the 21st to 06:00 on the 22nd in UTC+8.
    assert (shift.day, shift.start, shift.end) == (SATURDAY, _utc(2026, 11, 21, 14), _utc(2026, 11, 21, 22))
    assert expand(SATURDAY + timedelta(days=1), SHANGHAI, roster) == []  # it belongs to the day it starts on
    # End equal to start: a whole day.
    assert span(SATURDAY, time(7), time(7), SHANGHAI) == (_utc(2026, 11, 20, 23), _utc(2026, 11, 21, 23))


def test_daylight_saving_days_in_berlin() -> None:
    # 2026-03-29 03:00 CEST follows 01:59:59 CET; 2026-10-25 02:00 CET follows 02:59:59 CEST.
    every_day = frozenset(range(1, 8))
    night = Pattern(1, ZHANG.id, None, None, every_day, time(22), time(6), GRID, date(2026, 1, 1))
    day = Pattern(2, LI.id, None, None, every_day, time(8), time(16), GRID, date(2026, 1, 1))
    roster = Roster([ZHANG, LI], [night, day])

    def spans(d: date) -> dict[str, tuple[datetime, datetime]]:
        return {s.person_code: (s.start, s.end) for s in expand(d, BERLIN, roster)}

    before = spans(date(2026, 3, 28))
    assert before["S002"] == (_utc(2026, 3, 28, 7), _utc(2026, 3, 28, 15))  # CET, UTC+1
    assert before["S001"] == (_utc(2026, 3, 28, 21), _utc(2026, 3, 29, 4))  # into summer time: 7 hours
    change_day = spans(date(2026, 3, 29))
    assert change_day["S002"] == (_utc(2026, 3, 29, 6), _utc(2026, 3, 29, 14))  # CEST, UTC+2
    assert change_day["S001"] == (_utc(2026, 3, 29, 20), _utc(2026, 3, 30, 4))
    autumn = spans(date(2026, 10, 24))
    assert autumn["S001"] == (_utc(2026, 10, 24, 20), _utc(2026, 10, 25, 5))  # back to winter time: 9 hours
    assert spans(date(2026, 10, 25))["S002"] == (_utc(2026, 10, 25, 7), _utc(2026, 10, 25, 15))

    # A start in the skipped hour is read as if the clocks had not changed yet (02:30 CET = 03:30 CEST) ...
    assert span(date(2026, 3, 29), time(2, 30), time(4), BERLIN) == (_utc(2026, 3, 29, 1, 30), _utc(2026, 3, 29, 2))
    # ... and a shift wholly inside that hour has no time to work.
    lost = Pattern(3, ZHANG.id, None, None, every_day, time(2, 30), time(3), GRID, date(2026, 1, 1))
    assert expand(date(2026, 3, 29), BERLIN, Roster([ZHANG], [lost])) == []
    # A repeated time is its first occurrence (02:30 CEST).
    assert span(date(2026, 10, 25), time(2, 30), time(5), BERLIN)[0] == _utc(2026, 10, 25, 0, 30)
