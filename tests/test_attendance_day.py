"""Attendance end to end: a team's scripted day (tests/attendance/team_day.py) against the running server.

The plan is made with the attendance store (a team pattern, two people's own shifts, a day of sick
leave); the phones report their fixes over HTTP as the Traccar Client app does, to the server's OsmAnd
listener; their check-ins go through a real Mosquitto to the MQTT ingest and its attendance desk, as the
server wires them. The alert job runs
through the day at chosen moments; the reports are read over HTTP. Everything must match exactly.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import psycopg
import pytest

from access import tokens
from attendance.job import AttendanceJob
from attendance.phone_events import CheckinDesk
from ingest.counters import Counters
from ingest.mqtt_ingest import MqttIngest
from ingest.reports import ReportSink
from protocols import phone_mqtt
from protocols.messages import Position
from store import alerts, attendance, devices, users, zones
from store.alerts import Alert
from store.devices import DeviceRecord, OrgUnitRecord
from telematics.broker import Broker
from telematics.server import Server
from tests.attendance import team_day
from tests.attendance.team_day import ABSENT, GRACE, TEAM, TZ, WINDOW, fixes, local, patrol, when
from tests.conftest import API_TOKEN, ROOT
from tests.server_process import free_port
from tracking.registry import Registry

# Over, within the retention, and well before the look back of the server's own attendance job.
DAY = datetime.now(TZ).date() - timedelta(days=3)
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
KINDS = ("late", "absent", "early_leave", "off_post", "stationary", "offline_on_duty", "fake_checkin")

AlertKey = tuple[str, str, datetime, datetime | None]  # person code, kind, start, end


@dataclass
class Day:
    tag: str
    unit: int
    other_unit: int
    grid: int
    staff: dict[str, int]  # person code -> staff id
    phones: dict[str, tuple[str, int]]  # person code -> (device uid, device id)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # person code -> what the phone was told
    told: list[Alert] = field(default_factory=list)  # what the job's listeners heard
    passes: dict[str, set[AlertKey]] = field(default_factory=dict)  # the alerts after each pass of the job

    def code_of(self, device_id: int) -> str:
        return next(code for code, (_, d) in self.phones.items() if d == device_id)


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    (ROOT / "var").mkdir(exist_ok=True)
    b = Broker(directory=Path(tempfile.mkdtemp(prefix="test-mosquitto-", dir=ROOT / "var")), port=free_port())
    b.start()
    yield b
    b.stop()
    shutil.rmtree(b.directory, ignore_errors=True)


async def _eventually(check: Any, what: str) -> None:
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not in time: {what}")


async def _pattern(
    conn: psycopg.AsyncConnection,
    shift: tuple[str, str],
    grid: int,
    *,
    staff_id: int | None,
    unit_id: int | None,
    team: str | None,
) -> None:
    """A weekly pattern valid on the day alone: no other day's shifts to judge."""
    await attendance.create_pattern(
        conn, code=None, staff_id=staff_id, unit_id=unit_id, team=team, weekdays=[1, 2, 3, 4, 5, 6, 7],
        start=time.fromisoformat(shift[0]), end=time.fromisoformat(shift[1]), zone_id=grid, grace_min=GRACE,
        checkin_window_min=WINDOW, absent_after_min=ABSENT, valid_from=DAY, valid_until=DAY,
    )  # fmt: skip


