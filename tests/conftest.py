from __future__ import annotations

import imaplib
import re
import shutil
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nodeproc import NodeProcess
from tests.rawclient import RawClient, client_tls

# Fixtures `zone`, `nameserver` and `resolver`: a loopback name server for the tests of trust/.
pytest_plugins = ["tests.trustdns"]

PASSWORD = "correct horse battery staple"
USERS = {
    "alice@example.test": PASSWORD,
    "bob@example.test": PASSWORD,
    "carol@other.test": PASSWORD,
}
ALIASES = (
    ("postmaster@example.test", "alice@example.test"),
    ("team@example.test", "alice@example.test"),
    ("team@example.test", "bob@example.test"),
    ("forward@example.test", "someone@remote.test"),
    ("@other.test", "carol@other.test"),
)


def require_command(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `make test` installs it (Debian package)")
    return path


def start_node(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    extra_config: str = "",
    users: dict[str, str] | None = None,
) -> NodeProcess:
    """A started node with the standard domains, USERS (plus `users`) and ALIASES."""
    root: Path = tmp_path_factory.mktemp("node")
    proc = NodeProcess(root, extra_config=extra_config)
    proc.provision(
        domains=("example.test", "other.test"), users={**USERS, **(users or {})}, aliases=ALIASES
    )
    return proc.start()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A real node on loopback with users alice, bob (example.test) and carol (other.test)."""
    proc = start_node(tmp_path_factory)
    yield proc
    proc.stop()


# -- IMAP and delivery helpers ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def no_tracebacks(node: NodeProcess) -> Iterator[None]:
    """Fails the module when the node logged a traceback: client-caused errors are answered."""
    yield
    assert "Traceback" not in node.log()


def deliver(
    node: NodeProcess, to: str, message: bytes, sender: str = "sender@remote.test"
) -> float:
    """Deliver `message` to `to` over the node's SMTP port; returns time.monotonic() at the 250."""
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client:
        refused = client.sendmail(sender, [to], message)
        done = time.monotonic()
    assert refused == {}
    return done


def imaps(node: NodeProcess, user: str | None = "alice@example.test") -> imaplib.IMAP4_SSL:
    """An imaplib client over implicit TLS, logged in as `user` (not logged in when None)."""
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", node.ports["imaps"], ssl_context=client_tls(), timeout=30
    )
    if user is not None:
        client.login(user, PASSWORD)
    return client


class RawImap(RawClient):
    """A byte-level IMAP client: sends exactly what it is given, reads responses with literals."""

    _LITERAL = re.compile(rb"~?\{(\d+)\}\r\n\Z")

    def __init__(
        self, port: int, *, tls: bool = True, source: str = "127.0.0.1", timeout: float = 10.0
    ) -> None:
        super().__init__(port, tls=tls, source=source, timeout=timeout)
        self.greeting = self.response()

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def response(self) -> bytes:
        """One response: a line, and the literals it announces with the lines after them.

        Only untagged data carries literals: a tagged answer ending in `{0}` is text."""
        out = self.line()
        while out.startswith(b"* ") and (m := self._LITERAL.search(out)) is not None:
            size = int(m[1])
            while len(self.buffer) < size:
                self._fill()
            out += self.buffer[:size]
            self.buffer = self.buffer[size:]
            out += self.line()
        assert b"Traceback" not in out, out  # never on the wire
        return out

    def until_tagged(self, tag: str) -> tuple[list[bytes], bytes]:
        untagged: list[bytes] = []
        while True:
            r = self.response()
            if r.startswith(tag.encode() + b" "):
                return untagged, r
            untagged.append(r)

    def command(self, text: bytes | str, tag: str = "a") -> tuple[list[bytes], bytes]:
        """Send `tag text` and read up to its tagged answer: (untagged responses, tagged line)."""
        raw = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + raw + b"\r\n")
        return self.until_tagged(tag)

    def login(self, user: str = "alice@example.test") -> None:
        _, done = self.command(f'LOGIN "{user}" "{PASSWORD}"', tag="login")
        assert done.startswith(b"login OK"), done


# `make test` runs in two passes: everything else on two pytest-xdist workers, then the serial
# tests alone, one after the other (`-m serial`). They load the machine on purpose or judge latency
# and timeouts under load (attacks next to the adversarial customer, chaos, overload, stress
# timers), or take a global resource (the campaign's namespaces, a tmpfs, fixed loopback sources,
# fixed ports); next to another worker they flake.
#
# Serial: every test under a prefix in _SERIAL, except those under _NOT_SERIAL, and any test
# marked `@pytest.mark.serial` where it is (with its reason beside it). A test joins _NOT_SERIAL
# only once read: it must judge no timing a loaded machine moves (a bound far above the work's
# own time, a hang guard, is fine), take no global resource, and not load the machine itself.
_SERIAL = (
    "tests/adversarial/",
    "tests/chaos/",
    "tests/integration/test_overload",
    "tests/integration/test_stress_unauth",
    "tests/integration/test_status_faults",
    "tests/integration/test_cluster_outage",
    "tests/integration/test_smtp_limits.py::test_idle_sessions_make_room",
    "tests/integration/test_workers.py::test_a_crash_looping_worker",
)
_NOT_SERIAL = (
    # Parsers and answers, each request alone against a node of its own: no customer, no
    # latency judged (the entity bomb's 5-s bound is for a refusal that takes milliseconds).
    "tests/adversarial/test_client_setup.py",
    # `mailfort dns check` against a loopback name server on a port of its own; its bound is
    # the check's own deadline plus 10 s for the interpreter to start.
    "tests/adversarial/test_dns_check.py",
    # Record and signature attacks judged by results and counted DNS questions; the timed
    # ones are hang guards with seconds to spare. Those that judge a deadline or a stall are
    # marked serial in the file.
    "tests/adversarial/test_verify_attacks.py",
    # Hostile policy hosts in-process; the deadline test and the cancellation race are marked
    # serial in the file.
    "tests/adversarial/test_mta_sts_attacks.py",
    # The route against an in-memory app; the flood against a node is marked serial.
    "tests/adversarial/test_acme_challenge.py",
    # The campaign checker and schedule on hand-made histories: no node, no clock. The cluster
    # test in test_mailbox_checks.py (fixed ports, a kill) is marked serial in the file.
    "tests/chaos/test_campaign_checks.py",
    "tests/chaos/test_mailbox_checks.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(_SERIAL) and not item.nodeid.startswith(_NOT_SERIAL):
            item.add_marker(pytest.mark.serial)
