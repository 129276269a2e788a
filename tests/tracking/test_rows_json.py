"""The live rows served a slice at a time say exactly what the live state says in one go."""

from __future__ import annotations

import json
import time

import numpy as np

from tracking.live import LiveState
from tracking.live_api import ROWS_PER_TURN, rows_json


async def test_rows_json_in_slices_equals_rows_at_once() -> None:
    live = LiveState()
    n = ROWS_PER_TURN * 2 + 17
    for i in range(n):
        live.set_device(i + 1, f"uid{i}", "muck" if i % 2 else "inspector", None, f"车 {i}", None, True)
    now_us = time.time_ns() // 1000
    seen = np.arange(1, n + 1, 2, dtype=np.int32)  # every other device has a fix, the rest never reported
    live.apply(
        seen,
        np.full(len(seen), now_us - 5_000_000),
        np.linspace(22.4, 22.7, len(seen)),
        np.linspace(113.9, 114.2, len(seen)),
        np.full(len(seen), 12.5),
        np.full(len(seen), 90.0),
        np.full(len(seen), now_us),
    )
    slots = np.arange(n)
    for crs_name in ("wgs84", "gcj02"):
        assert json.loads(await rows_json(live, slots, now_us, crs_name)) == live.rows(slots, now_us, crs_name)
    assert json.loads(await rows_json(live, slots[:0], now_us, "wgs84")) == []
