"""An alert is raised once: a raise whose start lies inside an alert of the same device, rule, zone and
kind (going on or ended) is the same event seen again (a processor replaying a partition it took over)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from store import alerts, devices
from store.alerts import EndAlert, NewAlert
from store.devices import DeviceRecord

T0 = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
async def scratch(db: psycopg.AsyncConnection) -> AsyncIterator[psycopg.AsyncConnection]:
    """The session database, with everything a test writes rolled back: its open alerts of devices without
    positions would show on other tests' live maps."""
    async with db.transaction(force_rollback=True):
        yield db


async def _device(db: psycopg.AsyncConnection) -> int:
    uid = "17" + str(secrets.randbelow(10**9)).rjust(9, "0")
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind="muck")])
    device = await devices.by_uid(db, uid)
    assert device is not None
    return device.id


def _raise(device_id: int, rule_id: int, start_s: int, *, late: bool = False) -> NewAlert:
    return NewAlert(T0 + timedelta(seconds=start_s), device_id, rule_id, None, "overspeed", 2, late, {})


async def test_a_raise_inside_an_alert_of_the_same_event_is_skipped(scratch: psycopg.AsyncConnection) -> None:
    db = scratch
    rule = next(r for r in await alerts.rules(db) if r.kind == "overspeed")
    device_id = await _device(db)
    first = await alerts.apply(
        db, [_raise(device_id, rule.id, 0), EndAlert(device_id, rule.id, None, T0 + timedelta(seconds=60), False)]
    )
    assert [(a.started_at, a.ended_at) for a in first] == [(T0, None), (T0, T0 + timedelta(seconds=60))]
    # Again at the same start, inside it (a replay that began mid-run), late or not: nothing new.
    assert await alerts.apply(db, [_raise(device_id, rule.id, 0)]) == []
    assert await alerts.apply(db, [_raise(device_id, rule.id, 30)]) == []
    assert await alerts.apply(db, [_raise(device_id, rule.id, 60, late=True)]) == []
    # After it ended, or before it began: other events, raised.
    after = await alerts.apply(db, [_raise(device_id, rule.id, 61)])
    before = await alerts.apply(db, [_raise(device_id, rule.id, -600, late=True)])
    assert [a.started_at for a in after + before] == [T0 + timedelta(seconds=61), T0 - timedelta(seconds=600)]
    # The one going on holds every later start.
    assert await alerts.apply(db, [_raise(device_id, rule.id, 3600)]) == []
    cur = await db.execute("SELECT count(*) FROM alerts WHERE device_id = %s", (device_id,))
    assert await cur.fetchone() == (3,)


async def test_another_rule_or_kind_is_another_event(scratch: psycopg.AsyncConnection) -> None:
    db = scratch
    rules = [r for r in await alerts.rules(db) if r.kind in ("overspeed", "stopped")]
    device_id = await _device(db)
    raised = await alerts.apply(db, [_raise(device_id, r.id, 0) for r in rules])
    other_kind = NewAlert(T0, device_id, rules[0].id, None, "overspeed_zone", 2, False, {})
    raised += await alerts.apply(db, [other_kind])
    assert len(raised) == len(rules) + 1
