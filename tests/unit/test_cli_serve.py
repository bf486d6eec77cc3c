"""`serve --workers N` without processes: how many workers, what each is told, held ports."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from mailfort.cli_serve import (
    PortReservations,
    WorkersUnsupported,
    available_cpus,
    worker_config,
    worker_count,
)
from mailfort.config import Config, ListenConfig, StatusConfig, StoreConfig
from mailfort.server import listener
from mailfort.server.listener import listening_socket, share_ports

PG = StoreConfig(url="postgresql://mailfort@db.test/mail")


def only(**listeners: str) -> ListenConfig:
    """A listen table with just these listeners (the defaults would bind real ports)."""
    off = dict.fromkeys((f.name for f in dataclasses.fields(ListenConfig)), "")
    return ListenConfig(**{**off, **listeners})


def test_sqlite_runs_one_worker_and_refuses_more() -> None:
    assert worker_count(Config(), None) == 1
    assert worker_count(Config(workers=0), 1) == 1
    with pytest.raises(WorkersUnsupported, match="--workers 2 needs PostgreSQL"):
        worker_count(Config(), 2)
    with pytest.raises(WorkersUnsupported):
        worker_count(Config(workers=4), None)


def test_postgresql_runs_one_worker_per_cpu_unless_told() -> None:
    assert worker_count(Config(store=PG), None) == available_cpus()
    assert worker_count(Config(store=PG, workers=3), None) == 3
    assert worker_count(Config(store=PG, workers=3), 5) == 5  # the flag wins
    assert worker_count(Config(store=PG, workers=3), 0) == available_cpus()


def test_each_worker_has_its_name_and_only_the_first_serves_the_status_web() -> None:
    config = Config(node_name="mx1", store=PG, workers=2)
    listen = only(smtp="127.0.0.1:2525", http="127.0.0.1:8080")
    first, second = (worker_config(config, i, listen) for i in (0, 1))
    assert (first.node_name, second.node_name) == ("mx1-w0", "mx1-w1")
    assert first.listen == listen
    assert second.listen == dataclasses.replace(listen, http="")
    assert first.workers == second.workers == 1
    # The status page a notice names is the one worker 0 serves, for every worker.
    assert first.status == config.status
    assert second.status.public_url == "http://127.0.0.1:8080/"
    public = dataclasses.replace(config, status=StatusConfig(public_url="https://status.test/"))
    assert worker_config(public, 1, listen).status.public_url == "https://status.test/"


def test_held_ports_turn_port_0_into_one_port_that_workers_can_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Sharing is one-way for a worker process; this test process gets it back afterwards.
    monkeypatch.setattr(listener._PortSharing, "enabled", False)
    reservations = PortReservations()
    try:
        listen = reservations.reserve(only(smtp="127.0.0.1:0", imap="127.0.0.1:0"))
        host, _, text = listen.smtp.rpartition(":")
        port = int(text)
        assert host == "127.0.0.1" and port > 0
        assert listen.imap != listen.smtp and listen.submission == ""
        # A process that does not share (a second node by mistake) cannot take the port ...
        with socket.socket() as plain, pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
        # ... and nothing answers on it until a worker listens.
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
        share_ports()
        with (
            listening_socket(host, port),
            listening_socket(host, port),
            socket.create_connection(("127.0.0.1", port), timeout=5),
        ):
            pass
    finally:
        reservations.close()


def test_a_port_in_use_is_named_by_its_listener() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"\[listen\] imap = 127.0.0.1:{port}"):
            PortReservations().reserve(only(smtp="127.0.0.1:0", imap=f"127.0.0.1:{port}"))
