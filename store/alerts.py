"""Alert rules and alerts: raised when a condition begins, ended when it ends, acknowledged, closed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    name: str
    kind: str
    params: dict[str, Any]
    device_kinds: list[str] | None
    org_unit_id: int | None
    severity: int
    enabled: bool


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    started_at: datetime
    ended_at: datetime | None
    device_id: int
    device_uid: str
    org_unit_id: int | None
    rule_id: int
    rule_name: str
    zone_id: int | None
    kind: str
    severity: int
    state: str
    late: bool
    evidence: dict[str, Any]
    raised_at: datetime
    ack_by: str | None
    ack_at: datetime | None
    ack_comment: str | None
    closed_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewAlert:
    started_at: datetime
    device_id: int
    rule_id: int
    zone_id: int | None
    kind: str
    severity: int
    late: bool
    evidence: dict[str, Any]


_RULE = "id, name, kind, params, device_kinds::text[], org_unit_id, severity, enabled"
_ALERT_OF = (
    "a.id, a.started_at, a.ended_at, a.device_id, d.uid, d.org_unit_id, a.rule_id, r.name, a.zone_id, a.kind,"
    " a.severity, a.state::text, a.late, a.evidence, a.raised_at, a.ack_by, a.ack_at, a.ack_comment, a.closed_at"
    " FROM {} a JOIN devices d ON d.id = a.device_id JOIN alert_rules r ON r.id = a.rule_id"
)
_ALERT = _ALERT_OF.format("alerts")
_INSERT = (
    "INSERT INTO alerts (started_at, device_id, rule_id, zone_id, kind, severity, late, evidence)"
    " SELECT %s, %s, %s, %s, %s, %s, %s, %s WHERE NOT EXISTS (SELECT 1 FROM alerts"
    " WHERE device_id = %s AND rule_id = %s AND zone_id IS NOT DISTINCT FROM %s AND ended_at IS NULL"
    " AND late = %s AND kind = %s) RETURNING {}"
)
_END = (
    "UPDATE alerts SET ended_at = %s WHERE device_id = %s AND rule_id = %s AND zone_id IS NOT DISTINCT FROM %s"
    " AND ended_at IS NULL AND late = %s AND started_at <= %s AND (%s::text IS NULL OR kind = %s) RETURNING {}"
)


@dataclass(frozen=True, slots=True)
class EndAlert:
    device_id: int
    rule_id: int
    zone_id: int | None
    ended_at: datetime
    late: bool
    kind: str | None = None  # None: whatever kind the rule raised


async def rules(conn: psycopg.AsyncConnection, *, enabled_only: bool = False) -> list[Rule]:
    where = " WHERE enabled" if enabled_only else ""
    cur = await conn.execute(f"SELECT {_RULE} FROM alert_rules{where} ORDER BY id")  # type: ignore[arg-type]
    return [Rule(*row) for row in await cur.fetchall()]


async def create_rule(
    conn: psycopg.AsyncConnection,
    *,
    name: str,
    kind: str,
    params: dict[str, Any],
    device_kinds: list[str] | None,
    org_unit_id: int | None,
    severity: int,
) -> int:
    cur = await conn.execute(
        "INSERT INTO alert_rules (name, kind, params, device_kinds, org_unit_id, severity)"
        " VALUES (%s, %s, %s, %s::device_kind[], %s, %s) RETURNING id",
        (name, kind, Jsonb(params), device_kinds, org_unit_id, severity),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def update_rule(conn: psycopg.AsyncConnection, rule_id: int, changes: dict[str, Any]) -> bool:
    sets, values = [], []
    for key, value in changes.items():
        if key == "params":
            value = Jsonb(value)
        sets.append(f"{key} = %s::device_kind[]" if key == "device_kinds" else f"{key} = %s")
        values.append(value)
    cur = await conn.execute(
        f"UPDATE alert_rules SET {', '.join(sets)}, updated_at = now() WHERE id = %s",  # type: ignore[arg-type]
        (*values, rule_id),
    )
    return cur.rowcount > 0


def _insert_params(a: NewAlert) -> tuple[Any, ...]:
    return (
        a.started_at, a.device_id, a.rule_id, a.zone_id, a.kind, a.severity, a.late, Jsonb(a.evidence),
        a.device_id, a.rule_id, a.zone_id, a.late, a.kind,
    )  # fmt: skip


def _end_params(e: EndAlert) -> tuple[Any, ...]:
    return (e.ended_at, e.device_id, e.rule_id, e.zone_id, e.late, e.ended_at, e.kind, e.kind)


def _change_json(c: NewAlert | EndAlert) -> dict[str, Any]:
    """A change as apply_alert_changes reads it: a raise has `started_at`, an end `ended_at`."""
    out = {f.name: getattr(c, f.name) for f in fields(c)}
    for key in ("started_at", "ended_at"):
        if key in out:
            out[key] = out[key].isoformat()
    return out


_APPLY = "SELECT " + _ALERT_OF.format("apply_alert_changes(%s) WITH ORDINALITY") + " ORDER BY a.ordinality"


async def apply(conn: psycopg.AsyncConnection, changes: Sequence[NewAlert | EndAlert]) -> list[Alert]:
    """Raise and end alerts in order, in one statement (the database function apply_alert_changes); each alert
    changed, as it stood right after its change (an alert raised and ended in one batch comes twice: raised,
    then ended). A raise is skipped while the same device, rule, zone and kind has an alert going on (a rule
    may raise alerts of several kinds that overlap in time)."""
    if not changes:
        return []
    cur = await conn.execute(_APPLY, (Jsonb([_change_json(c) for c in changes]),))  # type: ignore[arg-type]
    return [Alert(*row) for row in await cur.fetchall()]


async def raise_alerts(conn: psycopg.AsyncConnection, new: Sequence[NewAlert]) -> list[int]:
    """Insert alerts (skipped as `apply` says); their ids."""
    ids = []
    async with conn.transaction():
        for a in new:
            cur = await conn.execute(_INSERT.format("id"), _insert_params(a))
            row = await cur.fetchone()
            if row is not None:
                ids.append(int(row[0]))
    return ids


async def end_alerts(
    conn: psycopg.AsyncConnection,
    device_id: int,
    rule_id: int,
    zone_id: int | None,
    ended_at: datetime,
    late: bool,
    kind: str | None = None,
) -> list[int]:
    """The condition is over: the going-on alerts of this device, rule and zone (and kind) get their end time."""
    end = EndAlert(device_id, rule_id, zone_id, ended_at, late, kind)
    cur = await conn.execute(_END.format("id"), _end_params(end))
    return [int(r[0]) for r in await cur.fetchall()]


async def get(conn: psycopg.AsyncConnection, alert_id: int) -> Alert | None:
    cur = await conn.execute(f"SELECT {_ALERT} WHERE a.id = %s", (alert_id,))  # type: ignore[arg-type]
    row = await cur.fetchone()
    return Alert(*row) if row else None


async def search(
    conn: psycopg.AsyncConnection,
    *,
    unit_ids: Sequence[int] | None,
    with_unitless: bool,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: str | None = None,
    rule_id: int | None = None,
    device_id: int | None = None,
    state: str | None = None,
    limit: int = 200,
) -> list[Alert]:
    cur = await conn.execute(
        f"SELECT {_ALERT} WHERE (%(units)s::integer[] IS NULL OR d.org_unit_id = ANY(%(units)s)"  # type: ignore[arg-type]
        "   OR (%(unitless)s AND d.org_unit_id IS NULL))"
        " AND (%(since)s::timestamptz IS NULL OR a.started_at >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR a.started_at < %(until)s)"
        " AND (%(kind)s::text IS NULL OR a.kind = %(kind)s)"
        " AND (%(rule)s::integer IS NULL OR a.rule_id = %(rule)s)"
        " AND (%(device)s::integer IS NULL OR a.device_id = %(device)s)"
        " AND (%(state)s::alert_state IS NULL OR a.state = %(state)s::alert_state)"
        " ORDER BY a.started_at DESC, a.id DESC LIMIT %(limit)s",
        {
            "units": None if unit_ids is None else list(unit_ids),
            "unitless": with_unitless,
            "since": since,
            "until": until,
            "kind": kind,
            "rule": rule_id,
            "device": device_id,
            "state": state,
            "limit": limit,
        },
    )
    return [Alert(*row) for row in await cur.fetchall()]


async def acknowledge(conn: psycopg.AsyncConnection, alert_id: int, by: str, comment: str, close: bool) -> bool:
    """raised -> acknowledged (by whom, with a comment); `close` takes it on to closed."""
    cur = await conn.execute(
        "UPDATE alerts SET state = CASE WHEN %s THEN 'closed'::alert_state ELSE 'acknowledged'::alert_state END,"
        " ack_by = COALESCE(ack_by, %s), ack_at = COALESCE(ack_at, now()), ack_comment = COALESCE(ack_comment, %s),"
        " closed_at = CASE WHEN %s THEN now() ELSE closed_at END WHERE id = %s AND state <> 'closed'",
        (close, by, comment, close, alert_id),
    )
    return cur.rowcount > 0


async def ongoing(conn: psycopg.AsyncConnection, kind: str) -> list[tuple[int, int, datetime]]:
    """The alerts of a kind still going on (not late): device, rule and when each began."""
    cur = await conn.execute(
        "SELECT device_id, rule_id, started_at FROM alerts WHERE kind = %s AND ended_at IS NULL AND NOT late", (kind,)
    )
    return [(int(d), int(r), t) for d, r, t in await cur.fetchall()]


async def of_rules(
    conn: psycopg.AsyncConnection, rule_ids: Sequence[int], since: datetime, until: datetime
) -> list[Alert]:
    """The alerts of these rules that began from `since` to `until` (both included), by start."""
    cur = await conn.execute(
        f"SELECT {_ALERT} WHERE a.rule_id = ANY(%s) AND a.started_at BETWEEN %s AND %s"  # type: ignore[arg-type]
        " ORDER BY a.started_at, a.id",
        (list(rule_ids), since, until),
    )
    return [Alert(*row) for row in await cur.fetchall()]


async def count_by_kind(conn: psycopg.AsyncConnection) -> dict[str, int]:
    """How many alerts there are of each kind (benchmarks report the rules' output)."""
    cur = await conn.execute("SELECT kind, count(*) FROM alerts GROUP BY kind ORDER BY kind")
    return {k: int(n) for k, n in await cur.fetchall()}
