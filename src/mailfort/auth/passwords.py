"""Argon2id password hashes, and verification that never blocks the event loop."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password: unknown users cost the same time as known ones (no oracle)."""
    return _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        ok = _hasher.verify(password_hash or _dummy_hash(), password)
        return ok and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


class Verifier:
    """Verifies in a worker thread and remembers recent successes.

    Argon2 is deliberately slow (tens of ms of CPU). Clients that log in again and again with the
    same right password (IMAP clients open several connections, POP3 clients poll) would spend the
    node's CPU on it, so a success is remembered as a keyed digest bound to the stored hash; a
    changed password changes the hash and so invalidates the entry.
    """

    def __init__(self, max_entries: int = 10000) -> None:
        self._key = secrets.token_bytes(32)
        self._ok: dict[bytes, None] = {}
        self._max = max_entries

    def _digest(self, password_hash: str, password: str) -> bytes:
        material = password_hash.encode() + b"\0" + password.encode("utf-8", "surrogateescape")
        return hmac.new(self._key, material, hashlib.sha256).digest()

    async def verify(self, password_hash: str | None, password: str) -> bool:
        if password_hash is not None and self._digest(password_hash, password) in self._ok:
            return True
        ok = await asyncio.to_thread(verify_password, password_hash, password)
        if ok and password_hash is not None:
            if len(self._ok) >= self._max:
                self._ok.pop(next(iter(self._ok)))
            self._ok[self._digest(password_hash, password)] = None
        return ok