async def _plan(conn: psycopg.AsyncConnection, tag: str) -> Day:
    await devices.upsert_units(conn, [OrgUnitRecord(f"att-{tag}", f"考勤组 {tag}"), OrgUnitRecord(f"att-{tag}-x", "x")])
    codes = await devices.unit_codes(conn)
    unit = codes[f"att-{tag}"]
    grid = await zones.create(conn, code=f"grid-{tag}", name="福田网格", kind="duty_grid",
                              shape=team_day.GRID_SHAPE, properties={}, unit_id=unit)  # fmt: skip
    await devices.upsert_devices(
        conn,
        [DeviceRecord(f"{tag}-{p.code}", "inspector", p.name, org_unit=f"att-{tag}", protocol="mqtt") for p in TEAM],
    )
    phones, staff = {}, {}
    for p in TEAM:
        device = await devices.by_uid(conn, f"{tag}-{p.code}")
        assert device is not None
        phones[p.code] = (device.uid, device.id)
        staff[p.code] = await attendance.create_staff(
            conn, code=f"{tag}-{p.code}", name=p.name, role="inspector", unit_id=unit, team="T1", device_id=device.id
        )
    await _pattern(conn, team_day.TEAM_SHIFT, grid, staff_id=None, unit_id=unit, team="T1")
    for p in TEAM:
        if p.shift is not None:
            await _pattern(conn, p.shift, grid, staff_id=staff[p.code], unit_id=None, team=None)
        if p.leave is not None:
            await attendance.create_leave(conn, staff_id=staff[p.code], first_day=DAY, last_day=DAY, kind=p.leave)
    return Day(tag, unit, codes[f"att-{tag}-x"], grid, staff, phones)


async def _phones_report_over_http(server: Server, d: Day) -> None:
    """Every phone sends its day's fixes as the Traccar Client app does (OsmAnd over HTTP), all phones at once,
    each waiting for its answer (given once the fix is stored) before the next."""
    base = f"http://127.0.0.1:{server.ports['osmand']}/"

    async def phone(http: aiohttp.ClientSession, p: team_day.Person) -> None:
        uid = d.phones[p.code][0]
        for t, lat, lon in fixes(p, DAY):
            query = {"id": uid, "timestamp": str(int(t.timestamp())), "lat": str(lat), "lon": str(lon),
                     "accuracy": "8"}  # fmt: skip
            async with http.post(base, params=query) as r:
                assert r.status == 200, await r.text()

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(phone(http, p) for p in TEAM))


async def _claims_over_mqtt(server: Server, broker: Broker, db: psycopg.AsyncConnection, d: Day) -> None:
    """The phones' check-ins through the broker, the ingest and its attendance desk; the answers they get."""
    assert server.batcher is not None and server.pool is not None
    counters = Counters()
    ingest = MqttIngest(ReportSink(server.batcher, counters), Registry(server.pool), counters, host=broker.host,
                        port=broker.port, client_id="test-attendance-" + d.tag)  # fmt: skip
    ingest.attendance = CheckinDesk(server.pool, TZ, ingest.publish)
    await ingest.start()
    claimants = [p for p in TEAM if p.claims]
    try:
        async with aiomqtt.Client(broker.host, broker.port) as phone:
            await phone.subscribe([(phone_mqtt.message_topic_for(d.phones[p.code][0]), 1) for p in claimants])
            for p in claimants:
                for c in p.claims:
                    claim = Position(protocol="mqtt", device=d.phones[p.code][0], time=when(DAY, c.at),
                                     lat=c.place[0], lon=c.place[1], valid=True, accuracy_m=6.0,
                                     extras={"event": c.kind, "mock": c.mock})  # fmt: skip
                    topic = phone_mqtt.event_topic_for(claim.device)
                    await phone.publish(topic, phone_mqtt.encode_location(claim, fmt="msgpack"), qos=1)
            async with asyncio.timeout(10):
                async for message in phone.messages:
                    uid = str(message.topic).split("/")[1]
                    assert isinstance(message.payload, bytes)
                    d.answers[next(c for c, (u, _) in d.phones.items() if u == uid)] = json.loads(message.payload)
                    if len(d.answers) == len(claimants):
                        break

        async def stored() -> bool:
            cur = await db.execute("SELECT count(*) FROM positions WHERE device_id = %s AND extras ? 'event'",
                                   (d.phones[team_day.PHONE_CHECKIN][1],))  # fmt: skip
            row = await cur.fetchone()
            return row is not None and row[0] == 1

        await _eventually(stored, "the accepted check-in stored as a fix")
        assert counters.values["mqtt.fake_checkins"] == 2
    finally:
        await ingest.close(drain_timeout=2)


async def _alerts_of(conn: psycopg.AsyncConnection, d: Day) -> list[Alert]:
    found = await alerts.search(conn, unit_ids=[d.unit], with_unitless=False, limit=1000)
    return [a for a in found if a.kind in KINDS]


