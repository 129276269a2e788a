"""The JT/T 808 connection: registration and authentication decide who the terminal is.

Order of a connection's life: registration (0x0100 -> 0x8100 with the auth code) once per
terminal, then on every connection authentication (0x0102 -> 0x8001), then heartbeats and
location reports. A location report is answered with 0x8001 only after its row is committed.
Messages that arrive while a registration or authentication is being looked up wait, in order,
with reading paused, so a report sent right behind its authentication is not refused.
"""

from __future__ import annotations

import asyncio

from ingest.downlink import DownlinkUnsupported
from ingest.jt808_lane import Jt808Lane
from ingest.terminal import ListenerContext, TerminalConnection
from protocols import jt808
from protocols.jt808_bulk import general_response_prefix
from protocols.messages import Authentication, CommandReply, Decoded, FrameError, Message, Position, Registration

REG_OK = 0
REG_TERMINAL_UNKNOWN = 4


class Jt808Connection(TerminalConnection):
    frames_hold_many = True  # a 0x0704 batch: answered once, when all its positions are stored

    def __init__(
        self, ctx: ListenerContext, connections: set[TerminalConnection], lane: Jt808Lane | None = None
    ) -> None:
        super().__init__(ctx, connections)
        self._serial = 0
        self.lane = lane
        self.in_lane = False  # the lane holds reads of this connection not yet decoded
        self.version = 0  # of the frames the terminal authenticated with
        self.ack_prefix = b""  # the start of every 0x8001 to this terminal, once authenticated
        self.phone = ""  # the phone number in the terminal's headers

    def data_received(self, data: bytes) -> None:
        self.last_rx = asyncio.get_running_loop().time()
        lane = self.lane
        if lane is not None:
            ready = self.ack_prefix and not self._busy and not self._backlog and not self.decoder.buffered
            if ready and lane.offer(self, data):
                return
            if self.in_lane:
                lane.flush()  # what the lane holds of this connection comes first
        self.data_received_messages(self.decoder.feed(data))

    # --- for the lane ----------------------------------------------------------------------

    def decode_alone(self, data: bytes) -> None:
        self.data_received_messages(self.decoder.feed(data))

    def decode_frame(self, content: bytes) -> None:
        """One frame (without its flags) the lane did not take."""
        self.data_received_messages(self.decoder.frame(content))

    def send_text(self, text: str, token: int) -> int:
        """0x8300; the terminal's 0x0001 quotes the serial returned."""
        serial = self._next_serial()
        try:
            frames = jt808.encode_text_message(self.phone, serial, text, version=self.version or 2013)
        except jt808.ProtocolError as e:
            raise DownlinkUnsupported(str(e)) from e
        self._serial = (self._serial + len(frames) - 1) & 0xFFFF  # a long text goes in several packets
        self._send(b"".join(frames))
        return (serial + len(frames) - 1) & 0xFFFF  # answered packet by packet: the last one settles it

    def _answer_key(self, m: CommandReply) -> int | None:
        return m.reply_serial if m.reply_id == jt808.MSG_TEXT else None

    def take_serials(self, count: int) -> int:
        """Reserve `count` serials for answers; the first is the returned value + 1."""
        first = self._serial
        self._serial = (self._serial + count) & 0xFFFF
        return first

    def send_answers(self, data: bytes) -> None:
        self._send(data)

    def _needs_lookup(self, m: Decoded) -> bool:
        return False  # the terminal is known by its authentication, not by the id in each header

    def _handle(self, m: Decoded) -> None:
        if isinstance(m, Registration):
            self._lookup(self._register(m))
        elif isinstance(m, Authentication):
            self._lookup(self._authenticate(m))
        else:
            super()._handle(m)

    def _ack(self, m: Decoded, ok: bool = True) -> bytes | None:
        # 0x8001 for most, 0x8800 for media, none for the terminal's own replies; failure: result 1 or 2.
        if ok:
            return jt808.ack_for(m, serial=self._next_serial())
        if isinstance(m, Position):
            return self._response(m, jt808.RESULT_FAILURE)
        return None

    def _positions(self, group: list[Position]) -> None:
        first = group[0]
        device = self.device
        if device is None or device.uid != first.device:
            self.ctx.counters.bad_input("jt808.unauthenticated", self.peer, "location report before authentication")
            self._send(self._response(first, jt808.RESULT_FAILURE))
            return
        queued = self.ctx.reports.submit(device, group, lambda ok: self._send(self._ack(first, ok)), peer=self.peer)
        if not queued:  # every fix in it was impossible (coordinates, time)
            self._send(self._response(first, jt808.RESULT_MESSAGE_ERROR))

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
            self._send(self._response(m, jt808.RESULT_FAILURE))
            return
        self.phone = m.device
        self.version = m.version
        self.ack_prefix = general_response_prefix(m.device, m.version)
        self.identified(device)
        self.ctx.counters.inc("jt808.authentications")
        self._send(self._response(m, jt808.RESULT_OK))

    def _next_serial(self) -> int:
        self._serial = (self._serial + 1) & 0xFFFF
        return self._serial

    def _response(self, m: Message | FrameError, result: int) -> bytes:
        return jt808.encode_general_response(m, result, serial=self._next_serial())
