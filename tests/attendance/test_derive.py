"""A team's scripted day judged from the phones' fixes (attendance.derive), the claims the phones make
(attendance.checkin) and the alerts it calls for (attendance.alerting): exact answers, no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from attendance import checkin
from attendance.alerting import wanted
from attendance.derive import DayRecord, PhoneMark, Spell, derive, to_us
from attendance.model import PlannedShift
from attendance.params import Judges, Params
from geofence.shapes import from_json, haversine_m
from store.alerts import Rule
from store.attendance_events import Event
from store.users import Unit
from tests.attendance import team_day
from tests.attendance.team_day import ABSENT, CENTRE, GRACE, TEAM, WINDOW, Leg, Person, fixes, local, patrol, when

DAY = date(2026, 3, 29)  # much of the world moves its clocks that night; Shanghai does not
GRID = from_json(team_day.GRID_SHAPE)
UNIT, ZONE = 7, 501
AFTER = local(DAY, "12:00", 1)  # the next noon: every shift of the day is over


def planned(p: Person, day: date = DAY) -> PlannedShift:
    start, end = team_day.shift_of(p)
    return PlannedShift(
        person_id=int(p.code[1:]),
        person_code=p.code,
        person_name=p.name,
        org_unit_id=UNIT,
        device_id=100 + int(p.code[1:]),
        day=day,
        start=local(day, start),
        end=local(day, end, 1 if end <= start else 0),
        zone_id=ZONE,
        grace_min=GRACE,
        checkin_window_min=WINDOW,
        absent_after_min=ABSENT,
        status="leave" if p.leave else "planned",
        leave_kind=p.leave,
    )


def claims(p: Person) -> tuple[list[PhoneMark], list[Event]]:
    """The phone's claims judged as the server judges them: the accepted ones, and the refused ones as stored."""
    shift, track = planned(p), fixes(p, DAY)
    accepted, refused = [], []
    for i, c in enumerate(p.claims):
        at = team_day.when(DAY, c.at)
        before = [f for f in track if f[0] < at]
        claim = checkin.Claim(c.kind, at, c.place[0], c.place[1], c.mock)
        shown = checkin.shift_at([shift], shift.device_id or 0, at)
        verdict = checkin.judge(claim, shown, GRID, before[-1] if before else None, Params().max_walk_kmh)
        if verdict.accepted:
            accepted.append(PhoneMark(to_us(at), c.place[0], c.place[1], c.kind))
        else:
            refused.append(Event(i, shift.person_id, shift.device_id or 0, c.kind, at, c.place[0], c.place[1], None,
                                 False, verdict.reason, c.mock, verdict.speed_kmh, ZONE, at))  # fmt: skip
    return accepted, refused


def judge(p: Person, now: datetime, params: Params | None = None) -> DayRecord:
    track = fixes(p, DAY)
    t = np.array([to_us(f[0]) for f in track], dtype=np.int64)
    lat, lon = np.array([f[1] for f in track]), np.array([f[2] for f in track])
    return derive(planned(p), GRID, t, lat, lon, to_us(now), params or Params(), claims(p)[0])


def spell(s: Spell) -> dict[str, Any]:
    return {"start": s.start, "end": s.end, "minutes": s.minutes, "ongoing": s.ongoing, "place": (s.lat, s.lon)}


def report(r: DayRecord) -> dict[str, Any]:
    def mark(m: Any) -> Any:
        return None if m is None else {"at": m.at, "by": m.source}

    return {"check_in": mark(r.check_in), "check_out": mark(r.check_out), "minutes_on_post": r.minutes_on_post,
            "statuses": list(r.statuses), "off_post": [spell(s) for s in r.off_post]}  # fmt: skip


def expected(p: Person) -> dict[str, Any]:
    def at(m: Any) -> Any:
        return None if m is None else {"at": when(DAY, m["at"]), "by": m["by"]}

    e = p.expect
    spells = [{**s, "start": when(DAY, s["start"]), "end": when(DAY, s["end"])} for s in e["off_post"]]
    return {**e, "check_in": at(e["check_in"]), "check_out": at(e["check_out"]), "off_post": spells}