@pytest.fixture(scope="module")
async def day(server: Server, broker: Broker, fresh_database: str) -> AsyncIterator[Day]:
    conn = await psycopg.AsyncConnection.connect(fresh_database, autocommit=True)
    try:
        d = await _plan(conn, secrets.token_hex(3))
        await _phones_report_over_http(server, d)
        await _claims_over_mqtt(server, broker, conn, d)
        assert server.pool is not None
        job = AttendanceJob(server.pool, TZ, [d.told.append])
        for name, now in (("08:10", local(DAY, "08:10")), ("10:16", local(DAY, "10:16")),
                          ("17:00", local(DAY, "17:00")), ("next 07:00", local(DAY, "07:00", 1))):  # fmt: skip
            await job.check(now)
            d.passes[name] = {
                (d.code_of(a.device_id), a.kind, a.started_at, a.ended_at) for a in await _alerts_of(conn, d)
            }
        yield d
    finally:
        await conn.close()


def _expected_alerts() -> set[AlertKey]:
    return {(code, kind, when(DAY, start), when(DAY, end)) for code, kind, start, end in team_day.ALERTS}


# --------------------------------------------------------------------------------------------------------


async def test_phone_check_ins_are_judged_recorded_and_answered(day: Day, db: psycopg.AsyncConnection) -> None:
    claim = {code: team_day.BY_CODE[code].claims[0] for code in (team_day.FAKER, team_day.MOCKER,
                                                                  team_day.PHONE_CHECKIN)}  # fmt: skip
    verdicts = {team_day.PHONE_CHECKIN: None, team_day.FAKER: "implausible_move", team_day.MOCKER: "mock_location"}
    assert day.answers == {
        code: {"_type": "attendance", "event": claim[code].kind, "tst": int(when(DAY, claim[code].at).timestamp()),
               "accepted": reason is None, "reason": reason}
        for code, reason in verdicts.items()
    }  # fmt: skip
    cur = await db.execute(
        "SELECT device_id, person_id, kind, at, accepted, reason, mock, speed_kmh, zone_id FROM attendance_events"
        " WHERE device_id = ANY(%s) ORDER BY at",
        ([d for _, d in day.phones.values()],),
    )
    rows = await cur.fetchall()
    assert [(day.code_of(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[8]) for r in rows] == [
        (code, day.staff[code], claim[code].kind, when(DAY, claim[code].at), verdicts[code] is None, verdicts[code],
         claim[code].mock, day.grid)
        for code in (team_day.PHONE_CHECKIN, team_day.FAKER, team_day.MOCKER)  # by time
    ]  # fmt: skip
    assert rows[0][7] < 25 and rows[1][7] > 400  # km/h from the fix before: a walk does; no car would
    # A fake claim is no fix: it neither moves the phone on the map nor counts as being anywhere.
    cur = await db.execute(
        "SELECT d.uid, p.lat, p.lon, p.extras FROM positions p JOIN devices d ON d.id = p.device_id"
        " JOIN unnest(%s::integer[], %s::timestamptz[]) AS c (device_id, at)"
        "   ON p.device_id = c.device_id AND p.fix_time = c.at ORDER BY p.fix_time",
        ([day.phones[c][1] for c in claim], [when(DAY, c.at) for c in claim.values()]),
    )
    assert await cur.fetchall() == [
        (day.phones[team_day.PHONE_CHECKIN][0], *team_day.EDGE, {"event": "checkin", "mock": False}),
        (day.phones[team_day.FAKER][0], *team_day.HOME, None),  # the phone's own report of that minute, at home
        (day.phones[team_day.MOCKER][0], *patrol(when(DAY, claim[team_day.MOCKER].at)), None),
    ]


async def test_the_alerts_through_the_day(day: Day) -> None:
    t = lambda hhmm: local(DAY, hhmm)  # noqa: E731
    assert day.passes["08:10"] == {
        ("A02", "late", t("08:05"), None),
        ("A03", "late", t("08:05"), None),
        ("A07", "late", t("08:05"), None),
        ("A07", "fake_checkin", t("07:58"), t("07:58")),
    }
    assert day.passes["10:16"] == {
        ("A02", "late", t("08:05"), t("08:20")),
        ("A03", "late", t("08:05"), t("09:00")),
        ("A03", "absent", t("09:00"), None),
        ("A06", "off_post", t("10:00"), None),
        ("A07", "fake_checkin", t("07:58"), t("07:58")),
        ("A07", "late", t("08:05"), t("09:00")),
        ("A07", "absent", t("09:00"), None),
    }
    assert day.passes["17:00"] == day.passes["next 07:00"] == _expected_alerts()


async def test_each_alert_is_told_raised_then_ended_with_its_evidence(
    day: Day, server: Server, db: psycopg.AsyncConnection
) -> None:
    final = await _alerts_of(db, day)
    assert len(final) == len(team_day.ALERTS)
    (rule,) = [r for r in await alerts.rules(db) if r.kind == "attendance"]
    for a in final:
        steps = [b.ended_at is None for b in day.told if b.id == a.id]
        assert steps == [True, False], (a.kind, steps)  # raised, then ended: once each
        assert (a.rule_id, a.zone_id, a.severity, a.late) == (rule.id, day.grid, rule.severity, False)
        assert a.evidence["shift"]["person_code"] == f"{day.tag}-{day.code_of(a.device_id)}"
    where = {(day.code_of(a.device_id), a.kind): (a.evidence.get("lat"), a.evidence.get("lon")) for a in final}
    assert where[("A06", "off_post")] == team_day.SHOP
    assert where[("A07", "fake_checkin")] == where[("A01", "fake_checkin")] == team_day.CENTRE
    assert where[("A02", "late")] == (None, None)  # raised at 08:10, before she was seen
    assert where[("A05", "early_leave")] == tuple(round(v, 6) for v in patrol(local(DAY, "15:47")))
    assert where[("A03", "absent")] == (None, None)  # never seen

    # A restarted job judges the same day again and raises nothing twice.
    assert server.pool is not None
    heard: list[Alert] = []
    await AttendanceJob(server.pool, TZ, [heard.append]).check(local(DAY, "17:00"))
    assert heard == [] and len(await _alerts_of(db, day)) == len(final)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _expected_row(d: Day, p: team_day.Person) -> dict[str, Any]:
    e = p.expect
    start, end = team_day.shift_of(p)

    def mark(m: dict[str, Any] | None) -> dict[str, Any] | None:
        if m is None:
            return None
        t = when(DAY, m["at"])
        lat, lon = patrol(t) if m["by"] == "fix" else next(c.place for c in p.claims if c.at == m["at"])
        return {"at": _iso(t), "lat": round(lat, 6), "lon": round(lon, 6), "by": m["by"]}

    return {
        "person": {"id": d.staff[p.code], "code": f"{d.tag}-{p.code}", "name": p.name, "unit": d.unit},
        "device": d.phones[p.code][1],
        "day": DAY.isoformat(),
        "shift": {"status": "leave" if p.leave else "planned", "leave_kind": p.leave, "start": _iso(local(DAY, start)),
                  "end": _iso(local(DAY, end, 1 if end <= start else 0)), "grace_min": GRACE,
                  "checkin_window_min": WINDOW, "absent_after_min": ABSENT},
        "grid": d.grid,
        "check_in": mark(e["check_in"]),
        "check_out": mark(e["check_out"]),
        "minutes_on_post": e["minutes_on_post"],
        "statuses": e["statuses"],
        "off_post": [{"start": _iso(when(DAY, s["start"])), "end": _iso(when(DAY, s["end"])), "minutes": s["minutes"],
                      "ongoing": s["ongoing"], "lat": s["place"][0], "lon": s["place"][1]} for s in e["off_post"]],
        "stationary": [],
        "offline": [],
    }  # fmt: skip


async def _get(server: Server, path: str, headers: dict[str, str] = AUTH) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(f"http://127.0.0.1:{server.ports['api']}{path}") as r,
    ):
        body = await r.read()
        return r.status, json.loads(body) if r.content_type == "application/json" else body.decode()


