"""The device registry: who a terminal is, from its own id, with the policy for unknown terminals."""

from __future__ import annotations

import secrets

from psycopg_pool import AsyncConnectionPool

from store import devices
from store.devices import Device


class Registry:
    def __init__(self, pool: AsyncConnectionPool, *, register_unknown: bool = False) -> None:
        self._pool = pool
        self.register_unknown = register_unknown

    async def lookup(self, uid: str, protocol: str) -> Device | None:
        """The device for a terminal id; unknown ids are created as kind `other` when the policy says so."""
        async with self._pool.connection() as conn:
            device = await devices.by_uid(conn, uid)
            if device is None and self.register_unknown:
                device = await devices.ensure(conn, uid, protocol)
            return device

    async def issue_auth_code(self, device: Device) -> str:
        """The device's JT/T 808 authentication code, created on its first registration."""
        if device.auth_code:
            return device.auth_code
        code = secrets.token_hex(8)
        async with self._pool.connection() as conn:
            await devices.set_auth_code(conn, device.id, code)
        return code
