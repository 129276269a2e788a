"""The OsmAnd HTTP endpoint (what the Traccar Client phone app posts to): 200 only after the commit.

A port of its own for devices, without the API's bearer token (as in Traccar): any path, GET or
POST, fields in the query string, a form body or a JSON body (`protocols/osmand.py`). Answers:

- 200, empty body: every usable fix is committed (a heartbeat without coordinates: nothing to store);
- 400: the request does not decode (missing id, a field that does not parse), or none of its fixes
  can be stored (coordinates out of range, time far ahead of the server clock);
- 404: unknown or disabled device; nothing is stored and the app retries, which is expected;
- 405: a method other than GET and POST; 408: the body did not arrive in time; 413: body too large;
- 500: the database refused a row; 503: the commit (or the device lookup) did not finish within
  the request timeout. The rows may still land then; a resent fix is stored once (unique on
  device and fix time), so the app's retry loses and duplicates nothing.

A client that goes away while its commit is pending changes nothing: the rows are already queued
and the handler is not cancelled; its answer simply goes nowhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ingest.batcher import FlowGate
from ingest.counters import Counters
from ingest.reports import Done, ReportSink
from protocols import osmand
from protocols.messages import FrameError, Heartbeat, Message, Position, Unsupported
from store.devices import Device
from tracking.registry import Registry

log = logging.getLogger("telematics.osmand")

PROTOCOL = "osmand"


@dataclass(slots=True)
class _Answer:
    status: int
    text: str = ""

    def response(self) -> web.Response:
        if self.status == 200:
            return web.Response(status=200, body=b"")
        return web.Response(status=self.status, text=self.text + "\n")


class _HttpLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log, where a malformed request (port scans, TLS on a plain port: plenty on the
    internet) is counted and logged once per peer instead of with a traceback every time."""

    def __init__(self, counters: Counters) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.counters = counters

    def _malformed(self, args: tuple[object, ...], exc: object) -> bool:
        if not isinstance(exc, HttpProcessingError):
            return False
        peer = str(args[0]) if args and args[0] else "?"
        self.counters.bad_input("osmand.bad_http", peer, f"malformed HTTP: {exc.message}"[:200])
        return True

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        if not self._malformed(args, kwargs.get("exc_info")):
            super().exception(msg, *args, **kwargs)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        if not self._malformed(args, kwargs.get("exc_info")):
            super().debug(msg, *args, **kwargs)


