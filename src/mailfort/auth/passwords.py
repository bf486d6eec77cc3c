"""Argon2id password hashes, and verification that never blocks the event loop."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailfort.errors import Busy

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

    Each verification costs about 64 MiB and a few hundred ms of CPU, so at most `concurrency` run
    at once and at most `max_waiting` wait; past that the caller gets `Busy` and answers "try again
    later". After a restart every client reconnects at once: without this bound the node's memory
    would grow by 64 MiB per concurrent first login.
    """

    def __init__(
        self, max_entries: int = 10000, *, concurrency: int = 2, max_waiting: int = 64
    ) -> None:
        self._key = secrets.token_bytes(32)
        self._ok: dict[bytes, None] = {}
        self._max = max_entries
        self._concurrency = concurrency
        self._max_waiting = max_waiting
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0
        self.refused = 0

    def _digest(self, password_hash: str, password: str) -> bytes:
        material = password_hash.encode() + b"\0" + password.encode("utf-8", "surrogateescape")
        return hmac.new(self._key, material, hashlib.sha256).digest()

    async def verify(self, password_hash: str | None, password: str) -> bool:
        if password_hash is not None and self._digest(password_hash, password) in self._ok:
            return True
        if self._waiting >= self._max_waiting:
            self.refused += 1
            raise Busy("too many logins being verified; try again later")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._concurrency)
        self._waiting += 1
        try:
            async with self._slots:
                ok = await asyncio.to_thread(verify_password, password_hash, password)
        finally:
            self._waiting -= 1
        if ok and password_hash is not None:
            if len(self._ok) >= self._max:
                self._ok.pop(next(iter(self._ok)))
            self._ok[self._digest(password_hash, password)] = None
        return ok
