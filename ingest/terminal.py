"""TCP terminals: one protocol object per connection, replies after the commit, a listener per port.

`TerminalConnection` holds what every TCP protocol shares: the codec's decoder, flow control
(the batcher and a pending device lookup may both pause reading), a backlog that keeps messages in
order while a lookup runs, and the answer to a position sent only after its rows are committed.
It serves the protocols whose messages name their terminal (GT06 login, H02 id in every message,
NMEA `$PGID`); JT/T 808, which identifies a terminal by registration and authentication, extends it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

from ingest.counters import Counters
from ingest.downlink import Downlink, DownlinkUnsupported
from ingest.ratelimit import ConnectLimiter
from ingest.reports import ReportSink
from protocols import gt06
from protocols.messages import (
    CommandReply,
    Decoded,
    FrameError,
    Heartbeat,
    Login,
    Logout,
    Message,
    Position,
    Unsupported,
)
from store.devices import Device
from tracking.registry import Registry

log = logging.getLogger("telematics.ingest")

# A peer that sends this many undecodable frames in a row, with nothing good between, is cut off:
# it is not a terminal having a bad moment but garbage, a scanner or the wrong protocol on this port.
MAX_CONSECUTIVE_ERRORS = 16


@dataclass(slots=True)
class ListenerContext:
    reports: ReportSink
    registry: Registry
    counters: Counters
    codec: ModuleType  # the protocol module: a decoder class and `ack_for`
    make_decoder: Callable[[], Any]
    connects: ConnectLimiter | None = None
    downlink: Downlink | None = None
    seen: Callable[[int], None] | None = None  # a sign of life without a position (heartbeats), by device id


class TerminalConnection(asyncio.Protocol):
    # Whether one frame may carry several positions (JT/T 808 0x0704) that get one answer, told apart
    # by message id and serial. Elsewhere each position is its own message (H02 has no serials).
    frames_hold_many = False

    def __init__(self, ctx: ListenerContext, connections: set[TerminalConnection]) -> None:
        self.ctx = ctx
        self.name = ctx.codec.PROTOCOL
        self._connections = connections
        self.decoder = ctx.make_decoder()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.device: Device | None = None
        self._backlog: deque[Decoded] = deque()
        self._busy = False
        self._reading_paused_by: set[str] = set()
        self._consecutive_errors = 0
        self.last_rx = 0.0

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.last_rx = asyncio.get_running_loop().time()
        if self.ctx.connects is not None and peer and not self.ctx.connects.allow(peer[0], self.last_rx):
            self.ctx.counters.bad_input(f"{self.name}.connects_refused", peer[0], "connecting faster than the limit")
            self.transport.abort()
            return
        self._connections.add(self)
        self.ctx.reports.batcher.register(self)
        self.ctx.counters.inc(f"{self.name}.connections")

    def connection_lost(self, exc: Exception | None) -> None:
        flush = getattr(self.decoder, "flush", None)
        if flush is not None:  # NMEA holds the last fix until it knows its sentence set is complete
            self.data_received_messages(flush())
        if self.ctx.downlink is not None and self.device is not None:
            self.ctx.downlink.detach(self.device.id, self)
        self._connections.discard(self)
        self.ctx.reports.batcher.unregister(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.last_rx = asyncio.get_running_loop().time()
        self.data_received_messages(self.decoder.feed(data))

    def data_received_messages(self, messages: list[Decoded]) -> None:
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
        queue = messages if isinstance(messages, deque) else deque(messages)
        while queue:
            if self._busy:
                self._backlog.extend(queue)
                return
            m = queue[0]
            if isinstance(m, FrameError):
                self._consecutive_errors += 1
                if self._consecutive_errors > MAX_CONSECUTIVE_ERRORS:
                    self._cut_off()
                    return
            else:
                self._consecutive_errors = 0
            if not isinstance(m, FrameError) and self._needs_lookup(m):
                self._lookup(self._identify(m))
                continue  # `m` stays first in the queue: it is handled once the device is known
            queue.popleft()
            if isinstance(m, Position):
                group = [m]
                while self.frames_hold_many and queue and isinstance(queue[0], Position) and _same_frame(queue[0], m):
                    group.append(queue.popleft())  # type: ignore[arg-type]
                self._positions(group)
            else:
                self._handle(m)

    def _needs_lookup(self, m: Decoded) -> bool:
        """A message that names a terminal other than the one this connection knows."""
        if isinstance(m, FrameError) or not m.device:
            return False
        return self.device is None or self.device.uid != m.device

    async def _identify(self, m: Message) -> None:
        device = await self.ctx.registry.lookup(m.device, self.name)
        if device is None or not device.enabled:
            self.ctx.counters.bad_input(
                f"{self.name}.unknown_device", self.peer, f"terminal {m.device} is not a device"
            )
            # Remember the refusal for this id, so its next messages are dropped without a lookup each.
            self.device = Device(-1, m.device, "other", "", None, None, self.name, None, False)
            return
        self.identified(device)

    def identified(self, device: Device) -> None:
        """The terminal on this connection is `device`: texts for it come here now."""
        downlink = self.ctx.downlink
        if downlink is not None and self.device is not None and self.device.id != device.id:
            downlink.detach(self.device.id, self)
        self.device = device
        if downlink is not None:
            downlink.attach(device.id, device.uid, self)

    def send_text(self, text: str, token: int) -> int:
        """A dispatcher's text; the number the terminal's answer quotes."""
        if self.name != gt06.PROTOCOL:
            raise DownlinkUnsupported(f"{self.name} terminals have no text message")
        try:
            frame = gt06.encode_command(text, serial=token & 0xFFFF, server_flag=token & 0xFFFFFFFF)
        except gt06.ProtocolError as e:
            raise DownlinkUnsupported(str(e)) from e
        self._send(frame)
        return token & 0xFFFFFFFF

    def _answer_key(self, m: CommandReply) -> int | None:
        """Which text a terminal's reply answers (GT06 quotes the server flag of the command)."""
        return m.reply_serial

    def _handle(self, m: Decoded) -> None:
        counters = self.ctx.counters
        if isinstance(m, FrameError):
            counters.bad_input(f"{self.name}.frame_errors", self.peer, m.reason)
        elif self.device is not None and not self.device.enabled:
            counters.inc(f"{self.name}.dropped_unknown_device")
            return  # no reply: a terminal that is not a device gets no login acknowledgement either
        elif isinstance(m, Unsupported):
            counters.bad_input(f"{self.name}.unsupported", self.peer, f"message {m.msg_id:#x} not supported")
        else:
            counters.inc(f"{self.name}.{type(m).__name__.lower()}")
            if isinstance(m, Heartbeat) and self.ctx.seen is not None and self.device is not None:
                self.ctx.seen(self.device.id)
            if isinstance(m, CommandReply) and self.ctx.downlink is not None and self.device is not None:
                key = self._answer_key(m)
                if key is not None:
                    self.ctx.downlink.answered(self.device.id, key, m.result == 0, m.text or None)
            if isinstance(m, Login):
                log.info("%s terminal %s logged in from %s", self.name, m.device, self.peer)
        self._send(self._ack(m))
        if isinstance(m, Logout) and self.transport is not None:
            self.transport.close()

    def _ack(self, m: Decoded, ok: bool = True) -> bytes | None:
        """The protocol's own answer to a message (None when it has none)."""
        return self.ctx.codec.ack_for(m) if ok else None

    def _positions(self, group: list[Position]) -> None:
        device = self.device
        first = group[0]
        if device is None or not device.enabled:
            self.ctx.counters.inc(f"{self.name}.dropped_unknown_device", len(group))
            return
        queued = self.ctx.reports.submit(device, group, lambda ok: self._send(self._ack(first, ok)), peer=self.peer)
        if not queued:
            self._send(self._ack(first, False))

    def _cut_off(self) -> None:
        self.ctx.counters.bad_input(
            f"{self.name}.cut_off", self.peer, f"more than {MAX_CONSECUTIVE_ERRORS} bad frames in a row"
        )
        self._backlog.clear()
        if self.transport is not None:
            self.transport.abort()

    # --- lookups ----------------------------------------------------------------------------

    def _lookup(self, coro: Coroutine[Any, Any, None]) -> None:
        self._busy = True
        self.pause_reading("lookup")
        task = asyncio.ensure_future(coro)
        task.add_done_callback(self._lookup_done)

    def _lookup_done(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("lookup for %s %s failed: %r", self.name, self.peer, task.exception())
            if self.transport is not None:
                self.transport.close()
            self._backlog.clear()
        self._busy = False
        self.resume_reading("lookup")
        backlog, self._backlog = self._backlog, deque()
        self._dispatch(backlog)

    # --- output -----------------------------------------------------------------------------

    def _send(self, data: bytes | None) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


def _same_frame(a: Position, b: Position) -> bool:
    return a.msg_id == b.msg_id and a.serial == b.serial and a.device == b.device


class TcpListener:
    """One listening port; closes connections that stay silent past the idle timeout."""

    def __init__(
        self,
        name: str,
        factory: Callable[[set[Any]], asyncio.Protocol],
        counters: Counters,
        *,
        idle_timeout: float = 600.0,
    ) -> None:
        self.name = name
        self._factory = factory
        self.counters = counters
        self.idle_timeout = idle_timeout
        self.connections: set[Any] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Listen; with `reuse_port`, worker processes share the port and the kernel spreads connections."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: self._factory(self.connections), host, port, reuse_address=True, reuse_port=reuse_port or None
        )
        self._sweeper = asyncio.create_task(self._sweep_idle(), name=f"{self.name}-idle")
        return int(self._server.sockets[0].getsockname()[1])

    async def _sweep_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(30.0, self.idle_timeout / 2))
            limit = loop.time() - self.idle_timeout
            for conn in list(self.connections):
                if conn.last_rx < limit and conn.transport is not None:
                    self.counters.bad_input(f"{self.name}.idle_closed", conn.peer, "no data within the idle timeout")
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