async def test_the_day_report_matches_exactly(day: Day, server: Server) -> None:
    status, doc = await _get(server, f"/api/attendance?date={DAY.isoformat()}&unit={day.unit}")
    assert status == 200, doc
    assert (doc["date"], doc["timezone"]) == (DAY.isoformat(), "Asia/Shanghai")
    got = {row["person"]["code"].split("-", 1)[1]: row for row in doc["shifts"]}
    assert len(doc["shifts"]) == len(TEAM)
    for p in TEAM:
        assert got[p.code] == _expected_row(day, p), p.code
    # The early shift starts on the UTC day before its local day; it is this day's, and its first.
    assert doc["shifts"][0]["person"]["code"] == f"{day.tag}-A09"
    assert doc["shifts"][0]["shift"]["start"] == _iso(datetime.combine(DAY - timedelta(days=1), time(22), UTC))
    status, before = await _get(server, f"/api/attendance?date={(DAY - timedelta(days=1)).isoformat()}&unit={day.unit}")
    assert (status, before["shifts"]) == (200, [])


async def test_the_day_report_as_csv_reads_back(day: Day, server: Server) -> None:
    status, text = await _get(server, f"/api/attendance?date={DAY.isoformat()}&unit={day.unit}&format=csv")
    assert status == 200
    rows = {r["person_code"].split("-", 1)[1]: r for r in csv.DictReader(io.StringIO(text))}
    assert sorted(rows) == sorted(p.code for p in TEAM)
    for p in TEAM:
        row, e = _expected_row(day, p), rows[p.code]
        assert e["day"] == DAY.isoformat() and e["person_name"] == p.name and int(e["grid"]) == day.grid
        assert (e["start"], e["end"]) == (row["shift"]["start"], row["shift"]["end"])
        assert e["check_in"] == (row["check_in"]["at"] if row["check_in"] else "")
        assert e["check_in_by"] == (row["check_in"]["by"] if row["check_in"] else "")
        assert e["check_out"] == (row["check_out"]["at"] if row["check_out"] else "")
        assert float(e["minutes_on_post"]) == row["minutes_on_post"]
        assert e["statuses"].split() == row["statuses"]
        assert int(e["off_post_spells"]) == len(row["off_post"])
        assert float(e["off_post_minutes"]) == sum(s["minutes"] for s in row["off_post"])
        assert e["leave_kind"] == (p.leave or "")


