"""[capacity]: the live margin's settings, checked at load like every other section."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailfort.cluster.status import NodeStatus, format_status
from mailfort.config import load
from mailfort.errors import ConfigError
from mailfort.store.records import NodeInfo


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailfort.toml"
    path.write_text(text)
    return path


def test_defaults_have_no_profile(tmp_path: Path) -> None:
    capacity = load(write(tmp_path, "")).capacity
    assert capacity.profile == "" and capacity.spare_nodes == 1
    assert capacity.max_utilisation == 0.75 and capacity.node_cpus == 0.0


def test_a_relative_profile_is_beside_the_file(tmp_path: Path) -> None:
    config = load(write(tmp_path, '[capacity]\nprofile = "plans/p.json"\nspare_nodes = 2\n'))
    assert config.capacity.profile == str(tmp_path / "plans" / "p.json")
    assert config.capacity.spare_nodes == 2


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("max_utilisation = 1.5", "capacity.max_utilisation"),
        ("max_utilisation = 0", "capacity.max_utilisation"),
        ("spare_nodes = -1", "capacity.spare_nodes"),
        ("spare_nodes = 1.5", "capacity.spare_nodes"),
        ("node_cpus = -2", "capacity.node_cpus"),
        ("profiel = 'x'", "capacity.profiel"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load(write(tmp_path, f"[capacity]\n{text}\n"))


def test_the_margin_line_follows_the_table() -> None:
    info = NodeInfo(name="mx1", state="active", started=0, heartbeat=0, listeners=[], load={})
    found = [NodeStatus(info=info, state="active", age=1.0, leases=0)]
    lines = format_status(found, "margin: unknown (no [capacity] profile)").splitlines()
    assert lines[0].startswith("NODE") and lines[1].startswith("mx1")
    assert lines[-1] == "margin: unknown (no [capacity] profile)"
    assert format_status([], "margin: x") == "no nodes registered"
