"""Which fixes replay does not trust, and why: a reason per fix; nothing is dropped here.

An excluded fix counts for no distance, stop or trip, and the raw track still lists it with its
reason, so an auditor sees what was left out. A fix gets the first reason that applies:

- `invalid`: the terminal itself flagged the fix as not positioned (JT/T 808 status bit 1 clear,
  NMEA status V, ...);
- `zero`: latitude or longitude exactly 0, what terminals without a fix send;
- `future`: fixed more than `max_future_s` after it was received or after now (a terminal clock
  that is wrong; ingest refuses such fixes from a wrong clock against the server's, this also
  catches the ones that slipped through before);
- `jump`: reaching it from the previous kept fix would take more than `max_kmh` (a multipath or
  cold-start outlier). The previous kept fix is the reference, so a run of outliers is excluded
  whole, and the track resumes where it agrees with itself again. The first fix is the reference
  to start with, unless it is itself the outlier: the next two fixes agree with each other and
  not with it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from geofence.shapes import haversine_m
from replay.geo import steps_m
from store.tracks import Track

CLEAN, INVALID, ZERO, FUTURE, JUMP = range(5)
REASONS = ("", "invalid", "zero", "future", "jump")  # by code

MAX_KMH = 250.0  # no city vehicle or phone gets there; a GPS outlier does
MAX_FUTURE_S = 300
_MIN_DT_S = 1.0  # two fixes within a second are a second apart for the speed between them

Reasons = npt.NDArray[np.uint8]


def reasons(track: Track, now_us: int, *, max_kmh: float = MAX_KMH, max_future_s: float = MAX_FUTURE_S) -> Reasons:
    """The reason code of every fix (CLEAN = 0 for the fixes replay uses)."""
    out = np.zeros(len(track), dtype=np.uint8)
    ahead = int(max_future_s * 1_000_000)
    future = (track.fix_time > track.receive_time + ahead) | (track.fix_time > now_us + ahead)
    for code, bad in (
        (FUTURE, future),
        (ZERO, (track.lat == 0) | (track.lon == 0)),
        (INVALID, ~track.valid),
    ):  # the first reason in precedence is written last, so it wins
        out[bad] = code
    kept = np.flatnonzero(out == CLEAN)
    out[kept[_jumps(track, kept, max_kmh)]] = JUMP
    return out


def counts(codes: Reasons) -> dict[str, int]:
    """Excluded fixes by reason, every reason named."""
    per_code = np.bincount(codes, minlength=len(REASONS))
    return {name: int(per_code[code]) for code, name in enumerate(REASONS) if code != CLEAN}


def _speed_kmh(track: Track, a: int, b: int) -> float:
    dt = max((int(track.fix_time[b]) - int(track.fix_time[a])) / 1e6, _MIN_DT_S)
    return float(haversine_m(track.lat[a], track.lon[a], track.lat[b], track.lon[b])) / dt * 3.6


def _jumps(track: Track, kept: npt.NDArray[np.intp], max_kmh: float) -> npt.NDArray[np.bool_]:
    """Which of the `kept` fixes are jumps from the previous non-jump one.

    The speeds between neighbours are computed at once; only around a too-fast step does a Python
    loop walk (a clean track costs no Python step per fix).
    """
    m = len(kept)
    jump = np.zeros(m, dtype=bool)
    if m < 2:
        return jump
    dt = np.maximum(np.diff(track.fix_time[kept]) / 1e6, _MIN_DT_S)
    fast = np.flatnonzero(steps_m(track.lat[kept], track.lon[kept]) / dt * 3.6 > max_kmh)  # step e: e -> e+1
    if not len(fast):
        return jump
    last = 0
    if fast[0] == 0 and m > 2 and (len(fast) == 1 or fast[1] != 1):  # 1 and 2 agree, 0 does not
        jump[0] = True
        last = 1
    i = last + 1
    while i < m:
        if last == i - 1:  # in step with the track: go on to the next too-fast step
            k = int(np.searchsorted(fast, i - 1))
            if k == len(fast):
                break
            last, i = int(fast[k]), int(fast[k]) + 1
        if _speed_kmh(track, int(kept[last]), int(kept[i])) > max_kmh:
            jump[i] = True
        else:
            last = i
        i += 1
    return jump