async def test_the_summary_per_unit(day: Day, server: Server) -> None:
    status, doc = await _get(server, f"/api/attendance/summary?date={DAY.isoformat()}&unit={day.unit}")
    assert status == 200
    (mine,) = doc["by_unit"]
    want = {"planned": 8, "present": 6, "late": 1, "absent": 2, "on_leave": 1, "holiday": 0, "off_post_now": 0}
    assert mine["unit"]["id"] == day.unit and mine["own"] == mine["all"] == doc["total"] == want


async def test_reports_stay_within_the_callers_units(day: Day, server: Server, db: psycopg.AsyncConnection) -> None:
    async def token_of(role: str, unit: int) -> dict[str, str]:
        user = await users.create_user(db, f"{role}-{secrets.token_hex(3)}", role, unit)
        assert user is not None
        return {"Authorization": f"Bearer {await tokens.issue(db, user.id, 'test', None)}"}

    outsider = await token_of("dispatcher", day.other_unit)
    status, doc = await _get(server, f"/api/attendance?date={DAY.isoformat()}", outsider)
    assert status == 200 and doc["shifts"] == []
    status, _ = await _get(server, f"/api/attendance?date={DAY.isoformat()}&unit={day.unit}", outsider)
    assert status == 404
    auditor = await token_of("auditor", day.unit)
    status, doc = await _get(server, f"/api/attendance/summary?date={DAY.isoformat()}", auditor)
    assert status == 200 and [u["unit"]["id"] for u in doc["by_unit"]] == [day.unit]
    assert doc["total"]["planned"] == 8
    for bad in ("date=2026-13-01", "date=yesterday", "format=pdf", "unit=abc"):
        status, _ = await _get(server, f"/api/attendance?{bad}")
        assert status == 400, bad


