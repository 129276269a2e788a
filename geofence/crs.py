"""WGS-84 (GPS), GCJ-02 (the national "Mars" datum of AutoNavi/Tencent maps) and BD-09 (Baidu maps).

The published GCJ-02 algorithm on the Krasovsky ellipsoid; BD-09 is a further small rotation and
shift of GCJ-02. Only the forward directions have closed forms: the inverses here iterate the
forward transform to a fixed point, which converges to far below a millimetre in a few steps (the
usual one-step inverses are off by up to a couple of metres).

Points outside the rough bounding box of China are not offset by any of the conversions: there
the three systems are taken to coincide, as the maps that use them do for GCJ-02.

Every function takes latitude then longitude, as floats or numpy arrays (broadcast together), and
returns the same kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

Coord = TypeVar("Coord", float, npt.NDArray[np.float64])
_Arr = npt.NDArray[np.float64]

NAMES = ("wgs84", "gcj02", "bd09")

_A = 6378245.0  # Krasovsky 1940 semi-major axis, metres
_EE = 0.00669342162296594323  # its first eccentricity squared
_X_PI = np.pi * 3000.0 / 180.0
_TOLERANCE_DEG = 1e-10  # about 0.01 mm
_MAX_STEPS = 30


def in_china(lat: npt.ArrayLike, lon: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """The rough box where the offsets apply (it includes some neighbouring land and sea)."""
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    return (lon >= 72.004) & (lon <= 137.8347) & (lat >= 0.8293) & (lat <= 55.8271)


def _gcj_offset(lat: _Arr, lon: _Arr) -> tuple[_Arr, _Arr]:
    x, y = lon - 105.0, lat - 35.0
    pi = np.pi
    wave_x = (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x)) + wave_x
    dlat += (20.0 * np.sin(y * pi) + 40.0 * np.sin(y / 3.0 * pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * pi) + 320.0 * np.sin(y * pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x)) + wave_x
    dlon += (20.0 * np.sin(x * pi) + 40.0 * np.sin(x / 3.0 * pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * pi) + 300.0 * np.sin(x / 30.0 * pi)) * 2.0 / 3.0
    rad = lat / 180.0 * pi
    magic = 1.0 - _EE * np.sin(rad) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * np.cos(rad) * pi)
    return dlat, dlon


def _wgs_to_gcj(lat: _Arr, lon: _Arr) -> tuple[_Arr, _Arr]:
    dlat, dlon = _gcj_offset(lat, lon)
    return lat + dlat, lon + dlon


def _gcj_to_bd(lat: _Arr, lon: _Arr) -> tuple[_Arr, _Arr]:
    z = np.hypot(lon, lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.sin(theta) + 0.006, z * np.cos(theta) + 0.0065


def _invert(forward: Callable[[_Arr, _Arr], tuple[_Arr, _Arr]], lat: _Arr, lon: _Arr) -> tuple[_Arr, _Arr]:
    """The point that `forward` maps onto (lat, lon): fixed-point steps x -= forward(x) - target."""
    x_lat, x_lon = lat.copy(), lon.copy()
    for _ in range(_MAX_STEPS):
        f_lat, f_lon = forward(x_lat, x_lon)
        err_lat, err_lon = f_lat - lat, f_lon - lon
        x_lat -= err_lat
        x_lon -= err_lon
        if np.all(np.abs(err_lat) < _TOLERANCE_DEG) and np.all(np.abs(err_lon) < _TOLERANCE_DEG):
            break
    return x_lat, x_lon


def _gcj_to_wgs(lat: _Arr, lon: _Arr) -> tuple[_Arr, _Arr]:
    return _invert(_wgs_to_gcj, lat, lon)


def _bd_to_gcj(lat: _Arr, lon: _Arr) -> tuple[_Arr, _Arr]:
    return _invert(_gcj_to_bd, lat, lon)


def _wgs_to_bd(lat: _Arr, lon: _Arr) -> tuple[_Arr, _Arr]:
    return _gcj_to_bd(*_wgs_to_gcj(lat, lon))


def _bd_to_wgs(lat: _Arr, lon: _Arr) -> tuple[_Arr, _Arr]:
    return _gcj_to_wgs(*_bd_to_gcj(lat, lon))


def _apply(step: Callable[[_Arr, _Arr], tuple[_Arr, _Arr]], lat: Any, lon: Any) -> Any:
    """Run `step` on the points inside China only; scalars in, scalars out."""
    scalar = np.ndim(lat) == 0 and np.ndim(lon) == 0
    la, lo = np.broadcast_arrays(np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64))
    out_lat, out_lon = la.astype(np.float64, copy=True), lo.astype(np.float64, copy=True)
    inside = in_china(la, lo)
    if inside.any():
        out_lat[inside], out_lon[inside] = step(la[inside], lo[inside])
    if scalar:
        return float(out_lat), float(out_lon)
    return out_lat, out_lon


def wgs84_to_gcj02(lat: Coord, lon: Coord) -> tuple[Coord, Coord]:
    return _apply(_wgs_to_gcj, lat, lon)  # type: ignore[no-any-return]


def gcj02_to_wgs84(lat: Coord, lon: Coord) -> tuple[Coord, Coord]:
    return _apply(_gcj_to_wgs, lat, lon)  # type: ignore[no-any-return]


def gcj02_to_bd09(lat: Coord, lon: Coord) -> tuple[Coord, Coord]:
    return _apply(_gcj_to_bd, lat, lon)  # type: ignore[no-any-return]


def bd09_to_gcj02(lat: Coord, lon: Coord) -> tuple[Coord, Coord]:
    return _apply(_bd_to_gcj, lat, lon)  # type: ignore[no-any-return]


def wgs84_to_bd09(lat: Coord, lon: Coord) -> tuple[Coord, Coord]:
    return _apply(_wgs_to_bd, lat, lon)  # type: ignore[no-any-return]


def bd09_to_wgs84(lat: Coord, lon: Coord) -> tuple[Coord, Coord]:
    return _apply(_bd_to_wgs, lat, lon)  # type: ignore[no-any-return]


_STEPS: dict[tuple[str, str], Callable[[_Arr, _Arr], tuple[_Arr, _Arr]]] = {
    ("wgs84", "gcj02"): _wgs_to_gcj,
    ("gcj02", "wgs84"): _gcj_to_wgs,
    ("gcj02", "bd09"): _gcj_to_bd,
    ("bd09", "gcj02"): _bd_to_gcj,
    ("wgs84", "bd09"): _wgs_to_bd,
    ("bd09", "wgs84"): _bd_to_wgs,
}


def convert(lat: Coord, lon: Coord, src: str, dst: str) -> tuple[Coord, Coord]:
    """Convert between "wgs84", "gcj02" and "bd09"; ValueError naming an unknown system."""
    for name in (src, dst):
        if name not in NAMES:
            raise ValueError(f"unknown coordinate system {name!r}: expected one of {', '.join(NAMES)}")
    if src == dst:
        return _apply(lambda la, lo: (la, lo), lat, lon)  # type: ignore[no-any-return]
    return _apply(_STEPS[src, dst], lat, lon)  # type: ignore[no-any-return]
