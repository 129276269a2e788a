"""The attendance reports as documents (sans-I/O): a day per person (JSON, CSV) and counts per unit.

Counts roll up the unit tree: each unit has its own people's (`own`) and those of every unit below it
included (`all`); people without a unit are in the total only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from attendance.alerting import iso
from attendance.derive import DayRecord, Mark, Spell
from store.users import Unit

SUMMARY = ("planned", "present", "late", "absent", "on_leave", "holiday", "off_post_now")
NOW = ("on_duty", "online", "offline")
CSV_HEADER = (
    "day",
    "person_code",
    "person_name",
    "unit",
    "device",
    "shift_status",
    "leave_kind",
    "start",
    "end",
    "grid",
    "check_in",
    "check_in_by",
    "check_out",
    "check_out_by",
    "minutes_on_post",
    "statuses",
    "off_post_spells",
    "off_post_minutes",
    "stationary_minutes",
    "offline_minutes",
)


def _minutes(value: float) -> float:
    return round(value, 1)


def mark_json(m: Mark | None) -> dict[str, Any] | None:
    return None if m is None else {"at": iso(m.at), "lat": round(m.lat, 6), "lon": round(m.lon, 6), "by": m.source}


def spell_json(p: Spell) -> dict[str, Any]:
    return {"start": iso(p.start), "end": iso(p.end), "minutes": _minutes(p.minutes), "ongoing": p.ongoing,
            "lat": round(p.lat, 6), "lon": round(p.lon, 6)}  # fmt: skip


def record_json(r: DayRecord) -> dict[str, Any]:
    s = r.shift
    return {
        "person": {"id": s.person_id, "code": s.person_code, "name": s.person_name, "unit": s.org_unit_id},
        "device": s.device_id,
        "day": s.day.isoformat(),
        "shift": {
            "status": s.status,
            "leave_kind": s.leave_kind,
            "start": iso(s.start),
            "end": iso(s.end),
            "grace_min": s.grace_min,
            "checkin_window_min": s.checkin_window_min,
            "absent_after_min": s.absent_after_min,
        },
        "grid": s.zone_id,
        "check_in": mark_json(r.check_in),
        "check_out": mark_json(r.check_out),
        "minutes_on_post": _minutes(r.minutes_on_post),
        "statuses": list(r.statuses),
        "off_post": [spell_json(p) for p in r.off_post],
        "stationary": [spell_json(p) for p in r.stationary],
        "offline": [spell_json(p) for p in r.offline],
    }


def records_csv(records: Iterable[DayRecord]) -> str:
    """One row per shift; times ISO 8601 UTC, statuses separated by spaces, spells as counts and minutes."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for r in records:
        s = r.shift
        ci, co = r.check_in, r.check_out
        writer.writerow(
            [s.day.isoformat(), s.person_code, s.person_name, _blank(s.org_unit_id), _blank(s.device_id), s.status,
             _blank(s.leave_kind), iso(s.start), iso(s.end), _blank(s.zone_id),
             "" if ci is None else iso(ci.at), "" if ci is None else ci.source,
             "" if co is None else iso(co.at), "" if co is None else co.source,
             _minutes(r.minutes_on_post), " ".join(r.statuses), len(r.off_post),
             _minutes(sum(p.minutes for p in r.off_post)), _minutes(sum(p.minutes for p in r.stationary)),
             _minutes(sum(p.minutes for p in r.offline))]
        )  # fmt: skip
    return buf.getvalue()


def _blank(value: Any) -> Any:
    return "" if value is None else value


def summary_counts(r: DayRecord) -> dict[str, int]:
    """What one shift adds to the summary."""
    return {
        "planned": int(r.shift.status == "planned"),
        "present": int(r.check_in is not None and r.statuses[0] in ("on_time", "late")),
        "late": int("late" in r.statuses),
        "absent": int("absent" in r.statuses),
        "on_leave": int(r.shift.status == "leave"),
        "holiday": int(r.shift.status == "holiday"),
        "off_post_now": int(any(p.ongoing for p in r.off_post)),
    }


def by_unit(
    items: Sequence[tuple[int | None, dict[str, int]]], units: Sequence[Unit], keys: Sequence[str]
) -> dict[str, Any]:
    """Counts (of `keys`) per unit, own and rolled up, and the total; `items`: (unit id, counts) each."""

    def zero() -> dict[str, int]:
        return dict.fromkeys(keys, 0)

    total, own = zero(), {u.id: zero() for u in units}
    for unit_id, counts in items:
        for k in keys:
            total[k] += counts[k]
            if unit_id in own:
                own[unit_id][k] += counts[k]
    rolled = {u.id: dict(own[u.id]) for u in units}
    parent = {u.id: u.parent_id for u in units}
    for u in units:  # each unit's own counts added to every ancestor listed
        up, seen = parent[u.id], {u.id}
        while up is not None and up in rolled and up not in seen:
            seen.add(up)
            for k in keys:
                rolled[up][k] += own[u.id][k]
            up = parent[up]
    return {
        "total": total,
        "by_unit": [
            {"unit": {"id": u.id, "code": u.code, "name": u.name, "parent_id": u.parent_id}, "own": own[u.id],
             "all": rolled[u.id]}
            for u in units
        ],
    }  # fmt: skip
