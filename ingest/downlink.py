"""Dispatcher texts down to terminals and phones, from whichever process holds the connection.

Each worker process keeps the devices whose connections it holds (`attach` on authentication or
login, `detach` when the connection goes). A new message is committed with its deliveries and
announced with NOTIFY; every process listens and sends it to the devices it holds. A terminal that
is not connected anywhere keeps its delivery queued, and gets the text from the process it connects
to next (`attach` looks up what is open for it), until the message expires. The process that runs
the MQTT subscriber also publishes to phones (the broker keeps a QoS 1 message for a phone's
persistent session). A terminal's answer (JT/T 808 0x0001 to 0x8300, GT06 0x15/0x21, a phone's
`ack` event) marks the delivery acknowledged or failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool

from ingest.background import Background
from store import db, messages

log = logging.getLogger("telematics.downlink")

MAX_ATTEMPTS = 5  # sends without an answer before a delivery is given up as failed


class DownlinkUnsupported(Exception):
    """The terminal's protocol cannot carry a text (the delivery fails with this reason)."""


class Sender(Protocol):
    def send_text(self, text: str, token: int) -> int:
        """Send the text; the number the terminal's answer will quote (or DownlinkUnsupported)."""
        ...


PhonePublish = Callable[[str, int, str], Awaitable[None]]  # device uid, message id, text


class Downlink:
    def __init__(self, pool: AsyncConnectionPool, *, publish_phone: PhonePublish | None = None) -> None:
        self._pool = pool
        self.publish_phone = publish_phone  # set in the process that runs the MQTT subscriber
        self._held: dict[int, Sender] = {}
        self._uids: dict[int, str] = {}
        self._waiting: dict[tuple[int, int], int] = {}  # (device id, answer key) -> message id
        self._busy: set[tuple[int, int]] = set()  # (message id, device id) being sent now
        self._steps = Background("downlink step")
        self._listener: asyncio.Task[None] | None = None

    # --- connections ------------------------------------------------------------------------

    def attach(self, device_id: int, uid: str, sender: Sender) -> None:
        """A terminal is connected here: send what is open for it."""
        self._held[device_id] = sender
        self._uids[device_id] = uid
        self._steps.spawn(self._send_open([device_id], None))

    def detach(self, device_id: int, sender: Sender) -> None:
        if self._held.get(device_id) is sender:
            del self._held[device_id]
            self._uids.pop(device_id, None)

    def answered(self, device_id: int, key: int, ok: bool, detail: str | None = None) -> None:
        """A terminal's answer quoting `key`: its delivery is acknowledged (or failed)."""
        message_id = self._waiting.pop((device_id, key), None)
        if message_id is not None:
            self._steps.spawn(self._set(message_id, device_id, "acknowledged" if ok else "failed", detail))

    def seen(self, device_id: int, message_id: int) -> None:
        """A phone says it has shown message `message_id` (phones quote the message itself)."""
        self._steps.spawn(self._set(message_id, device_id, "acknowledged", None))

    # --- the loop ---------------------------------------------------------------------------

    async def start(self, dsn: str) -> None:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._listener = asyncio.create_task(self._listen(dsn, ready), name="downlink")
        await ready

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        await self._steps.cancel()

    async def _listen(self, dsn: str, ready: asyncio.Future[None]) -> None:
        delay = 0.5
        while True:
            try:
                conn = await db.connect(dsn, autocommit=True)
                try:
                    await conn.execute(f"LISTEN {messages.CHANNEL_NEW}")
                    if not ready.done():
                        ready.set_result(None)
                    # Whatever was announced while not listening (a restart, a lost connection):
                    self._steps.spawn(self._send_open(list(self._held), None))
                    delay = 0.5
                    async for note in conn.notifies():
                        self._steps.spawn(self._new_message(int(note.payload)))
                finally:
                    await conn.close()
            except (psycopg.OperationalError, OSError) as e:
                log.warning("downlink listener lost the database (%s); again in %.1fs", e, delay)
                if not ready.done():
                    ready.set_result(None)  # the server starts anyway; queued texts go out once back
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _new_message(self, message_id: int) -> None:
        await self._send_open(list(self._held), message_id)
        if self.publish_phone is not None:
            await self._send_phones(message_id)

    async def _send_open(self, device_ids: list[int], message_id: int | None) -> None:
        if not device_ids:
            return
        async with self._pool.connection() as conn:
            pending = await messages.open_for(conn, device_ids, message_id)
        for p in pending:
            sender = self._held.get(p.device_id)
            busy = (p.message_id, p.device_id)
            if sender is None or busy in self._busy:
                continue
            self._busy.add(busy)
            try:
                if p.attempts >= MAX_ATTEMPTS:
                    await self._set(p.message_id, p.device_id, "failed", f"no answer after {p.attempts} sends")
                    continue
                try:
                    key = sender.send_text(p.text, p.message_id)
                except DownlinkUnsupported as e:
                    await self._set(p.message_id, p.device_id, "failed", str(e))
                    continue
                self._waiting[(p.device_id, key)] = p.message_id
                await self._set(p.message_id, p.device_id, "sent", None)
            finally:
                self._busy.discard(busy)

    async def _send_phones(self, message_id: int) -> None:
        assert self.publish_phone is not None
        async with self._pool.connection() as conn:
            phones = await messages.open_phones(conn, message_id)
        for device_id, uid, text in phones:
            try:
                await self.publish_phone(uid, message_id, text)
            except Exception as e:
                log.warning("message %d to phone %s not published: %r", message_id, uid, e)
                continue  # stays queued; sent again with the next message or restart
            await self._set(message_id, device_id, "sent", "handed to the MQTT broker")

    async def _set(self, message_id: int, device_id: int, state: str, detail: str | None) -> None:
        async with self._pool.connection() as conn:
            await messages.set_state(conn, message_id, device_id, state, detail)
