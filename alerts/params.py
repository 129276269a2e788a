"""The params of a rule, checked when a rule is created or changed through the API (not when it runs).

Every param the engine reads has one form wherever it appears; unknown params are kept (a newer
version may read them) but the known ones must be right, so a typo in a limit cannot silently
turn a rule off.
"""

from __future__ import annotations

from typing import Any

from alerts import windows
from store.zones import KINDS as ZONE_KINDS

_NUMBERS = (
    "limit_kmh", "min_s", "min_speed_kmh", "max_speed_kmh", "max_s", "max_age_s", "stop_min_s", "grace_s", "max_gap_s",
    "tolerance_m", "off_post_min", "stationary_min", "stationary_radius_m", "offline_min", "max_walk_kmh",
)  # fmt: skip
_WINDOWS = ("allowed", "shifts")
_ZONE_KIND_LISTS = ("except_zone_kinds", "site_kinds")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def problem(params: Any) -> str | None:
    """What is wrong with these params, or None."""
    if not isinstance(params, dict):
        return "params: a JSON object"
    for key in _NUMBERS:
        if params.get(key) is not None and not (_number(params[key]) and params[key] >= 0):
            return f"params.{key}: a number, 0 or more"
    for key in _WINDOWS:
        if key in params and not windows.is_windows(params[key]):
            return f'params.{key}: a list of ["HH:MM", "HH:MM"] windows of local time'
    if "utc_offset_h" in params and not (_number(params["utc_offset_h"]) and -12 <= params["utc_offset_h"] <= 14):
        return "params.utc_offset_h: hours from UTC, -12 to 14"
    bits = params.get("bits", [0])
    if not isinstance(bits, list) or not all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 31 for b in bits
    ):
        return "params.bits: a list of alarm bit numbers 0-31"
    lift = params.get("lift_bit")
    if lift is not None and not (isinstance(lift, int) and not isinstance(lift, bool) and 0 <= lift <= 31):
        return "params.lift_bit: a status bit number 0-31, or null"
    for key in _ZONE_KIND_LISTS:
        if key in params and not (isinstance(params[key], list) and all(k in ZONE_KINDS for k in params[key])):
            return f"params.{key}: a list of zone kinds ({', '.join(ZONE_KINDS)})"
    if "zone_kind" in params and params["zone_kind"] not in ZONE_KINDS:
        return f"params.zone_kind: one of {', '.join(ZONE_KINDS)}"
    if "speed_zones" in params and not isinstance(params["speed_zones"], bool):
        return "params.speed_zones: true or false"
    if "min_share" in params and not (_number(params["min_share"]) and 0 <= params["min_share"] <= 1):
        return "params.min_share: a share from 0 to 1"
    if "resolution" in params and not (
        isinstance(params["resolution"], int) and not isinstance(params["resolution"], bool)
        and 5 <= params["resolution"] <= 15
    ):  # fmt: skip
        return "params.resolution: an H3 resolution, 5 to 15"
    return None
