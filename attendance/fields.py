"""What the attendance plan's fields may hold, for the API and the CSV import alike. Each check takes a
JSON value or CSV text and raises ValueError with a reason meant for the user, naming the field."""

from __future__ import annotations

import re
from datetime import date, time
from typing import Any

ROLES = ("inspector", "officer")  # the staff_role enum: 监督员, 执法队员
MAX_NAME = 100
MAX_TEAM = 64
MAX_NOTE = 500
MINUTES = {"grace_min": 720, "checkin_window_min": 720, "absent_after_min": 1440}  # the tables' limits
_CODE = re.compile(r"^[0-9A-Za-z_.:-]{1,64}$")
_LEAVE_KIND = re.compile(r"^\S{1,32}$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RANGE = re.compile(r"^([1-7])(?:-([1-7]))?$")


def code(value: Any, what: str = "code") -> str:
    if not isinstance(value, str) or not _CODE.match(value):
        raise ValueError(f"{what} must be 1-64 letters, digits or _ . : -")
    return value


def name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise ValueError(f"name must be text of 1 to {MAX_NAME} characters")
    return value.strip()


def role(value: Any) -> str:
    if value not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return str(value)


def team(value: Any) -> str | None:
    """A team name within a unit; empty or null: none."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEAM:
        raise ValueError(f"team must be text of at most {MAX_TEAM} characters, or empty")
    return value.strip()


def weekdays(value: Any) -> tuple[int, ...]:
    """ISO weekdays (1 Monday .. 7 Sunday): a JSON list of numbers, or text such as "1-5", "1,3,5", "1-3,6"."""
    problem = ValueError('weekdays must be days 1 (Monday) to 7 (Sunday): a list, or text like "1-5" or "1,3,5"')
    found: set[int] = set()
    if isinstance(value, list):
        if not value or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 7 for d in value):
            raise problem
        found.update(value)
    elif isinstance(value, str):
        for part in value.replace(" ", "").split(","):
            m = _RANGE.match(part)
            if m is None:
                raise problem
            first, last = int(m.group(1)), int(m.group(2) or m.group(1))
            if last < first:
                raise problem
            found.update(range(first, last + 1))
    else:
        raise problem
    return tuple(sorted(found))


def clock(value: Any, what: str) -> time:
    """A local time of day, "HH:MM"."""
    m = _CLOCK.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"{what} must be a local time HH:MM (00:00 to 23:59)")
    return time(int(m.group(1)), int(m.group(2)))


def minutes(value: Any, what: str) -> int:
    """A number of minutes within the table's limit for `what` (a key of MINUTES); text of digits too."""
    most = MINUTES[what]
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
        raise ValueError(f"{what} must be whole minutes from 0 to {most}")
    return value


def day(value: Any, what: str) -> date:
    """A local date, "YYYY-MM-DD"."""
    try:
        if isinstance(value, str) and _DAY.match(value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise ValueError(f"{what} must be a date YYYY-MM-DD")


def leave_kind(value: Any) -> str:
    if not isinstance(value, str) or not _LEAVE_KIND.match(value):
        raise ValueError("kind must be 1-32 characters without spaces (sick, annual ...)")
    return value


def note(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_NOTE:
        raise ValueError(f"note must be text of at most {MAX_NOTE} characters")
    return value
