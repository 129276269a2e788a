"""A JT/T 808 terminal for tests: a real TCP client speaking through the project's encoders."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime

import psycopg

from protocols import jt808
from store import devices
from store.devices import DeviceRecord


class Terminal:
    def __init__(self, device: str, *, version: int = 2013) -> None:
        self.device = device
        self.version = version
        self.serial = 0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self, port: int) -> Terminal:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        return self

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()

    def frame(self, msg_id: int, body: bytes = b"") -> tuple[int, bytes]:
        self.serial = (self.serial + 1) & 0xFFFF
        return self.serial, jt808.encode_frame(msg_id, self.device, self.serial, body, version=self.version)

    async def send(self, msg_id: int, body: bytes = b"") -> int:
        serial, data = self.frame(msg_id, body)
        await self.send_raw(data)
        return serial

    async def send_raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, wait: float = 5.0) -> bytes:
        """The next complete frame from the platform, flags included."""
        assert self.reader is not None
        head = await asyncio.wait_for(self.reader.readuntil(b"\x7e"), wait)
        if head != b"\x7e":  # bytes before a start flag would be a server bug
            raise AssertionError(f"bytes outside a frame: {head!r}")
        rest = await asyncio.wait_for(self.reader.readuntil(b"\x7e"), wait)
        return b"\x7e" + rest

    async def general_response(self, wait: float = 5.0) -> tuple[int, int, int]:
        return jt808.parse_general_response(await self.recv(wait))

    async def register(self) -> tuple[int, str]:
        serial = await self.send(
            jt808.MSG_REGISTRATION, jt808.encode_registration_body(plate="粤B12345", version=self.version)
        )
        reply_serial, result, code = jt808.parse_registration_response(await self.recv())
        assert reply_serial == serial
        return result, code

    async def authenticate(self, code: str) -> int:
        serial = await self.send(jt808.MSG_AUTHENTICATION, jt808.encode_authentication_body(code, version=self.version))
        reply_serial, reply_id, result = await self.general_response()
        assert (reply_serial, reply_id) == (serial, jt808.MSG_AUTHENTICATION)
        return result

    async def report(self, time: datetime, lat: float, lon: float, **kw: object) -> int:
        return await self.send(jt808.MSG_LOCATION, jt808.encode_location_body(time=time, lat=lat, lon=lon, **kw))  # type: ignore[arg-type]


async def registered_terminal(
    db: psycopg.AsyncConnection, port: int, *, kind: str = "muck", prefix: str = "13", version: int = 2013
) -> tuple[Terminal, int]:
    """A new device of `kind`, and its terminal connected, registered and authenticated; (terminal, device id)."""
    uid = prefix + str(secrets.randbelow(10**9)).rjust(11 - len(prefix), "0")
    await devices.upsert_devices(db, [DeviceRecord(uid=uid, kind=kind, name=f"test {uid[-4:]}")])
    device = await devices.by_uid(db, uid)
    assert device is not None
    t = await Terminal(uid, version=version).connect(port)
    result, code = await t.register()
    assert result == 0
    assert await t.authenticate(code) == 0
    return t, device.id
