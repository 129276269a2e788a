"""A replayed track as JSON, GeoJSON, GPX 1.1 and CSV; trips and stops as JSON and CSV.

Excluded fixes are never left out silently: JSON and CSV list every fix of the raw track with its
reason; GeoJSON draws the clean fixes as one LineString and adds each excluded fix as a Point
feature with its reason; GPX (whose track points have no place for a flag) carries the clean fixes
as the track and each excluded fix as a waypoint of type "excluded: REASON". A simplified track
holds clean fixes only and says how many were excluded by reason. Stops are Point features in
GeoJSON and waypoints of type "stop" in GPX.

Coordinates are in the view's `crs`. GPX and GeoJSON are WGS-84 by their standards; asked for
GCJ-02 or BD-09 they carry those (for the maps that draw in them), and say so in their metadata.
Columns are built whole from numpy (one `tolist` per column), not fix by fix, for the JSON answer.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt

from replay.clean import CLEAN, REASONS, Reasons
from replay.trips import Day, Stop, Trip
from store.tracks import Track

_COORD_DECIMALS = 7  # about a centimetre


@dataclass(frozen=True, slots=True)
class TrackView:
    """What a track answer shows. `fixes` and `reasons` are aligned: every fix of the range, or the
    clean fixes a simplification kept (reasons all CLEAN)."""

    device_id: int
    uid: str
    start_us: int
    end_us: int
    crs: str
    fixes: Track
    reasons: Reasons
    stops: list[Stop]
    total: int  # fixes in the range
    excluded: dict[str, int]  # of the range, by reason
    distance_km: float  # along the clean fixes of the range
    simplified: dict[str, float] | None  # {"tolerance_m": t} or {"points": n}; None: raw


def iso_times(us: npt.NDArray[np.int64]) -> list[str]:
    """ISO 8601 UTC with a Z; to the second when every time is whole seconds."""
    whole = not len(us) or not (us % 1_000_000).any()
    text = np.datetime_as_string(us.astype("datetime64[us]"), unit="s" if whole else "us")
    return [f"{t}Z" for t in text.tolist()]


def iso(us: int) -> str:
    return iso_times(np.array([us], dtype=np.int64))[0]


def _values(column: npt.NDArray[Any], decimals: int | None = None) -> list[Any]:
    """A column as JSON values: NaN (and -1 for counts) as null, floats rounded."""
    if column.dtype.kind == "f":
        out = column.astype(np.float64)
        if decimals is not None:
            out = np.round(out, decimals)
        missing = np.isnan(out)
    else:
        out = column
        missing = column < 0 if column.dtype.kind == "i" else np.zeros(len(column), dtype=bool)
    values: list[Any] = out.tolist()
    if missing.any():
        for i in np.flatnonzero(missing).tolist():
            values[i] = None
    return values


def _reason_names(reasons: Reasons) -> list[str | None]:
    names = np.array([None, *REASONS[1:]], dtype=object)
    return list(names[reasons].tolist())


def stop_json(s: Stop) -> dict[str, Any]:
    return {
        "start": iso(s.start_us),
        "end": iso(s.end_us),
        "duration_s": round(s.duration_s, 3),
        "lat": round(s.lat, _COORD_DECIMALS),
        "lon": round(s.lon, _COORD_DECIMALS),
        "fixes": s.last - s.first + 1,
    }


def day_json(d: Day) -> dict[str, Any]:
    return {
        "date": d.date.isoformat(),
        "distance_km": round(d.distance_km, 3),
        "odometer_km": None if d.odometer_km is None else round(d.odometer_km, 3),
        "fixes": d.fixes,
        "excluded": d.excluded,
    }


def trip_json(t: Trip) -> dict[str, Any]:
    def rounded(v: float | None, decimals: int) -> float | None:
        return None if v is None else round(v, decimals)

    return {
        "start": iso(t.start_us),
        "end": iso(t.end_us),
        "duration_s": round(t.duration_s, 3),
        "from": {"lat": round(t.start_lat, _COORD_DECIMALS), "lon": round(t.start_lon, _COORD_DECIMALS)},
        "to": {"lat": round(t.end_lat, _COORD_DECIMALS), "lon": round(t.end_lon, _COORD_DECIMALS)},
        "distance_km": round(t.distance_km, 3),
        "odometer_km": rounded(t.odometer_km, 3),
        "max_speed_kmh": rounded(t.max_speed_kmh, 1),
        "avg_speed_kmh": rounded(t.avg_speed_kmh, 1),
        "fixes": t.fixes,
    }


def _head(view: TrackView) -> dict[str, Any]:
    return {
        "device": {"id": view.device_id, "uid": view.uid},
        "from": iso(view.start_us),
        "to": iso(view.end_us),
        "crs": view.crs,
        "simplified": view.simplified,
        "total": view.total,
        "excluded": view.excluded,
        "distance_km": round(view.distance_km, 3),
    }


def track_json(view: TrackView) -> dict[str, Any]:
    """The answer of format=json: fixes as columns (one array per field, aligned)."""
    f = view.fixes
    return {
        **_head(view),
        "stops": [stop_json(s) for s in view.stops],
        "fixes": {
            "time": iso_times(f.fix_time),
            "lat": _values(f.lat, _COORD_DECIMALS),
            "lon": _values(f.lon, _COORD_DECIMALS),
            "speed_kmh": _values(f.speed_kmh, 1),
            "course": _values(f.course, 1),
            "altitude_m": _values(f.altitude_m, 1),
            "accuracy_m": _values(f.accuracy_m, 1),
            "satellites": _values(f.satellites),
            "valid": f.valid.tolist(),
            "mileage_km": _values(f.mileage_km, 3),
            "excluded": _reason_names(view.reasons),
        },
    }


def track_geojson(view: TrackView) -> dict[str, Any]:
    """A FeatureCollection: the LineString of the clean fixes (with their times in `times`), a Point
    per stop and a Point per excluded fix; every feature's `kind` says which."""
    f = view.fixes
    clean = view.reasons == CLEAN
    lon, lat = _values(f.lon[clean], _COORD_DECIMALS), _values(f.lat[clean], _COORD_DECIMALS)
    line = {"type": "LineString", "coordinates": [list(p) for p in zip(lon, lat, strict=True)]}
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": line if len(lon) >= 2 else None,
            "properties": {"kind": "track", **_head(view), "times": iso_times(f.fix_time[clean])},
        }
    ]
    features += [
        {"type": "Feature", "geometry": _point(s.lat, s.lon), "properties": {"kind": "stop", **stop_json(s)}}
        for s in view.stops
    ]
    bad = np.flatnonzero(~clean)
    features += [
        {
            "type": "Feature",
            "geometry": _point(float(f.lat[i]), float(f.lon[i])),
            "properties": {
                "kind": "excluded",
                "time": t,
                "reason": REASONS[view.reasons[i]],
                "valid": bool(f.valid[i]),
            },
        }
        for i, t in zip(bad.tolist(), iso_times(f.fix_time[bad]), strict=True)
    ]
    return {"type": "FeatureCollection", "features": features}


