"""How long the node's event loop is held, seen by a bystander: NOOP round trips of one
logged-in IMAP session, in a process of its own (as the customer is), 20 ms apart.

Every protocol shares the node's one event loop, so the longest round trip while an attack runs
is the longest stretch the loop was held (plus a loopback round trip). A NOOP that gets no answer
within `timeout` counts as `timeout` and ends the probe: that loop is stuck.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
import time
from collections.abc import Iterator
from multiprocessing.synchronize import Event
from typing import Any

from tests.rawclient import client_tls

BYSTANDER = "127.0.8.1"  # neither an attacker's network nor the customer's


def _probe(
    port: int, user: str, password: str, source: str, timeout: float, stop: Event, out: Any
) -> None:
    times: list[float] = []
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout, source_address=(source, 0))
        conn = client_tls().wrap_socket(sock)
        reader = conn.makefile("rb")
        reader.readline()
        conn.sendall(f'a LOGIN "{user}" "{password}"\r\n'.encode())
        while not reader.readline().startswith(b"a "):
            pass
        out.put(("ready", 0.0))
        n = 0
        while not stop.is_set():
            n += 1
            tag = b"n%d " % n
            started = time.monotonic()
            conn.sendall(tag + b"NOOP\r\n")
            try:
                while not reader.readline().startswith(tag):
                    pass
            except TimeoutError:
                times.append(timeout)
                break
            times.append(time.monotonic() - started)
            stop.wait(0.02)
        conn.close()
    except Exception as exc:  # the probe failing is a finding, not a crash of the test
        out.put(("error", repr(exc)))
    for t in times:
        out.put(("rtt", t))
    out.put(None)


@contextlib.contextmanager
def noop_round_trips(
    port: int, user: str, password: str, *, source: str = BYSTANDER, timeout: float = 5.0
) -> Iterator[list[float]]:
    """`with noop_round_trips(port, user, password) as rtts:` probes while the block runs;
    `rtts` holds every round trip in seconds when it ends (the block starts once the probe is
    logged in)."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    out = context.Queue()
    process = context.Process(
        target=_probe, args=(port, user, password, source, timeout, stop, out), daemon=True
    )
    process.start()
    rtts: list[float] = []
    errors: list[str] = []
    first = out.get(timeout=60)
    if first is None or first[0] != "ready":
        process.join(timeout=10)
        raise AssertionError(f"the probe could not log in: {first}")
    try:
        yield rtts
    finally:
        stop.set()
        deadline = time.monotonic() + timeout + 30
        while time.monotonic() < deadline:
            try:
                item = out.get(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                break
            if item is None:
                break
            if item[0] == "error":
                errors.append(item[1])
            else:
                rtts.append(item[1])
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
        if errors:
            raise AssertionError(f"the probe failed: {errors}")
