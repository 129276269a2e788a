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