@pytest.mark.parametrize("person", TEAM, ids=[p.code for p in TEAM])
def test_the_scripted_day(person: Person) -> None:
    record = judge(person, AFTER)
    assert report(record) == expected(person)
    assert record.stationary == () and record.offline == ()


def test_shanghai_days_are_utc_plus_eight_whatever_other_zones_do() -> None:
    early, night = planned(team_day.BY_CODE["A09"]), planned(team_day.BY_CODE["A08"])
    assert early.start == datetime(2026, 3, 28, 22, 0, tzinfo=UTC)  # the day's first shift starts on UTC's day before
    assert night.end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # and its last ends on the local day after
    assert early.end - early.start == night.end - night.start == timedelta(hours=8)
    first = judge(team_day.BY_CODE["A09"], AFTER).check_in
    assert first is not None and first.at == datetime(2026, 3, 28, 21, 52, tzinfo=UTC) and first.source == "checkin"


def _statuses(code: str, hhmm: str, days: int = 0) -> list[str]:
    return list(judge(team_day.BY_CODE[code], local(DAY, hhmm, days)).statuses)


def test_as_of_a_moment_of_the_day() -> None:
    assert _statuses("A03", "07:59") == ["not_started"]
    assert _statuses("A03", "08:05") == ["not_started"]  # within the grace
    assert _statuses("A03", "08:06") == ["late"]  # not come yet
    assert _statuses("A03", "08:59") == ["late"]
    assert _statuses("A03", "09:00") == ["absent"]  # only once start + absent_after has passed
    assert _statuses("A01", "07:55") == ["on_time"]  # checked in; the shift has not begun
    assert _statuses("A01", "12:00") == ["on_time", "on_duty"]
    assert _statuses("A05", "15:59") == ["on_time", "on_duty"]  # early leave only once the shift has ended
    assert _statuses("A05", "16:00") == ["on_time", "early_leave"]
    assert _statuses("A08", "23:30") == ["on_time", "on_duty"]
    assert _statuses("A08", "05:59", 1) == ["on_time", "on_duty"]

    away = team_day.BY_CODE["A06"]
    assert judge(away, local(DAY, "10:15")).off_post == ()  # 15 minutes is not more than 15
    going = judge(away, local(DAY, "10:16"))
    assert [spell(s) for s in going.off_post] == [
        {
            "start": local(DAY, "10:00"),
            "end": local(DAY, "10:16"),
            "minutes": 16.0,
            "ongoing": True,
            "place": team_day.SHOP,
        }
    ]
    assert going.minutes_on_post == 120.0 and going.check_out is None
    night = judge(team_day.BY_CODE["A08"], local(DAY, "23:00"))
    assert night.minutes_on_post == 60.0 and night.check_in is not None


def test_standing_still_and_a_phone_gone_quiet() -> None:
    legs = (Leg((0, "07:50"), (0, "08:59"), "patrol"), Leg((0, "09:00"), (0, "09:44"), CENTRE),
            Leg((0, "09:45"), (0, "10:59"), "patrol"), Leg((0, "11:31"), (0, "16:00"), "patrol"))  # fmt: skip
    p = Person("B01", "孙丽", None, legs=legs)
    record = judge(p, AFTER)
    assert [spell(s) for s in record.stationary] == [
        {"start": local(DAY, "09:00"), "end": local(DAY, "09:45"), "minutes": 45.0, "ongoing": False, "place": CENTRE}
    ]
    quiet = patrol(local(DAY, "10:59"))
    assert [spell(s) for s in record.offline] == [
        {"start": local(DAY, "10:59"), "end": local(DAY, "11:31"), "minutes": 32.0, "ongoing": False, "place": quiet}
    ]
    assert record.minutes_on_post == 480.0 - 32.0 and record.off_post == ()
    assert [s.ongoing for s in judge(p, local(DAY, "09:40")).stationary] == [True]
    assert [spell(s) for s in judge(p, local(DAY, "11:20")).offline] == [
        {"start": local(DAY, "10:59"), "end": local(DAY, "11:20"), "minutes": 21.0, "ongoing": True, "place": quiet}
    ]
    looser = judge(p, AFTER, Params(stationary_min=60, offline_min=40))
    assert looser.stationary == () and looser.offline == () and looser.minutes_on_post == 480.0


