"""The `coverage` rule's params and its shifts: what is checked, and when.

params (all but `shifts` optional):

- `zone_kind`: the zones to cover, "sanitation_route" (default) or e.g. "duty_grid" for patrols;
- `shifts`: [["05:00", "09:00"], ...] windows of local time (alerts.windows); one whose end is not after
  its start crosses midnight (equal ends: a whole day); no two may start at the same time;
- `utc_offset_h` (default 8): local time is UTC plus this;
- `min_speed_kmh` (default 0), `max_speed_kmh` (default 15, the speed of sweeping; null: any): working speed;
- `resolution` (default 11, cells of about 25 m edges): the H3 resolution of the cells counted;
- `min_share` (default 0.9): a shift that ends under it raises an alert;
- `grace_s` (default 300): how long after a shift's end to wait for late fixes before computing it;
- `max_gap_s` (default 120): fixes further apart in time are not joined by a line;
- `tolerance_m` (default 10): the GPS error allowed around the path (see geofence.coverage).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from alerts import params as rule_params
from alerts import windows

COVERAGE = "coverage"  # the rule kind
LOOKBACK = timedelta(hours=36)  # shifts that ended longer ago than this are not computed any more
_DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class CoverageParams:
    zone_kind: str = "sanitation_route"
    shifts: tuple[tuple[int, int], ...] = ()  # start and end, seconds after local midnight
    utc_offset_s: int = 8 * 3600
    min_speed_kmh: float = 0.0
    max_speed_kmh: float | None = 15.0
    resolution: int = 11
    min_share: float = 0.9
    grace_s: float = 300.0
    max_gap_s: float = 120.0
    tolerance_m: float = 10.0


def parse(params: Mapping[str, Any], *, need_shifts: bool = True) -> CoverageParams:
    """The params of a coverage rule, checked (alerts.params, then what only this rule needs); ValueError
    naming the first wrong one ("params.x: ...")."""
    wrong = rule_params.problem(dict(params))
    if wrong is not None:
        raise ValueError(wrong)
    shifts = tuple((windows.seconds(a), windows.seconds(b)) for a, b in params.get("shifts", []))
    if need_shifts and not shifts:
        raise ValueError('params.shifts: at least one ["HH:MM", "HH:MM"] window of local time')
    if len({a for a, _ in shifts}) != len(shifts):
        raise ValueError("params.shifts: two windows start at the same time")
    min_speed = float(params.get("min_speed_kmh", 0.0))
    max_speed = params.get("max_speed_kmh", 15.0)
    if max_speed is not None and max_speed < min_speed:
        raise ValueError("params.max_speed_kmh: null, or not under min_speed_kmh")
    return CoverageParams(
        zone_kind=params.get("zone_kind", "sanitation_route"),
        shifts=shifts,
        utc_offset_s=windows.offset_s(dict(params)),
        min_speed_kmh=min_speed,
        max_speed_kmh=None if max_speed is None else float(max_speed),
        resolution=params.get("resolution", 11),
        min_share=float(params.get("min_share", 0.9)),
        grace_s=float(params.get("grace_s", 300)),
        max_gap_s=_number(params, "max_gap_s", 120, 1, _DAY_S),
        tolerance_m=_number(params, "tolerance_m", 10, 0, 100),
    )


def _number(params: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"params.{key}: a number from {low:g} to {high:g}")
    return float(value)


def shifts_ending(p: CoverageParams, after: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    """Every shift (start, end, UTC) whose end is after `after` and at or before `until`, by end then start."""
    offset = timedelta(seconds=p.utc_offset_s)
    first: date = (after + offset).date() - timedelta(days=1)  # a shift that crosses midnight began the day before
    last: date = (until + offset).date()
    found = []
    for n in range((last - first).days + 1):
        midnight = datetime.combine(first + timedelta(days=n), datetime.min.time(), UTC) - offset
        for a, b in p.shifts:
            start = midnight + timedelta(seconds=a)
            end = midnight + timedelta(seconds=b if b > a else b + _DAY_S)
            if after < end <= until:
                found.append((start, end))
    return sorted(found, key=lambda s: (s[1], s[0]))
