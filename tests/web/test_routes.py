"""The page's HTTP routes over a real socket: what the page is told before login, the basemap file with HTTP
Range, module scripts served as JavaScript, and nothing outside the page's folders."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from telematics.config import ConfigError, WebSettings, load
from tests.web.browser import serve
from tests.web.tiles import solid_png, write_pmtiles
from web import routes as web_routes


def _app(settings: WebSettings) -> web.Application:
    app = web.Application()
    app.add_routes(web_routes.routes(settings))
    return app


async def _get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (WebSettings(), {"basemap": "none", "pmtiles_url": None, "tile_url": None, "crs": "wgs84", "center": None}),
        # GCJ-02 describes the basemap: with none there is nothing to line up with, positions stay WGS-84.
        (WebSettings(tiles_gcj02=True), {"basemap": "none", "crs": "wgs84"}),
        (
            WebSettings(tile_url="http://tiles.example.gov/{z}/{x}/{y}.png", tiles_gcj02=True, center=[114.1, 22.5]),
            {"basemap": "xyz", "tile_url": "http://tiles.example.gov/{z}/{x}/{y}.png", "crs": "gcj02"},
        ),
        (
            WebSettings(pmtiles_path="/nonexistent/city.pmtiles", tile_url="http://t/{z}/{x}/{y}.png"),
            {"basemap": "xyz"},
        ),
        (WebSettings(pmtiles_path="/nonexistent/city.pmtiles"), {"basemap": "none", "pmtiles_url": None}),
    ],
)
async def test_map_config(settings: WebSettings, expected: dict[str, object]) -> None:
    async with serve(_app(settings)) as base:
        status, headers, body = await _get(base + "/map-config.json")
    config = json.loads(body)
    assert status == 200 and headers["Cache-Control"] == "no-cache"
    assert {k: config[k] for k in expected} == expected
    assert config["zoom"] == settings.zoom
    if settings.center:
        assert config["center"] == settings.center


async def test_pmtiles_file_served_with_range(tmp_path: Path) -> None:
    archive = tmp_path / "city.pmtiles"
    write_pmtiles(archive, solid_png((1, 2, 3)), max_zoom=1)
    async with serve(_app(WebSettings(pmtiles_path=str(archive)))) as base:
        status, headers, body = await _get(base + "/basemap.pmtiles", Range="bytes=0-126")
        config_status, _, config = await _get(base + "/map-config.json")
    assert status == 206 and body == archive.read_bytes()[:127] and body.startswith(b"PMTiles\x03")
    assert headers["Content-Range"] == f"bytes 0-126/{archive.stat().st_size}"
    assert config_status == 200 and b'"pmtiles_url": "/basemap.pmtiles"' in config


async def test_no_basemap_file_without_pmtiles() -> None:
    async with serve(_app(WebSettings())) as base:
        assert (await _get(base + "/basemap.pmtiles"))[0] == 404


async def test_page_files_and_nothing_else() -> None:
    async with serve(_app(WebSettings())) as base:
        status, headers, body = await _get(base + "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html") and b"login-form" in body
        status, headers, _ = await _get(base + "/static/js/main.js")
        assert status == 200 and headers["Content-Type"].startswith("text/javascript")
        status, headers, _ = await _get(base + "/vendor/maplibre-gl.mjs")  # written by setup/web.sh
        assert status == 200 and headers["Content-Type"].startswith("text/javascript")
        for path in (
            "/static/../routes.py",
            "/static/%2e%2e/routes.py",
            "/static/js/../../routes.py",
            "/static/js",
            "/vendor/.installed",
            "/vendor/..%2Fweb%2Fvendor%2Fmaplibre-gl.mjs",
            "/static/nothing.js",
        ):
            assert (await _get(base + path))[0] == 404, path


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[web]\ncenter = [114.1]\n", "web.center must be [lon, lat]"),
        ("[web]\ncenter = [22.5, 114.1]\n", "web.center must be [lon, lat]"),  # lat, lon the wrong way round
        ('[web]\ncenter = ["114", "22"]\n', "web.center must be [lon, lat]"),
        ("[web]\nzoom = 23\n", "web.zoom must be 0..22"),
        ('[web]\ntile_url = "http://tiles/{z}/{x}.png"\n', "web.tile_url must contain {z}, {x} and {y}"),
        ("[web]\ntiles_gcj02 = 1\n", "web.tiles_gcj02 must be bool"),
    ],
)
def test_bad_web_settings(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "telematics.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("{", r"\{")):
        load(path, env={})


def test_web_settings_from_file(tmp_path: Path) -> None:
    path = tmp_path / "telematics.toml"
    path.write_text('[web]\npmtiles_path = "/srv/city.pmtiles"\ncenter = [114.06, 22.54]\nzoom = 12\n')
    web_settings = load(path, env={}).web
    assert web_settings == WebSettings(pmtiles_path="/srv/city.pmtiles", center=[114.06, 22.54], zoom=12.0)
