"""Exports parse back to what was exported: GPX with gpxpy, GeoJSON and CSV with the standard library."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import gpxpy
import numpy as np
import pytest

from replay import export
from replay.clean import CLEAN, REASONS, counts, reasons
from replay.export import TrackView
from replay.trips import stops, trips
from store.batch import to_micros
from tests.replay.synthetic import day_of_driving

START = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
BAD = {5: "invalid", 30: "jump", 60: "zero"}


def _view() -> TrackView:
    b, _ = day_of_driving(START)
    track = b.track()
    track.valid[5] = False
    track.lat[30] += 0.3
    track.lat[60] = 0.0
    track.satellites[7] = -1
    track.altitude_m[8] = np.nan
    codes = reasons(track, to_micros(START) + 86_400_000_000)
    good = track.take(codes == CLEAN)
    return TrackView(
        device_id=7,
        uid="13800000001",
        start_us=to_micros(START),
        end_us=to_micros(START) + 86_400_000_000,
        crs="wgs84",
        fixes=track,
        reasons=codes,
        stops=stops(good),
        total=len(track),
        excluded=counts(codes),
        distance_km=12.0,
        simplified=None,
    )


def test_the_view_flags_what_the_test_broke() -> None:
    view = _view()
    assert {int(i): REASONS[view.reasons[i]] for i in np.flatnonzero(view.reasons)} == BAD
    assert len(view.stops) == 3


def test_json_columns_are_aligned_and_name_the_excluded() -> None:
    view = _view()
    body = json.loads(json.dumps(export.track_json(view)))
    fixes = body["fixes"]
    assert {len(v) for v in fixes.values()} == {115}
    assert fixes["time"][1] == "2026-11-20T00:00:30Z"
    assert {i: r for i, r in enumerate(fixes["excluded"]) if r} == BAD
    assert fixes["satellites"][7] is None and fixes["altitude_m"][8] is None and fixes["altitude_m"][9] == 12.5
    assert fixes["valid"][5] is False
    assert body["excluded"] == {"invalid": 1, "zero": 1, "future": 0, "jump": 1}
    assert [s["duration_s"] for s in body["stops"]] == [600, 300, 1200]


def test_gpx_is_read_back_by_a_gpx_reader() -> None:
    view = _view()
    gpx = gpxpy.parse(export.track_gpx(view))
    assert gpx.version == "1.1"
    points = gpx.tracks[0].segments[0].points
    clean = np.flatnonzero(view.reasons == CLEAN)
    assert len(points) == len(clean) == 112
    assert [p.latitude for p in points] == pytest.approx(view.fixes.lat[clean].tolist(), abs=1e-7)
    assert [p.longitude for p in points] == pytest.approx(view.fixes.lon[clean].tolist(), abs=1e-7)
    assert points[0].time == START and points[-1].time == START + timedelta(seconds=114 * 30)
    assert points[0].elevation == 12.5 and points[0].satellites == 9
    assert points[6].satellites is None  # fix 7: the 7th clean one, after the invalid fix 5
    assert points[7].elevation is None
    kinds = [w.type for w in gpx.waypoints]
    assert kinds == ["stop"] * 3 + ["excluded: invalid", "excluded: jump", "excluded: zero"]
    assert gpx.waypoints[0].time == START


def test_geojson_has_the_line_the_stops_and_the_excluded() -> None:
    view = _view()
    doc = json.loads(json.dumps(export.track_geojson(view)))
    assert doc["type"] == "FeatureCollection"
    line, *rest = doc["features"]
    assert line["geometry"]["type"] == "LineString" and len(line["geometry"]["coordinates"]) == 112
    assert len(line["properties"]["times"]) == 112
    lon, lat = line["geometry"]["coordinates"][0]
    assert (lat, lon) == pytest.approx((view.fixes.lat[0], view.fixes.lon[0]))
    assert [f["properties"]["kind"] for f in rest] == ["stop"] * 3 + ["excluded"] * 3
    assert [f["properties"]["reason"] for f in rest[3:]] == ["invalid", "jump", "zero"]
    assert all(f["geometry"]["type"] == "Point" for f in rest)


def test_track_csv_lists_every_fix_with_its_reason() -> None:
    view = _view()
    rows = list(csv.DictReader(io.StringIO(export.track_csv(view))))
    assert len(rows) == 115
    assert list(rows[0]) == list(export.TRACK_CSV_HEADER)
    assert {i: r["reason"] for i, r in enumerate(rows) if r["excluded"] == "true"} == BAD
    assert rows[0]["reason"] == "" and rows[5]["valid"] == "false"
    assert float(rows[1]["lat"]) == pytest.approx(view.fixes.lat[1], abs=1e-7)
    assert rows[7]["satellites"] == "" and rows[21]["mileage_km"] == "1000.306"  # 300 m into the drive


def test_trips_csv_interleaves_stops_and_trips_in_time() -> None:
    track = day_of_driving(START)[0].track()
    found = stops(track)
    rows = list(csv.DictReader(io.StringIO(export.trips_csv(trips(track, found), found))))
    assert [r["kind"] for r in rows] == ["stop", "trip", "stop", "trip", "stop"]
    assert [float(r["distance_km"]) for r in rows if r["kind"] == "trip"] == [6.0, 6.0]
    assert [float(r["odometer_km"]) for r in rows if r["kind"] == "trip"] == [6.12, 6.12]
    assert [r["duration_s"] for r in rows] == ["600.0", "600.0", "300.0", "720.0", "1200.0"]
    assert rows[0]["distance_km"] == "" and rows[0]["fixes"] == "21"
