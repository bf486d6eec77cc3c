"""One password login, the same on every protocol that takes a password (IMAP LOGIN and
AUTHENTICATE, POP3 USER/PASS and AUTH, submission's AUTH, the status web's `/account`).

The steps, and why in this order:

1. The attempt is counted against its address and network (`AuthThrottle.reserve`) before
   anything is done for it: a source past its limit is refused before it costs a store read,
   and a concurrent burst cannot all pass the check before any of it is counted.
2. The account is read from the store, under a slot of the node's overload gate, and the gate
   slot is given back at once: the slot covers store work only. The password check that follows
   is bounded by the `Verifier` itself, and the failure delay is the client's time; neither may
   hold a slot or count as store latency (a flood of wrong passwords would otherwise shrink the
   node's adaptive limit).
3. The attempt is counted against the account (`Reservation.include_account`) before its
   password is checked, with no await in between. Whether the source is one of the account's
   known networks (`KnownNetworks`) is read only when the account is at its limit.
4. The password is checked (`Verifier`, bounded per node and per network).
5. A success forgets the reservation and teaches the account its network; a failure keeps it
   and tells the caller how long to wait before answering (after every slot is given back); a
   failure of the platform (store, verifier busy, overload) forgets it: not the client's doing.

The `Attempt` says how it ended; the caller answers in its protocol, may do more store work for a
successful login (POP3 locks and loads the maildrop), then `record`s the attempt: what reaches
the public status window is only what the platform did (`metrics.LOGIN_RESULTS`).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mailfort import metrics as M
from mailfort.auth.known import KnownNetworks
from mailfort.auth.passwords import NetworkBusy, Verifier
from mailfort.auth.throttle import AuthThrottle, NeedsTrust, Reservation, Scope
from mailfort.errors import Busy, StoreError
from mailfort.mail.address import AddressError, normalize
from mailfort.metrics import NodeMetrics
from mailfort.store.records import Account
from mailfort.store.roles import Accounts

log = logging.getLogger("mailfort.auth")


class Gate(Protocol):
    """The node's overload gate (`server/overload.OverloadGate`), as a login uses it."""

    def try_acquire(self, protocol: str, client: str | None = None) -> Any: ...

    def client_full(self, client: str | None) -> bool: ...

    def release(self, token: Any, ok: bool = True) -> None: ...


class Outcome(enum.Enum):
    """How a login ended; the value is its `metrics` result."""

    SUCCESS = M.LOGIN_SUCCESS
    REJECTED = M.LOGIN_REJECTED  # wrong password or unknown user: the client's doing
    THROTTLED = M.LOGIN_THROTTLED  # refused unchecked: too many failures (the client's doing)
    UNAVAILABLE = M.LOGIN_ERROR  # the platform could not decide: store, verifier, overload


