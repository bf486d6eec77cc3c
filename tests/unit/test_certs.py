"""The `[tls] acme` settings: defaults, and what cannot go together."""

from __future__ import annotations

from pathlib import Path

from mailfort.config import TlsConfig
from tests.unit.test_config import error_for


def test_acme_settings(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("c")
    (tmp_path / "k.pem").write_text("k")
    both = '[tls]\nacme = true\ncert = "c.pem"\nkey = "k.pem"\n'
    assert error_for(tmp_path, both).key == "tls.acme"
    missing = '[tls]\nacme = true\nacme_ca_file = "nowhere.pem"\n'
    assert error_for(tmp_path, missing).key == "tls.acme_ca_file"
    zero = "[tls]\nacme = true\nacme_reload_seconds = 0\n"
    assert error_for(tmp_path, zero).key == "tls.acme_reload_seconds"


def test_acme_is_off_by_default() -> None:
    settings = TlsConfig()
    assert settings.acme is False
    assert settings.acme_renew_before_days == 30
    assert settings.acme_directory.startswith("https://acme-v02.api.letsencrypt.org/")
