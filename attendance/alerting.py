"""The alerts a judged shift calls for, under the `attendance` rule (sans-I/O).

- `late`: from start + grace until the check-in; going on while the person has not come yet, and ended
  at start + absent_after when they are absent by then;
- `absent`: from start + absent_after until a check-in after it, else until the end of the shift;
- `early_leave`: from the check-out to the end, once the shift has ended;
- `off_post`, `stationary`, `offline_on_duty`: the spells of attendance.derive, going on while they do;
- `fake_checkin`: a phone check-in or check-out refused as a mock location or an implausible move; it
  begins and ends at the claim's time.

Evidence: the shift (`shift`), and where it was seen (`lat`, `lon`) where a fix or the claim shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from attendance.checkin import FAKE
from attendance.derive import DayRecord, Mark, Spell
from attendance.model import PlannedShift
from store.attendance_events import Event

KINDS = ("late", "absent", "early_leave", "off_post", "stationary", "offline_on_duty", "fake_checkin")


@dataclass(frozen=True, slots=True)
class Wanted:
    kind: str
    started: datetime
    ended: datetime | None  # None: going on
    evidence: dict[str, Any]


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def shift_json(s: PlannedShift) -> dict[str, Any]:
    return {"person_id": s.person_id, "person_code": s.person_code, "person_name": s.person_name,
            "day": s.day.isoformat(), "start": iso(s.start), "end": iso(s.end)}  # fmt: skip


def _at(where: Mark | Spell | Event) -> dict[str, float]:
    return {"lat": round(where.lat, 6), "lon": round(where.lon, 6)}


def wanted(record: DayRecord, claims: Sequence[Event] = ()) -> list[Wanted]:
    """The alerts of one shift as of `record.as_of`; `claims`: the phone's refused events in the shift's windows."""
    s, now = record.shift, record.as_of
    if s.status != "planned":
        return []
    shift = {"shift": shift_json(s)}
    out: list[Wanted] = []
    grace_at = s.start + timedelta(minutes=s.grace_min)
    absent_at = s.start + timedelta(minutes=s.absent_after_min)
    came = record.check_in
    if now > grace_at and (came is None or came.at > grace_at):
        if came is not None and came.at <= absent_at:
            out.append(Wanted("late", grace_at, came.at, {**shift, "check_in": iso(came.at), **_at(came)}))
        else:
            out.append(Wanted("late", grace_at, absent_at if now >= absent_at else None, shift))
    if "absent" in record.statuses:
        if came is not None:
            out.append(Wanted("absent", absent_at, came.at, {**shift, "check_in": iso(came.at), **_at(came)}))
        else:
            out.append(Wanted("absent", absent_at, s.end if now >= s.end else None, shift))
    left = record.check_out
    if "early_leave" in record.statuses and left is not None:
        out.append(Wanted("early_leave", left.at, s.end, {**shift, "check_out": iso(left.at), **_at(left)}))
    for kind, spells in (("off_post", record.off_post), ("stationary", record.stationary),
                         ("offline_on_duty", record.offline)):  # fmt: skip
        out += [Wanted(kind, p.start, None if p.ongoing else p.end, {**shift, **_at(p)}) for p in spells]
    for c in claims:
        if c.reason in FAKE and c.at <= now:
            shown = {**shift, "event": c.kind, "reason": c.reason, "mock": c.mock, "speed_kmh": c.speed_kmh, **_at(c)}
            out.append(Wanted("fake_checkin", c.at, c.at, shown))
    return out
