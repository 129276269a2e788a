"""Windows of local time in rule params (permitted hours, shifts): [["22:00", "06:00"], ...].

A window whose end is before its start spans midnight. Times are local to the city (`utc_offset_h`,
default +8), the way the city writes its rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Windows = Sequence[Sequence[str]]


def seconds(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 3600 + int(minutes) * 60


def is_hhmm(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    hours, _, minutes = text.partition(":")
    return hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60 and len(minutes) == 2


def is_windows(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(w, list) and len(w) == 2 and all(is_hhmm(t) for t in w) for w in value
    )


def offset_s(params: dict[str, Any]) -> int:
    return round(float(params.get("utc_offset_h", 8)) * 3600)


def within(time_us: npt.NDArray[np.int64], windows: Windows, utc_offset_s: int) -> npt.NDArray[np.bool_]:
    """Whether each time (µs since the epoch, UTC) falls in one of the windows."""
    of_day = (np.asarray(time_us, dtype=np.int64) // 1_000_000 + utc_offset_s) % 86_400
    ok = np.zeros(of_day.shape, dtype=bool)
    for start, end in windows:
        a, b = seconds(start), seconds(end)
        ok |= ((of_day >= a) & (of_day < b)) if a <= b else ((of_day >= a) | (of_day < b))
    return ok