def _point(lat: float, lon: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [round(lon, _COORD_DECIMALS), round(lat, _COORD_DECIMALS)]}


_GPX_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<gpx version="1.1" creator="city-telematics" xmlns="http://www.topografix.com/GPX/1/1"'
    ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    ' xsi:schemaLocation="http://www.topografix.com/GPX/1/1 http://www.topografix.com/GPX/1/1/gpx.xsd">\n'
)


def track_gpx(view: TrackView) -> str:
    """GPX 1.1: metadata, a waypoint per stop and per excluded fix, then one track of the clean fixes.
    Each track point has its time, and its elevation and satellite count where reported."""
    f = view.fixes
    title = f"{view.uid} {iso(view.start_us)} - {iso(view.end_us)}"
    out = [
        _GPX_HEAD,
        f"<metadata><name>{escape(title)}</name><desc>{escape(_gpx_desc(view))}</desc></metadata>\n",
    ]
    for n, s in enumerate(view.stops, 1):
        out.append(
            f'<wpt lat="{s.lat:.7f}" lon="{s.lon:.7f}"><time>{iso(s.start_us)}</time><name>stop {n}</name>'
            f"<desc>{s.duration_s:.0f} s until {iso(s.end_us)}</desc><type>stop</type></wpt>\n"
        )
    clean = view.reasons == CLEAN
    bad = np.flatnonzero(~clean)
    for i, t in zip(bad.tolist(), iso_times(f.fix_time[bad]), strict=True):
        reason = REASONS[view.reasons[i]]
        out.append(
            f'<wpt lat="{f.lat[i]:.7f}" lon="{f.lon[i]:.7f}"><time>{t}</time><name>excluded: {reason}</name>'
            f"<type>excluded: {reason}</type></wpt>\n"
        )
    out.append(f"<trk><name>{escape(view.uid)}</name><trkseg>\n")
    good = f.take(clean)
    ele = _values(good.altitude_m, 1)
    sat = _values(good.satellites)
    for lat, lon, t, e, s in zip(good.lat.tolist(), good.lon.tolist(), iso_times(good.fix_time), ele, sat, strict=True):
        out.append(
            f'<trkpt lat="{lat:.7f}" lon="{lon:.7f}">'
            + ("" if e is None else f"<ele>{e}</ele>")
            + f"<time>{t}</time>"
            + ("" if s is None else f"<sat>{s}</sat>")
            + "</trkpt>\n"
        )
    out.append("</trkseg></trk>\n</gpx>\n")
    return "".join(out)