def _alerts(now: datetime) -> set[tuple[str, str, datetime, datetime | None]]:
    out = set()
    for p in TEAM:
        for w in wanted(judge(p, now), claims(p)[1]):
            out.add((p.code, w.kind, w.started, w.ended))
            assert w.evidence["shift"]["person_code"] == p.code
    return out


def test_the_alerts_of_the_day() -> None:
    assert _alerts(AFTER) == {(c, k, when(DAY, s), when(DAY, e)) for c, k, s, e in team_day.ALERTS}
    fake = [w for w in wanted(judge(team_day.BY_CODE["A07"], AFTER), claims(team_day.BY_CODE["A07"])[1])
            if w.kind == "fake_checkin"]  # fmt: skip
    assert fake[0].evidence["reason"] == "implausible_move" and fake[0].evidence["speed_kmh"] > 400
    assert (fake[0].evidence["lat"], fake[0].evidence["lon"]) == CENTRE


def test_the_alerts_while_the_day_goes_on() -> None:
    t = lambda hhmm: local(DAY, hhmm)  # noqa: E731
    assert _alerts(t("08:10")) == {
        ("A02", "late", t("08:05"), None),
        ("A03", "late", t("08:05"), None),
        ("A07", "late", t("08:05"), None),
        ("A07", "fake_checkin", t("07:58"), t("07:58")),
    }
    assert _alerts(t("10:16")) == {
        ("A02", "late", t("08:05"), t("08:20")),
        ("A03", "late", t("08:05"), t("09:00")),
        ("A03", "absent", t("09:00"), None),
        ("A06", "off_post", t("10:00"), None),
        ("A07", "fake_checkin", t("07:58"), t("07:58")),
        ("A07", "late", t("08:05"), t("09:00")),
        ("A07", "absent", t("09:00"), None),
    }


def test_a_check_in_after_the_absence_limit_is_an_absence_with_its_arrival() -> None:
    p = Person("B02", "吴刚", None, legs=(Leg((0, "09:30"), (0, "16:00"), "patrol"),))
    record = judge(p, AFTER)
    assert record.statuses == ("absent",) and record.check_in is not None
    assert record.minutes_on_post == 390.0
    got = {(w.kind, w.started, w.ended) for w in wanted(record)}
    assert got == {("late", local(DAY, "08:05"), local(DAY, "09:00")),
                   ("absent", local(DAY, "09:00"), local(DAY, "09:30"))}  # fmt: skip


def test_excused_shifts_are_their_status() -> None:
    for status in ("leave", "holiday", "cancelled"):
        shift = replace(planned(team_day.BY_CODE["A01"]), status=status)
        record = derive(shift, GRID, np.array([to_us(AFTER)]), np.array([22.543]), np.array([114.053]),
                        to_us(AFTER), Params())  # fmt: skip
        assert record.statuses == (status,) and record.check_in is None and wanted(record) == []


def test_without_a_grid_nothing_is_inside() -> None:
    p = team_day.BY_CODE["A01"]
    track = fixes(p, DAY)
    t = np.array([to_us(f[0]) for f in track], dtype=np.int64)
    record = derive(planned(p), None, t, np.array([f[1] for f in track]), np.array([f[2] for f in track]),
                    to_us(AFTER), Params())  # fmt: skip
    assert record.statuses == ("absent",)


# --- phone claims -------------------------------------------------------------------------------------------


