"""Keeping the node's certificate from ACME: order when there is none, renew before expiry, and
serve whatever certificate the store holds, on every node, without a restart.

One node at a time orders, under the store's named lease `acme-order`; the others see the new
certificate at their next look in the store (`acme_reload_seconds`) and load it into the live
`SSLContext` every listener shares: `load_cert_chain` on a context changes what new handshakes
present, while open connections keep theirs. When the CA cannot be reached the node keeps serving
what it has (the self-signed certificate until a first order succeeds), logs, counts
(`mailfort_acme_orders{result="failed"}`) and tries again after a doubling wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from mailfort.certs.acme_order import AcmeOrder, in_thread, new_account_key
from mailfort.config import TlsConfig
from mailfort.metrics import NodeMetrics
from mailfort.store.records import StoredCertificate
from mailfort.store.roles import Certificates, Locks

log = logging.getLogger("mailfort.certs")

CERTIFICATE = "acme"  # the store's name for the certificate ACME keeps
LEASE = "acme-order"
DAY = 86400.0
# Long enough for the slowest order (ACME_ORDER's wait plus the requests around it); a node
# that dies while ordering holds no one up longer than this.
LEASE_SECONDS = 600.0
CHALLENGE_SECONDS = 600.0


class CertificateStore(Certificates, Locks, Protocol):
    """The store's certificates, with the lease that lets one node order at a time."""


def wanted_names(settings: TlsConfig, hostname: str) -> tuple[str, ...]:
    return settings.acme_names or (hostname.lower(),)


class CertificateKeeper:
    """The ACME task of one node: `install_stored` at start, then `run` until cancelled."""

    def __init__(
        self,
        *,
        store: CertificateStore,
        context: ssl.SSLContext,
        settings: TlsConfig,
        hostname: str,
        owner: str,
        directory: Path,
        clock: Callable[[], float],
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.store = store
        self.context = context
        self.settings = settings
        self.names = wanted_names(settings, hostname)
        self.owner = owner
        self.directory = directory  # where the PEM files `load_cert_chain` reads are written
        self.clock = clock
        self.metrics = metrics
        self.serving: StoredCertificate | None = None
        self.failures = 0  # consecutive failed orders
        self.account_key: str | None = None  # the cluster's, from the store at the first order

    # -- what every node does -------------------------------------------------------------------
    async def install_stored(self) -> StoredCertificate | None:
        """Serve the stored certificate if it is not the one served already."""
        stored = await self.store.certificate(CERTIFICATE)
        if stored is None or stored == self.serving:
            return stored
        try:
            self._load(stored)
        except (ssl.SSLError, OSError, ValueError) as exc:
            # A row this node cannot load (damaged, a key that does not match): keep serving.
            log.error("event=certificate_load_failed updated=%.0f error=%r", stored.updated, exc)
            return stored
        self.serving = stored
        if self.metrics is not None:
            self.metrics.certificate_expiry.set(stored.not_after)
        log.info(
            "event=certificate_loaded names=%s not_after=%.0f",
            ",".join(stored.names),
            stored.not_after,
        )
        return stored

    def _load(self, cert: StoredCertificate) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        chain = _write(self.directory, "cert.pem", cert.chain_pem)
        key = _write(self.directory, "key.pem", cert.key_pem)
        # Tried on a context of its own first: a failed load_cert_chain can leave a context with
        # the new certificate and no key for it, and the live one must never be left so.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(chain), str(key))
        self.context.load_cert_chain(str(chain), str(key))

    def due(self, stored: StoredCertificate | None, now: float) -> bool:
        """No certificate, one for other names, or one within the renewal window."""
        if stored is None or set(stored.names) != set(self.names):
            return True
        return stored.not_after - now <= self.settings.acme_renew_before_days * DAY

    # -- the loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_check = loop.time()
        while True:
            try:
                stored = await self.install_stored()
                if loop.time() >= next_check:
                    next_check = loop.time() + await self._consider(stored)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store down: the listeners go on with what they have
                log.warning("event=certificate_check_failed error=%r", exc)
            wait = min(self.settings.acme_reload_seconds, max(0.0, next_check - loop.time()))
            await asyncio.sleep(max(wait, 0.05))

    async def _consider(self, stored: StoredCertificate | None) -> float:
        """Order if due and ours to order; the seconds until the next consideration."""
        if not self.due(stored, self.clock()):
            return _jittered(self.settings.acme_check_seconds)
        now = self.clock()
        if not await self.store.acquire_lease(LEASE, self.owner, now + LEASE_SECONDS, now):
            # Another node is ordering: its certificate reaches us at the next look.
            return self.settings.acme_reload_seconds
        try:
            # It may have been issued by the node that held the lease just before us.
            if not self.due(await self.store.certificate(CERTIFICATE), self.clock()):
                return _jittered(self.settings.acme_check_seconds)
            await self._order()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            if self.metrics is not None:
                self.metrics.acme_orders.labels("failed").inc()
            wait = min(
                self.settings.acme_retry_seconds * 2.0 ** (self.failures - 1),
                self.settings.acme_check_seconds,
            )
            log.warning(
                "event=acme_failed names=%s failures=%d retry_in=%.0f serving=%s error=%r",
                ",".join(self.names),
                self.failures,
                wait,
                "acme" if self.serving else "self-signed",
                exc,
            )
            return wait
        finally:
            await self.store.release_lease(LEASE, self.owner)
        self.failures = 0
        await self.install_stored()
        return _jittered(self.settings.acme_check_seconds)

    async def _order(self) -> None:
        s = self.settings
        if self.account_key is None:
            self.account_key = await self.store.acme_account_key(
                s.acme_directory, await in_thread(new_account_key), self.clock()
            )
        key = self.account_key
        order = AcmeOrder(
            directory=s.acme_directory,
            account_key_pem=key,
            email=s.acme_email,
            names=self.names,
            ca_file=s.acme_ca_file,
            name=CERTIFICATE,
        )
        answers = []
        try:
            answers = await order.begin()
            for answer in answers:
                now = self.clock()
                await self.store.put_acme_challenge(
                    answer.token, answer.key_authorization, now + CHALLENGE_SECONDS, now
                )
            issued = await order.finish(answers)
        finally:
            for answer in answers:
                await self.store.delete_acme_challenge(answer.token)
            order.close()
        await self.store.put_certificate(dataclasses.replace(issued, updated=self.clock()))
        if self.metrics is not None:
            self.metrics.acme_orders.labels("issued").inc()
        log.info(
            "event=acme_issued names=%s not_after=%.0f node=%s",
            ",".join(issued.names),
            issued.not_after,
            self.owner,
        )


def _jittered(seconds: float) -> float:
    # Nodes started together do not all look at the same moment.
    return seconds * random.uniform(0.9, 1.1)


def _write(directory: Path, name: str, text: str) -> Path:
    """Replace `directory/name` whole (a reader never sees half a file), readable by us only."""
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(temporary, directory / name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return directory / name
