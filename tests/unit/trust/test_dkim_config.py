"""[dkim] and [srs] settings: read from TOML, and a bad value named with its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailfort.config import load
from mailfort.errors import ConfigError


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailfort.toml"
    path.write_text(text)
    return path


def test_settings_are_read(tmp_path: Path) -> None:
    loaded = load(
        config_file(
            tmp_path,
            '[dkim]\nalgorithms = ["ed25519-sha256"]\npublish_wait = 3600\n'
            'selector_prefix = "k"\n[srs]\ndomain = "fwd.example"\nmax_age_days = 7\n',
        )
    )
    assert loaded.dkim.algorithms == ("ed25519-sha256",) and loaded.dkim.publish_wait == 3600
    assert loaded.dkim.selector_prefix == "k" and loaded.dkim.sign
    assert loaded.srs.domain == "fwd.example" and loaded.srs.max_age_days == 7


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[dkim]\nalgorithms = ["rsa-sha1"]\n', "dkim.algorithms"),
        ("[dkim]\nalgorithms = []\n", "dkim.algorithms"),
        ('[dkim]\nselector_prefix = "a.b"\n', "dkim.selector_prefix"),
        ("[dkim]\nretire_wait = -1\n", "dkim.retire_wait"),
        ('[srs]\ndomain = "not a domain"\n', "srs.domain"),
        ("[srs]\nmax_age_days = 2000\n", "srs.max_age_days"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load(config_file(tmp_path, text))
