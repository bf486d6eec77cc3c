"""`mailfort capacity plan` as an operator runs it: a profile and a workload in, a report (text,
JSON, HTML with plots) out, and one clear line with exit 2 for anything it cannot use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import capacity_support as cs

WORKLOAD = """
[mailboxes]
count = 150000

[messages]
per_mailbox_per_day = 20
peak_factor = 2.5
remote_share = 0.3
sizes = { small = 0.8, medium = 0.18, large = 0.02 }

[logins]
imap = 0.5
pop3 = 0.1

[targets]
p99_time_to_250_seconds = 1.0
p99_time_to_mailbox_seconds = 300

[[scenarios]]
name = "a node lost at the peak with 20,000 queued"
nodes_lost = 1
backlog = 20000
warmup_seconds = 600
horizon_hours = 1
"""


def plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # A small event budget: seconds, not minutes (the figures are coarser, not different).
        [sys.executable, "-m", "mailfort", "capacity", "plan", "--events", "20000", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(cs.PROFILE))
    workload = tmp_path / "workload.toml"
    workload.write_text(WORKLOAD)
    return profile, workload


def test_the_plan_in_json_answers_what_a_script_asks(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    profile, workload = files
    html = tmp_path / "report.html"
    done = plan(
        "--profile", str(profile), "--workload", str(workload), "--json", "--html", str(html)
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["nodes_needed"] >= 1
    assert data["nodes_for_failures"]["nodes"] == data["nodes_needed"] + 1
    (scenario,) = data["scenarios"]
    for key in (
        "name",
        "peak_queue",
        "drain_seconds",
        "refused_share",
        "p99_time_to_mailbox_seconds",
    ):
        assert key in scenario, key
    assert scenario["peak_queue"] >= 20_000
    assert scenario["closed_form"]["drain_seconds"] > 0
    assert scenario["series"] and {"t", "queue", "accepted", "refused"} <= set(
        scenario["series"][0]
    )
    page = html.read_text()
    assert page.count("<svg") >= 2 and "Nodes needed by hour" in page


def test_the_text_report_says_nodes_and_scenarios(files: tuple[Path, Path]) -> None:
    profile, workload = files
    done = plan("--profile", str(profile), "--workload", str(workload))
    assert done.returncode == 0, done.stderr
    assert "Nodes needed at the peak:" in done.stdout
    assert "Scenario: a node lost at the peak with 20,000 queued" in done.stdout
    assert "Every target is met." in done.stdout


def test_too_few_deployed_nodes_exit_1_with_the_shortfall(files: tuple[Path, Path]) -> None:
    profile, workload = files
    # 150,000 mailboxes need 2 nodes at the peak (utilisation); 600,000 need more than 3.
    workload.write_text(WORKLOAD.replace("count = 150000", "count = 600000"))
    done = plan("--profile", str(profile), "--workload", str(workload), "--nodes", "3")
    assert done.returncode == 1, done.stderr
    assert "Targets missed:" in done.stdout


@pytest.mark.parametrize(
    ("profile_changes", "workload_text", "said"),
    [
        ({}, WORKLOAD.replace("per_mailbox_per_day = 20", "per_mailbox_per_day = -20"),
         "messages.per_mailbox_per_day must be >= 0, not -20"),
        ({"mailfort_version": "0.0.9"}, WORKLOAD, "measured with mailfort 0.0.9"),
        ({}, WORKLOAD.replace("p99_time_to_250_seconds = 1.0", "p99_time_to_250_seconds = 0.001"),
         "p99 time to 250 target 0.001 s cannot be met: an idle node takes"),
        ({"format": "x"}, WORKLOAD, "not a mailfort capacity profile"),
        ({}, "[mailboxes\n", "not TOML"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, profile_changes: dict[str, object], workload_text: str, said: str
) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(cs.profile(**profile_changes)))
    workload = tmp_path / "workload.toml"
    workload.write_text(workload_text)
    done = plan("--profile", str(profile), "--workload", str(workload))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    done = plan("--profile", str(tmp_path / "none.json"), "--workload", str(tmp_path / "w.toml"))
    assert done.returncode == 2
    assert "none.json: cannot read" in done.stderr


def test_the_worked_example_finds_what_docs_capacity_md_says() -> None:
    """docs/capacity.md states the planner's answer on the outage's figures with the committed
    profile; if the code or the profile changes that answer, the page must change with it."""
    root = Path(__file__).resolve().parents[2]
    done = plan(
        "--profile", str(root / "docs/capacity/profile-pg-2cpu.json"),
        "--workload", str(root / "docs/capacity/outage-workload.toml"),
        "--json", "--no-series",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    page = (root / "docs/capacity.md").read_text()
    needed, with_spare = data["nodes_needed"], data["nodes_for_failures"]["nodes"]
    assert f"{needed} nodes of 2 CPUs carry it" in page
    assert f"with N+1, {with_spare}." in page
    lost = data["scenarios"][0]
    assert lost["refused_share"] == 0 and lost["peak_queue"] >= 250_000
    assert lost["queue_drain_seconds"] < 60  # "drained in 14 s" on 239 survivors
