"""A team's scripted day in Futian, Shenzhen (Asia/Shanghai): every phone's fixes minute by minute, the
phones' check-ins, and exactly what attendance must make of them.

Shared by the unit tests of attendance.derive and the end-to-end test against the server. The team
works 08:00-16:00 in one duty grid (grace 5 min, check-in window 30 min, absent after 60 min); two of
them have shifts of their own: a night shift over midnight, and an early one that starts at 06:00
local time, 22:00 UTC of the day before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")  # no daylight saving: every local day is 24 hours, UTC+8
GRID_SHAPE = {
    "polygon": {
        "type": "Polygon",
        "coordinates": [
            [[114.050, 22.540], [114.056, 22.540], [114.056, 22.546], [114.050, 22.546], [114.050, 22.540]]
        ],
    }
}
CENTRE = (22.543, 114.053)
APPROACH = (22.538, 114.053)  # a street corner 220 m south of the grid
SHOP = (22.550, 114.053)  # a shop 440 m north of it
HOME = (22.600, 114.100)  # across town, about 8 km away
EDGE = (22.5405, 114.053)  # inside, 55 m from the south edge
GRACE, WINDOW, ABSENT = 5, 30, 60
Place = tuple[float, float] | str  # a point, or "patrol": walking a loop inside the grid


def patrol(t: datetime) -> tuple[float, float]:
    """Walking a 150 m circle around the grid's centre, once every 14 minutes (67 m a minute)."""
    angle = 2 * math.pi * ((t.timestamp() / 60) % 14) / 14
    return CENTRE[0] + 0.00135 * math.sin(angle), CENTRE[1] + 0.00146 * math.cos(angle)


def local(day: date, hhmm: str, days: int = 0) -> datetime:
    """A local wall-clock time of `day` (plus `days`), in UTC."""
    wall = datetime.combine(day + timedelta(days=days), time.fromisoformat(hhmm), TZ)
    return wall.astimezone(UTC)


@dataclass(frozen=True)
class Leg:
    first: tuple[int, str]  # (days after the day, "HH:MM"): the first fix, then one a minute
    last: tuple[int, str]  # the last fix, included
    place: Place


@dataclass(frozen=True)
class Claim:
    """A phone's check-in message: where it says it is."""

    at: tuple[int, str]
    place: tuple[float, float]
    kind: str = "checkin"
    mock: bool = False


@dataclass(frozen=True)
class Person:
    code: str
    name: str
    shift: tuple[str, str] | None  # a pattern of their own (local start, end); None: the team's
    legs: tuple[Leg, ...] = ()
    claims: tuple[Claim, ...] = ()
    leave: str | None = None
    expect: dict[str, Any] = field(default_factory=dict)  # the report's fields, times as (days, "HH:MM")


def _leg(first: str, last: str, place: Place, first_day: int = 0, last_day: int = 0) -> Leg:
    return Leg((first_day, first), (last_day, last), place)


def _in(at: tuple[int, str], by: str = "fix") -> dict[str, Any]:
    return {"at": at, "by": by}


