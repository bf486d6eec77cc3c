"""The `mailfort` command line, run as the operator runs it: a subprocess with a config file."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import TypeVar

import pytest

from mailfort import __version__
from mailfort.auth.passwords import verify_password
from mailfort.mail.accept import build_request
from mailfort.mail.directory import Resolution
from mailfort.store.records import Account, QueueItem
from mailfort.store.sqlite import SqliteStore
from tests.nodeproc import NodeProcess

T = TypeVar("T")


@pytest.fixture
def node(tmp_path: Path) -> NodeProcess:
    proc = NodeProcess(tmp_path)
    proc.write_config()
    return proc


def in_store(node: NodeProcess, fn: Callable[[SqliteStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = SqliteStore(node.db_path)
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(run())


def provision(node: NodeProcess, *domains: str, users: tuple[str, ...] = ()) -> None:
    """Set-up that is not under test goes straight into the store (no argon2, no subprocess)."""

    async def run(store: SqliteStore) -> None:
        for domain in domains:
            await store.add_domain(domain)
        for address in users:
            await store.add_account(address, "$argon2id$placeholder")

    in_store(node, run)


def account(node: NodeProcess, address: str) -> Account | None:
    return in_store(node, lambda s: s.get_account(address))


def ok(node: NodeProcess, *args: str, stdin: str | None = None) -> str:
    done = node.cli(*args, stdin=stdin)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def fails(node: NodeProcess, *args: str, stdin: str | None = None, status: int = 1) -> str:
    done = node.cli(*args, stdin=stdin)
    assert done.returncode == status, (args, done.returncode, done.stdout, done.stderr)
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1, message  # one line, no traceback
    assert message.startswith("mailfort: ")
    return message


def test_version(node: NodeProcess) -> None:
    assert ok(node, "--version").strip() == f"mailfort {__version__}"


def test_init_demo_creates_the_demo_user_once(node: NodeProcess) -> None:
    first = ok(node, "init", "--demo")
    match = re.search(r"password: (\S+)", first)
    assert match, first
    assert "demo@example.test" in first
    demo = account(node, "demo@example.test")
    assert demo is not None and verify_password(demo.password_hash, match[1])
    assert (node.data_dir / "tls" / "cert.pem").is_file()
    assert in_store(node, lambda s: s.list_domains()) == ["example.test"]

    second = ok(node, "init", "--demo")
    assert "password" not in second
    again = account(node, "demo@example.test")
    assert again is not None and again.password_hash == demo.password_hash


def test_init_without_demo_creates_no_user(node: NodeProcess) -> None:
    out = ok(node, "init")
    assert "password" not in out
    assert in_store(node, lambda s: s.count_accounts()) == 0


def test_domains(node: NodeProcess) -> None:
    assert "added domain example.test" in ok(node, "domain", "add", "Example.TEST")
    ok(node, "domain", "add", "other.test")
    assert ok(node, "domain", "list").splitlines() == [
        "example.test",
        "other.test",
        "config-domain.test\t(from config)",
    ]
    assert "already exists" in fails(node, "domain", "add", "example.test")
    for bad in ("no-dot", "exa\tmple.test", "user@example.test", "a..test"):
        assert "not a domain" in fails(node, "domain", "add", bad)

    ok(node, "domain", "del", "other.test")
    assert "other.test" not in ok(node, "domain", "list")
    assert "other.test" in fails(node, "domain", "del", "other.test")


def test_a_domain_with_users_is_deleted_only_with_force(node: NodeProcess) -> None:
    provision(node, "example.test", users=("alice@example.test",))
    assert "--force" in fails(node, "domain", "del", "example.test")
    ok(node, "domain", "del", "example.test", "--force")
    assert "example.test\n" not in ok(node, "domain", "list")


def test_users(node: NodeProcess) -> None:
    provision(node, "example.test")
    out = ok(node, "user", "add", "Alice@Example.test", "--password-stdin", stdin="s3cret pass\n")
    assert "added user alice@example.test" in out
    assert "password" not in out  # the operator chose it; never echo it
    alice = account(node, "alice@example.test")
    assert alice is not None
    assert verify_password(alice.password_hash, "s3cret pass")  # without the line end
    boxes = in_store(node, lambda s: s.list_mailboxes(alice.id))
    assert [b.name for b in boxes] == ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"]

    # A domain named only in the config file is local too; no --password-stdin: one is made up.
    generated = ok(node, "user", "add", "carol@config-domain.test")
    match = re.search(r"password: (\S+)", generated)
    assert match, generated
    carol = account(node, "carol@config-domain.test")
    assert carol is not None and verify_password(carol.password_hash, match[1])
    provision(node, users=("bob@example.test",))

    listed = ok(node, "user", "list").splitlines()
    assert [line.split("\t")[0] for line in listed] == [
        "alice@example.test",
        "bob@example.test",
        "carol@config-domain.test",
    ]
    assert "quota=unlimited" in listed[0]
    by_domain = ok(node, "user", "list", "--domain", "Config-Domain.test").splitlines()
    assert [line.split("\t")[0] for line in by_domain] == ["carol@config-domain.test"]

    ok(node, "user", "passwd", "alice@example.test", "--password-stdin", stdin="new one\n")
    changed = account(node, "alice@example.test")
    assert changed is not None and changed.password_hash != alice.password_hash
    assert verify_password(changed.password_hash, "new one")

    assert "already exists" in fails(
        node, "user", "add", "alice@example.test", "--password-stdin", stdin="x\n"
    )
    assert "empty password" in fails(
        node, "user", "add", "dave@example.test", "--password-stdin", stdin="\n"
    )
    assert "not an address" in fails(node, "user", "add", "not-an-address")
    assert "nobody@example.test" in fails(
        node, "user", "passwd", "nobody@example.test", "--password-stdin", stdin="x\n"
    )

    ok(node, "user", "del", "bob@example.test")
    assert account(node, "bob@example.test") is None
    assert "bob@example.test" in fails(node, "user", "del", "bob@example.test")


def test_user_add_for_a_domain_that_is_not_local(node: NodeProcess) -> None:
    message = fails(node, "user", "add", "eve@elsewhere.test", "--password-stdin", stdin="pw\n")
    assert "elsewhere.test is not a local domain" in message
    assert "mailfort domain add elsewhere.test" in message  # says how to fix it
    assert account(node, "eve@elsewhere.test") is None


def test_aliases(node: NodeProcess) -> None:
    provision(node, "example.test")
    out = ok(node, "alias", "add", "Team@example.test", "a@example.test", "b@remote.test")
    assert "team@example.test -> a@example.test, b@remote.test" in out
    ok(node, "alias", "add", "@Example.test", "a@example.test")
    ok(node, "alias", "add", "x@config-domain.test", "a@example.test")

    assert ok(node, "alias", "list").splitlines() == [
        "@example.test\ta@example.test\t(catch-all)",
        "team@example.test\ta@example.test",
        "team@example.test\tb@remote.test",
        "x@config-domain.test\ta@example.test",
    ]
    assert len(ok(node, "alias", "list", "--domain", "example.test").splitlines()) == 3

    message = fails(node, "alias", "add", "team@example.test", "c@example.test", "b@remote.test")
    assert "already exists" in message
    # All or nothing: the new target was not added beside the repeated one.
    targets = in_store(node, lambda s: s.alias_targets("team@example.test"))
    assert targets == ["a@example.test", "b@remote.test"]
    assert "not a local domain" in fails(node, "alias", "add", "x@elsewhere.test", "a@b.test")
    assert "not a local domain" in fails(node, "alias", "add", "@elsewhere.test", "a@b.test")

    ok(node, "alias", "del", "team@example.test", "b@remote.test")
    assert in_store(node, lambda s: s.alias_targets("team@example.test")) == ["a@example.test"]
    ok(node, "alias", "del", "@example.test")
    assert "(catch-all)" not in ok(node, "alias", "list")
    fails(node, "alias", "del", "@example.test")
    fails(node, "alias", "del", "team@example.test", "zz@example.test")


def queue_a_remote_message(node: NodeProcess) -> str:
    """Accept a message for two remote recipients, as the submission listener would."""

    async def run(store: SqliteStore) -> str:
        request = build_request(
            sender="alice@example.test",
            data=b"Subject: queued for later\r\nFrom: alice@example.test\r\n\r\nhello\r\n",
            resolved={
                "x@remote.test": Resolution(remote=["x@remote.test"]),
                "y@remote.test": Resolution(remote=["y@remote.test"]),
            },
            helo="client.example",
            client_ip="192.0.2.1",
            hostname="mx.mailfort.test",
            protocol="ESMTPSA",
            authenticated="alice@example.test",
            now=time.time() - 300,
        )
        await store.accept(request)
        # One delivery attempt failed, as remote delivery will record it.
        (item, _) = await store.claim_queue("n1", time.time(), 30, 10, local_only=False)
        for leased in (item, _):
            error = "451 4.4.1 mx.remote.test: connection timed out"
            await store.defer_queued(leased, "n1", time.time() + 3600, error)
        return request.queue_id

    return in_store(node, run)


def queue_items(node: NodeProcess) -> list[QueueItem]:
    return in_store(node, lambda s: s.queue_items())


def test_queue(node: NodeProcess) -> None:
    assert ok(node, "queue", "list").strip() == "queue is empty"
    queue_id = queue_a_remote_message(node)

    listing = ok(node, "queue", "list")
    assert queue_id in listing
    assert "alice@example.test" in listing
    assert "-> x@remote.test" in listing and "-> y@remote.test" in listing
    assert "connection timed out" in listing
    row = next(line for line in listing.splitlines() if line.startswith(queue_id))
    assert re.search(r"\s5m\s", row), row  # age
    assert re.search(r"\s1\s", row), row  # attempts
    assert "1 message(s), 2 recipient(s)" in listing

    shown = ok(node, "queue", "show", queue_id)
    assert f"queue id:  {queue_id}" in shown
    assert "sender:    <alice@example.test>" in shown
    assert "recipient: x@remote.test" in shown and "1 attempt(s)" in shown
    assert "last error: 451 4.4.1" in shown
    assert "Subject: queued for later" in shown
    assert f"id {queue_id}" in shown  # our Received header
    assert "hello" not in shown  # headers only, not the body
    assert "no queued message" in fails(node, "queue", "show", "NOSUCHID")

    before = time.time()
    assert "2 recipient(s) due now" in ok(node, "queue", "retry", queue_id)
    assert all(before - 1 <= i.next_attempt <= time.time() + 1 for i in queue_items(node))
    assert "no queued message" in fails(node, "queue", "retry", "NOSUCHID")
    assert "--all" in fails(node, "queue", "retry")
    assert "2 recipient(s) due now" in ok(node, "queue", "retry", "--all")

    done = node.cli("queue", "delete", queue_id)
    assert done.returncode == 0 and "2 recipient(s)" in done.stdout
    assert "event=queue_deleted" in done.stderr  # deleting mail is logged
    assert queue_items(node) == []
    assert in_store(node, lambda s: s.queue_body(queue_id)) is None
    assert ok(node, "queue", "list").strip() == "queue is empty"
    assert "no queued message" in fails(node, "queue", "delete", queue_id)


def test_config_error_exits_2_with_one_line(node: NodeProcess) -> None:
    node.config_path.write_text(node.config_path.read_text() + "\n[limits]\nmax_recipients = -5\n")
    message = fails(node, "user", "list", status=2)
    assert "limits.max_recipients" in message
    assert not node.db_path.exists()


def test_usage_errors_exit_2(node: NodeProcess) -> None:
    assert node.cli().returncode == 2  # no command: help
    assert node.cli("user", "frobnicate").returncode == 2


def test_a_store_from_a_newer_mailfort_is_refused_clearly(node: NodeProcess) -> None:
    provision(node, "example.test")
    with closing(sqlite3.connect(node.db_path)) as conn:
        conn.execute("PRAGMA user_version = 999")
    message = fails(node, "domain", "list")
    assert "schema version 999" in message and "upgrade mailfort" in message


def test_a_taken_port_is_named_with_its_listener(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = NodeProcess(tmp_path, fixed_ports={"submission": port})
        node.write_config()
        assert node.cli("init").returncode == 0
        message = fails(node, "serve")
    # Which of the eight listeners, and where: not just "Address already in use".
    assert message == f"mailfort: Address already in use: [listen] submission = 127.0.0.1:{port}"
