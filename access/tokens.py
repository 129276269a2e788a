"""Bearer tokens: random, shown once, stored only as their SHA-256 (enough for 256 random bits: no salt
or slow hash is needed, and a lookup stays one index probe)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

import psycopg

from store import users

MAX_LENGTH = 512  # longer strings are not tokens of ours and are not hashed or looked up


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def plausible(token: str) -> bool:
    return 0 < len(token) <= MAX_LENGTH and token.isascii() and token.isprintable()


async def issue(conn: psycopg.AsyncConnection, user_id: int, label: str, expires_at: datetime | None) -> str:
    """A new token for the user; the caller shows it once, it cannot be read back."""
    token = new_token()
    await users.create_token(conn, user_id, token_hash(token), label, expires_at)
    return token
