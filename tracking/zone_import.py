"""Parsing and checking a GeoJSON FeatureCollection of zones before anything is written.

All features or none: every bad feature is reported with its number (#1 is the first) and reason.
A feature's geometry gives the shape: Polygon, MultiPolygon, LineString with properties.width_m (a
corridor) or Point with properties.radius_m (a circle). Its properties give code (required, the
stable key), name, kind, unit (a unit's code) and enabled; the others are kept as the zone's properties.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from store.zones import ZoneRecord
from tracking import zone_check

_OWN = ("code", "name", "kind", "unit", "enabled")


@dataclass(frozen=True, slots=True)
class FeatureError:
    number: int | None  # None: the file as a whole
    reason: str

    def __str__(self) -> str:
        return self.reason if self.number is None else f"#{self.number}: {self.reason}"


class ZoneImportError(ValueError):
    def __init__(self, errors: list[FeatureError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def parse_zones(text: str, known_units: Collection[str], crs_name: str = "wgs84") -> list[ZoneRecord]:
    """The zones of a FeatureCollection whose coordinates are in `crs_name`, moved to WGS-84."""
    try:
        doc = json.loads(text.lstrip("\ufeff"))
    except ValueError as e:
        raise ZoneImportError([FeatureError(None, f"not JSON: {e}")]) from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise ZoneImportError([FeatureError(None, "expected a GeoJSON FeatureCollection with a features list")])
    seen: dict[str, int] = {}
    out: list[ZoneRecord] = []
    errors: list[FeatureError] = []
    for number, feature in enumerate(doc["features"], start=1):
        try:
            record = _feature(feature, known_units, crs_name)
            if record.code in seen:
                raise ValueError(f"code {record.code!r} repeats feature #{seen[record.code]}")
            seen[record.code] = number
            out.append(record)
        except ValueError as e:
            errors.append(FeatureError(number, str(e)))
    if errors:
        raise ZoneImportError(errors)
    return out


def _feature(feature: Any, known_units: Collection[str], crs_name: str) -> ZoneRecord:
    if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
        raise ValueError("not a GeoJSON Feature")
    props = feature.get("properties")
    if not isinstance(props, Mapping):
        raise ValueError("properties must be an object with at least a code")
    code = props.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)  # GIS tools often number their features
    zone_code = zone_check.code(code)
    kind = zone_check.kind(props.get("kind", "generic"))
    name = zone_check.name(props.get("name", ""))
    unit = props.get("unit")
    if unit is not None and unit not in known_units:
        raise ValueError(f"organisation unit {unit!r} does not exist (import units first)")
    enabled = props.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError("enabled must be true or false")
    shape, used = _shape(feature.get("geometry"), props)
    rest = {k: v for k, v in props.items() if k not in _OWN and k not in used}
    return ZoneRecord(
        code=zone_code,
        shape=zone_check.shape(shape, crs_name),
        name=name,
        kind=kind,
        properties=zone_check.properties(kind, rest),
        unit=unit,
        enabled=enabled,
    )


def _shape(geometry: Any, props: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The stored form of the geometry, and the properties that went into it."""
    if not isinstance(geometry, Mapping):
        raise ValueError("geometry must be a GeoJSON geometry object")
    kind = geometry.get("type")
    if kind == "Polygon":
        return {"polygon": dict(geometry)}, ()
    if kind == "MultiPolygon":
        return {"multipolygon": dict(geometry)}, ()
    if kind == "LineString":
        if "width_m" not in props:
            raise ValueError("a LineString needs properties.width_m (the corridor's width in metres)")
        return {"corridor": {"line": dict(geometry), "width_m": props["width_m"]}}, ("width_m",)
    if kind == "Point":
        if "radius_m" not in props:
            raise ValueError("a Point needs properties.radius_m (the circle's radius in metres)")
        coords = geometry.get("coordinates")
        if not isinstance(coords, list) or not 2 <= len(coords) <= 3:
            raise ValueError("a Point's coordinates must be [lon, lat]")
        return {"circle": {"lat": coords[1], "lon": coords[0], "radius_m": props["radius_m"]}}, ("radius_m",)
    raise ValueError(f"geometry type {kind!r}: expected Polygon, MultiPolygon, LineString or Point")
