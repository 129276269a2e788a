"""Committed batches gathered for one pass of the geofence and the rules (`alerts.gather_ms`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import h3.api.basic_int as h3
import numpy as np
import numpy.typing as npt

from geofence.service import GeofenceService
from geofence.shapes import Circle
from store.batch import PositionBatch, PositionRow

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
CENTRE = (22.54, 114.06)


def _batch(device_id: int, seconds: list[int], lat: float) -> PositionBatch:
    rows = [
        PositionRow(device_id, T0 + timedelta(seconds=s), T0, lat, CENTRE[1], True,
                    h3.latlng_to_cell(lat, CENTRE[1], 9), "jt808", 10.0)
        for s in seconds
    ]  # fmt: skip
    return PositionBatch.from_rows(rows)


def _info(ids: npt.NDArray[np.int32]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    return np.full(len(ids), -1, np.int64), np.full(len(ids), -1, np.int64)


def _service(gather_ms: float, gather_rows: int = 20_000) -> tuple[GeofenceService, list[tuple[int, int]]]:
    # The committed path never touches the database: the zones are put in the index directly.
    service = GeofenceService(None, _info, gather_ms=gather_ms, gather_rows=gather_rows)  # type: ignore[arg-type]
    service.index.add(1, Circle(*CENTRE, 200.0))
    service._applies = type(service._applies)([1], [], [], [])
    seen: list[tuple[int, int]] = []  # per pass: rows, rows inside the zone
    service.fix_consumers.append(lambda batch, row, zone: seen.append((len(batch), len(row))))
    return service, seen


async def test_batches_wait_and_are_judged_together() -> None:
    service, seen = _service(gather_ms=50)
    service.committed(_batch(7, [0, 1, 2], CENTRE[0]))
    service.committed(_batch(8, [0, 1], CENTRE[0] + 0.1))  # 11 km away: outside
    assert seen == []  # nothing judged before the wait is over
    await asyncio.sleep(0.2)
    assert seen == [(5, 3)]
    assert service.fixes == 5


async def test_a_full_gathering_goes_at_once_and_close_judges_what_waits() -> None:
    service, seen = _service(gather_ms=10_000, gather_rows=4)
    service.committed(_batch(7, [0, 1], CENTRE[0]))
    assert seen == []
    service.committed(_batch(7, [2, 3], CENTRE[0]))
    assert seen == [(4, 4)]  # four rows waited: judged without waiting for the timer
    service.committed(_batch(7, [4], CENTRE[0]))
    await service.close()
    assert seen == [(4, 4), (1, 1)]


async def test_without_a_wait_each_batch_is_judged_at_once() -> None:
    service, seen = _service(gather_ms=0)
    service.committed(_batch(7, [0], CENTRE[0]))
    service.committed(_batch(7, [1], CENTRE[0] + 0.1))
    assert seen == [(1, 1), (1, 0)]


async def test_a_device_late_in_the_first_batch_is_in_order_once_gathered() -> None:
    """Two writers may commit a device's fixes out of order; gathered, they are judged in fix-time order and
    the older ones are not late: the transition is an ordinary one."""
    service, _ = _service(gather_ms=50)
    found: list[tuple[bool, bool]] = []
    service.consumers.append(lambda transitions: found.extend((t.entered, t.late) for t in transitions))
    service.committed(_batch(7, list(range(30, 60)), CENTRE[0] + 0.1))  # outside, later
    service.committed(_batch(7, list(range(0, 30)), CENTRE[0]))  # inside, earlier
    await asyncio.sleep(0.2)
    assert found == [(True, False), (False, False)]  # in, then out, on time