def _gpx_desc(view: TrackView) -> str:
    excluded = ", ".join(f"{k} {v}" for k, v in view.excluded.items() if v) or "none"
    shown = "simplified " + ", ".join(f"{k} {v:g}" for k, v in view.simplified.items()) if view.simplified else "raw"
    return (
        f"coordinates {view.crs}; {shown}; {view.total} fixes in the range; excluded: {excluded};"
        f" {view.distance_km:.3f} km along the clean fixes"
    )


TRACK_CSV_HEADER = (
    "time",
    "lat",
    "lon",
    "speed_kmh",
    "course",
    "altitude_m",
    "accuracy_m",
    "satellites",
    "valid",
    "mileage_km",
    "excluded",
    "reason",
)


def track_csv(view: TrackView) -> str:
    """One row per fix shown, excluded ones included with `excluded` true and their reason."""
    f = view.fixes
    reasons = _reason_names(view.reasons)
    columns: list[Iterable[Any]] = [
        iso_times(f.fix_time),
        _values(f.lat, _COORD_DECIMALS),
        _values(f.lon, _COORD_DECIMALS),
        _values(f.speed_kmh, 1),
        _values(f.course, 1),
        _values(f.altitude_m, 1),
        _values(f.accuracy_m, 1),
        _values(f.satellites),
        ["true" if v else "false" for v in f.valid.tolist()],
        _values(f.mileage_km, 3),
        ["false" if r is None else "true" for r in reasons],
        reasons,
    ]
    return _csv(TRACK_CSV_HEADER, zip(*columns, strict=True))


TRIPS_CSV_HEADER = (
    "kind",
    "start",
    "end",
    "duration_s",
    "start_lat",
    "start_lon",
    "end_lat",
    "end_lon",
    "distance_km",
    "odometer_km",
    "max_speed_kmh",
    "avg_speed_kmh",
    "fixes",
)


def trips_csv(trips: Sequence[Trip], stops: Sequence[Stop]) -> str:
    """Trips and stops in time order, one row each; a stop's position is its centre (start and end
    alike), and it has no distance or speeds."""
    rows: list[tuple[int, tuple[Any, ...]]] = []
    for t in trips:
        j = trip_json(t)
        start, end = j["from"], j["to"]
        speeds = (j["max_speed_kmh"], j["avg_speed_kmh"])
        row = (j["start"], j["end"], j["duration_s"], start["lat"], start["lon"], end["lat"], end["lon"])
        rows.append((t.start_us, ("trip", *row, j["distance_km"], j["odometer_km"], *speeds, j["fixes"])))
    for s in stops:
        j = stop_json(s)
        row = (j["start"], j["end"], j["duration_s"], j["lat"], j["lon"], j["lat"], j["lon"])
        rows.append((s.start_us, ("stop", *row, None, None, None, None, j["fixes"])))
    rows.sort(key=lambda r: r[0])
    return _csv(TRIPS_CSV_HEADER, (r for _, r in rows))


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buf.getvalue()
