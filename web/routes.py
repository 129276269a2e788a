"""HTTP routes of the map pages (the live map, the track replay). None of them needs the API token: the pages,
their libraries and the basemap are loaded before the user logs in; everything about devices is behind /api/."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from telematics.config import WebSettings
from web.boundaries import BoundaryError, region_geojson

log = logging.getLogger("telematics.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Written by setup/web.sh from the npm packages in web/package-lock.json.
VENDOR_DIR = Path(__file__).resolve().parents[1] / "var" / "web" / "vendor"
PMTILES_URL = "/basemap.pmtiles"
# Module scripts are refused by browsers unless served as JavaScript, whatever the host's mime.types says.
CONTENT_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".html": "text/html"}
NO_CACHE = {"Cache-Control": "no-cache"}  # revalidated (ETag / Last-Modified) so an upgrade shows at once


def _file(root: Path, relative: str) -> web.FileResponse:
    """A file below `root`; 404 for anything else (missing, a directory, `..`, a hidden file)."""
    parts = relative.split("/")
    if any(not p or p.startswith(".") for p in parts):
        raise web.HTTPNotFound()
    path = root.joinpath(*parts)
    if not path.is_file():
        raise web.HTTPNotFound()
    headers = dict(NO_CACHE)
    if path.suffix in CONTENT_TYPES:
        headers["Content-Type"] = CONTENT_TYPES[path.suffix]
    return web.FileResponse(path, headers=headers)


BOUNDARIES_URL = "/boundaries.geojson"


def map_config(settings: WebSettings) -> dict[str, Any]:
    """What the page needs before login: which basemap, where it is, its coordinate system, the first view."""
    pmtiles = Path(settings.pmtiles_path) if settings.pmtiles_path else None
    if pmtiles is not None and not pmtiles.is_file():
        log.warning("web.pmtiles_path %s is not a file: the map has no basemap", pmtiles)
        pmtiles = None
    basemap = "pmtiles" if pmtiles else "xyz" if settings.tile_url else "none"
    return {
        "basemap": basemap,
        "pmtiles_url": PMTILES_URL if basemap == "pmtiles" else None,
        "tile_url": settings.tile_url if basemap == "xyz" else None,
        "crs": "gcj02" if settings.tiles_gcj02 and basemap != "none" else "wgs84",
        "center": list(settings.center) if settings.center else None,
        "zoom": settings.zoom,
        "boundaries_url": BOUNDARIES_URL if settings.boundaries else None,
    }


def routes(settings: WebSettings) -> list[web.RouteDef]:
    """`/` the live map, `/replay` the auditors' track replay, `/static/...` their files, `/vendor/...` the npm
    libraries, `/map-config.json`, and `/basemap.pmtiles` (HTTP Range requests: the page reads the tiles it needs,
    never the whole file)."""
    config = map_config(settings)
    pmtiles = Path(settings.pmtiles_path).resolve() if config["basemap"] == "pmtiles" else None
    outlines = b""
    if settings.boundaries:
        try:
            outlines = json.dumps(region_geojson(settings.boundaries, config["crs"]), ensure_ascii=False).encode()
        except BoundaryError as e:
            log.warning("%s: the map has no district boundaries", e)
            config["boundaries_url"] = None
    if not (VENDOR_DIR / "maplibre-gl.mjs").is_file():
        log.warning("the map page's libraries are missing from %s: run `make web`", VENDOR_DIR)

    async def index(request: web.Request) -> web.FileResponse:
        return _file(STATIC_DIR, "index.html")

    async def replay(request: web.Request) -> web.FileResponse:
        return _file(STATIC_DIR, "replay.html")

    async def static(request: web.Request) -> web.FileResponse:
        return _file(STATIC_DIR, request.match_info["path"])

    async def vendor(request: web.Request) -> web.FileResponse:
        return _file(VENDOR_DIR, request.match_info["name"])

    async def config_json(request: web.Request) -> web.Response:
        return web.json_response(config, headers=NO_CACHE)

    async def basemap(request: web.Request) -> web.FileResponse:
        if pmtiles is None:
            raise web.HTTPNotFound()
        # aiohttp answers Range (206) and If-Range itself; the ETag lets the page notice a replaced file.
        return web.FileResponse(pmtiles, headers={"Content-Type": "application/vnd.pmtiles", **NO_CACHE})

    async def boundaries(request: web.Request) -> web.Response:
        if not outlines:
            raise web.HTTPNotFound()
        return web.Response(body=outlines, content_type="application/geo+json", headers=NO_CACHE)

    return [
        web.get(BOUNDARIES_URL, boundaries),
        web.get("/", index),
        web.get("/replay", replay),
        web.get("/static/{path:.+}", static),
        web.get("/vendor/{name}", vendor),
        web.get("/map-config.json", config_json),
        web.get(PMTILES_URL, basemap),
    ]
