"""WGS-84 / GCJ-02 / BD-09 conversions against published reference pairs, and their inverses."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from geofence import crs
from geofence.shapes import haversine_m

# Tian'anmen, the pair most implementations publish (WGS-84 in, GCJ-02 / BD-09 out).
BEIJING = (39.915, 116.404)
BEIJING_GCJ = (39.91640428150164, 116.41024449916938)
BEIJING_AS_GCJ_TO_BD = (39.92133699351021, 116.41036949371029)
BEIJING_BD = (39.922699552216216, 116.41662724378733)
# The widely published one-step BD-09 -> GCJ-02 of the same input, good to about 0.2 m.
BEIJING_AS_BD_TO_GCJ = (39.90865673957631, 116.39762729119315)


def _random_china(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(18.0, 53.0, n), rng.uniform(74.0, 135.0, n)


def test_forward_reference_pairs() -> None:
    assert crs.wgs84_to_gcj02(*BEIJING) == pytest.approx(BEIJING_GCJ, abs=1e-12)
    assert crs.gcj02_to_bd09(*BEIJING) == pytest.approx(BEIJING_AS_GCJ_TO_BD, abs=1e-12)
    assert crs.wgs84_to_bd09(*BEIJING) == pytest.approx(BEIJING_BD, abs=1e-12)


def test_inverse_reference_pairs() -> None:
    lat, lon = crs.bd09_to_gcj02(*BEIJING)
    assert haversine_m(lat, lon, *BEIJING_AS_BD_TO_GCJ) < 0.25
    assert crs.gcj02_to_bd09(lat, lon) == pytest.approx(BEIJING, abs=1e-9)
    assert crs.gcj02_to_wgs84(*BEIJING_GCJ) == pytest.approx(BEIJING, abs=1e-9)
    assert crs.bd09_to_wgs84(*BEIJING_BD) == pytest.approx(BEIJING, abs=1e-9)


def test_offset_is_a_few_hundred_metres_in_shenzhen() -> None:
    lat, lon = 22.5431, 114.0579
    offset = haversine_m(lat, lon, *crs.wgs84_to_gcj02(lat, lon))
    assert 200 < offset < 800
    assert haversine_m(lat, lon, *crs.wgs84_to_bd09(lat, lon)) > offset


@pytest.mark.parametrize(("src", "dst"), list(itertools.permutations(crs.NAMES, 2)))
def test_round_trip_under_half_a_metre(src: str, dst: str) -> None:
    lat, lon = _random_china(5000)
    there = crs.convert(lat, lon, src, dst)
    assert np.median(haversine_m(lat, lon, *there)) > 50  # it did move
    back_lat, back_lon = crs.convert(*there, dst, src)
    err = haversine_m(lat, lon, back_lat, back_lon)
    assert err.max() < 0.5
    assert err.max() < 0.001  # in fact far better


@pytest.mark.parametrize(
    "point", [(35.6812, 139.7671), (51.5074, -0.1278), (-33.8688, 151.2093), (40.7128, -74.006), (0.5, 100.0)]
)
def test_no_offset_outside_china(point: tuple[float, float]) -> None:
    for src, dst in itertools.permutations(crs.NAMES, 2):
        assert crs.convert(*point, src, dst) == point


def test_scalars_and_arrays() -> None:
    lat, lon = crs.wgs84_to_gcj02(22.5, 114.0)
    assert type(lat) is float and type(lon) is float

    lats = np.array([[22.5, 35.6812], [39.915, 31.23]])
    lons = np.array([[114.0, 139.7671], [116.404, 121.47]])
    out_lat, out_lon = crs.wgs84_to_gcj02(lats, lons)
    assert out_lat.shape == out_lon.shape == (2, 2)
    assert (out_lat[0, 1], out_lon[0, 1]) == (35.6812, 139.7671)  # Tokyo: outside, untouched
    assert (out_lat[1, 0], out_lon[1, 0]) == pytest.approx(BEIJING_GCJ, abs=1e-12)
    for i, j in np.ndindex(2, 2):  # element by element as the scalar form
        assert crs.wgs84_to_gcj02(float(lats[i, j]), float(lons[i, j])) == (out_lat[i, j], out_lon[i, j])
    assert lats[1, 0] == 39.915  # inputs are not modified

    empty = crs.gcj02_to_wgs84(np.array([]), np.array([]))
    assert empty[0].shape == (0,)


def test_convert_names() -> None:
    assert crs.convert(22.5, 114.0, "wgs84", "wgs84") == (22.5, 114.0)
    assert crs.convert(22.5, 114.0, "wgs84", "gcj02") == crs.wgs84_to_gcj02(22.5, 114.0)
    with pytest.raises(ValueError, match="'mercator'"):
        crs.convert(22.5, 114.0, "wgs84", "mercator")
    with pytest.raises(ValueError, match="'WGS84'"):
        crs.convert(22.5, 114.0, "WGS84", "gcj02")