TEAM_SHIFT = ("08:00", "16:00")
TEAM = (
    Person(
        "A01", "张伟", None,  # on time; a mock-location app on the phone gives away its check-out
        legs=(_leg("07:30", "07:49", APPROACH), _leg("07:50", "16:04", "patrol"), _leg("16:05", "16:15", SHOP)),
        claims=(Claim((0, "16:02"), CENTRE, "checkout", mock=True),),
        expect={"check_in": _in((0, "07:50")), "check_out": _in((0, "16:04")), "minutes_on_post": 480.0,
                "statuses": ["on_time"], "off_post": []},
    ),
    Person(
        "A02", "王芳", None,
        legs=(_leg("07:50", "08:19", APPROACH), _leg("08:20", "16:00", "patrol"), _leg("16:01", "16:10", SHOP)),
        expect={"check_in": _in((0, "08:20")), "check_out": _in((0, "16:00")), "minutes_on_post": 460.0,
                "statuses": ["late"], "off_post": []},
    ),
    Person(
        "A03", "李娜", None,  # the phone stays off
        expect={"check_in": None, "check_out": None, "minutes_on_post": 0.0, "statuses": ["absent"], "off_post": []},
    ),
    Person(
        "A04", "刘洋", None, leave="sick",
        expect={"check_in": None, "check_out": None, "minutes_on_post": 0.0, "statuses": ["leave"], "off_post": []},
    ),
    Person(
        "A05", "陈静", None,  # leaves 13 minutes early: off post 12 minutes before the end, not long enough to count
        legs=(_leg("07:40", "07:54", APPROACH), _leg("07:55", "15:47", "patrol"), _leg("15:48", "16:10", SHOP)),
        expect={"check_in": _in((0, "07:55")), "check_out": _in((0, "15:47")), "minutes_on_post": 468.0,
                "statuses": ["on_time", "early_leave"], "off_post": []},
    ),
    Person(
        "A06", "杨磊", None,  # 20 minutes in the shop
        legs=(_leg("07:40", "07:54", APPROACH), _leg("07:55", "09:59", "patrol"), _leg("10:00", "10:19", SHOP),
              _leg("10:20", "16:04", "patrol"), _leg("16:05", "16:10", SHOP)),
        expect={"check_in": _in((0, "07:55")), "check_out": _in((0, "16:04")), "minutes_on_post": 460.0,
                "statuses": ["on_time"],
                "off_post": [{"start": (0, "10:00"), "end": (0, "10:20"), "minutes": 20.0, "ongoing": False,
                              "place": SHOP}]},
    ),
    Person(
        "A07", "赵强", None,  # at home all day; the phone claims a check-in at the grid's centre
        legs=(_leg("07:00", "17:00", HOME),),
        claims=(Claim((0, "07:58"), CENTRE),),
        expect={"check_in": None, "check_out": None, "minutes_on_post": 0.0, "statuses": ["absent"], "off_post": []},
    ),
    Person(
        "A08", "黄敏", ("22:00", "06:00"),  # the night shift, over midnight
        legs=(_leg("21:40", "21:49", APPROACH), _leg("21:50", "06:04", "patrol", 0, 1),
              _leg("06:05", "06:10", SHOP, 1, 1)),
        expect={"check_in": _in((0, "21:50")), "check_out": _in((1, "06:04")), "minutes_on_post": 480.0,
                "statuses": ["on_time"], "off_post": []},
    ),
    Person(
        "A09", "周杰", ("06:00", "14:00"),  # starts at 22:00 UTC the day before; checks in by phone first
        legs=(_leg("05:40", "05:51", APPROACH), _leg("05:55", "14:04", "patrol"), _leg("14:05", "14:10", SHOP)),
        claims=(Claim((0, "05:52"), EDGE),),
        expect={"check_in": _in((0, "05:52"), "checkin"), "check_out": _in((0, "14:04")), "minutes_on_post": 480.0,
                "statuses": ["on_time"], "off_post": []},
    ),
)  # fmt: skip
BY_CODE = {p.code: p for p in TEAM}
# The claims refused as an impossible move and as a mock location, and the one accepted.
FAKER, MOCKER, PHONE_CHECKIN = "A07", "A01", "A09"

# The alerts of the day: (person, kind, start, end), times as (days after the day, "HH:MM").
ALERTS = {
    ("A01", "fake_checkin", (0, "16:02"), (0, "16:02")),
    ("A02", "late", (0, "08:05"), (0, "08:20")),
    ("A03", "late", (0, "08:05"), (0, "09:00")),
    ("A03", "absent", (0, "09:00"), (0, "16:00")),
    ("A05", "early_leave", (0, "15:47"), (0, "16:00")),
    ("A06", "off_post", (0, "10:00"), (0, "10:20")),
    ("A07", "fake_checkin", (0, "07:58"), (0, "07:58")),
    ("A07", "late", (0, "08:05"), (0, "09:00")),
    ("A07", "absent", (0, "09:00"), (0, "16:00")),
}


def shift_of(p: Person) -> tuple[str, str]:
    return p.shift or TEAM_SHIFT


def fixes(p: Person, day: date) -> list[tuple[datetime, float, float]]:
    """The phone's fixes: (UTC time, lat, lon), one a minute over each leg."""
    out = []
    for leg in p.legs:
        t, last = local(day, leg.first[1], leg.first[0]), local(day, leg.last[1], leg.last[0])
        while t <= last:
            lat, lon = leg.place if isinstance(leg.place, tuple) else patrol(t)
            out.append((t, lat, lon))
            t += timedelta(minutes=1)
    return out


def when(day: date, at: tuple[int, str]) -> datetime:
    return local(day, at[1], at[0])
