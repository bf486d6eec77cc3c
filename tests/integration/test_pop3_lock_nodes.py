"""POP3's one-session-per-maildrop lock across two nodes sharing one PostgreSQL schema."""

from __future__ import annotations

import poplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_support import PgSchema, base_dsn, cluster_node
from tests.conftest import PASSWORD, client_tls

LEASE = 2.0
CLUSTER = f"\n[cluster]\nheartbeat_seconds = 0.5\nmaildrop_lease_seconds = {LEASE}\n"
USER = "alice@example.test"


@pytest.fixture
def schema() -> Iterator[PgSchema]:
    made = PgSchema.create(base_dsn())
    try:
        yield made
    finally:
        made.drop()


def login(port: int) -> poplib.POP3_SSL:
    client = poplib.POP3_SSL("127.0.0.1", port, context=client_tls(), timeout=10)
    client.user(USER)
    try:
        client.pass_(PASSWORD)
    except BaseException:
        client.close()
        raise
    return client


def test_second_login_on_another_node_is_in_use_until_the_holder_dies(
    tmp_path: Path, schema: PgSchema
) -> None:
    schema.provision(users={USER: PASSWORD})
    one = cluster_node(tmp_path, "pop-a", schema.url, extra_config=CLUSTER)
    two = cluster_node(tmp_path, "pop-b", schema.url, extra_config=CLUSTER)
    one.start()
    two.start()
    try:
        first = login(one.ports["pop3s"])
        assert first.stat() == (0, 0)
        with pytest.raises(poplib.error_proto, match=r"-ERR \[IN-USE\]"):
            login(two.ports["pop3s"])
        time.sleep(LEASE * 1.5)  # the holder renews: still in use past one lease
        with pytest.raises(poplib.error_proto, match=r"-ERR \[IN-USE\]"):
            login(two.ports["pop3s"])

        # A clean QUIT frees it at once.
        first.quit()
        second = login(two.ports["pop3s"])
        with pytest.raises(poplib.error_proto, match=r"-ERR \[IN-USE\]"):
            login(one.ports["pop3s"])
        second.quit()

        # The holder dies without a word: the lock frees when its lease runs out.
        held = login(one.ports["pop3s"])
        one.kill()
        killed = time.monotonic()
        freed = None
        while time.monotonic() - killed < LEASE * 4:
            try:
                login(two.ports["pop3s"]).quit()
            except poplib.error_proto as exc:
                assert b"[IN-USE]" in exc.args[0], exc
                time.sleep(0.1)
                continue
            freed = time.monotonic() - killed
            break
        held.close()
        assert freed is not None, "the dead node's lock never expired"
        assert freed <= LEASE + 1.5, freed
        print(f"maildrop lock freed {freed:.2f}s after the holder was killed")
        assert two.stop() == 0
    finally:
        one.kill()
        two.stop()
    assert "Traceback" not in one.log() + two.log()
