"""Whether a phone's check-in or check-out is believed (sans-I/O).

A claim is refused, the first reason found in this order:

- `mock_location`: the phone says a mock-location provider made the position;
- `no_shift`: the person has no planned shift whose check-in window (before the start) to check-out
  window (after the end) holds the claim's time;
- `outside_grid`: the position is outside the shift's duty grid;
- `implausible_move`: reaching it from the phone's previous fix needs more than `max_walk_kmh` (after
  `JITTER_M` of GPS noise), as a check-in faked from across town does.

Mock locations and implausible moves are fakes: they raise a `fake_checkin` alert. An accepted claim counts
as a fix inside the grid (attendance.derive).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from attendance.model import PlannedShift
from geofence.shapes import Shape, haversine_m

KINDS = ("checkin", "checkout")
FAKE = frozenset({"mock_location", "implausible_move"})
JITTER_M = 50.0  # two honest fixes of a phone standing still can be this far apart


@dataclass(frozen=True, slots=True)
class Claim:
    kind: str  # "checkin" | "checkout"
    at: datetime
    lat: float
    lon: float
    mock: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reason: str | None  # None when accepted
    speed_kmh: float | None  # implied by the move from the previous fix; None without one


def shift_at(shifts: Sequence[PlannedShift], device_id: int, at: datetime) -> PlannedShift | None:
    """The planned shift of the phone's person whose windows hold `at`; of two, the one starting nearer."""
    found = [
        s
        for s in shifts
        if s.device_id == device_id
        and s.status == "planned"
        and s.start - timedelta(minutes=s.checkin_window_min) <= at <= s.end + timedelta(minutes=s.checkin_window_min)
    ]
    return min(found, key=lambda s: (abs(s.start - at), s.start), default=None)


def judge(
    claim: Claim,
    shift: PlannedShift | None,
    grid: Shape | None,
    previous: tuple[datetime, float, float] | None,
    max_walk_kmh: float,
) -> Verdict:
    """`previous`: the phone's last fix before the claim (time, lat, lon)."""
    speed = None
    if previous is not None:
        hours = max(claim.at - previous[0], timedelta(seconds=1)) / timedelta(hours=1)  # fixes are whole seconds
        metres = max(float(haversine_m(previous[1], previous[2], claim.lat, claim.lon)) - JITTER_M, 0.0)
        speed = round(metres / 1000 / hours, 1)
    if claim.mock:
        return Verdict(False, "mock_location", speed)
    if shift is None:
        return Verdict(False, "no_shift", speed)
    if grid is None or not bool(grid.contains(claim.lat, claim.lon)[0]):
        return Verdict(False, "outside_grid", speed)
    if speed is not None and speed > max_walk_kmh:
        return Verdict(False, "implausible_move", speed)
    return Verdict(True, None, speed)
