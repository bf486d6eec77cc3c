"""Reading profiles and workloads: every fault is one line that names the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailfort.capacity.profile import ProfileError, load_profile, profile_from_dict
from mailfort.capacity.workload import WorkloadError, load_workload, workload_from_dict
from tests import capacity_support as cs


def test_a_profile_round_trips_through_its_json(tmp_path: Path) -> None:
    profile = profile_from_dict(cs.PROFILE)
    path = tmp_path / "p.json"
    path.write_text(profile.to_json())
    assert load_profile(path) == profile
    assert profile.size_class(5000).name == "small"
    assert profile.size_class(10_000_000).name == "large"


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"format": "something"}, "not a mailfort capacity profile"),
        ({"schema": 99}, "profile schema 99"),
        ({"mailfort_version": "0.0.1"}, "measured with mailfort 0.0.1"),
        ({"imap_login_cpu": -1}, "imap_login_cpu must be > 0"),
        ({"remote_delivery_cpu": "fast"}, "remote_delivery_cpu must be a number"),
        ({"engine": "mysql"}, "engine must be sqlite or postgresql"),
        ({"accept": []}, "accept must be a non-empty list"),
    ],
)
def test_a_bad_profile_says_what_is_wrong(changes: dict[str, object], said: str) -> None:
    with pytest.raises(ProfileError, match=said):
        profile_from_dict(cs.profile(**changes))


def test_a_profile_of_another_version_is_accepted_only_knowingly() -> None:
    data = cs.profile(mailfort_version="0.0.1")
    assert profile_from_dict(data, any_version=True).mailfort_version == "0.0.1"


def test_size_classes_must_grow() -> None:
    classes = list(reversed(cs.PROFILE["accept"]))
    with pytest.raises(ProfileError, match="must grow"):
        profile_from_dict(cs.profile(accept=classes))


@pytest.mark.parametrize(
    ("tables", "said"),
    [
        ({"messages": {"per_mailbox_per_day": -5}}, "per_mailbox_per_day must be >= 0"),
        ({"messages": {"per_second": 3, "per_mailbox_per_day": 3}}, "one of them"),
        ({"messages": {"per_mailbox_per_day": 3, "remote_share": 1.5}}, "remote_share must be"),
        ({"messages": {"per_mailbox_per_day": 3, "sizes": {"small": 0.5}}}, "add up to 1"),
        ({"messages": {"per_mailbox_per_day": 3, "diurnal": [1, 2]}}, "24 weights"),
        ({"messages": {"per_mailbox_per_day": 3, "peak_factor": 9}}, "more than the default"),
        ({"messages": {"per_mailbox_per_day": 3, "colour": "red"}}, "unknown key 'colour'"),
        ({"mailboxes": {"count": 0}}, "count must be >= 1"),
        ({"logins": {"imap": -1}}, "imap must be >= 0"),
        ({"targets": {"max_utilisation": 1.5}}, "max_utilisation must be"),
        ({"targets": {"p99_time_to_250_seconds": 0}}, "must be > 0"),
        ({"senders": [{"share": 0.5, "retry_seconds": [60]}]}, "add up to 1"),
        ({"senders": [{"share": 1, "retry_seconds": [0]}]}, "must all be > 0"),
        ({"cluster": {"nodes": 2}, "scenarios": [{"nodes_lost": 2}]}, "leaves no node"),
        ({"scenarios": [{"remote_down_hours": 2}]}, "needs remote_down_share"),
        ({"surprise": {}}, "unknown key 'surprise'"),
    ],
)
def test_a_bad_workload_says_what_is_wrong(tables: dict[str, object], said: str) -> None:
    with pytest.raises(WorkloadError, match=said):
        workload_from_dict(cs.workload(**tables))


def test_a_workload_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text("[mailboxes]\ncount = -3\n")
    with pytest.raises(WorkloadError, match=r"w\.toml: mailboxes\.count"):
        load_workload(path)
    path.write_text("[mailboxes\n")
    with pytest.raises(WorkloadError, match="not TOML"):
        load_workload(path)


def test_the_diurnal_curve_keeps_the_day_and_peaks_where_asked() -> None:
    for factor in (1.0, 1.8, 2.5, 3.0):
        w = workload_from_dict(
            cs.workload(messages={"per_mailbox_per_day": 24, "peak_factor": factor})
        )
        assert sum(w.diurnal) == pytest.approx(24)
        assert max(w.diurnal) == pytest.approx(factor)
    # A day's messages are the mailboxes × the daily rate, whatever the curve.
    day = sum(w.messages_per_second(h * 3600.0) * 3600 for h in range(24))
    assert day == pytest.approx(w.mailboxes * 24)