class OsmAndListener:
    def __init__(
        self,
        reports: ReportSink,
        registry: Registry,
        counters: Counters,
        *,
        speed_unit: str = "knots",
        max_body: int = 1 << 20,
        request_timeout: float = 15.0,  # the Traccar Client gives up after 15 s
        idle_timeout: float = 75.0,
    ) -> None:
        if speed_unit not in osmand.SPEED_UNITS:
            raise ValueError(f"unknown speed unit {speed_unit!r}; use one of {sorted(osmand.SPEED_UNITS)}")
        if max_body < 1:
            raise ValueError("max_body must be positive")
        self.reports = reports
        self.registry = registry
        self.counters = counters
        self.speed_unit = speed_unit
        # The decoder refuses bodies above its own bound anyway; a larger limit here would only buffer more.
        self.max_body = min(max_body, osmand.MAX_BODY)
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self._flow = FlowGate()
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Listen on host:port (0 = an ephemeral port); returns the bound port. `reuse_port`: workers share it."""
        app = web.Application(client_max_size=self.max_body)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            logger=_HttpLog(self.counters),
            # A phone that drops the connection must not cancel a handler whose rows are queued.
            handler_cancellation=False,
            # aiohttp's default (an hour) would let idle phones hold sockets far too long.
            keepalive_timeout=self.idle_timeout,
            # On shutdown, pending commits get the time a request may take to be answered.
            shutdown_timeout=self.request_timeout,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True, reuse_port=reuse_port or None)
        await site.start()
        self.reports.batcher.register(self._flow)
        return int(self._runner.addresses[0][1])

    async def close(self) -> None:
        self.reports.batcher.unregister(self._flow)
        self._flow.resume_reading()  # let waiting requests finish (or time out) instead of hanging
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- one request --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        self.counters.inc("osmand.requests")
        peer = request.remote or "?"
        try:
            answer = await self._answer(request, peer)
        except Exception as e:  # never a bare 500 page from aiohttp, never an unlogged failure
            log.exception("OsmAnd request from %s failed", peer)
            self.counters.bad_input("osmand.errors", peer, repr(e))
            answer = _Answer(500, "internal error")
        self.counters.inc(f"osmand.status.{answer.status}")
        return answer.response()

    async def _answer(self, request: web.Request, peer: str) -> _Answer:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout

        body = b""
        if request.method == "POST" and request.body_exists:
            if request.content_length is not None and request.content_length > self.max_body:
                return self._too_large(peer, request.content_length)
            try:
                async with asyncio.timeout_at(deadline):
                    body = await request.read()
            except web.HTTPRequestEntityTooLarge:  # chunked bodies have no Content-Length to check first
                return self._too_large(peer, None)
            except TimeoutError:
                self.counters.bad_input("osmand.timeouts", peer, "request body not received within the timeout")
                return _Answer(408, "request body not received in time")
            except Exception as e:  # the client went away or sent a broken chunked body
                self.counters.bad_input("osmand.read_errors", peer, repr(e))
                return _Answer(400, "request body could not be read")

        decoded = osmand.decode_request(
            request.method, request.raw_path, request.headers, body, speed_unit=self.speed_unit
        )
        status, _ = osmand.response_for(decoded)
        errors = [m for m in decoded if isinstance(m, FrameError)]
        for err in errors:
            self.counters.bad_input("osmand.bad_requests", peer, err.reason)
        if status != 200:
            reason = errors[0].reason if errors else "nothing usable in the request"
            if reason == "body too large":
                return _Answer(413, reason)
            if reason.startswith("method "):
                return _Answer(405, reason)
            return _Answer(status, reason)

        try:
            async with asyncio.timeout_at(deadline):
                return await self._store([m for m in decoded if isinstance(m, Message)], peer)
        except TimeoutError:
            # Queued rows still land; the app resends and the resend is stored once.
            self.counters.bad_input("osmand.timeouts", peer, "commit not finished within the request timeout")
            return _Answer(503, "storage is slow; try again")

    async def _store(self, messages: Sequence[Message], peer: str) -> _Answer:
        # Look every device up first, so an unknown one stores nothing of the request.
        devices: dict[str, Device] = {}
        for uid in dict.fromkeys(m.device for m in messages):
            try:
                device = await self.registry.lookup(uid, PROTOCOL)
            except Exception as e:
                log.error("device lookup for %r failed: %r", uid, e)
                self.counters.inc("osmand.lookup_errors")
                return _Answer(503, "device lookup failed; try again")
            if device is None:
                self.counters.bad_input("osmand.unknown_device", peer, f"unknown device {uid!r}")
                return _Answer(404, "unknown device")
            if not device.enabled:
                self.counters.bad_input("osmand.disabled_device", peer, f"disabled device {uid!r}")
                return _Answer(404, "device disabled")
            devices[uid] = device

        groups: dict[str, list[Position]] = {}
        for m in messages:
            if isinstance(m, Position):
                groups.setdefault(m.device, []).append(m)
            elif isinstance(m, Heartbeat):
                self.counters.inc("osmand.heartbeats")
            elif isinstance(m, Unsupported):
                self.counters.inc("osmand.unsupported")
        if not groups:
            return _Answer(200)

        if not self._flow.open.is_set():
            # The database is behind: hold this phone here (bounded by the request timeout) rather than queue more.
            self.counters.inc("osmand.backpressure_waits")
            await self._flow.open.wait()

        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[bool]] = []
        queued = 0
        for uid, positions in groups.items():
            committed: asyncio.Future[bool] = loop.create_future()
            n = self.reports.submit(devices[uid], positions, _settle(committed), peer=peer)
            if n:
                pending.append(committed)
                queued += n
        if not pending:
            self.counters.bad_input("osmand.no_storable_fix", peer, "every fix was refused (see ingest.bad_fixes)")
            return _Answer(400, "no storable fix (coordinates out of range or time ahead of the server clock)")

        results = await asyncio.gather(*pending)
        if not all(results):
            self.counters.inc("osmand.store_failed")
            return _Answer(500, "the database refused a fix")
        self.counters.inc("osmand.stored", queued)
        return _Answer(200)

    def _too_large(self, peer: str, length: int | None) -> _Answer:
        size = f"{length} bytes" if length is not None else "chunked body"
        self.counters.bad_input("osmand.too_large", peer, f"{size} above the limit of {self.max_body}")
        return _Answer(413, f"body larger than {self.max_body} bytes")


def _settle(future: asyncio.Future[bool]) -> Done:
    def done(ok: bool) -> None:
        # The request may have timed out (its future cancelled) long before the batch was written.
        if not future.done():
            future.set_result(ok)

    return done
