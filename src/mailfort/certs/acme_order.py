"""One certificate order from an ACME CA (RFC 8555) with HTTP-01 challenges, on certbot's `acme`.

The library is blocking (requests underneath), so each blocking step here runs in a daemon thread
of its own and the event loop every client shares never waits on the CA; a node that stops in the
middle of an order does not wait for it either (the default executor would hold the shutdown for
as long as the CA takes). Between
the steps the caller publishes the challenge answers in the store (`Certificates`), so whichever
node of a cluster the CA reaches answers it (RFC 8555 8.3).

TLS-ALPN-01 (RFC 8737) is not offered: it would need the SMTP/IMAP listeners to answer the
`acme-tls/1` protocol on port 443, which mailfort does not listen on; HTTP-01 goes to the http
listener that every node already serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.jwa import RS256
from josepy.jwk import JWKRSA

from mailfort.store.records import StoredCertificate

T = TypeVar("T")

USER_AGENT = "mailfort"
# Every request to the CA, and the whole wait for validation and issuance.
REQUEST_TIMEOUT = 30
ORDER_TIMEOUT = 180.0


@dataclass(frozen=True, slots=True)
class Challenge:
    """An HTTP-01 answer to publish at `/.well-known/acme-challenge/<token>`."""

    token: str
    key_authorization: str
    body: messages.ChallengeBody


async def in_thread(fn: Callable[[], T]) -> T:
    """`fn()` on a daemon thread, awaited without blocking the loop."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], object]) -> None:
        if not done.done():  # the awaiting task may have been cancelled meanwhile
            outcome()

    def work() -> None:
        try:
            outcome = functools.partial(done.set_result, fn())
        except BaseException as exc:
            outcome = functools.partial(done.set_exception, exc)
        # The loop is closed when the node stopped meanwhile: then nobody waits for this.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=work, name="acme", daemon=True).start()
    return await done


def new_account_key() -> str:
    """An RSA key for the ACME account: RS256 is the one JWS algorithm every CA takes."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _pem(key)


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def describe(chain_pem: str) -> tuple[tuple[str, ...], float]:
    """The DNS names and the expiry (epoch seconds) of a chain's first certificate."""
    leaf = x509.load_pem_x509_certificates(chain_pem.encode())[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return names, leaf.not_valid_after_utc.timestamp()


class AcmeOrder:
    """One order for `names`, in three steps: `begin` (account, order, challenges to publish),
    `finish` (answer them, wait, finalize) and the result. Each step is awaited on a thread."""

    def __init__(
        self,
        *,
        directory: str,
        account_key_pem: str,
        email: str,
        names: Sequence[str],
        name: str,
        ca_file: str = "",
    ) -> None:
        self.name = name
        self.directory = directory
        self.email = email
        self.names = tuple(names)
        loaded = serialization.load_pem_private_key(account_key_pem.encode(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError("the ACME account key is not an RSA key")
        # requests takes a CA bundle's path where the library's type says bool.
        verify: bool = ca_file or True  # type: ignore[assignment]
        self._net = client.ClientNetwork(
            JWKRSA(key=loaded),
            alg=RS256,
            verify_ssl=verify,
            user_agent=USER_AGENT,
            timeout=REQUEST_TIMEOUT,
        )
        self._key_pem = _pem(ec.generate_private_key(ec.SECP256R1()))
        self._client: client.ClientV2 | None = None
        self._order: messages.OrderResource | None = None

    async def begin(self) -> list[Challenge]:
        return await in_thread(self._begin)

    async def finish(self, answers: Sequence[Challenge]) -> StoredCertificate:
        """The certificate issued, named `name` (`updated` is for the caller to set)."""
        return await in_thread(lambda: self._finish(answers))

    def _begin(self) -> list[Challenge]:
        acme = client.ClientV2(client.ClientV2.get_directory(self.directory, self._net), self._net)
        self._client = acme
        registration = messages.NewRegistration.from_data(
            email=self.email or None, terms_of_service_agreed=True
        )
        try:
            acme.new_account(registration)
        except errors.ConflictError as exists:
            # RFC 8555 7.3.1: the key already has an account (another node, an earlier run).
            known = messages.RegistrationResource(uri=exists.location, body=messages.Registration())
            acme.query_registration(known)
        csr = crypto_util.make_csr(self._key_pem.encode(), list(self.names))
        self._order = acme.new_order(csr)
        found: list[Challenge] = []
        for authz in self._order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue  # a validation the CA still remembers (RFC 8555 7.1.4)
            for body in authz.body.challenges:
                if isinstance(body.chall, challenges.HTTP01):
                    _, validation = body.response_and_validation(self._net.key)
                    token = body.chall.encode("token")
                    found.append(Challenge(token, str(validation), body))
                    break
            else:
                offered = authz.body.identifier.value
                raise errors.Error(f"the CA offers no HTTP-01 challenge for {offered}")
        return found

    def _finish(self, answers: Sequence[Challenge]) -> StoredCertificate:
        assert self._client is not None and self._order is not None
        for answer in answers:
            self._client.answer_challenge(answer.body, answer.body.response(self._net.key))
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_TIMEOUT)
        done = self._client.poll_and_finalize(self._order, deadline)
        chain = done.fullchain_pem
        names, not_after = describe(chain)
        return StoredCertificate(
            name=self.name,
            chain_pem=chain,
            key_pem=self._key_pem,
            names=names,
            not_after=not_after,
            updated=0.0,
        )

    def close(self) -> None:
        self._net.session.close()
