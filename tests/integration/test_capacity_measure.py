"""`mailfort capacity measure`: a real node measured from outside, and the profile it writes."""

from __future__ import annotations

import json
import os
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailfort.capacity.profile import Profile, load_profile
from tests.capacity_support import PROFILE
from tests.cluster_support import base_dsn, run_async
from tests.nodeproc import NodeProcess

# Small counts: the figures are coarse, but each is measured and the run takes seconds.
SMALL = [
    "--quick",
    *("--messages", "30", "--remote", "20", "--logins", "20", "--fetches", "20"),
    *("--pop3-sessions", "20", "--connections", "20", "--accounts", "4"),
]


def mailfort(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailfort", "capacity", "measure", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",  # no ./mailfort.toml: the command needs none
    )


def plausible(profile: Profile) -> None:
    small, medium, large = profile.accept
    assert 0 < small.cpu_seconds < large.cpu_seconds
    assert small.measured_bytes < medium.measured_bytes < large.measured_bytes
    for cost in (
        profile.remote_delivery_cpu,
        profile.imap_login_cpu,
        profile.header_fetch_per_message_cpu,
        profile.pop3_session_cpu,
    ):
        assert 0 < cost < 1.0  # seconds of CPU for one unit: more would be a unit mix-up
    assert profile.header_fetch_cpu >= 0
    assert profile.header_fetch_seconds(100) > profile.header_fetch_seconds(10)
    assert 0 < profile.commit_p50_seconds <= profile.commit_p99_seconds
    assert set(profile.memory_per_connection_bytes) == {"smtp", "imap", "pop3"}
    assert all(0 < b < 10 << 20 for b in profile.memory_per_connection_bytes.values())
    assert profile.memory_base_bytes > 10 << 20
    assert profile.saturation_limit > 0 and profile.saturation_messages_per_second > 0
    assert 0 <= profile.saturation_refused_share <= 1
    assert profile.machine.hostname == socket.gethostname()
    assert profile.machine.cpus == len(os.sched_getaffinity(0))
    assert profile.source == "benchmark"


@pytest.fixture(scope="module")
def sqlite_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("measure") / "profile.json"
    return out, mailfort(*SMALL, "-o", str(out))


def test_a_benchmark_writes_a_profile_of_this_machine(
    sqlite_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, done = sqlite_run
    assert done.returncode == 0, done.stderr
    profile = load_profile(out)
    plausible(profile)
    assert profile.engine == "sqlite" and profile.db_cpu_per_message is None
    assert profile.node_cpus == 1.0
    assert any(n.startswith("node_cpus:") for n in profile.notes)
    # The path and a table on stdout, progress on stderr.
    assert str(out) in done.stdout and "remote delivery" in done.stdout
    assert "measure: accept small" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_profile_reads_back_as_written(
    sqlite_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = sqlite_run
    profile = load_profile(out)
    assert profile.to_json() == out.read_text()


def test_postgresql_has_the_database_cpu_per_message(tmp_path: Path) -> None:
    dsn = base_dsn()
    out = tmp_path / "pg.json"
    done = mailfort(*SMALL, "--store-url", dsn, "-o", str(out))
    assert done.returncode == 0, done.stderr
    profile = load_profile(out)
    plausible(profile)
    assert profile.engine == "postgresql"
    assert profile.db_cpu_per_message is not None and profile.db_cpu_per_message > 0
    # The run's own schema is gone afterwards.
    left = run_async(
        lambda: _schemas(dsn),
    )
    assert not left, left


async def _schemas(dsn: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'mailfort_measure_%'"
        )
        return [r[0] for r in rows]
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--logins", "-3"], "logins must be > 0"),
        (["--repeat", "0"], "--repeat must be > 0"),
        (["--interval", "0", "--from-metrics", "http://127.0.0.1:9/metrics"], "--interval must"),
        (["--cpu-quota", "-0.5"], "must be a number > 0"),
        (["-o", "/nonexistent-dir/profile.json"], "cannot write /nonexistent-dir/profile.json"),
        (["--store-url", "mysql://db/mail"], "postgresql:// url"),
        (["--store-url", "postgresql://nobody@127.0.0.1:9/none"], "--store-url"),
        (["--from-metrics", "http://127.0.0.1:9/metrics", "--interval", "0.1"], "cannot fetch"),
        (["--from-metrics", "ftp://node/metrics"], "not an http"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    out = tmp_path / "p.json"
    done = mailfort(*(["-o", str(out)] if "-o" not in args else []), *args, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr


@pytest.fixture
def running_node(tmp_path: Path) -> Iterator[NodeProcess]:
    node = NodeProcess(tmp_path / "node", http=True)
    node.provision(users={"alice@example.test": "pw"})
    node.start()
    try:
        yield node
    finally:
        node.stop()


def test_from_metrics_needs_a_base_for_what_metrics_cannot_show(
    running_node: NodeProcess, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{running_node.ports['http']}/metrics"
    stop = threading.Event()

    def load() -> None:
        with smtplib.SMTP("127.0.0.1", running_node.ports["smtp"]) as smtp:
            while not stop.is_set():
                smtp.sendmail("a@client.test", ["alice@example.test"], b"Subject: x\r\n\r\nhi\r\n")
                time.sleep(0.01)

    sender = threading.Thread(target=load)
    sender.start()
    try:
        time.sleep(0.3)
        without = mailfort("--from-metrics", url, "--interval", "1", "-o", str(tmp_path / "a.json"))
        base = tmp_path / "base.json"
        base.write_text(json.dumps(PROFILE))
        out = tmp_path / "live.json"
        done = mailfort(
            "--from-metrics", url, "--interval", "1", "--base", str(base), "-o", str(out)
        )
    finally:
        stop.set()
        sender.join()
    assert without.returncode == 2
    assert "--base" in without.stderr and "imap_login_cpu" in without.stderr
    assert done.returncode == 0, done.stderr
    profile = load_profile(out)
    assert profile.source == "metrics"
    assert profile.accept[0].cpu_seconds > 0
    assert profile.accept[0].cpu_seconds != PROFILE["accept"][0]["cpu_seconds"]
    # What /metrics cannot show is the base's, and the notes say so.
    assert profile.imap_login_cpu == PROFILE["imap_login_cpu"]
    assert any("apportioned" in n for n in profile.notes)
