"""The device registry: who a terminal is, from its own id, with the policy for unknown terminals.

Lookups are cached in memory (a phone posting every few seconds must not cost a query each
time); a cached answer lives `ttl` seconds, an unknown id `negative_ttl` seconds, so a device
added or disabled in the database is seen within that time.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from psycopg_pool import AsyncConnectionPool

from store import devices
from store.devices import Device


class Registry:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        register_unknown: bool = False,
        ttl: float = 60.0,
        negative_ttl: float = 10.0,
        max_entries: int = 500_000,
    ) -> None:
        self._pool = pool
        self.register_unknown = register_unknown
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, Device | None]] = {}
        # Told of each device read from the database (a terminal connecting, a device registered
        # automatically), so the live state knows it before its first report is committed.
        self.on_device: Callable[[Device], None] | None = None

    async def lookup(self, uid: str, protocol: str) -> Device | None:
        """The device for a terminal id; unknown ids are created as kind `other` when the policy says so."""
        now = time.monotonic()
        hit = self._cache.get(uid)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self._pool.connection() as conn:
            device = await devices.by_uid(conn, uid)
            if device is None and self.register_unknown:
                device = await devices.ensure(conn, uid, protocol)
        self._remember(uid, device, now)
        if device is not None and self.on_device is not None:
            self.on_device(device)
        return device

    def _remember(self, uid: str, device: Device | None, now: float) -> None:
        if len(self._cache) >= self.max_entries:
            self._cache.clear()  # a flood of made-up ids must not grow this without bound
        self._cache[uid] = (now + (self.ttl if device is not None else self.negative_ttl), device)

    def forget(self, uid: str) -> None:
        self._cache.pop(uid, None)

    async def issue_auth_code(self, device: Device) -> str:
        """The device's JT/T 808 authentication code, created on its first registration."""
        if device.auth_code:
            return device.auth_code
        code = secrets.token_hex(8)
        async with self._pool.connection() as conn:
            await devices.set_auth_code(conn, device.id, code)
        self.forget(device.uid)
        return code
