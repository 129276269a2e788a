"""The conditions of the rules over fixes, as numpy masks over a committed batch.

Each rule kind says, for every fix, whether its condition holds, a value to report (the speed, the
alarm word) and the limit; `runs.py` turns a condition held for `min_s` into an alert. Params
(all optional; defaults in brackets):

- `overspeed`: `limit_kmh` [60], `min_s` [10], `speed_zones` [true]: inside a zone with a
  `speed_limit_kmh` property (a speed zone) the lower of the two limits counts.
- `alarm`: `bits` [[0], the emergency button], `min_s` [0]: any of those JT/T 808 alarm bits set.
- `forbidden_hours`: `allowed` [[]] windows of local time, `utc_offset_h` [8], `min_speed_kmh` [5],
  `min_s` [0]: driving outside the permitted hours (muck trucks: nights only).
- `stopped`: `max_speed_kmh` [3], `min_s` [1800], `except_zone_kinds` [["depot"]]: standing still
  that long anywhere but in those zones.
- `working_speed`: `zone_kind` ["sanitation_route"], `max_speed_kmh` [15], `shifts` (windows; none:
  always), `utc_offset_h` [8], `min_s` [60]: on its own route faster than working speed, so not
  sweeping.
- `dumping` (muck trucks; suspected illegal dumping): outside `site_kinds` [construction_site,
  disposal_site, depot], a `lift_bit` of the status word (the tipper, where the terminal reports
  one) raises at once; a truck whose terminal reports no load state nor lift signal raises after a
  stop of `stop_min_s` [600] (at `max_speed_kmh` [3] or less). Unloading seen in the load state is
  found by `unloading.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from alerts import windows
from store.alerts import Rule
from store.batch import PositionBatch

RUN_RULES = ("overspeed", "alarm", "forbidden_hours", "stopped", "working_speed", "dumping")
SITE_KINDS = ["construction_site", "disposal_site", "depot"]  # where a muck truck may unload

_Mask = npt.NDArray[np.bool_]
_Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Where:
    """Per row of the batch: is it in a zone of these kinds; the speed zones' limit; reports a load or lift."""

    in_kinds: Callable[[list[str]], _Mask]
    speed_limit: Callable[[], _Floats]
    reports_load: _Mask  # dumping: the devices judged by their load state or tipper, not their stops


@dataclass(frozen=True, slots=True)
class Check:
    part: str  # which run of the rule ("" if it has one; dumping: "lift" and "stop")
    holds: _Mask
    value: _Floats
    limit: _Floats
    min_s: float


def checks(rule: Rule, applies: _Mask, batch: PositionBatch, where: Where) -> list[Check]:
    p = rule.params
    n = len(batch)
    speed = batch.speed_kmh.astype(np.float64)

    def full(x: float) -> _Floats:
        return np.full(n, x)

    if rule.kind == "overspeed":
        limit = np.where(applies, float(p.get("limit_kmh", 60)), np.nan)
        if p.get("speed_zones", True):
            limit = np.fmin(limit, np.where(applies, where.speed_limit(), np.nan))
        return [Check("", speed > limit, speed, limit, float(p.get("min_s", 10)))]
    if rule.kind == "alarm":
        mask = sum(1 << int(b) for b in p.get("bits", [0]))
        alarm = batch.alarm.astype(np.float64)
        return [Check("", applies & ((batch.alarm & mask) != 0), alarm, full(mask), float(p.get("min_s", 0)))]
    if rule.kind == "forbidden_hours":
        least = float(p.get("min_speed_kmh", 5))
        allowed = windows.within(batch.fix_time, p.get("allowed", []), windows.offset_s(p))
        return [Check("", applies & (speed >= least) & ~allowed, speed, full(least), float(p.get("min_s", 0)))]
    if rule.kind == "stopped":
        most = float(p.get("max_speed_kmh", 3))
        holds = applies & (speed <= most) & ~where.in_kinds(list(p.get("except_zone_kinds", ["depot"])))
        return [Check("", holds, speed, full(most), float(p.get("min_s", 1800)))]
    if rule.kind == "working_speed":
        most = float(p.get("max_speed_kmh", 15))
        holds = applies & (speed > most) & where.in_kinds([str(p.get("zone_kind", "sanitation_route"))])
        if "shifts" in p:
            holds &= windows.within(batch.fix_time, p["shifts"], windows.offset_s(p))
        return [Check("", holds, speed, full(most), float(p.get("min_s", 60)))]
    if rule.kind == "dumping":
        outside = applies & ~where.in_kinds(site_kinds(p))
        out = []
        if p.get("lift_bit") is not None:
            lifted = ((batch.status >> int(p["lift_bit"])) & 1) == 1
            out.append(Check("lift", outside & lifted, batch.status.astype(np.float64), full(np.nan), 0.0))
        most = float(p.get("max_speed_kmh", 3))
        stopped = outside & (speed <= most) & ~where.reports_load
        out.append(Check("stop", stopped, speed, full(most), float(p.get("stop_min_s", 600))))
        return out
    raise ValueError(f"not a rule over fixes: {rule.kind}")


def site_kinds(params: dict[str, Any]) -> list[str]:
    return list(params.get("site_kinds", SITE_KINDS))


def evidence(rule: Rule, part: str, peak: float, limit: float) -> dict[str, Any]:
    """What a run of this rule shows, besides where and when."""
    p = rule.params
    if rule.kind == "overspeed":
        return {"limit_kmh": limit, "max_kmh": round(peak, 1)}
    if rule.kind == "alarm":
        return {"alarm": int(peak), "bits": sorted(p.get("bits", [0]))}
    if rule.kind == "forbidden_hours":
        return {"allowed": p.get("allowed", []), "max_kmh": round(peak, 1)}
    if rule.kind == "stopped":
        return {"max_speed_kmh": limit, "min_s": float(p.get("min_s", 1800))}
    if rule.kind == "working_speed":
        return {"working_max_kmh": limit, "max_kmh": round(peak, 1)}
    if part == "lift":
        return {"how": "lifted", "lift_bit": int(p["lift_bit"])}
    return {"how": "stopped", "stop_min_s": float(p.get("stop_min_s", 600))}
