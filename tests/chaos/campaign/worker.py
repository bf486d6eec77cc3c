"""What the IMAP and POP3 workers share: who they are, where they go, how they connect again."""

from __future__ import annotations

import random
import ssl
from collections.abc import Callable

from tests.chaos.campaign.history import History

Targets = Callable[[random.Random], tuple[str, str, int]]  # rng -> (node, host, port)


class SessionWorker:
    """One account's only client: sessions against the nodes `targets` picks. Connect failures
    are normal (nodes come and go): the worker pauses `retry_pause` and tries another."""

    def __init__(
        self,
        name: str,
        history: History,
        targets: Targets,
        account: str,
        password: str,
        seed: int,
        *,
        timeout: float = 10.0,
        retry_pause: float = 0.3,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.history = history
        self.targets = targets
        self.account = account
        self.password = password
        self.rng = random.Random(seed)
        self.timeout = timeout
        self.retry_pause = retry_pause
        self.tls = tls  # implicit TLS (the node refuses plaintext logins off loopback)
        self.sessions = 0