async def test_on_duty_now_online_and_offline(day: Day, server: Server, db: psycopg.AsyncConnection) -> None:
    """Two more people with a shift going on now: one phone reports, the other is silent."""
    now = datetime.now(TZ).replace(second=0, microsecond=0)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    unit_code = f"att-{day.tag}"
    uids = [f"{day.tag}-now-{i}" for i in range(2)]
    await devices.upsert_devices(db, [DeviceRecord(u, "inspector", org_unit=unit_code) for u in uids])
    for i, uid in enumerate(uids):
        device = await devices.by_uid(db, uid)
        assert device is not None
        person = await attendance.create_staff(db, code=uid, name=f"值班{i}", role="inspector", unit_id=day.unit,
                                               team=None, device_id=device.id)  # fmt: skip
        await attendance.create_override(db, staff_id=person, day=start.date(), kind="extra", start=start.time(),
                                         end=end.time(), zone_id=day.grid)  # fmt: skip
    fix = int(datetime.now(UTC).timestamp())
    url = f"http://127.0.0.1:{server.ports['osmand']}/?id={uids[0]}&timestamp={fix}&lat={22.543}&lon={114.053}"
    async with aiohttp.ClientSession() as http, http.post(url) as r:
        assert r.status == 200
    status, doc = await _get(server, f"/api/attendance/now?unit={day.unit}")
    assert status == 200
    (mine,) = doc["by_unit"]
    assert mine["own"] == doc["total"] == {"on_duty": 2, "online": 1, "offline": 1}
    assert set(doc) == {"time", "total", "by_unit"}


async def test_a_changed_plan_and_a_stale_alert(day: Day, server: Server, db: psycopg.AsyncConnection) -> None:
    """A shift cancelled while its person is late: the alert ends at the next pass. An alert left going on
    from long ago (no pass judged its shift to the end) ends where the device's next one of its kind begins."""
    assert server.pool is not None
    people = {}
    for code in ("X1", "X2"):
        uid = f"{day.tag}-{code}"
        await devices.upsert_devices(db, [DeviceRecord(uid, "inspector", org_unit=f"att-{day.tag}-x")])
        device = await devices.by_uid(db, uid)
        assert device is not None
        person = await attendance.create_staff(db, code=uid, name=code, role="inspector", unit_id=day.other_unit,
                                               team=None, device_id=device.id)  # fmt: skip
        await _pattern(db, team_day.TEAM_SHIFT, day.grid, staff_id=person, unit_id=None, team=None)
        people[code] = (person, device.id)
    (rule,) = [r for r in await alerts.rules(db) if r.kind == "attendance"]
    long_ago = local(DAY, "08:05", -2)
    stale = alerts.NewAlert(long_ago, people["X2"][1], rule.id, day.grid, "late", rule.severity, False, {})
    (stale_id,) = await alerts.raise_alerts(db, [stale])

    heard: list[Alert] = []
    job = AttendanceJob(server.pool, TZ, [heard.append])
    await job.check(local(DAY, "08:10"))
    await attendance.create_override(db, staff_id=people["X1"][0], day=DAY, kind="cancel", start=None, end=None,
                                     zone_id=None)  # fmt: skip
    await job.check(local(DAY, "08:20"))

    def late_of(code: str) -> list[tuple[datetime, datetime | None]]:
        return [(a.started_at, a.ended_at) for a in heard if a.device_id == people[code][1] and a.kind == "late"]

    assert late_of("X1") == [(local(DAY, "08:05"), None), (local(DAY, "08:05"), local(DAY, "08:20"))]
    assert [(a.id, a.ended_at) for a in heard if a.id == stale_id] == [(stale_id, local(DAY, "08:05"))]
    assert late_of("X2") == [(long_ago, local(DAY, "08:05")), (local(DAY, "08:05"), None)]


async def test_every_attendance_route_is_in_the_openapi_document(server: Server) -> None:
    status, doc = await _get(server, "/api/openapi.json")
    assert status == 200
    assert {"/api/attendance", "/api/attendance/summary", "/api/attendance/now"} <= set(doc["paths"])
