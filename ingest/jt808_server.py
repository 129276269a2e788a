"""The JT/T 808 TCP listener: one protocol object per connection, replies after the commit.

Order of a connection's life: registration (0x0100 -> 0x8100 with the auth code) once per
terminal, then on every connection authentication (0x0102 -> 0x8001), then heartbeats and
location reports. A location report is answered with 0x8001 only after its row is committed.
Messages that arrive while a registration or authentication is being looked up wait, in order,
with reading paused, so a report sent right behind its authentication is not refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, cast

from ingest.batcher import Batcher
from ingest.counters import Counters
from ingest.reports import ReportSink
from protocols import jt808
from protocols.messages import (
    Authentication,
    Decoded,
    FrameError,
    Logout,
    Message,
    Position,
    Registration,
    Unsupported,
)
from store.devices import Device
from tracking.registry import Registry

log = logging.getLogger("telematics.jt808")

REG_OK = 0
REG_TERMINAL_UNKNOWN = 4


@dataclass(slots=True)
class Jt808Context:
    reports: ReportSink
    registry: Registry
    counters: Counters
    lenient: bool = False
    max_buffer: int = 65536

    @property
    def batcher(self) -> Batcher:
        return self.reports.batcher


class Jt808Connection(asyncio.Protocol):
    def __init__(self, ctx: Jt808Context, connections: set[Jt808Connection]) -> None:
        self.ctx = ctx
        self._connections = connections
        self.decoder = jt808.Jt808Decoder(lenient=ctx.lenient, max_buffer=ctx.max_buffer)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.device: Device | None = None
        self._serial = 0
        self._backlog: deque[Decoded] = deque()
        self._busy = False
        self._reading_paused_by: set[str] = set()
        self.last_rx = 0.0

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.last_rx = asyncio.get_running_loop().time()
        self._connections.add(self)
        self.ctx.batcher.register(self)
        self.ctx.counters.inc("jt808.connections")

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self.ctx.batcher.unregister(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.last_rx = asyncio.get_running_loop().time()
        messages = self.decoder.feed(data)
        if self._busy:
            self._backlog.extend(messages)
        else:
            self._dispatch(messages)

    # Flow control: the batcher and the connection itself (during a lookup) may both pause reading.
    def pause_reading(self, reason: str = "backpressure") -> None:
        if not self._reading_paused_by and self.transport is not None:
            self.transport.pause_reading()
        self._reading_paused_by.add(reason)

    def resume_reading(self, reason: str = "backpressure") -> None:
        self._reading_paused_by.discard(reason)
        if not self._reading_paused_by and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # --- messages ---------------------------------------------------------------------------

    def _dispatch(self, messages: list[Decoded] | deque[Decoded]) -> None:
        """Handle messages in order until one needs a lookup; the rest wait in the backlog."""
        queue = deque(messages) if not isinstance(messages, deque) else messages
        while queue:
            if self._busy:
                self._backlog.extend(queue)
                return
            m = queue.popleft()
            if isinstance(m, Position):
                # One frame may hold many positions (0x0704): acknowledge the frame once, when all are stored.
                group = [m]
                while queue and isinstance(queue[0], Position) and _same_frame(queue[0], m):
                    group.append(queue.popleft())  # type: ignore[arg-type]
                self._positions(group)
            else:
                self._handle(m)

    def _handle(self, m: Decoded) -> None:
        counters = self.ctx.counters
        if isinstance(m, Registration):
            self._lookup(self._register(m))
            return
        if isinstance(m, Authentication):
            self._lookup(self._authenticate(m))
            return
        if isinstance(m, FrameError):
            counters.bad_input("jt808.frame_errors", self.peer, m.reason)
        elif isinstance(m, Unsupported):
            counters.bad_input("jt808.unsupported", self.peer, f"message 0x{m.msg_id:04x} not supported")
        else:
            counters.inc(f"jt808.{type(m).__name__.lower()}")
        # The protocol's own answer: 0x8001 for most, 0x8800 for media, none for the terminal's replies.
        reply = jt808.ack_for(m, serial=self._next_serial())
        if reply is not None:
            self._send(reply)
        if isinstance(m, Logout) and self.transport is not None:
            self.transport.close()

    def _positions(self, group: list[Position]) -> None:
        first = group[0]
        counters = self.ctx.counters
        device = self.device
        if device is None or device.uid != first.device:
            counters.bad_input("jt808.unauthenticated", self.peer, "location report before authentication")
            self._reply(first, jt808.RESULT_FAILURE)
            return
        queued = self.ctx.reports.submit(
            device,
            group,
            lambda ok: self._reply(first, jt808.RESULT_OK if ok else jt808.RESULT_FAILURE),
            peer=self.peer,
        )
        if not queued:
            self._reply(first, jt808.RESULT_MESSAGE_ERROR)

    # --- lookups (registration, authentication) -----------------------------------------

    def _lookup(self, coro: Coroutine[Any, Any, None]) -> None:
        self._busy = True
        self.pause_reading("lookup")
        task = asyncio.ensure_future(coro)
        task.add_done_callback(self._lookup_done)

    def _lookup_done(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("lookup for %s failed: %r", self.peer, task.exception())
            if self.transport is not None:
                self.transport.close()
        self._busy = False
        self.resume_reading("lookup")
        backlog, self._backlog = self._backlog, deque()
        self._dispatch(backlog)

    async def _register(self, m: Registration) -> None:
        device = await self.ctx.registry.lookup(m.device, "jt808")
        if device is None or not device.enabled:
            self.ctx.counters.bad_input("jt808.registration_refused", self.peer, f"unknown terminal {m.device}")
            self._send(jt808.encode_registration_response(m, REG_TERMINAL_UNKNOWN, "", serial=self._next_serial()))
            return
        code = await self.ctx.registry.issue_auth_code(device)
        self.ctx.counters.inc("jt808.registrations")
        self._send(jt808.encode_registration_response(m, REG_OK, code, serial=self._next_serial()))

    async def _authenticate(self, m: Authentication) -> None:
        device = await self.ctx.registry.lookup(m.device, "jt808")
        if device is None or not device.enabled or not device.auth_code or device.auth_code != m.code:
            self.ctx.counters.bad_input("jt808.authentication_refused", self.peer, f"terminal {m.device}")
            self._reply(m, jt808.RESULT_FAILURE)
            return
        self.device = device
        self.ctx.counters.inc("jt808.authentications")
        self._reply(m, jt808.RESULT_OK)

    # --- output -----------------------------------------------------------------------------

    def _next_serial(self) -> int:
        self._serial = (self._serial + 1) & 0xFFFF
        return self._serial

    def _reply(self, m: Message | FrameError, result: int) -> None:
        self._send(jt808.encode_general_response(m, result, serial=self._next_serial()))

    def _send(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)


def _same_frame(a: Position, b: Position) -> bool:
    return a.msg_id == b.msg_id and a.serial == b.serial and a.device == b.device


class Jt808Server:
    def __init__(self, ctx: Jt808Context, *, idle_timeout: float = 600.0) -> None:
        self.ctx = ctx
        self.idle_timeout = idle_timeout
        self.connections: set[Jt808Connection] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Jt808Connection(self.ctx, self.connections), host, port, reuse_address=True
        )
        self._sweeper = asyncio.create_task(self._sweep_idle(), name="jt808-idle")
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def _sweep_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(30.0, self.idle_timeout / 2))
            limit = loop.time() - self.idle_timeout
            for conn in list(self.connections):
                if conn.last_rx < limit and conn.transport is not None:
                    self.ctx.counters.bad_input("jt808.idle_closed", conn.peer, "no data within the idle timeout")
                    conn.transport.close()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                if conn.transport is not None:
                    conn.transport.close()
            await self._server.wait_closed()
