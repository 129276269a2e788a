"""Password hashes: scrypt from the standard library, in a self-describing text form.

`scrypt$N$r$p$salt$hash` (salt and hash in base64 without padding): the cost is part of each hash,
so it can be raised later and the hashes made before still verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

N, R, P = 2**14, 8, 1  # about 16 MiB and 60 ms per hash
SALT_BYTES = 16
HASH_BYTES = 32
MAX_LENGTH = 1024  # characters; a longer password is refused rather than cut
_MAX_N = 2**20  # a stored hash may not ask for more than 1 GiB of memory

# Hashed against when there is no real hash (unknown user, token-only user), so that answer takes as long.
_NO_HASH = (N, R, P, bytes(SALT_BYTES), bytes(HASH_BYTES))


class PasswordError(ValueError):
    pass


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=2 * 128 * r * (n + p + 2),
        dklen=length,
    )


def check_new(password: str) -> None:
    """PasswordError when a password may not be set."""
    if not password:
        raise PasswordError("the password must not be empty")
    if len(password) > MAX_LENGTH:
        raise PasswordError(f"the password must be at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    check_new(password)
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, N, R, P, HASH_BYTES)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, binascii.Error):
        return None
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16 and salt and digest):
        return None
    return n, r, p, salt, digest


def verify_password(password: str, encoded: str | None) -> bool:
    """Whether the password matches the hash, compared in constant time. No hash (None) or a malformed
    one never matches, after the same work as a real check."""
    parsed = _parse(encoded) if encoded else None
    acceptable = parsed is not None and 0 < len(password) <= MAX_LENGTH
    n, r, p, salt, digest = parsed or _NO_HASH
    computed = _scrypt(password[:MAX_LENGTH], salt, n, r, p, len(digest))
    return hmac.compare_digest(computed, digest) and acceptable
