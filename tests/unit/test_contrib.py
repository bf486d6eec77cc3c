"""contrib/: the systemd unit and the example configuration of a public node."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from mailfort.cli_serve import KILL_GRACE
from mailfort.config import ClusterConfig, load

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(CONTRIB / "mailfort.service")
    return parser


def test_the_unit_binds_low_ports_without_root_and_outlasts_a_drain() -> None:
    service = unit()["Service"]
    assert service["User"] == "mailfort"
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict" and service["ReadWritePaths"] == "/var/lib/mailfort"
    assert service["Restart"] == "on-failure"
    # SIGTERM to the supervisor only; it drains for drain_seconds, then waits KILL_GRACE for its
    # workers: systemd must not kill it sooner.
    assert (service["KillSignal"], service["KillMode"]) == ("SIGTERM", "mixed")
    stop = float(service["TimeoutStopSec"].removesuffix("s"))
    assert stop > ClusterConfig().drain_seconds + KILL_GRACE


def test_the_unit_is_valid_for_systemd(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    # The unit names the installed program; here an executable that exists stands in for it.
    text = (CONTRIB / "mailfort.service").read_text()
    (tmp_path / "mailfort.service").write_text(
        text.replace("/opt/mailfort/bin/mailfort", shutil.which("true") or "/bin/true")
    )
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / "mailfort.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "mailfort.service" not in done.stderr, done.stderr


def test_the_example_configuration_loads(tmp_path: Path) -> None:
    example = tmp_path / "mailfort.toml"
    example.write_text((CONTRIB / "mailfort.toml.example").read_text())
    config = load(example)
    assert config.hostname == "mx1.example.net"
    assert config.listen.smtp == "0.0.0.0:25" and config.listen.imaps == "0.0.0.0:993"
    assert config.dns.public_addresses == ("192.0.2.10", "2001:db8::10")
