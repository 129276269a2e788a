"""The map page served by its own routes, with no API behind it: it loads, asks for a login, draws the map with
the vendored MapLibre in each basemap mode, and nothing it requests leaves this machine."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from playwright.async_api import Page

from telematics.config import WebSettings
from tests.web.browser import Watch, canvas_colours, screenshot, serve, share
from tests.web.tiles import land_mvt, solid_png, write_pmtiles
from web import routes as web_routes

BACKGROUND = (0xEE, 0xF1, 0xF4)
GRATICULE = ((0xD2, 0xD8, 0xDF), (0xA9, 0xB3, 0xBE))
PMTILES_COLOUR = (200, 70, 40)
XYZ_COLOUR = (40, 120, 200)
PROTOMAPS_LIGHT_EARTH = (0xE2, 0xDF, 0xDA)


def page_app(settings: WebSettings) -> web.Application:
    app = web.Application()
    app.add_routes(web_routes.routes(settings))
    return app


async def open_page(page: Page, base: str) -> None:
    await page.goto(base + "/")
    await page.get_by_test_id("login-form").wait_for(state="visible")
    await page.wait_for_function("window.fleetMap && window.fleetMap.loaded() && window.fleetMap.areTilesLoaded()")


async def test_page_without_basemap_draws_a_graticule_and_asks_for_login(page: Page, watch: Watch) -> None:
    async with serve(page_app(WebSettings(center=[114.06, 22.54], zoom=12))) as base:
        await open_page(page, base)
        assert await page.get_by_test_id("login-name").is_visible()
        assert await page.get_by_test_id("login-password").is_visible()
        assert await page.locator("#map canvas.maplibregl-canvas").count() == 1
        colours = await canvas_colours(page)
        assert share(colours, BACKGROUND) > 0.5, colours
        assert sum(share(colours, c, tolerance=12) for c in GRATICULE) > 0.002, colours  # lines were drawn
        assert "WGS-84" in await page.get_by_test_id("cursor-coords").inner_text()
        await screenshot(page, "login-no-basemap")
    for path in ("/vendor/maplibre-gl.mjs", "/vendor/maplibre-gl-worker.mjs", "/vendor/maplibre-gl.css"):
        assert 200 in watch.statuses(path), f"{path} not loaded: {watch.responses}"
    assert watch.statuses("/api/.*") == []  # nothing asked of the API before a login
    watch.check()


async def test_pmtiles_basemap_read_with_range_requests(page: Page, watch: Watch, tmp_path: Path) -> None:
    archive = tmp_path / "city.pmtiles"
    write_pmtiles(archive, solid_png(PMTILES_COLOUR), max_zoom=3)
    async with serve(page_app(WebSettings(pmtiles_path=str(archive), center=[114.06, 22.54], zoom=2.5))) as base:
        await open_page(page, base)
        colours = await canvas_colours(page)
        await screenshot(page, "login-pmtiles")
    assert share(colours, PMTILES_COLOUR) > 0.8, colours
    reads = [(status, headers.get("range")) for path, status, headers in watch.responses if path == "/basemap.pmtiles"]
    assert reads and all(status == 206 and rng and rng.startswith("bytes=") for status, rng in reads), reads
    watch.check()


async def test_vector_pmtiles_basemap_drawn_with_the_protomaps_style(page: Page, watch: Watch, tmp_path: Path) -> None:
    archive = tmp_path / "city-vector.pmtiles"
    write_pmtiles(archive, land_mvt(), max_zoom=3, tile_type=1)
    async with serve(page_app(WebSettings(pmtiles_path=str(archive), center=[114.06, 22.54], zoom=2.5))) as base:
        await open_page(page, base)
        colours = await canvas_colours(page)
    assert share(colours, PROTOMAPS_LIGHT_EARTH) > 0.8, colours  # the land polygon in the light flavour's colour
    watch.check()


async def test_xyz_gcj02_basemap(page: Page, watch: Watch) -> None:
    requested: list[str] = []

    async def tile(request: web.Request) -> web.Response:
        requested.append(request.path)
        # WebGL takes images from another origin only with CORS: a tile server for the page must send this.
        headers = {"Access-Control-Allow-Origin": "*"}
        return web.Response(body=solid_png(XYZ_COLOUR), content_type="image/png", headers=headers)

    tiles = web.Application()
    tiles.add_routes([web.get("/tiles/{z}/{x}/{y}.png", tile)])
    async with serve(tiles) as tile_base:
        settings = WebSettings(tile_url=tile_base + "/tiles/{z}/{x}/{y}.png", tiles_gcj02=True, center=[114.06, 22.54])
        async with serve(page_app(settings)) as base:
            await open_page(page, base)
            config = await page.evaluate("fetch('/map-config.json').then((r) => r.json())")
            colours = await canvas_colours(page)
            coords = await page.get_by_test_id("cursor-coords").inner_text()
            await screenshot(page, "login-xyz-gcj02")
    assert config["basemap"] == "xyz" and config["crs"] == "gcj02"
    assert "GCJ-02" in coords
    assert "/tiles/12/3345/1784.png" in requested, requested  # 256-pixel tiles one zoom above the map's 11
    assert share(colours, XYZ_COLOUR) > 0.8, colours
    watch.check()
