"""A shift someone is expected to work, or is excused from: what the plan gives attendance to judge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

STATUSES = ("planned", "leave", "holiday", "cancelled")


@dataclass(frozen=True, slots=True)
class PlannedShift:
    person_id: int
    person_code: str
    person_name: str
    org_unit_id: int | None
    device_id: int | None  # the person's phone (a device); None: no phone assigned
    day: date  # the local date the shift starts on
    start: datetime  # UTC, tz-aware
    end: datetime  # UTC, tz-aware, > start (a night shift ends on the next local day)
    zone_id: int | None  # the duty grid (a zone of kind duty_grid); None only when not planned
    grace_min: int  # late after start + grace; early leave before end - grace
    checkin_window_min: int  # a fix inside the grid counts as check-in from start - window
    absent_after_min: int  # no check-in by start + this: absent
    status: str  # "planned" | "leave" | "holiday" | "cancelled"
    leave_kind: str | None  # e.g. "sick", "annual", when status == "leave"
