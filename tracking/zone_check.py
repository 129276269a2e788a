"""What a zone may hold, for the API and the import alike: its code, kind, shape and the properties its
kind needs. Every check raises ValueError with a reason meant for the user."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from geofence import crs, shapes
from store.zones import KINDS

MAX_NAME = 100
MAX_SPEED_KMH = 300.0
_CODE = re.compile(r"^\S{1,64}$")


def code(value: Any) -> str:
    if not isinstance(value, str) or not _CODE.match(value):
        raise ValueError("code must be 1-64 characters without spaces")
    return value


def name(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise ValueError(f"name must be text of at most {MAX_NAME} characters")
    return value


def kind(value: Any) -> str:
    if value not in KINDS:
        raise ValueError(f"kind {value!r} is not one of {', '.join(KINDS)}")
    return str(value)


def shape(value: Any, crs_name: str = "wgs84") -> dict[str, Any]:
    """The shape to store: read by geofence.shapes.from_json in `crs_name`, its coordinates moved to WGS-84."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ValueError(f"shape must be an object with exactly one of {', '.join(shapes.SHAPE_KINDS)}")
    shapes.from_json(value, crs_name)
    return convert(dict(value), crs_name, "wgs84")


def properties(zone_kind: str, value: Any) -> dict[str, Any]:
    """Free-form properties; speed_limit_kmh, when given, is a speed, and a speed zone must give it."""
    if not isinstance(value, Mapping):
        raise ValueError("properties must be an object")
    limit = value.get("speed_limit_kmh")
    if limit is None and zone_kind == "speed_zone":
        raise ValueError("a speed_zone needs properties.speed_limit_kmh")
    if limit is not None and (
        isinstance(limit, bool)
        or not isinstance(limit, int | float)
        or not math.isfinite(limit)
        or not 0 < limit <= MAX_SPEED_KMH
    ):
        raise ValueError(f"speed_limit_kmh must be a number above 0 and at most {MAX_SPEED_KMH:.0f}")
    return dict(value)


def convert(stored: dict[str, Any], src: str, dst: str) -> dict[str, Any]:
    """A checked shape with its coordinates moved from `src` to `dst`: a circle's centre, and every GeoJSON
    `coordinates` array inside the others (all positions in one vectorized call)."""
    if src == dst:
        return stored
    if "circle" in stored:
        circle = dict(stored["circle"])
        circle["lat"], circle["lon"] = crs.convert(float(circle["lat"]), float(circle["lon"]), src, dst)
        return {"circle": circle}
    positions: list[list[Any]] = []
    _collect(stored, positions)
    if positions:
        lats, lons = crs.convert(
            np.array([p[1] for p in positions], dtype=np.float64),
            np.array([p[0] for p in positions], dtype=np.float64),
            src,
            dst,
        )
        moved = iter(zip(lons.tolist(), lats.tolist(), strict=True))
        return _rebuild(stored, moved)  # type: ignore[no-any-return]
    return stored


def _collect(node: Any, out: list[list[Any]], in_coordinates: bool = False) -> None:
    if isinstance(node, Mapping):
        for key, child in node.items():
            _collect(child, out, key == "coordinates")
    elif in_coordinates and isinstance(node, list):
        if node and not isinstance(node[0], list):
            out.append(node)
        else:
            for child in node:
                _collect(child, out, True)


def _rebuild(node: Any, moved: Any, in_coordinates: bool = False) -> Any:
    """`node` with the positions of its `coordinates` arrays taken from `moved`, in `_collect`'s order."""
    if isinstance(node, Mapping):
        return {key: _rebuild(child, moved, key == "coordinates") for key, child in node.items()}
    if in_coordinates and isinstance(node, list):
        if node and not isinstance(node[0], list):
            lon, lat = next(moved)
            return [lon, lat, *node[2:]]
        return [_rebuild(child, moved, True) for child in node]
    return node
