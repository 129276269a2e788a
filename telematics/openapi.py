"""The OpenAPI 3.1 document of the HTTP API, served at /api/openapi.json (docs/api.md in prose)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from store.zones import KINDS as ZONE_KINDS


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json(_ref("Error"), "error")
_T = {"type": "string", "format": "date-time"}
_NT = {"type": ["string", "null"], "format": "date-time"}
_COUNTS = {
    "type": "object",
    "properties": {k: {"type": "integer"} for k in ("online", "offline", "never")},
    "required": ["online", "offline", "never"],
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
_CRS = {"name": "crs", "in": "query", "schema": {"enum": ["wgs84", "gcj02", "bd09"]}}


def _q(name: str, schema: dict[str, Any] | None = None, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema or {"type": "string"}, "description": description}


def _op(summary: str, answer: dict[str, Any], *, body: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": answer, "401": _ERROR}, **extra}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        op["responses"]["400"] = _ERROR
    return op


SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
    "Unit": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "code": {"type": "string"},
            "name": {"type": "string"},
            "parent_id": {"type": ["integer", "null"]},
        },
    },
    "User": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "role": {"enum": ["admin", "dispatcher", "auditor"]},
            "unit": {"oneOf": [_ref("Unit"), {"type": "null"}]},
        },
    },
    "Device": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "uid": {"type": "string"},
            "kind": {"enum": ["sanitation", "muck", "enforcement", "inspector", "other"]},
            "name": {"type": "string"},
            "plate": {"type": ["string", "null"]},
            "unit": {"oneOf": [_ref("Unit"), {"type": "null"}]},
            "protocol": {"type": ["string", "null"]},
            "enabled": {"type": "boolean"},
        },
    },
    "Live": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "uid": {"type": "string"},
            "kind": {"type": "string"},
            "name": {"type": "string"},
            "plate": {"type": ["string", "null"]},
            "unit_id": {"type": ["integer", "null"]},
            "lat": {"type": ["number", "null"]},
            "lon": {"type": ["number", "null"]},
            "time": _NT,
            "speed_kmh": {"type": ["number", "null"]},
            "course": {"type": ["number", "null"]},
            "moving": {"type": "boolean"},
            "status": {"enum": ["online", "offline", "never"]},
            "last_seen": _NT,
        },
    },
    "Counts": {
        "type": "object",
        "properties": {
            "time": _T,
            "total": _COUNTS,
            "by_kind": {"type": "object", "additionalProperties": _COUNTS},
            "by_unit": {
                "type": "array",
                "items": {"type": "object", "properties": {"unit": _ref("Unit"), "own": _COUNTS, "all": _COUNTS}},
            },
        },
    },
    "Shape": {
        "type": "object",
        "description": "one of circle or polygon (a GeoJSON Polygon geometry, lon/lat order)",
        "properties": {
            "circle": {
                "type": "object",
                "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}, "radius_m": {"type": "number"}},
                "required": ["lat", "lon", "radius_m"],
            },
            "polygon": {"type": "object"},
            "kinds": {"type": "array", "items": {"type": "string"}},
            "units": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "Zone": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "code": {"type": ["string", "null"], "description": "stable key of imports"},
            "name": {"type": "string"},
            "kind": {"enum": list(ZONE_KINDS)},
            "shape": {
                "type": "object",
                "description": "exactly one of circle {lat, lon, radius_m}, polygon (GeoJSON Polygon), "
                "multipolygon (GeoJSON MultiPolygon) or corridor {line: GeoJSON LineString, width_m}",
            },
            "properties": {"type": "object", "description": "free-form; speed_zone: speed_limit_kmh"},
            "unit": {"oneOf": [_ref("Unit"), {"type": "null"}]},
            "enabled": {"type": "boolean"},
            "created": _T,
            "updated": _T,
        },
    },
    "ZoneAssignments": {
        "type": "object",
        "properties": {
            "devices": {"type": "array", "items": {"type": "integer"}},
            "kinds": {"type": "array", "items": {"enum": ["sanitation", "muck", "enforcement", "inspector", "other"]}},
            "units": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "Message": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "text": {"type": "string"},
            "created": _T,
            "by": {"type": "string"},
            "expires": _T,
            "deliveries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "device": {"type": "integer"},
                        "uid": {"type": "string"},
                        "state": {"enum": ["queued", "sent", "acknowledged", "failed", "expired"]},
                        "updated": _T,
                        "detail": {"type": ["string", "null"]},
                    },
                },
            },
        },
    },
}

PATHS: dict[str, Any] = {
    "/api/login": {
        "post": {
            **_op(
                "a token for a name and password",
                _json(
                    {"type": "object", "properties": {"token": {"type": "string"}, "expires": _T, "user": _ref("User")}}
                ),
                body={
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "password": {"type": "string"}},
                    "required": ["name", "password"],
                },
            ),
            "security": [],
        }
    },
    "/api/logout": {"post": _op("revoke the token of the call", {"description": "revoked"})},
    "/api/me": {"get": _op("the caller", _json(_ref("User")))},
    "/api/units": {"get": _op("the caller's unit and those below", _json({"type": "object"}))},
    "/api/users": {
        "post": _op(
            "create a user (admin)",
            _json(_ref("User"), "created"),
            body={"type": "object", "required": ["name", "role", "unit"]},
        )
    },
    "/api/devices": {
        "get": _op(
            "devices of the caller's units",
            _json({"type": "object", "properties": {"devices": {"type": "array", "items": _ref("Device")}}}),
            parameters=[
                _q("kind"),
                _q("unit", {"type": "integer"}),
                _q("online", {"enum": ["true", "false"]}),
                _q("q", description="uid, name or plate contains"),
                _q("limit", {"type": "integer"}),
                _q("offset", {"type": "integer"}),
            ],
        ),
        "post": _op(
            "create a device (admin)",
            _json(_ref("Device"), "created"),
            body={"type": "object", "required": ["uid"]},
        ),
    },
    "/api/devices/{id}": {
        "patch": _op(
            "change name, plate, kind, unit or enabled (admin)",
            _json(_ref("Device")),
            body={"type": "object"},
            parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        ),
        "get": _op(
            "one device",
            _json(_ref("Device")),
            parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        ),
    },
    "/api/devices/{uid}/latest": {
        "get": _op(
            "a device's newest stored fix",
            _json({"type": "object"}),
            parameters=[{"name": "uid", "in": "path", "required": True, "schema": {"type": "string"}}],
        )
    },
    "/api/live": {
        "get": _op(
            "live state of the caller's devices",
            _json({"type": "object", "properties": {"time": _T, "devices": {"type": "array", "items": _ref("Live")}}}),
            parameters=[_q("bbox", description="min_lon,min_lat,max_lon,max_lat"), _q("kind"), _q("unit"), _CRS],
        )
    },
    "/api/live/counts": {"get": _op("online / offline / never by kind and unit", _json(_ref("Counts")))},
    "/api/live/ws": {
        "get": _op(
            "WebSocket: subscribe, then snapshot, delta, counts and message events (docs/api.md)",
            {"description": "switching protocols"},
            parameters=[_q("token", description="the bearer token (browsers cannot set headers)")],
        )
    },
    "/api/select": {
        "post": _op(
            "devices inside a circle or polygon now",
            _json({"type": "object", "properties": {"devices": {"type": "array", "items": _ref("Live")}}}),
            body=_ref("Shape"),
            parameters=[_CRS],
        )
    },
    "/api/zones": {
        "get": _op(
            "zones of the caller's units",
            _json(
                {
                    "type": "object",
                    "properties": {"zones": {"type": "array", "items": _ref("Zone")}, "total": {"type": "integer"}},
                }
            ),
            parameters=[
                _q("kind"),
                _q("unit", {"type": "integer"}),
                _q("enabled", {"enum": ["true", "false"]}),
                _q("q", description="code or name contains"),
                _q("limit", {"type": "integer"}),
                _q("offset", {"type": "integer"}),
                _CRS,
            ],
        ),
        "post": _op(
            "create a zone (admin)",
            _json(_ref("Zone"), "created"),
            body={"type": "object", "required": ["shape"]},
            parameters=[_CRS],
        ),
    },
    "/api/zones/{id}": {
        "get": _op("one zone", _json(_ref("Zone")), parameters=[_ID, _CRS]),
        "patch": _op(
            "change code, name, kind, shape, properties, unit or enabled (admin)",
            _json(_ref("Zone")),
            body={"type": "object"},
            parameters=[_ID, _CRS],
        ),
        "delete": _op("delete a zone and its assignments (admin)", {"description": "deleted"}, parameters=[_ID]),
    },
    "/api/zones/{id}/assignments": {
        "get": _op(
            "the devices, kinds and units the zone applies to", _json(_ref("ZoneAssignments")), parameters=[_ID]
        ),
        "put": _op(
            "replace the zone's assignments (admin)",
            _json(_ref("ZoneAssignments")),
            body=_ref("ZoneAssignments"),
            parameters=[_ID],
        ),
    },
    "/api/messages": {
        "get": _op("recent messages", _json({"type": "object"}), parameters=[_q("limit", {"type": "integer"})]),
        "post": _op(
            "send a text to devices (admin, dispatcher)",
            _json(_ref("Message"), "created"),
            body={
                "type": "object",
                "properties": {
                    "devices": {"type": "array", "items": {"type": "integer"}},
                    "text": {"type": "string", "maxLength": 300},
                    "expires_s": {"type": "integer"},
                },
                "required": ["devices", "text"],
            },
        ),
    },
    "/api/messages/{id}": {
        "get": _op(
            "a message and its deliveries",
            _json(_ref("Message")),
            parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        )
    },
}

_BY_ID = [_ID]
PATHS.update(
    {
        "/api/alerts": {
            "get": _op(
                "alerts of the caller's devices, newest first",
                _json({"type": "object", "properties": {"alerts": {"type": "array", "items": _ref("Alert")}}}),
                parameters=[
                    _q("since", {"type": "string", "format": "date-time"}),
                    _q("until", {"type": "string", "format": "date-time"}),
                    _q("kind"),
                    _q("rule", {"type": "integer"}),
                    _q("device", {"type": "integer"}),
                    _q("unit", {"type": "integer"}, "a unit and those below it"),
                    _q("state", {"enum": ["raised", "acknowledged", "closed"]}),
                    _q("limit", {"type": "integer"}),
                ],
            )
        },
        "/api/alerts/{id}": {"get": _op("one alert", _json(_ref("Alert")), parameters=_BY_ID)},
        "/api/alerts/{id}/ack": {
            "post": _op(
                "acknowledge (and optionally close) an alert (admin, dispatcher)",
                _json(_ref("Alert")),
                body={"type": "object", "properties": {"comment": {"type": "string"}, "close": {"type": "boolean"}}},
                parameters=_BY_ID,
            )
        },
        "/api/rules": {
            "get": _op("the alert rules", _json({"type": "object"})),
            "post": _op("create a rule (admin)", _json({"type": "object"}, "created"), body={"type": "object"}),
        },
        "/api/rules/{id}": {
            "patch": _op("change a rule (admin)", _json({"type": "object"}), body={"type": "object"}, parameters=_BY_ID)
        },
    }
)
SCHEMAS["Alert"] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "kind": {"type": "string"},
        "rule": {"type": "object"},
        "device": {"type": "integer"},
        "uid": {"type": "string"},
        "zone": {"type": ["integer", "null"]},
        "severity": {"type": "integer"},
        "state": {"enum": ["raised", "acknowledged", "closed"]},
        "late": {"type": "boolean"},
        "started": _T,
        "ended": _NT,
        "raised": _T,
        "ack": {"type": ["object", "null"]},
        "closed": _NT,
        "evidence": {"type": "object"},
    },
}

PATHS["/api/audit"] = {
    "get": _op(
        "the audit log of replays, queries and exports, newest first (admin; entries of callers in its units)",
        _json({"type": "object", "properties": {"entries": {"type": "array", "items": {"type": "object"}}}}),
        parameters=[
            _q("since", _T),
            _q("until", _T),
            _q("user"),
            _q("action", description="an action, or a prefix such as export"),
            _q("limit", {"type": "integer"}),
            _q("offset", {"type": "integer"}),
        ],
    )
}

SCHEMAS["Coverage"] = {
    "type": "object",
    "properties": {
        "rule": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
        "device": {"type": "integer"},
        "uid": {"type": "string"},
        "zone": {"type": "integer"},
        "shift_start": _T,
        "shift_end": _T,
        "cells_total": {"type": "integer"},
        "cells_visited": {"type": "integer"},
        "share": {"type": "number"},
        "computed": _T,
        "alert": {"type": ["integer", "null"], "description": "the alert raised for a share under the minimum"},
    },
}
PATHS["/api/coverage"] = {
    "get": _op(
        "coverage per shift of the caller's devices (rules of kind coverage), newest shift first",
        _json({"type": "object", "properties": {"coverage": {"type": "array", "items": _ref("Coverage")}}}),
        parameters=[
            _q("device", {"type": "integer"}),
            _q("zone", {"type": "integer"}),
            _q("rule", {"type": "integer"}),
            _q("unit", {"type": "integer"}, "a unit and those below it"),
            _q("from", _T, "shifts starting at or after"),
            _q("to", _T, "shifts starting before"),
            _q("limit", {"type": "integer"}),
        ],
    )
}
PATHS["/api/coverage/live"] = {
    "get": _op(
        "the share of a zone's cells a device covered at working speed from `from` to `to` (default now)",
        _json({"type": "object"}),
        parameters=[
            {**_q("device", {"type": "integer"}), "required": True},
            {**_q("zone", {"type": "integer"}), "required": True},
            {**_q("from", _T), "required": True},
            _q("to", _T),
            _q("rule", {"type": "integer"}, "a coverage rule whose params to use (default: the defaults)"),
        ],
    )
}

_WHERE = {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}}
PATHS.update(
    {
        "/api/query/visited": {
            "post": _op(
                "the devices that were inside a shape from `from` to `to` (at most 7 days), with their visits"
                " (admin, dispatcher, auditor; audited)",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "from": _T,
                            "to": _T,
                            "max_gap_s": {"type": "number"},
                            "devices": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "id": {"type": "integer"},
                                        "uid": {"type": ["string", "null"]},
                                        "name": {"type": ["string", "null"]},
                                        "kind": {"type": ["string", "null"]},
                                        "plate": {"type": ["string", "null"]},
                                        "unit": {"type": ["integer", "null"]},
                                        "first": _T,
                                        "last": _T,
                                        "visits": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "properties": {
                                                    "entered": _T,
                                                    "left": _T,
                                                    "fixes": {"type": "integer"},
                                                    "first_fix": _WHERE,
                                                    "last_fix": _WHERE,
                                                },
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    }
                ),
                body={
                    "type": "object",
                    "description": "a shape (circle, polygon, multipolygon or corridor, as zones have) and a window",
                    "properties": {
                        "circle": {"type": "object"},
                        "polygon": {"type": "object"},
                        "multipolygon": {"type": "object"},
                        "corridor": {"type": "object"},
                        "from": _T,
                        "to": _T,
                        "max_gap_s": {"type": "number", "description": "a longer gap between fixes ends a visit [300]"},
                        "kinds": {"type": "array", "items": {"type": "string"}},
                        "units": {"type": "array", "items": {"type": "integer"}},
                    },
                    "required": ["from", "to"],
                },
                parameters=[_CRS],
            )
        },
        "/api/alerts/hotspots": {
            "get": _op(
                "alert counts on H3 cells, as a GeoJSON FeatureCollection of cell polygons, most first"
                " (admin, dispatcher, auditor; audited)",
                _json(
                    {"type": "object", "description": "features: {cell, count, by_kind}; properties: alerts, unplaced"}
                ),
                parameters=[
                    {**_q("from", _T), "required": True},
                    {**_q("to", _T, "at most 92 days after from"), "required": True},
                    _q("kind", description="alert kinds, separated by commas"),
                    _q("rule", description="rule ids, separated by commas"),
                    _q("unit", description="unit ids (each with the units below it), separated by commas"),
                    _q("resolution", {"type": "integer", "minimum": 5, "maximum": 11, "default": 8}),
                    _CRS,
                ],
            )
        },
    }
)

# The attendance plan (docs/api.md, "Attendance: staff and shifts"). Days are local dates, times of day
# local "HH:MM", both in attendance.timezone.
_DAY = {"type": "string", "format": "date"}
_NDAY = {"type": ["string", "null"], "format": "date"}
_CLOCK = {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"}
_NCLOCK = {"type": ["string", "null"], "pattern": "^[0-2][0-9]:[0-5][0-9]$"}
_INT, _NINT, _TEXT = {"type": "integer"}, {"type": ["integer", "null"]}, {"type": "string"}
_NTEXT = {"type": ["string", "null"]}
SCHEMAS.update(
    {
        "Staff": {
            "type": "object",
            "properties": {
                "id": _INT,
                "code": _TEXT,
                "name": _TEXT,
                "role": {"enum": ["inspector", "officer"]},
                "unit": {"oneOf": [_ref("Unit"), {"type": "null"}]},
                "team": _NTEXT,
                "device": {
                    "oneOf": [{"type": "object", "properties": {"id": _INT, "uid": _TEXT}}, {"type": "null"}],
                    "description": "the person's phone",
                },
                "enabled": {"type": "boolean"},
            },
        },
        "ShiftPattern": {
            "type": "object",
            "description": "a weekly schedule of a person, or of a unit's team (person null)",
            "properties": {
                "id": _INT,
                "code": _NTEXT,
                "person": _NINT,
                "unit": _NINT,
                "team": _NTEXT,
                "weekdays": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 7}},
                "start": _CLOCK,
                "end": {**_CLOCK, "description": "at or before start: the next day"},
                "zone": {**_INT, "description": "a duty_grid zone"},
                "grace_min": _INT,
                "checkin_window_min": _INT,
                "absent_after_min": _INT,
                "valid_from": _DAY,
                "valid_until": _NDAY,
            },
        },
        "ShiftOverride": {
            "type": "object",
            "properties": {
                "id": _INT,
                "person": _INT,
                "day": _DAY,
                "kind": {"enum": ["replace", "cancel", "extra"]},
                "start": _NCLOCK,
                "end": _NCLOCK,
                "zone": _NINT,
                "note": _TEXT,
            },
        },
        "Holiday": {
            "type": "object",
            "properties": {
                "id": _INT,
                "day": _DAY,
                "unit": {**_NINT, "description": "null: every unit"},
                "name": _TEXT,
            },
        },
        "Leave": {
            "type": "object",
            "properties": {"id": _INT, "person": _INT, "from": _DAY, "to": _DAY, "kind": _TEXT, "note": _TEXT},
        },
        "PlannedShift": {
            "type": "object",
            "properties": {
                "person_id": _INT,
                "person_code": _TEXT,
                "person_name": _TEXT,
                "org_unit_id": _NINT,
                "device_id": _NINT,
                "day": {**_DAY, "description": "the local date the shift starts on"},
                "start": _T,
                "end": _T,
                "zone_id": _NINT,
                "grace_min": _INT,
                "checkin_window_min": _INT,
                "absent_after_min": _INT,
                "status": {"enum": ["planned", "leave", "holiday", "cancelled"]},
                "leave_kind": _NTEXT,
            },
        },
    }
)


def _listed(key: str, schema: str) -> dict[str, Any]:
    return _json({"type": "object", "properties": {key: {"type": "array", "items": _ref(schema)}, "total": _INT}})


_PAGE = [_q("limit", _INT), _q("offset", _INT)]
_SPAN = [_q("from", _DAY, "from this local date"), _q("to", _DAY, "to this local date, inclusive")]
_WHO = [_q("person", _INT), _q("unit", _INT, "this unit and those below it")]
_DELETED = {"description": "deleted"}
PATHS.update(
    {
        "/api/staff": {
            "get": _op(
                "inspectors and officers of the caller's units",
                _listed("staff", "Staff"),
                parameters=[
                    _q("unit", _INT),
                    _q("role", {"enum": ["inspector", "officer"]}),
                    _q("team"),
                    _q("enabled", {"enum": ["true", "false"]}),
                    _q("q", description="code or name contains"),
                    *_PAGE,
                ],
            ),
            "post": _op(
                "add a person (admin)",
                _json(_ref("Staff"), "created"),
                body={"type": "object", "required": ["code", "name", "role"]},
            ),
        },
        "/api/staff/{id}": {
            "get": _op("one person", _json(_ref("Staff")), parameters=_BY_ID),
            "patch": _op(
                "change code, name, role, unit, team, device or enabled (admin)",
                _json(_ref("Staff")),
                body={"type": "object"},
                parameters=_BY_ID,
            ),
        },
        "/api/shift-patterns": {
            "get": _op("weekly shift patterns", _listed("patterns", "ShiftPattern"), parameters=[*_WHO, *_PAGE]),
            "post": _op(
                "add a pattern for a person, or for a unit and team (admin)",
                _json(_ref("ShiftPattern"), "created"),
                body={"type": "object", "required": ["weekdays", "start", "end", "zone"]},
            ),
        },
        "/api/shift-patterns/{id}": {
            "get": _op("one pattern", _json(_ref("ShiftPattern")), parameters=_BY_ID),
            "patch": _op(
                "change weekdays, times, zone, timings, validity or code (admin)",
                _json(_ref("ShiftPattern")),
                body={"type": "object"},
                parameters=_BY_ID,
            ),
            "delete": _op("delete a pattern (admin)", _DELETED, parameters=_BY_ID),
        },
        "/api/shift-overrides": {
            "get": _op(
                "one-day changes of shifts", _listed("overrides", "ShiftOverride"), parameters=[*_SPAN, *_WHO, *_PAGE]
            ),
            "post": _op(
                "replace, cancel or add a shift of a person on a day (admin)",
                _json(_ref("ShiftOverride"), "created"),
                body={"type": "object", "required": ["person", "day", "kind"]},
            ),
        },
        "/api/shift-overrides/{id}": {"delete": _op("delete an override (admin)", _DELETED, parameters=_BY_ID)},
        "/api/holidays": {
            "get": _op(
                "holidays that apply to the caller's units",
                _listed("holidays", "Holiday"),
                parameters=[*_SPAN, _q("unit", _INT), *_PAGE],
            ),
            "post": _op(
                "add a holiday for a unit and those below it, or every unit (admin)",
                _json(_ref("Holiday"), "created"),
                body={"type": "object", "required": ["day"]},
            ),
        },
        "/api/holidays/{id}": {"delete": _op("delete a holiday (admin)", _DELETED, parameters=_BY_ID)},
        "/api/leave": {
            "get": _op("leave that overlaps the dates", _listed("leave", "Leave"), parameters=[*_SPAN, *_WHO, *_PAGE]),
            "post": _op(
                "add leave for a person (admin)",
                _json(_ref("Leave"), "created"),
                body={"type": "object", "required": ["person", "from", "to", "kind"]},
            ),
        },
        "/api/leave/{id}": {"delete": _op("delete leave (admin)", _DELETED, parameters=_BY_ID)},
        "/api/shifts": {
            "get": _op(
                "the planned shifts starting on a local day, leave, holidays and cancellations applied",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "date": _DAY,
                            "timezone": _TEXT,
                            "shifts": {"type": "array", "items": _ref("PlannedShift")},
                        },
                    }
                ),
                parameters=[{**_q("date", _DAY), "required": True}, _q("unit", _INT, "this unit and those below it")],
            )
        },
    }
)

_REPLAY_RANGE = [
    _ID,
    {**_q("from", _T, "start of the range, inclusive, with its zone"), "required": True},
    {**_q("to", _T, "end of the range, exclusive; at most 31 days after from"), "required": True},
]
_REPLAY_STOPS = [
    _q("min_stop_s", {"type": "integer"}, "a stop lasts at least this long [180]"),
    _q("stop_radius_m", {"type": "number"}, "and stays within this radius [50]"),
]
_REPLAY_BODIES = {"text/csv", "application/geo+json", "application/gpx+xml"}


def _replay(summary: str, schema: dict[str, Any], parameters: list[Any], others: set[str]) -> dict[str, Any]:
    op = _op(summary, _json(schema), parameters=parameters)
    op["responses"]["200"]["content"].update({kind: {"schema": {"type": "string"}} for kind in sorted(others)})
    op["responses"].update({"400": _ERROR, "404": _ERROR})
    return op


SCHEMAS["ReplayStop"] = {
    "type": "object",
    "properties": {
        "start": _T,
        "end": _T,
        "duration_s": {"type": "number"},
        "lat": {"type": "number"},
        "lon": {"type": "number"},
        "fixes": {"type": "integer"},
    },
}
SCHEMAS["Trip"] = {
    "type": "object",
    "properties": {
        "start": _T,
        "end": _T,
        "duration_s": {"type": "number"},
        "from": {"type": "object"},
        "to": {"type": "object"},
        "distance_km": {"type": "number"},
        "odometer_km": {"type": ["number", "null"]},
        "max_speed_kmh": {"type": ["number", "null"]},
        "avg_speed_kmh": {"type": ["number", "null"]},
        "fixes": {"type": "integer"},
    },
}
PATHS.update(
    {
        "/api/devices/{id}/track": {
            "get": _replay(
                "a device's fixes over a range, raw (excluded ones flagged) or simplified; exported as"
                " GeoJSON, GPX or CSV with format (admin, dispatcher, auditor; audited)",
                {
                    "type": "object",
                    "properties": {
                        "device": {"type": "object"},
                        "from": _T,
                        "to": _T,
                        "crs": {"type": "string"},
                        "simplified": {"type": ["object", "null"]},
                        "total": {"type": "integer"},
                        "excluded": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "distance_km": {"type": "number"},
                        "stops": {"type": "array", "items": _ref("ReplayStop")},
                        "fixes": {"type": "object", "description": "one array per field, aligned"},
                    },
                },
                [
                    *_REPLAY_RANGE,
                    _q("simplify", {"type": "number"}, "Douglas-Peucker tolerance in metres"),
                    _q("points", {"type": "integer"}, "simplify to this many points"),
                    _CRS,
                    _q("format", {"enum": ["json", "geojson", "gpx", "csv"]}),
                    *_REPLAY_STOPS,
                ],
                _REPLAY_BODIES,
            )
        },
        "/api/devices/{id}/trips": {
            "get": _replay(
                "a device's trips and stops over a range (admin, dispatcher, auditor; audited)",
                {
                    "type": "object",
                    "properties": {
                        "trips": {"type": "array", "items": _ref("Trip")},
                        "stops": {"type": "array", "items": _ref("ReplayStop")},
                        "distance_km": {"type": "number"},
                        "odometer_km": {"type": ["number", "null"]},
                    },
                },
                [*_REPLAY_RANGE, *_REPLAY_STOPS, _CRS, _q("format", {"enum": ["json", "csv"]})],
                {"text/csv"},
            )
        },
        "/api/devices/{id}/mileage": {
            "get": _replay(
                "a device's distance per local day, from positions and from its odometer (admin, dispatcher,"
                " auditor; audited)",
                {"type": "object", "properties": {"days": {"type": "array", "items": {"type": "object"}}}},
                [*_REPLAY_RANGE, _q("utc_offset_h", {"type": "number"}, "the local day's offset from UTC [8]")],
                set(),
            )
        },
    }
)

_ATT_NUM = {"type": "number"}
_ATT_MARK = {"type": ["object", "null"], "properties": {"at": _T, "lat": _ATT_NUM, "lon": _ATT_NUM, "by": _TEXT}}
_ATT_SPELLS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "start": _T,
            "end": _T,
            "minutes": _ATT_NUM,
            "ongoing": {"type": "boolean"},
            "lat": _ATT_NUM,
            "lon": _ATT_NUM,
        },
    },
}
SCHEMAS["AttendanceShift"] = {
    "type": "object",
    "properties": {
        "person": {"type": "object", "properties": {"id": _INT, "code": _TEXT, "name": _TEXT, "unit": _NINT}},
        "device": _NINT,
        "day": _DAY,
        "shift": {
            "type": "object",
            "description": "status, leave_kind, start, end, grace_min, checkin_window_min, absent_after_min",
        },
        "grid": _NINT,
        "check_in": _ATT_MARK,
        "check_out": _ATT_MARK,
        "minutes_on_post": _ATT_NUM,
        "statuses": {
            "type": "array",
            "items": {
                "enum": [
                    "not_started",
                    "on_time",
                    "late",
                    "absent",
                    "early_leave",
                    "on_duty",
                    "leave",
                    "holiday",
                    "cancelled",
                ]
            },
        },
        "off_post": _ATT_SPELLS,
        "stationary": _ATT_SPELLS,
        "offline": _ATT_SPELLS,
    },
}
_ATT_BY_UNIT = {
    "total": {"type": "object", "additionalProperties": _INT},
    "by_unit": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"unit": _ref("Unit"), "own": {"type": "object"}, "all": {"type": "object"}},
        },
    },
}
_ATT_DAY = [_q("date", _DAY, "a local day [today]"), _q("unit", _INT, "this unit and those below it")]
PATHS.update(
    {
        "/api/attendance": {
            "get": _op(
                "per person, the day's shifts as of now: check-in, check-out, minutes on post, statuses and spells"
                " (admin, dispatcher, auditor; audited); format=csv for a CSV file",
                _json(
                    {
                        "type": "object",
                        "properties": {
                            "date": _DAY,
                            "timezone": _TEXT,
                            "as_of": _T,
                            "shifts": {"type": "array", "items": _ref("AttendanceShift")},
                        },
                    }
                ),
                parameters=[*_ATT_DAY, _q("format", {"enum": ["json", "csv"]})],
            )
        },
        "/api/attendance/summary": {
            "get": _op(
                "the day's counts per unit, own and with the units below: planned, present, late, absent, on_leave,"
                " holiday, off_post_now",
                _json({"type": "object", "properties": {"date": _DAY, "timezone": _TEXT, "as_of": _T, **_ATT_BY_UNIT}}),
                parameters=_ATT_DAY,
            )
        },
        "/api/attendance/now": {
            "get": _op(
                "people whose shift goes on now per unit: on_duty, online, offline",
                _json({"type": "object", "properties": {"time": _T, **_ATT_BY_UNIT}}),
                parameters=[_q("unit", _INT, "this unit and those below it")],
            )
        },
    }
)

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "City fleet telematics API", "version": "1"},
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"bearer": []}],
    "paths": PATHS,
}


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)


def routes() -> list[web.RouteDef]:
    return [web.get("/api/openapi.json", openapi)]


def missing(app: web.Application) -> list[str]:
    """API routes of the app that the document does not describe (a test keeps this empty)."""
    described = set(PATHS) | {"/api/openapi.json"}
    out = []
    for resource in app.router.resources():
        path = resource.canonical.replace(r"{id:\d+}", "{id}")
        if path.startswith("/api/") and path not in described:
            out.append(path)
    return out
