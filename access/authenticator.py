"""Bearer token -> principal: the configured API token, or a user's token from the database.

A resolved principal is kept in memory for up to `ttl` seconds (never past the token's expiry), so a
page that polls and holds WebSockets does not cost a query per call. The price: a token revoked by
another process, or a user disabled or moved to another unit, takes effect here within `ttl`.
"""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from access import tokens
from access.principal import SYSTEM, Principal
from store import users


class Authenticator:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        static_token: str,
        *,
        ttl: float = 30.0,
        max_entries: int = 10_000,
        touch_after: timedelta = timedelta(minutes=1),
    ) -> None:
        if not static_token:
            raise ValueError("the API needs a configured token")
        self.pool = pool
        self._static = static_token.encode("utf-8", "surrogatepass")
        self.ttl = ttl
        self.max_entries = max_entries
        self.touch_after = touch_after
        self._cache: dict[bytes, tuple[float, Principal]] = {}  # token hash -> (valid until, principal)

    async def resolve(self, token: str) -> Principal | None:
        """The principal a token stands for; None for a wrong, revoked or expired token or a disabled user."""
        if hmac.compare_digest(token.encode("utf-8", "surrogatepass"), self._static):
            return SYSTEM
        if not tokens.plausible(token):
            return None
        key = tokens.token_hash(token)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self.pool.connection() as conn:
            owner = await users.token_owner(conn, key, self.touch_after)
        if owner is None:
            self._cache.pop(key, None)
            return None
        found = Principal(owner.user_id, owner.name, owner.role, owner.unit, frozenset(owner.unit_ids))
        life = self.ttl
        if owner.expires_at is not None:
            life = min(life, (owner.expires_at - datetime.now(UTC)).total_seconds())
        self._remember(key, now + life, found)
        return found

    def forget(self, token: str) -> None:
        """Drop a token from the cache (after revoking it here)."""
        self._cache.pop(tokens.token_hash(token), None)

    def _remember(self, key: bytes, until: float, found: Principal) -> None:
        if key not in self._cache and len(self._cache) >= self.max_entries:
            now = time.monotonic()
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            while len(self._cache) >= self.max_entries:  # all still valid: the oldest go
                del self._cache[next(iter(self._cache))]
        self._cache[key] = (until, found)
