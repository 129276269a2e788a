"""HTTP routes of alerts and rules: list and filter alerts, acknowledge and close them, edit the rules."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from access.errors import json_error, json_object
from access.principal import principal
from access.query import int_param, iso, time_param, unit_scope
from alerts import coverage_rule
from alerts import params as rule_params
from alerts.coverage_rule import COVERAGE
from alerts.engine import RULE_KINDS
from alerts.listeners import Listener, tell
from store import alerts
from store.alerts import Alert, Rule
from store.devices import KINDS

POOL = web.AppKey("alerts_pool", AsyncConnectionPool)
# Called with the alert after an acknowledgement or close, as the engine's listeners are after a raise or an end.
ACK_LISTENERS: web.AppKey[list[Listener]] = web.AppKey("alert_ack_listeners")
STATES = ("raised", "acknowledged", "closed")


def alert_json(a: Alert) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind,
        "rule": {"id": a.rule_id, "name": a.rule_name},
        "device": a.device_id,
        "uid": a.device_uid,
        "zone": a.zone_id,
        "severity": a.severity,
        "state": a.state,
        "late": a.late,
        "started": iso(a.started_at),
        "ended": iso(a.ended_at),
        "raised": iso(a.raised_at),
        "ack": None if a.ack_at is None else {"by": a.ack_by, "at": iso(a.ack_at), "comment": a.ack_comment},
        "closed": iso(a.closed_at),
        "evidence": a.evidence,
    }


def rule_json(r: Rule) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "kind": r.kind,
        "params": r.params,
        "device_kinds": r.device_kinds,
        "unit": r.org_unit_id,
        "severity": r.severity,
        "enabled": r.enabled,
    }


async def list_alerts(request: web.Request) -> web.Response:
    who = principal(request)
    q = request.query
    state = q.get("state") or None
    if state is not None and state not in STATES:
        raise json_error(web.HTTPBadRequest, f"state: one of {', '.join(STATES)}")
    unit = int_param(q.get("unit"), "unit")
    async with request.app[POOL].connection() as conn:
        units, unitless = await unit_scope(conn, who, None if unit is None else [unit])
        found = await alerts.search(
            conn,
            unit_ids=units,
            with_unitless=unitless,
            since=time_param(q.get("since"), "since"),
            until=time_param(q.get("until"), "until"),
            kind=q.get("kind") or None,
            rule_id=int_param(q.get("rule"), "rule"),
            device_id=int_param(q.get("device"), "device"),
            state=state,
            limit=min(1000, int_param(q.get("limit"), "limit") or 200),
        )
    return web.json_response({"alerts": [alert_json(a) for a in found]})


async def _visible(request: web.Request) -> Alert:
    try:
        alert_id = int(request.match_info["id"])
    except ValueError:
        raise json_error(web.HTTPNotFound, "no such alert") from None
    async with request.app[POOL].connection() as conn:
        found = await alerts.get(conn, alert_id)
    if found is None or not principal(request).sees_unit(found.org_unit_id):
        raise json_error(web.HTTPNotFound, f"no alert {alert_id}")
    return found


async def one_alert(request: web.Request) -> web.Response:
    return web.json_response(alert_json(await _visible(request)))


async def ack_alert(request: web.Request) -> web.Response:
    who = principal(request)
    who.require("admin", "dispatcher")
    found = await _visible(request)
    body = await json_object(request) if request.can_read_body else {}
    comment = body.get("comment", "")
    close = body.get("close", False)
    if not isinstance(comment, str) or len(comment) > 1000 or not isinstance(close, bool):
        raise json_error(web.HTTPBadRequest, "comment: text up to 1,000 characters; close: true or false")
    async with request.app[POOL].connection() as conn:
        if not await alerts.acknowledge(conn, found.id, who.name, comment, close):
            raise json_error(web.HTTPConflict, f"alert {found.id} is closed already")
        again = await alerts.get(conn, found.id)
    assert again is not None
    listeners: list[Listener] = request.app.get(ACK_LISTENERS, [])
    tell(listeners, [again])
    return web.json_response(alert_json(again))


async def list_rules(request: web.Request) -> web.Response:
    principal(request)
    async with request.app[POOL].connection() as conn:
        found = await alerts.rules(conn)
    return web.json_response({"rules": [rule_json(r) for r in found]})


def _rule_fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "name" in body or creating:
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            raise json_error(web.HTTPBadRequest, "name: a non-empty text")
        out["name"] = body["name"].strip()
    if "kind" in body or creating:
        if body.get("kind") not in RULE_KINDS:
            raise json_error(web.HTTPBadRequest, f"kind: one of {', '.join(RULE_KINDS)}")
        out["kind"] = body["kind"]
    if "params" in body:
        params = body["params"]
        wrong = rule_params.problem(params)
        if wrong is not None:
            raise json_error(web.HTTPBadRequest, wrong)
        out["params"] = params
    if "device_kinds" in body:
        kinds = body["device_kinds"]
        if kinds is not None and (not isinstance(kinds, list) or not all(k in KINDS for k in kinds)):
            raise json_error(web.HTTPBadRequest, f"device_kinds: null or a list of {', '.join(KINDS)}")
        out["device_kinds"] = kinds
    if "unit" in body:
        if body["unit"] is not None and (not isinstance(body["unit"], int) or isinstance(body["unit"], bool)):
            raise json_error(web.HTTPBadRequest, "unit: a unit id or null")
        out["org_unit_id"] = body["unit"]
    if "severity" in body:
        if body["severity"] not in (1, 2, 3, 4):
            raise json_error(web.HTTPBadRequest, "severity: 1 (low) to 4 (critical)")
        out["severity"] = body["severity"]
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise json_error(web.HTTPBadRequest, "enabled: true or false")
        out["enabled"] = body["enabled"]
    return out


def _check_coverage(params: dict[str, Any]) -> None:
    """A coverage rule's params as its job reads them: shifts required, and the rule's own checks."""
    try:
        coverage_rule.parse(params)
    except ValueError as e:
        raise json_error(web.HTTPBadRequest, str(e)) from None


async def create_rule(request: web.Request) -> web.Response:
    principal(request).require("admin")
    fields = _rule_fields(await json_object(request), creating=True)
    if fields["kind"] == COVERAGE:
        _check_coverage(fields.get("params", {}))
    async with request.app[POOL].connection() as conn:
        rule_id = await alerts.create_rule(
            conn,
            name=fields["name"],
            kind=fields["kind"],
            params=fields.get("params", {}),
            device_kinds=fields.get("device_kinds"),
            org_unit_id=fields.get("org_unit_id"),
            severity=fields.get("severity", 2),
        )
        found = [r for r in await alerts.rules(conn) if r.id == rule_id]
    return web.json_response(rule_json(found[0]), status=201)


async def change_rule(request: web.Request) -> web.Response:
    principal(request).require("admin")
    try:
        rule_id = int(request.match_info["id"])
    except ValueError:
        raise json_error(web.HTTPNotFound, "no such rule") from None
    fields = _rule_fields(await json_object(request), creating=False)
    if not fields:
        raise json_error(web.HTTPBadRequest, "nothing to change")
    async with request.app[POOL].connection() as conn:
        stored = [r for r in await alerts.rules(conn) if r.id == rule_id]
        if stored and fields.get("kind", stored[0].kind) == COVERAGE and ("kind" in fields or "params" in fields):
            _check_coverage(fields.get("params", stored[0].params))
        if not await alerts.update_rule(conn, rule_id, fields):
            raise json_error(web.HTTPNotFound, f"no rule {rule_id}")
        found = [r for r in await alerts.rules(conn) if r.id == rule_id]
    return web.json_response(rule_json(found[0]))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/alerts", list_alerts),
        web.get(r"/api/alerts/{id:\d+}", one_alert),
        web.post(r"/api/alerts/{id:\d+}/ack", ack_alert),
        web.get("/api/rules", list_rules),
        web.post("/api/rules", create_rule),
        web.patch(r"/api/rules/{id:\d+}", change_rule),
    ]
