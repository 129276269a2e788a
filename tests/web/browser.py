"""Debian's Chromium driven by Playwright, and what the page tests check with it: that no request leaves this
machine, that the page logs no error, and what the map's WebGL canvas actually drew."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from playwright.async_api import BrowserContext, ConsoleMessage, Page, Request, Response, Route

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # WebGL with no GPU: ANGLE on SwiftShader (software). Without the second flag newer Chromium may refuse it.
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]
ARTIFACTS = ROOT / "var" / "test-artifacts" / "web"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname in LOCAL_HOSTS


@dataclass
class Watch:
    """What a page did: requests that tried to leave the machine (aborted), errors, responses by path."""

    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    responses: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)  # path, status, request headers

    async def attach(self, context: BrowserContext) -> None:
        async def guard(route: Route) -> None:
            if is_local(route.request.url):
                await route.continue_()
            else:
                self.outside.append(route.request.url)
                await route.abort("blockedbyclient")

        def on_request(request: Request) -> None:  # also sees requests that bypass routing (workers)
            if not is_local(request.url) and request.url not in self.outside:
                self.outside.append(request.url)

        async def on_response(response: Response) -> None:
            headers = await response.request.all_headers()
            self.responses.append((urlsplit(response.url).path, response.status, headers))

        await context.route("**/*", guard)
        context.on("request", on_request)
        context.on("response", on_response)

    def page(self, page: Page) -> None:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(f"console: {message.text}")

        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("console", on_console)
        page.on("websocket", lambda ws: None if is_local(ws.url) else self.outside.append(ws.url))

    def statuses(self, pattern: str) -> list[int]:
        return [status for path, status, _ in self.responses if re.fullmatch(pattern, path)]

    def check(self) -> None:
        assert self.outside == [], f"requests to other hosts: {self.outside}"
        failed = [f"{status} {path}" for path, status, _ in self.responses if status >= 400]
        assert self.errors == [], "\n".join([*self.errors, "responses:", *failed])


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """`app` on a free port of 127.0.0.1; its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


# Reads the drawing buffer while it still holds the frame just drawn (inside MapLibre's `render` event), so the
# login overlay or anything else above the canvas does not matter. The 24 most frequent colours and their shares.
_CANVAS_COLOURS = """() => new Promise((resolve) => {
  const map = window.fleetMap;
  map.once("render", () => {
    const canvas = map.getCanvas();
    const gl = canvas.getContext("webgl2") || canvas.getContext("webgl");
    const w = gl.drawingBufferWidth, h = gl.drawingBufferHeight;
    const px = new Uint8Array(w * h * 4);
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px);
    const counts = new Map();
    for (let i = 0; i < px.length; i += 4) {
      const key = (px[i] << 16) | (px[i + 1] << 8) | px[i + 2];
      counts.set(key, (counts.get(key) || 0) + 1);
    }
    const top = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 24);
    resolve(top.map(([k, n]) => [(k >> 16) & 255, (k >> 8) & 255, k & 255, n / (w * h)]));
  });
  map.triggerRepaint();
})"""


async def canvas_colours(page: Page) -> list[tuple[int, int, int, float]]:
    return [(int(r), int(g), int(b), float(f)) for r, g, b, f in await page.evaluate(_CANVAS_COLOURS)]


def share(colours: list[tuple[int, int, int, float]], rgb: tuple[int, int, int], tolerance: int = 6) -> float:
    """The share of the canvas within `tolerance` of `rgb` (among the most frequent colours)."""
    return sum(f for r, g, b, f in colours if max(abs(r - rgb[0]), abs(g - rgb[1]), abs(b - rgb[2])) <= tolerance)