def test_claims_judged() -> None:
    shift = planned(team_day.BY_CODE["A01"])
    at = local(DAY, "07:58")
    near = (at - timedelta(minutes=1), 22.5428, 114.0530)  # 22 m away a minute ago

    def verdict(lat: float, lon: float, *, mock: bool = False, previous: Any = near, **kw: Any) -> checkin.Verdict:
        claim = checkin.Claim("checkin", kw.get("at", at), lat, lon, mock)
        return checkin.judge(claim, kw.get("shift", shift), GRID, previous, 25.0)

    assert verdict(*CENTRE) == checkin.Verdict(True, None, 0.0)
    assert verdict(*CENTRE, previous=None) == checkin.Verdict(True, None, None)
    assert verdict(*CENTRE, mock=True).reason == "mock_location"
    assert verdict(*CENTRE, shift=None).reason == "no_shift"
    assert verdict(*team_day.SHOP).reason == "outside_grid"
    from_home = verdict(*CENTRE, previous=(at - timedelta(minutes=1), *team_day.HOME))
    across = float(haversine_m(*team_day.HOME, *CENTRE))
    assert from_home.reason == "implausible_move" and from_home.speed_kmh == round((across - 50) / 1000 * 60, 1)
    quarter = verdict(*CENTRE, previous=(at - timedelta(minutes=15), *team_day.HOME))  # 31.6 km/h: still too fast
    assert quarter.reason == "implausible_move"
    by_bike = verdict(*CENTRE, previous=(at - timedelta(minutes=30), *team_day.HOME))  # 15.8 km/h: an e-bike
    assert by_bike.accepted and by_bike.speed_kmh == 15.8
    assert {"mock_location", "implausible_move"} == checkin.FAKE


def test_the_shift_a_claim_belongs_to() -> None:
    early, late = planned(team_day.BY_CODE["A09"]), planned(team_day.BY_CODE["A08"])
    phone = early.device_id or 0
    late = replace(late, device_id=phone)  # one person, two shifts
    assert checkin.shift_at([early, late], phone, early.start - timedelta(minutes=WINDOW)) == early
    assert checkin.shift_at([early, late], phone, early.start - timedelta(minutes=WINDOW + 1)) is None
    assert checkin.shift_at([early, late], phone, late.end + timedelta(minutes=WINDOW)) == late
    assert checkin.shift_at([early, late], phone + 1, early.start) is None
    assert checkin.shift_at([replace(early, status="leave")], phone, early.start) is None


# --- which rule judges -----------------------------------------------------------------------------------------


def _rule(
    rule_id: int, unit: int | None, *, kinds: list[str] | None = None, enabled: bool = True, **params: Any
) -> Rule:
    return Rule(rule_id, f"r{rule_id}", "attendance", params, kinds, unit, 2, enabled)


def test_the_rule_nearest_the_persons_unit_judges() -> None:
    units = [Unit(1, "city", "City", None), Unit(2, "futian", "Futian", 1), Unit(3, "t1", "Team 1", 2),
             Unit(4, "nanshan", "Nanshan", 1)]  # fmt: skip
    city, district = _rule(10, None, off_post_min=15), _rule(11, 2, off_post_min=10)
    team_off = _rule(12, 3, enabled=False, off_post_min=5)
    bikes = _rule(13, 3, kinds=["enforcement"], off_post_min=30)
    other = Rule(14, "speed", "overspeed", {}, None, None, 2, True)
    judges = Judges([city, district, team_off, bikes, other], units)
    assert judges.rule(3, "inspector") == district
    assert judges.rule(3, "enforcement") == bikes
    assert judges.rule(4, "inspector") == city
    assert judges.rule(None, "inspector") == city
    assert judges.params(3, "inspector") == Params(off_post_min=10)
    assert Judges([other], units).params(3, "inspector") == Params()
    assert Params.of({"off_post_min": "20", "offline_min": True, "stationary_min": -1, "max_walk_kmh": 15}) == Params(
        max_walk_kmh=15
    )
