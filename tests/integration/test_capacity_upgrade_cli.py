"""`mailfort capacity upgrade` as an operator runs it: no store to plan, the store to announce."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.capacity_support import PROFILE
from tests.nodeproc import NodeProcess

WORKLOAD = """\
[mailboxes]
count = 50000000
[messages]
per_mailbox_per_day = 20
remote_share = 0.3
sizes = { small = 0.8, medium = 0.18, large = 0.02 }
[logins]
imap = 0.5
pop3 = 0.1
[cluster]
nodes = 240
[targets]
p99_time_to_250_seconds = 1.0
spare_nodes = 1
"""


def files(root: Path) -> list[str]:
    (root / "profile.json").write_text(json.dumps(PROFILE))
    (root / "workload.toml").write_text(WORKLOAD)
    return ["--profile", str(root / "profile.json"), "--workload", str(root / "workload.toml")]


def mailfort(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailfort", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_schedule_needs_no_store(tmp_path: Path) -> None:
    args = files(tmp_path)
    done = mailfort(
        tmp_path, "capacity", "upgrade", *args, "--to", "290", "--replace",
        "--start", "2026-12-10T22:00Z", "--max-batch", "30",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == [
        "BATCH", "START", "END", "ACTION", "NODES", "DRAINED", "LIVE", "NEEDED", "MARGIN"
    ]  # fmt: skip
    assert lines[1].split()[5:7] == ["add", "241-290"]
    assert "240 -> 290 nodes, every old node replaced" in done.stdout
    assert "never below N+k" in done.stdout
    # Nothing was opened or created: the default data directory is ./var.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.json", "workload.toml"]

    as_json = mailfort(tmp_path, "capacity", "upgrade", *args, "--replace", "--json")
    plan = json.loads(as_json.stdout)
    assert plan["nodes"] == plan["target"] == 240
    replaced = sum(b["last"] - b["first"] + 1 for b in plan["batches"])
    assert replaced == 240
    assert all(b["live"] >= b["needed"] + 1 for b in plan["batches"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--to", "200"], "--to 200: the peak hour (10:00) needs"),
        (["--to", "240"], "give --replace"),
        (["--replace", "--batch-minutes", "-3"], "--batch-minutes must be more than 0"),
        (["--replace", "--start", "tomorrow"], "--start: not a time"),
        (["--replace", "--nodes", "0"], "must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, extra: list[str], message: str) -> None:
    done = mailfort(tmp_path, "capacity", "upgrade", *files(tmp_path), *extra)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("mailfort: ") and message in done.stderr


def test_a_profile_that_is_not_one_is_exit_2(tmp_path: Path) -> None:
    files(tmp_path)
    done = mailfort(
        tmp_path, "capacity", "upgrade", "--profile", str(tmp_path / "workload.toml"),
        "--workload", str(tmp_path / "workload.toml"), "--replace",
    )  # fmt: skip
    assert done.returncode == 2 and "not JSON" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_announce_writes_maintenance_windows(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node")
    node.write_config()
    args = files(tmp_path)
    done = node.cli(
        "capacity", "upgrade", *args, "--replace", "--max-batch", "60",
        "--start", "2030-01-10T08:00Z", "--announce",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    announced = [x for x in done.stdout.splitlines() if x.startswith("announced mnt-")]
    assert announced
    listed = node.cli("status", "maintenance", "list").stdout
    assert "Rolling upgrade: nodes 1–" in listed and "replaced" in listed
    assert len(listed.strip().splitlines()) == len(announced)
    # Announced, not declared: no component changes and no incident opens.
    shown = node.cli("status", "show").stdout
    assert "open incidents: none" in shown and "outage" not in shown.split("maintenance:")[0]


def test_a_schedule_reads_no_config_but_announcing_does(tmp_path: Path) -> None:
    args = files(tmp_path)
    (tmp_path / "mailfort.toml").write_text("[capacity\n")  # not TOML
    done = mailfort(tmp_path, "capacity", "upgrade", *args, "--replace")
    assert done.returncode == 0, done.stderr
    announced = mailfort(tmp_path, "capacity", "upgrade", *args, "--replace", "--announce")
    assert announced.returncode == 2 and "config error" in announced.stderr
