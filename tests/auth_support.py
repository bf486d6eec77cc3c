"""Logins (auth/login.py) for tests that build listeners in their own process."""

from __future__ import annotations

from mailfort.auth.known import KnownNetworks
from mailfort.auth.login import Logins
from mailfort.auth.passwords import Verifier
from mailfort.auth.throttle import AuthThrottle, ThrottleLimits
from mailfort.store.api import Store


def logins(store: Store, limits: ThrottleLimits | None = None) -> Logins:
    """The node's login path over `store`, with `limits` (default: generous, no delay)."""
    limits = limits or ThrottleLimits(per_address=100, per_network=100, base_delay=0.0)
    return Logins(
        store=store, verifier=Verifier(), throttle=AuthThrottle(limits), known=KnownNetworks(store)
    )