@dataclass(slots=True)
class Attempt:
    """One login's course: its outcome, the account on success, the delay before a rejection
    is answered, and what refused a throttled one."""

    protocol: str
    ip: str
    address: str
    started: float
    outcome: Outcome = Outcome.UNAVAILABLE
    account: Account | None = None
    delay: float = 0.0
    refused_by: str = ""  # Scope value or "verifier" for THROTTLED, the cause for UNAVAILABLE
    recorded: bool = field(default=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCESS


def login_address(user: str) -> str:
    """The key an attempt is counted under: the normalized address, or what was typed."""
    try:
        return normalize(user)
    except AddressError:
        return user[:200]


class Logins:
    """The node's password logins: throttle, known networks, verifier, metrics, in one place."""

    def __init__(
        self,
        *,
        store: Accounts,
        verifier: Verifier,
        throttle: AuthThrottle,
        known: KnownNetworks,
        metrics: NodeMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.verifier = verifier
        self.throttle = throttle
        self.known = known
        self.metrics = metrics
        self.clock = clock

    def refuses(self, protocol: str, ip: str) -> bool:
        """Whether `ip` (or its network) may not try now, counted and logged as a throttled
        login: for a protocol that can refuse before it reads the credentials (SMTP AUTH
        answers 454 before the SASL exchange)."""
        scope = self.throttle.blocked(ip)
        if scope is None:
            return False
        attempt = Attempt(protocol, ip, "", self.clock())
        self.record(self._throttled(attempt, scope.value))
        return True

    async def attempt(
        self, protocol: str, ip: str, user: str, password: str, gate: Gate | None = None
    ) -> Attempt:
        """Check `user`'s `password` for a client at `ip`. Never raises for the client's doing
        or the store's: the outcome says what happened. Not yet recorded (see `record`)."""
        attempt = Attempt(protocol, ip, login_address(user), self.clock())
        reserved = self.throttle.reserve(ip)
        if not isinstance(reserved, Reservation):
            return self._throttled(attempt, reserved.value)
        network = self.throttle.networks.of(ip)
        token = None
        if gate is not None:
            token = gate.try_acquire(protocol, network)
            if token is None:
                reserved.cancel()
                if gate.client_full(network):
                    # Its network holds its share of the gate already: its own doing, which
                    # must not count as the platform failing logins.
                    return self._throttled(attempt, "client")
                attempt.refused_by = "overload"
                return attempt  # UNAVAILABLE: the node refuses while overloaded
        stored = True
        try:
            account = await self.store.get_account(attempt.address)
            refused = await self._include_account(reserved, attempt.address, account, network)
        except StoreError as exc:
            stored = False
            reserved.cancel()
            log.warning("event=login_store_error proto=%s client=%s error=%s", protocol, ip, exc)
            attempt.refused_by = "store"
            return attempt
        finally:
            if gate is not None and token is not None:
                gate.release(token, stored)
        if refused is not None:
            reserved.failed()  # it cost a store read: counted against its source
            return self._throttled(attempt, refused.value)
        try:
            ok = await self.verifier.verify(
                account.password_hash if account else None, password, network=network
            )
        except NetworkBusy:
            reserved.failed()
            return self._throttled(attempt, "verifier")
        except Busy:
            reserved.cancel()
            log.warning("event=login_verifier_busy proto=%s client=%s", protocol, ip)
            attempt.refused_by = "verifier"
            return attempt
        if not ok or account is None:
            attempt.outcome = Outcome.REJECTED
            attempt.delay = reserved.failed()
            log.warning(
                "event=login_failed proto=%s client=%s user=%r", protocol, ip, attempt.address
            )
            return attempt
        reserved.cancel()
        attempt.outcome = Outcome.SUCCESS
        attempt.account = account
        await self._remember(protocol, account.id, network, gate)
        return attempt

    async def _include_account(
        self, reserved: Reservation, address: str, account: Account | None, network: str
    ) -> Scope | None:
        """Count the attempt against its account; the scope that refuses it, if one does."""
        refused = reserved.include_account(address, trusted=None if account else False)
        if refused is NeedsTrust.ACCOUNT_FULL:
            assert account is not None
            trusted = await self.known.known(account.id, network)
            # Counted only now, after the await: the counts may have moved meanwhile.
            refused = reserved.include_account(address, trusted=trusted)
        assert not isinstance(refused, NeedsTrust)
        return refused

    async def _remember(
        self, protocol: str, account_id: int, network: str, gate: Gate | None
    ) -> None:
        """Teach the account its network: a store write when the network is new or its record
        old, under a gate slot of its own; skipped (tried at the next login) when the node is
        overloaded, since it is worth less than the work the slot is for."""
        if self.known.fresh(account_id, network):
            return
        token = gate.try_acquire(protocol, network) if gate is not None else None
        if gate is not None and token is None:
            return
        try:
            await self.known.remember(account_id, network)
        finally:
            if gate is not None and token is not None:
                gate.release(token)

    def _throttled(self, attempt: Attempt, reason: str) -> Attempt:
        attempt.outcome = Outcome.THROTTLED
        attempt.refused_by = reason
        log.warning(
            "event=login_refused reason=throttled scope=%s proto=%s client=%s user=%r",
            reason,
            attempt.protocol,
            attempt.ip,
            attempt.address,
        )
        return attempt

    def record(self, attempt: Attempt, outcome: Outcome | None = None) -> None:
        """Count the attempt in the metrics, once, with the time since it started: the node's
        work, before any failure delay. `outcome` overrides the attempt's own (a login that
        succeeded but whose session could not be set up is UNAVAILABLE, or REJECTED when that
        was the client's doing, like a POP3 maildrop in use)."""
        if attempt.recorded:
            return
        attempt.recorded = True
        if outcome is not None:
            attempt.outcome = outcome
        metrics = self.metrics
        if metrics is None:
            return
        metrics.login(attempt.protocol, attempt.outcome.value, self.clock() - attempt.started)
        if attempt.outcome is Outcome.THROTTLED:
            metrics.refused(attempt.protocol, "throttled")
