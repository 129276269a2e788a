"""Alert hotspots, sans-I/O: counts per H3 cell and kind, most first, as GeoJSON cell polygons."""

from __future__ import annotations

import h3.api.basic_int as h3
import numpy as np
import pytest

from geofence import crs
from replay.hotspots import aggregate, feature_collection

A = (22.5401, 114.0501)
B = (22.6, 113.95)


def test_counts_per_cell_and_kind_most_first_and_places_missing_or_off_the_globe_are_unplaced() -> None:
    a_near = (A[0] + 0.0001, A[1])  # another place in the same cell at resolution 8
    assert h3.latlng_to_cell(*a_near, 8) == h3.latlng_to_cell(*A, 8)
    kind = ["overspeed", "stopped", "overspeed", "stopped", "offline", "alarm"]
    lat = np.array([B[0], A[0], a_near[0], B[0], np.nan, 95.0])
    lon = np.array([B[1], A[1], a_near[1], B[1], np.nan, 114.0])
    count = np.array([1, 2, 1, 0, 4, 1], dtype=np.int64)
    found = aggregate(kind, lat, lon, count, 8)
    assert [(s.cell, s.count, s.by_kind) for s in found.spots] == [
        (h3.latlng_to_cell(*A, 8), 3, {"overspeed": 1, "stopped": 2}),
        (h3.latlng_to_cell(*B, 8), 1, {"overspeed": 1}),
    ]
    assert (found.placed, found.unplaced) == (4, 5)
    with pytest.raises(ValueError, match="resolution"):
        aggregate(kind, lat, lon, count, 12)
    empty = aggregate([], np.zeros(0), np.zeros(0), np.zeros(0, np.int64), 8)
    assert (empty.spots, empty.placed, empty.unplaced) == ([], 0, 0)
    assert feature_collection(empty, "wgs84", {})["features"] == []


def test_a_cell_becomes_a_closed_polygon_in_the_asked_coordinate_system() -> None:
    found = aggregate(["sos"], np.array([A[0]]), np.array([A[1]]), np.array([2]), 9)
    doc = feature_collection(found, "gcj02", {"resolution": 9})
    assert doc["type"] == "FeatureCollection"
    assert doc["properties"] == {"resolution": 9, "alerts": 2, "unplaced": 0}
    (feature,) = doc["features"]
    cell = h3.latlng_to_cell(*A, 9)
    assert feature["properties"] == {"cell": h3.int_to_str(cell), "count": 2, "by_kind": {"sos": 2}}
    ring = feature["geometry"]["coordinates"][0]
    assert len(ring) == 7 and ring[0] == ring[-1]
    corners = np.array(h3.cell_to_boundary(cell))
    lat, lon = crs.convert(corners[:, 0], corners[:, 1], "wgs84", "gcj02")
    np.testing.assert_allclose(np.array(ring[:-1]), np.column_stack([lon, lat]), atol=1e-7)
